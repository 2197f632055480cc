//! Bucket policy vocabulary and the shard placement solvers.
//!
//! - [`policy`]: [`BucketPolicy`] (k data + m parity shards, block size) and its presets
//!   (`ec-4-2`, `replicate-3`, ...), with validation.
//! - [`intent`]: the MLSysOps bucket fields (redundancy, latency and bandwidth targets, GDPR).
//! - [`labels`]: what a backend is (provider, region, GDPR, prices) and selectors over that.
//! - [`rendezvous`]: which backends hold an object's shards: rendezvous (highest random weight)
//!   hashing on the object key, so adding a backend moves only the shards it wins.
//! - [`containers`]: which nodes may run a component and how well each reaches its buckets'
//!   data (latency of the k-th shard, bandwidth, trust, headroom).
//!
//! This crate is pure: no I/O, no async, fast to test with tables of cases.

pub mod containers;
pub mod intent;
pub mod labels;
pub mod policy;
pub mod rendezvous;

pub use intent::{BucketIntent, Redundancy};
pub use labels::{BackendLabels, BackendSelector, SelectorError};
pub use policy::{BucketPolicy, PolicyError};
pub use rendezvous::place_shards;
