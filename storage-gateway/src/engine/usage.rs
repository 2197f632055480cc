//! A bucket's usage: its committed objects and their logical bytes, counted from the catalog,
//! in all and per key prefix.

use super::Engine;
use crate::error::Result;
use std::collections::BTreeMap;

/// Objects read from the catalog per step of the count.
const PAGE: usize = 1000;
/// Prefixes counted apart per bucket; keys under further prefixes count in the totals only,
/// so a bucket with millions of "directories" cannot make the answer huge.
pub const MAX_USAGE_PREFIXES: usize = 1000;

/// What a bucket holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Committed objects.
    pub objects: u64,
    /// Their logical bytes.
    pub bytes: u64,
    /// Prefix -> (objects, bytes) under it, for keys that have one at the depth asked.
    pub prefixes: BTreeMap<String, (u64, u64)>,
}

impl Engine {
    /// The committed objects of `bucket` and their logical bytes, in all and under each key
    /// prefix `prefix_depth` components deep (0: none; see `telemetry::stats::prefix_of`).
    /// Walks the bucket's catalog entries (blocking; one step per [`PAGE`] objects), so callers
    /// run it off the runtime.
    pub fn bucket_usage(&self, bucket: &str, prefix_depth: usize) -> Result<Usage> {
        let mut usage = Usage::default();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let page = self.catalog().list_objects(bucket, &from, "", PAGE)?;
            for listed in &page {
                let size = listed.manifest.size;
                usage.objects += 1;
                usage.bytes = usage.bytes.saturating_add(size);
                let prefix = telemetry::stats::prefix_of(&listed.key, prefix_depth);
                if prefix.is_empty() {
                    continue;
                }
                if let Some(p) = usage.prefixes.get_mut(prefix) {
                    p.0 += 1;
                    p.1 = p.1.saturating_add(size);
                } else if usage.prefixes.len() < MAX_USAGE_PREFIXES {
                    usage.prefixes.insert(prefix.to_owned(), (1, size));
                }
            }
            let Some(last) = page.last() else { break };
            if page.len() < PAGE {
                break;
            }
            // The next key after the last one: it with a 0 byte appended.
            from = last.key.as_bytes().to_vec();
            from.push(0);
        }
        Ok(usage)
    }
}
