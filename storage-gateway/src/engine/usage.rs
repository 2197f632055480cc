//! A bucket's usage: its committed objects and their logical bytes, counted from the catalog.

use super::Engine;
use crate::error::Result;

/// Objects read from the catalog per step of the count.
const PAGE: usize = 1000;

impl Engine {
    /// The committed objects of `bucket` and their logical bytes. Walks the bucket's catalog
    /// entries (blocking; one step per [`PAGE`] objects), so callers run it off the runtime.
    pub fn bucket_usage(&self, bucket: &str) -> Result<(u64, u64)> {
        let (mut objects, mut bytes) = (0u64, 0u64);
        let mut from: Vec<u8> = Vec::new();
        loop {
            let page = self.catalog().list_objects(bucket, &from, "", PAGE)?;
            for listed in &page {
                objects += 1;
                bytes = bytes.saturating_add(listed.manifest.size);
            }
            let Some(last) = page.last() else { break };
            if page.len() < PAGE {
                break;
            }
            // The next key after the last one: it with a 0 byte appended.
            from = last.key.as_bytes().to_vec();
            from.push(0);
        }
        Ok((objects, bytes))
    }
}
