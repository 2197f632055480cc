//! Rewrapping every master-wrapped data key under the active master key.
//!
//! Only the wrapped keys in the metadata change; no shard is read or written, so a rotation
//! costs one metadata pass whatever the amount of data. It runs offline (RocksDB is held
//! exclusively by a running gateway), page by page in atomic batches: an interrupted run
//! leaves every record readable (under the old or the new key) and can simply be run again.

use super::{rewrap, KeyRing};
use crate::error::Result;
use crate::meta::{Batch, MetaStore, Table};
use crate::records::{self, KeyWrap, ObjectManifest, PartRecord, Segment};

/// Records read per batch.
const PAGE: usize = 512;

/// What a rewrap pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RewrapReport {
    /// Object manifests rewritten.
    pub objects: u64,
    /// Multipart part records rewritten.
    pub parts: u64,
    /// Data keys rewrapped.
    pub keys_rewrapped: u64,
    /// Data keys already under the active key.
    pub keys_current: u64,
    /// Segments under SSE-C keys (not ours to rewrap).
    pub customer_keys: u64,
    /// Segments stored unencrypted.
    pub plaintext: u64,
    /// Data keys that could not be rewrapped, with why.
    pub failures: Vec<String>,
}

impl RewrapReport {
    /// True when every master-wrapped key is now under the active key.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Rewraps, in the store, every data key that is wrapped by a master key other than the
/// ring's active one.
pub fn rewrap_all(store: &dyn MetaStore, ring: &KeyRing) -> Result<RewrapReport> {
    let mut report = RewrapReport::default();
    for_each_record::<ObjectManifest>(store, Table::Objects, |what, m| {
        let changed = rewrap_segments(what, &mut m.segments, ring, &mut report);
        report.objects += u64::from(changed);
        changed
    })?;
    for_each_record::<PartRecord>(store, Table::Parts, |what, p| {
        let changed = rewrap_segments(what, std::slice::from_mut(&mut p.segment), ring, &mut report);
        report.parts += u64::from(changed);
        changed
    })?;
    Ok(report)
}

fn rewrap_segments(what: &str, segments: &mut [Segment], ring: &KeyRing, report: &mut RewrapReport) -> bool {
    let Ok(active) = ring.active() else {
        report.failures.push("no active master key".into());
        return false;
    };
    let mut changed = false;
    for seg in segments {
        let Some(rec) = &seg.encryption else {
            report.plaintext += 1;
            continue;
        };
        match &rec.wrapped_by {
            KeyWrap::Customer { .. } => report.customer_keys += 1,
            KeyWrap::Master { key_id } if *key_id == active.id => report.keys_current += 1,
            KeyWrap::Master { key_id } => {
                let Some(old) = ring.get(key_id) else {
                    report.failures.push(format!(
                        "{what}: shard set {} is wrapped by master key {key_id:?}, which is not in the key ring",
                        seg.set
                    ));
                    continue;
                };
                match rewrap(seg.set, rec, old, active) {
                    Ok(new) => {
                        seg.encryption = Some(new);
                        report.keys_rewrapped += 1;
                        changed = true;
                    }
                    Err(e) => report.failures.push(format!("{what}: {e}")),
                }
            }
        }
    }
    changed
}

/// Visits every record of `table`; those `f` changed are written back, one batch per page.
fn for_each_record<T>(store: &dyn MetaStore, table: Table, mut f: impl FnMut(&str, &mut T) -> bool) -> Result<()>
where
    T: records::Record,
{
    let mut from: Vec<u8> = Vec::new();
    loop {
        let page = store.scan(table, &from, b"", PAGE)?;
        let Some((last, _)) = page.last() else { return Ok(()) };
        from = last.clone();
        from.push(0);
        let mut batch = Batch::default();
        for (k, v) in &page {
            let what = format!(
                "{} record {}",
                table.name(),
                String::from_utf8_lossy(k).replace('\0', "/")
            );
            let mut rec: T = records::decode(|| what.clone(), v)?;
            if f(&what, &mut rec) {
                batch.put(table, k.clone(), records::encode(&rec));
            }
        }
        if !batch.ops.is_empty() {
            store.write(batch)?;
        }
        if page.len() < PAGE {
            return Ok(());
        }
    }
}
