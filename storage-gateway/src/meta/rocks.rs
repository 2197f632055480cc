//! [`MetaStore`] on RocksDB: one column family per table, batches as `WriteBatch`.

use super::{Batch, MetaStore, Op, Table, Visit, Walk};
use crate::error::{Error, Result};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB};
use std::path::Path;

/// RocksDB-backed metadata store.
pub struct RocksStore {
    db: DB,
}

impl RocksStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = Table::ALL
            .iter()
            .map(|t| ColumnFamilyDescriptor::new(t.name(), Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)
            .map_err(|e| Error::meta("open", format!("{}: {e}", path.display())))?;
        Ok(Self { db })
    }

    fn cf(&self, t: Table) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(t.name())
            .ok_or_else(|| Error::meta("column family", t.name()))
    }
}

impl MetaStore for RocksStore {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(t)?, key).map_err(|e| Error::meta("get", e))
    }

    fn scan(&self, t: Table, from: &[u8], prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = if from < prefix { prefix } else { from };
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(t)?, IteratorMode::From(start, Direction::Forward))
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| Error::meta("scan", e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn walk(&self, t: Table, from: &[u8], prefix: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        let start = if from < prefix { prefix } else { from };
        // An iterator reads from an implicit snapshot taken when it is made: one view of the
        // table for the whole walk, however many seeks it takes.
        let mut it = self.db.raw_iterator_cf(self.cf(t)?);
        it.seek(start);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(prefix) {
                break;
            }
            match visit(k, v)? {
                Walk::Next => it.next(),
                Walk::Seek(to) if to.as_slice() > k => it.seek(&to),
                Walk::Seek(to) => {
                    return Err(Error::Internal(format!(
                        "walk of {}: seek to {:?} does not move past {:?}",
                        t.name(),
                        String::from_utf8_lossy(&to),
                        String::from_utf8_lossy(k)
                    )))
                }
                Walk::Stop => return Ok(()),
            }
        }
        it.status().map_err(|e| Error::meta("walk", e))
    }

    fn write(&self, batch: Batch) -> Result<()> {
        let mut wb = WriteBatch::default();
        for op in batch.ops {
            match op {
                Op::Put(t, k, v) => wb.put_cf(self.cf(t)?, k, v),
                Op::Delete(t, k) => wb.delete_cf(self.cf(t)?, k),
            }
        }
        self.db.write(wb).map_err(|e| Error::meta("write", e))
    }

    fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(|e| Error::meta("syncing the WAL", e))
    }

    fn sequence(&self) -> u64 {
        // Published only once a batch is in the WAL (and the memtable).
        self.db.latest_sequence_number()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_prefix_scans() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open(dir.path()).unwrap();
        let mut b = Batch::default();
        for k in ["a\0x", "a\0y", "a\0z", "b\0x"] {
            b.put(Table::Objects, k.as_bytes(), k.as_bytes());
        }
        s.write(b).unwrap();
        let got = s.scan(Table::Objects, b"a\0y", b"a\0", 10).unwrap();
        let keys: Vec<_> = got
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(keys, vec!["a\0y", "a\0z"]);
        assert_eq!(s.scan(Table::Objects, b"", b"a\0", 1).unwrap().len(), 1);
        let mut b = Batch::default();
        b.delete(Table::Objects, b"a\0x".to_vec());
        s.write(b).unwrap();
        assert!(s.get(Table::Objects, b"a\0x").unwrap().is_none());
        let seq = s.sequence();
        assert!(seq > 0, "every batch moves the sequence");
        s.sync().unwrap();
        assert_eq!(s.sequence(), seq, "a sync writes no batch");
        drop(s);
        let s = RocksStore::open(dir.path()).unwrap();
        assert!(s.get(Table::Objects, b"b\0x").unwrap().is_some());
    }

    #[test]
    fn walks_seek_past_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open(dir.path()).unwrap();
        let mut b = Batch::default();
        for k in ["a/1", "a/2", "a/3", "b/1", "c/1", "c/2", "d"] {
            b.put(Table::Objects, k.as_bytes(), k.as_bytes());
        }
        s.write(b).unwrap();
        // Skip each "x/" group after its first key, as a delimiter listing does.
        let mut seen = Vec::new();
        s.walk(Table::Objects, b"", b"", &mut |k, v| {
            assert_eq!(k, v);
            seen.push(String::from_utf8_lossy(k).into_owned());
            Ok(match k.iter().position(|&c| c == b'/') {
                Some(i) => Walk::Seek([&k[..=i], &[0xff]].concat()),
                None => Walk::Next,
            })
        })
        .unwrap();
        assert_eq!(seen, ["a/1", "b/1", "c/1", "d"]);
        // The prefix bounds the walk; Stop ends it.
        let mut seen = Vec::new();
        s.walk(Table::Objects, b"a/2", b"a/", &mut |k, _| {
            seen.push(String::from_utf8_lossy(k).into_owned());
            Ok(Walk::Next)
        })
        .unwrap();
        assert_eq!(seen, ["a/2", "a/3"]);
        let mut n = 0;
        s.walk(Table::Objects, b"", b"", &mut |_, _| {
            n += 1;
            Ok(Walk::Stop)
        })
        .unwrap();
        assert_eq!(n, 1);
        // A seek that does not move forward would loop forever: refused.
        let err = s
            .walk(Table::Objects, b"", b"", &mut |k, _| Ok(Walk::Seek(k.to_vec())))
            .unwrap_err();
        assert!(err.to_string().contains("does not move past"), "{err}");
    }
}
