//! [`MetaStore`] on RocksDB: one column family per table, batches as `WriteBatch`.

use super::{Batch, MetaStore, Op, Table};
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
}
