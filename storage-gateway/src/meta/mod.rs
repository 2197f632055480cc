//! The metadata store: a small ordered key-value trait, RocksDB behind it, and a typed
//! catalog of buckets, objects, uploads, shard sets and repairs on top.
//!
//! The trait is the seam for a distributed database later; the catalog never sees RocksDB.
//! The catalog is the engine's tool: everything above the engine reaches it through engine
//! verbs and lookups (`Engine::catalog` is private to the engine). This module imports only
//! [`crate::records`] and [`crate::error`].

pub mod catalog;
pub mod doomed;
pub mod rocks;

use crate::error::Result;

pub use catalog::{Catalog, Checked, FailedShard, ListEntry, ListPage, ListQuery, Listed, Stale};
pub use doomed::Doomed;
pub use rocks::RocksStore;

/// The tables (RocksDB column families) of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// bucket name -> BucketRecord
    Buckets,
    /// bucket \0 key -> ObjectManifest
    Objects,
    /// bucket \0 key \0 upload id -> UploadRecord
    Uploads,
    /// upload id \0 part number (u32 BE) -> PartRecord
    Parts,
    /// set id (16 bytes) -> SetRecord
    ShardSets,
    /// set id (16 bytes) shard index (u16 BE) -> RepairRecord
    Repair,
    /// bucket \0 epoch (u64 BE) -> PolicyChange
    PolicyHistory,
    /// `deployment` -> DeploymentRecord (facts about the metadata itself)
    System,
}

impl Table {
    /// Every table, for opening the store.
    pub const ALL: [Table; 8] = [
        Table::Buckets,
        Table::Objects,
        Table::Uploads,
        Table::Parts,
        Table::ShardSets,
        Table::Repair,
        Table::PolicyHistory,
        Table::System,
    ];

    /// Column family name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Table::Buckets => "buckets",
            Table::Objects => "objects",
            Table::Uploads => "uploads",
            Table::Parts => "parts",
            Table::ShardSets => "shard_sets",
            Table::Repair => "repair",
            Table::PolicyHistory => "policy_history",
            Table::System => "system",
        }
    }
}

/// One write in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert or replace.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Remove (absent keys are fine).
    Delete(Table, Vec<u8>),
}

/// Writes applied atomically: all or none, even across a crash.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// The writes, in order.
    pub ops: Vec<Op>,
}

impl Batch {
    /// Adds a put.
    pub fn put(&mut self, t: Table, k: impl Into<Vec<u8>>, v: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(t, k.into(), v.into()));
    }

    /// Adds a delete.
    pub fn delete(&mut self, t: Table, k: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(t, k.into()));
    }
}

/// What a [`MetaStore::walk`] does after visiting an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walk {
    /// Go on with the next entry.
    Next,
    /// Jump to the first entry at or after this key (which must be past the one visited), as
    /// a listing does to skip every key under a common prefix with one seek.
    Seek(Vec<u8>),
    /// Stop here.
    Stop,
}

/// What [`MetaStore::walk`] calls on each entry (key, value): what to do next, or an error that
/// ends the walk.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<Walk> + 'a;

/// An ordered key-value store with atomic batches.
pub trait MetaStore: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Up to `limit` entries with keys >= `from` that start with `prefix`, in key order.
    fn scan(&self, t: Table, from: &[u8], prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Visits entries with keys >= `from` that start with `prefix`, in key order, over one
    /// consistent view of the table, until `visit` says stop or the prefix ends. Values are
    /// lent, not copied: a visitor that only looks at keys costs no value allocation.
    fn walk(&self, t: Table, from: &[u8], prefix: &[u8], visit: &mut Visit<'_>) -> Result<()>;
    /// Applies a batch atomically. It survives a crash of the process at once, a power loss
    /// only once [`MetaStore::sync`] has run after it.
    fn write(&self, batch: Batch) -> Result<()>;
    /// Makes every batch written so far survive a power loss (RocksDB: syncs the WAL).
    fn sync(&self) -> Result<()>;
    /// A number that grows with every batch written: a [`MetaStore::sync`] begun after it read
    /// `n` covers every batch up to `n`.
    fn sequence(&self) -> u64;
}
