//! The MLSysOps control plane of the storage: agents that watch telemetry and change buckets'
//! storage policies on their own, each change explained and recorded.
//!
//! ```text
//!  continuum  (northbound API: apps, intents, decisions)         tiers/continuum.rs
//!     │ link (gRPC AgentLink or in-process channels)             link/
//!  cluster    (bucket policies: SLO keeper, cost, hot/cold,      tiers/cluster.rs, policies/
//!     │        re-protection -> scheduler -> mechanisms)          scheduler.rs, mechanisms/
//!  node       (local knobs: read tuner -> scheduler ->            tiers/node.rs,
//!     │        read_settings, migration_throttle; summaries up)   node_policies/
//!     │
//!  gateway    (admin API, through `control_api::Client`)         gateway.rs
//! ```
//!
//! The cluster agent also watches trust and anomalies ([`guard::Guard`], over the `trust` and
//! `anomaly` crates): backends' trust scores and principals under attack enter the world, and
//! the trust keeper and principal guard act on them.
//!
//! A [`framework::Policy`] reads a [`world::World`] and proposes [`plan::Plan`]s; the
//! [`scheduler::Scheduler`] locks per target, ranks colliding plans, holds pending ones,
//! damps flapping and hands the winners to a [`framework::Mechanism`]; every plan, applied or
//! not, lands in the [`decisions::DecisionLog`] with its explanation. Models
//! ([`ml::Model`]) are optional inputs of policies in `ml` mode.

pub mod decisions;
pub mod descriptor;
pub mod error;
pub mod framework;
pub mod gateway;
pub mod guard;
pub mod intents;
pub mod k8s;
pub mod link;
pub mod mechanisms;
pub mod ml;
pub mod node_policies;
pub mod northbound;
pub mod plan;
pub mod policies;
pub mod run;
pub mod scheduler;
pub mod store;
pub mod tiers;
pub mod world;

pub use error::Error;
