//! The object engine: shard sets written to and read from backends, and their lifecycle.
//!
//! The engine is the only door to the catalog: the S3 front, the admin API and (next) the
//! agents call its verbs, which write, commit and reap as one unit and return typed outcomes,
//! and its read-only lookups. The commit rules stay in one place.
//!
//! - [`objects`]: put, copy, delete and the migrator's swap ([`Commit`], [`Swap`]), with the
//!   write preconditions ([`WriteCondition`]) checked inside the commit.
//! - [`uploads`]: multipart uploads: create, commit a part, complete, abort.
//! - [`buckets`]: create, delete, encryption and storage-policy changes ([`PolicyChanged`]).
//! - [`write`]: a body stream becomes one shard set (blocks -> Reed-Solomon -> k + m shard
//!   streams, acknowledged at the write quorum; stragglers finish in the background).
//! - [`read`]: a byte range of an object is rebuilt from the k verified shards predicted
//!   fastest, hedging with one more shard when one lags.
//! - [`heal`]: the healer that rebuilds queued shards from k others.
//! - [`migrate`]: the migrator that brings objects of older policy epochs to the current
//!   policy (relabel, move shards, or re-encode), throttled and resumable.
//! - [`scrub`]: the scrubber that verifies every shard at a bounded rate.
//! - [`pins`]: sets held by readers, which the reaper must not delete yet.
//! - [`sweep`]: the reaper that deletes unreferenced sets, and the startup sweep of orphans
//!   (quarantined after a grace period, never deleted outright).
//! - [`ownership`]: the owner markers and the start-up checks that keep the sweep off
//!   backends this metadata cannot vouch for.
//!
//! The healer, scrubber, reaper and migrator are [`workers::Worker`]s on the engine's runner
//! ([`Engine::workers`]).

pub mod buckets;
pub mod heal;
pub mod migrate;
pub mod objects;
pub mod ownership;
pub mod pins;
pub mod read;
pub mod scrub;
pub mod sweep;
#[cfg(test)]
mod tests;
pub mod uploads;
pub mod usage;
pub mod write;

use crate::backend::Backend;
use crate::crypto::KeyRing;
use crate::durability::{Durability, GroupSync};
use crate::error::{Error, Result};
use crate::meta::doomed::DoomedEntry;
use crate::meta::{Catalog, Doomed};
use std::sync::Arc;
use telemetry::Telemetry;
use tokio::sync::mpsc;

pub use crate::meta::{ListEntry, ListPage, ListQuery, Listed};
pub use buckets::PolicyChanged;
pub use control_api::{ReadSettings, ReadStrategy};
pub use objects::{Commit, CopyTo, EtagCondition, NewObject, PreconditionFailed, Swap, WriteCondition};
pub use pins::Pins;
pub use read::ObjectReader;
pub use uploads::{Completion, NewPart};
pub use write::{BodyHasher, Target, WrittenSet};

/// The bit of [`ReadStrategy::DataFirst`] in a packed [`ReadSettings`].
const READS_DATA_FIRST: u8 = 1;
/// The bit of hedging in a packed [`ReadSettings`].
const READS_HEDGING: u8 = 2;

/// Both read settings in one atomic word.
fn pack_reads(s: ReadSettings) -> u8 {
    let strategy = if s.strategy == ReadStrategy::DataFirst {
        READS_DATA_FIRST
    } else {
        0
    };
    strategy | if s.hedging { READS_HEDGING } else { 0 }
}

/// See [`pack_reads`].
fn unpack_reads(bits: u8) -> ReadSettings {
    ReadSettings {
        strategy: if bits & READS_DATA_FIRST == 0 {
            ReadStrategy::Latency
        } else {
            ReadStrategy::DataFirst
        },
        hedging: bits & READS_HEDGING != 0,
    }
}

/// Shared state of the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    keys: Arc<KeyRing>,
    backends: Vec<Backend>,
    reaper: mpsc::UnboundedSender<DoomedEntry>,
    pins: Arc<pins::PinTable>,
    heal: heal::HealCounters,
    scrub: scrub::ScrubCounters,
    integrity: crate::integrity::IntegrityCounters,
    telemetry: Arc<Telemetry>,
    stragglers: write::Stragglers,
    migrations: migrate::Migrations,
    /// The background workers: the reaper, and whatever the server spawns beside it.
    workers: workers::Runner,
    /// How GETs read, packed by [`pack_reads`] so a reader sees one consistent setting.
    reads: std::sync::atomic::AtomicU8,
    /// `--durability relaxed`: commits are acknowledged and reaped without a WAL sync.
    relaxed: std::sync::atomic::AtomicBool,
    /// The group commit of the catalog's WAL syncs.
    wal: GroupSync,
}

impl Engine {
    /// An engine over `backends` and `catalog` without master keys (encrypted writes and
    /// reads of master-key-encrypted sets fail); spawns the reaper on its runner (needs a Tokio
    /// runtime).
    pub fn new(catalog: Catalog, backends: Vec<Backend>) -> Self {
        Self::with_keys(
            catalog,
            backends,
            Arc::new(KeyRing::empty()),
            Arc::new(Telemetry::off()),
        )
    }

    /// An engine whose encrypted sets use the master keys of `keys` and whose reads are
    /// steered by the backend latencies `telemetry` has seen (the backends record into it);
    /// spawns the reaper on the engine's runner ([`Engine::workers`]; needs a Tokio runtime).
    pub fn with_keys(catalog: Catalog, backends: Vec<Backend>, keys: Arc<KeyRing>, telemetry: Arc<Telemetry>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Self {
            inner: Arc::new(Inner {
                catalog,
                keys,
                backends,
                pins: Arc::new(pins::PinTable::new(tx.clone())),
                reaper: tx,
                heal: heal::HealCounters::default(),
                scrub: scrub::ScrubCounters::default(),
                integrity: crate::integrity::IntegrityCounters::default(),
                telemetry,
                stragglers: write::Stragglers::default(),
                migrations: migrate::Migrations::new(migrate::MigrationConfig::default()),
                workers: workers::Runner::new(),
                reads: std::sync::atomic::AtomicU8::new(pack_reads(ReadSettings::HEDGED)),
                relaxed: std::sync::atomic::AtomicBool::new(false),
                wal: GroupSync::default(),
            }),
        };
        if let Err(e) = engine.workers().spawn(sweep::Reaper::new(engine.clone(), rx)) {
            // A new runner has no other worker and is not shut down: this cannot happen.
            tracing::error!(error = %e, "cannot start the reaper; deleted sets stay until the next startup sweep");
        }
        engine
    }

    /// The metadata catalog: the engine's own tool. Everything above the engine goes through
    /// its verbs and lookups, so the commit rules live in one place.
    #[must_use]
    pub(in crate::engine) fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The master key ring.
    #[must_use]
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.inner.keys
    }

    /// All configured backends.
    #[must_use]
    pub fn backends(&self) -> &[Backend] {
        &self.inner.backends
    }

    /// The backend with id `id`.
    pub fn backend(&self, id: &str) -> Result<&Backend> {
        self.inner
            .backends
            .iter()
            .find(|b| b.id() == id)
            .ok_or_else(|| Error::Config(format!("backend {id:?} is named in metadata but not configured")))
    }

    fn pins(&self) -> &Arc<pins::PinTable> {
        &self.inner.pins
    }

    /// Telemetry of backends and buckets.
    #[must_use]
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.inner.telemetry
    }

    /// How GETs read from now on: which shards they ask first (by predicted latency, or data
    /// shards first) and whether a lagging shard is hedged; changeable at run time (the admin
    /// API's `/api/v1/reads`, the node agent): each window a GET reads takes the settings in
    /// force when the window starts.
    pub fn set_read_settings(&self, settings: ReadSettings) {
        self.inner
            .reads
            .store(pack_reads(settings), std::sync::atomic::Ordering::Relaxed);
    }

    /// See [`Engine::set_read_settings`].
    #[must_use]
    pub fn read_settings(&self) -> ReadSettings {
        unpack_reads(self.inner.reads.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Sets how durable a write is when it is acknowledged, for the catalog and for every
    /// backend ([`Durability::Fsync`] unless told otherwise).
    pub fn set_durability(&self, durability: Durability) {
        let relaxed = !durability.syncs();
        self.inner.relaxed.store(relaxed, std::sync::atomic::Ordering::Relaxed);
        for b in self.backends() {
            b.set_durability(durability);
        }
    }

    /// See [`Engine::set_durability`].
    #[must_use]
    pub fn durability(&self) -> Durability {
        if self.inner.relaxed.load(std::sync::atomic::Ordering::Relaxed) {
            Durability::Relaxed
        } else {
            Durability::Fsync
        }
    }

    /// Returns once every commit made before the call survives a power loss (with
    /// [`Durability::Fsync`]; at once when relaxed). Callers acknowledge a write, or delete
    /// what a commit replaced, only after this. Concurrent callers share the WAL syncs.
    pub async fn settle(&self) -> Result<()> {
        if !self.durability().syncs() {
            return Ok(());
        }
        let ticket = self.catalog().sequence();
        let engine = self.clone();
        self.inner
            .wal
            .wait(ticket, || self.catalog().sequence(), move || engine.catalog().sync())
            .await
    }

    /// WAL syncs run for [`Engine::settle`] since start (one covers every commit before it).
    #[must_use]
    pub(crate) fn wal_syncs(&self) -> &std::sync::atomic::AtomicU64 {
        &self.inner.wal.syncs
    }

    /// How many shards are still being written after their write was acknowledged.
    #[must_use]
    pub fn straggling_shards(&self) -> usize {
        self.inner.stragglers.len()
    }

    /// Shards still being written after their write was acknowledged.
    pub(crate) fn stragglers(&self) -> &write::Stragglers {
        &self.inner.stragglers
    }

    /// The migrator's throttle, jobs and progress.
    #[must_use]
    pub fn migrations(&self) -> &migrate::Migrations {
        &self.inner.migrations
    }

    /// The runner of the background workers (the reaper; the healer, scrubber and migrator
    /// once the server spawns them): their status, pause, wake-up and shutdown.
    #[must_use]
    pub fn workers(&self) -> &workers::Runner {
        &self.inner.workers
    }

    /// The healer's counters.
    #[must_use]
    pub fn heal_counters(&self) -> &heal::HealCounters {
        &self.inner.heal
    }

    /// The scrubber's counters.
    #[must_use]
    pub fn scrub_counters(&self) -> &scrub::ScrubCounters {
        &self.inner.scrub
    }

    /// What the integrity checks caught: forged shard blocks, re-authenticated blocks.
    #[must_use]
    pub fn integrity_counters(&self) -> &crate::integrity::IntegrityCounters {
        &self.inner.integrity
    }

    /// Hands shard sets a commit doomed to the reaper for deletion (once no reader pins them
    /// and the commit is durable). Every verb calls it right after its commit.
    pub(crate) fn reap(&self, doomed: Doomed) {
        crate::crash::point(crate::crash::CrashPoint::AfterCommit);
        for d in doomed.into_entries() {
            // The reaper lives as long as the engine; a send can only fail during shutdown,
            // and the startup sweep deletes whatever was left Deleting.
            let _ = self.inner.reaper.send(d);
        }
    }
}
