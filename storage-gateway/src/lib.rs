//! The data plane: an S3 gateway whose objects are Reed-Solomon coded across backends.
//!
//! ```text
//!   S3 client ──SigV4/HTTP──> s3 (s3s)          admin API ──HTTP──> admin, storage_policy
//!                              │  protocol only:                     │
//!                              └──── verbs and lookups ──────────────┘  the engine is the door
//!                                          ▼
//!                                       engine ── objects, uploads, buckets: verbs that write,
//!                                          │      commit and reap as one unit (typed outcomes)
//!                                          │      write, read, pins; workers on one Runner:
//!                                          │      heal, scrub, sweep (reaper), migrate
//!                 ┌──────────────┬─────────┴──────┬───────────────┐
//!                 ▼              ▼                ▼               ▼
//!              crypto ───────► meta            backend          codec
//!                 │        (Catalog: commit  (object_store)       ▲
//!                 │         rules; RocksDB)                       │ layout
//!                 └──────────────┴──────► records ────────────────┘
//!                          (stored structs and their versioned codec: the bottom)
//! ```
//!
//! Dependencies point down only. [`records`] is the bottom: every stored struct and its
//! encoding, importing nothing above it but [`codec`]'s layout arithmetic and [`error`].
//! [`meta`] knows records and nothing of the engine. Only the [`engine`] reaches the catalog
//! (`Engine::catalog` is private to it); the S3 front, the admin API, [`storage_policy`],
//! [`gauges`] and [`server`] call its verbs and lookups.
//!
//! - [`records`]: versioned records (object manifests, shard sets, buckets and their policy
//!   history, uploads, parts, repairs): `v1`, and `v2` for upload records (their encryption).
//! - [`codec`]: Reed-Solomon + per-shard-block CRC32C (and keyed MAC) and the shard layout.
//! - [`integrity`]: what catches a shard rewritten with a valid CRC32C: a keyed MAC per shard
//!   block of plaintext sets, and a search for the authentic decoding of encrypted blocks.
//! - [`crypto`]: AES-256-GCM sealing of blocks, data keys wrapped by rotatable master keys
//!   or SSE-C customer keys.
//! - [`meta`]: the `MetaStore` trait, RocksDB, and the typed `Catalog` with the commit rules;
//!   a commit's doomed sets come back as [`meta::Doomed`], which must reach the reaper.
//! - [`engine`]: the verbs, shard set writes and reads, and the background work.
//! - [`admin`]: the admin REST API (redundancy, health, heal/scrub triggers, `/metrics`,
//!   sliding-window telemetry, storage policies and migrations).
//! - [`storage_policy`]: validating and committing a bucket's storage policy change (a new
//!   epoch; not an S3 bucket policy, which is access control).
//! - [`gauges`]: healer, scrubber, repair-queue and health instruments for the exporter.
//! - [`limits`]: what clients may hold of the S3 port (connections, header and body pace,
//!   idle time, HTTP/2 streams, memory for bodies), used by [`server`] and the S3 front.
//! - [`server`]: wires it all and serves HTTP until told to stop.
//! - [`durability`]: the `--durability` setting and the group commit of its syncs.
//! - [`crash`]: crash points, a test hook that aborts the process at a named step of a write.

pub mod admin;
pub mod backend;
pub mod codec;
pub mod config;
pub mod crash;
pub mod crypto;
pub mod durability;
pub mod engine;
pub mod error;
pub mod gauges;
pub mod integrity;
pub mod limits;
pub mod meta;
pub mod records;
pub mod s3;
pub mod server;
pub mod storage_policy;

pub use config::{AdminConfig, Credentials, GatewayConfig};
pub use durability::Durability;
pub use error::{Error, Result};

/// Upper bound on shards per set, used where a sweep must cover any shard index.
pub const MAX_SHARDS: usize = placement::policy::MAX_SHARDS;
