//! Rewrapping every master-wrapped data key and MAC key under the active master key.
//!
//! Data keys live in manifests and part records; MAC keys there and in set records too (the
//! healer and scrubber need them). Only the wrapped keys in the metadata change; no shard is read or written, so a rotation
//! costs one metadata pass whatever the amount of data. It runs offline (RocksDB is held
//! exclusively by a running gateway), page by page in atomic batches: an interrupted run
//! leaves every record readable (under the old or the new key) and can simply be run again.

use super::{rewrap, rewrap_mac, KeyRing};
use crate::error::Result;
use crate::meta::{Batch, MetaStore, Table};
use crate::records::{self, KeyWrap, ObjectManifest, PartRecord, Segment, SetRecord};

/// Records read per batch.
const PAGE: usize = 512;

/// What a rewrap pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RewrapReport {
    /// Object manifests rewritten.
    pub objects: u64,
    /// Multipart part records rewritten.
    pub parts: u64,
    /// Set records rewritten (for the MAC keys they keep).
    pub sets: u64,
    /// Data keys rewrapped.
    pub keys_rewrapped: u64,
    /// Data keys already under the active key.
    pub keys_current: u64,
    /// Copies of MAC keys rewrapped (a set's key is kept in its manifest or part record and
    /// in its set record).
    pub mac_keys_rewrapped: u64,
    /// Copies of MAC keys already under the active key.
    pub mac_keys_current: u64,
    /// Segments under SSE-C keys (not ours to rewrap).
    pub customer_keys: u64,
    /// Segments stored unencrypted (with a MAC key or, written before keyed integrity, none).
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

/// Rewraps, in the store, every data key and MAC key that is wrapped by a master key other
/// than the ring's active one.
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
    for_each_record::<SetRecord>(store, Table::ShardSets, |what, r| {
        // Set records keep no data key, and their segments were counted above: MAC keys only.
        let changed = r
            .segment
            .as_mut()
            .is_some_and(|seg| rewrap_mac_key(what, seg, ring, &mut report));
        report.sets += u64::from(changed);
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
        changed |= rewrap_mac_key(what, seg, ring, report);
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

/// Rewraps the MAC key of `seg`, if it has one not under the active key; true if it did.
fn rewrap_mac_key(what: &str, seg: &mut Segment, ring: &KeyRing, report: &mut RewrapReport) -> bool {
    let Some(rec) = &seg.integrity else { return false };
    let Ok(active) = ring.active() else { return false };
    let KeyWrap::Master { key_id } = &rec.key.wrapped_by else {
        return false;
    };
    if *key_id == active.id {
        report.mac_keys_current += 1;
        return false;
    }
    let Some(old) = ring.get(key_id) else {
        report.failures.push(format!(
            "{what}: the MAC key of shard set {} is wrapped by master key {key_id:?}, which is not in the key ring",
            seg.set
        ));
        return false;
    };
    match rewrap_mac(seg.set, rec, old, active) {
        Ok(new) => {
            seg.integrity = Some(new);
            report.mac_keys_rewrapped += 1;
            true
        }
        Err(e) => {
            report.failures.push(format!("{what}: {e}"));
            false
        }
    }
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
