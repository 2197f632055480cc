//! The data plane: an S3 gateway whose objects are Reed-Solomon coded across backends.
//!
//! ```text
//!   S3 client ──SigV4/HTTP──> s3 (s3s front: one module per operation family)
//!                               │
//!                               ▼
//!                            engine ── write: blocks -> codec -> k+m shard streams -> backends
//!                               │      read:  k verified shards per block -> decode -> stream
//!                               │      sweep: reaper + startup orphan sweep
//!                               │      heal/scrub: rebuild queued shards / verify all shards
//!                               ▼
//!        meta (Catalog over MetaStore: RocksDB)      backend (any object_store::ObjectStore)
//! ```
//!
//! - [`codec`]: Reed-Solomon + per-shard-block CRC32C and the shard layout.
//! - [`crypto`]: AES-256-GCM sealing of blocks, data keys wrapped by rotatable master keys
//!   or SSE-C customer keys.
//! - [`manifest`]: versioned records (object manifests, shard sets, uploads, repairs).
//! - [`admin`]: the admin REST API (redundancy, health, heal/scrub triggers, `/metrics`,
//!   sliding-window telemetry, storage policies and migrations).
//! - [`storage_policy`]: validating and committing a bucket's storage policy change (a new
//!   epoch; not an S3 bucket policy, which is access control).
//! - [`gauges`]: healer, scrubber, repair-queue and health instruments for the exporter.
//! - [`server`]: wires it all and serves HTTP until told to stop.

pub mod admin;
pub mod backend;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod gauges;
pub mod manifest;
pub mod meta;
pub mod s3;
pub mod server;
pub mod storage_policy;

pub use config::{AdminConfig, Credentials, GatewayConfig};
pub use error::{Error, Result};

/// Upper bound on shards per set, used where a sweep must cover any shard index.
pub const MAX_SHARDS: usize = placement::policy::MAX_SHARDS;
