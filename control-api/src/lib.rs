//! The gateway's admin API as types: what each endpoint takes and answers, its error body, the
//! admin-token discovery, and (feature `client`, on by default) a typed async [`Client`].
//!
//! One spelling of the wire for the admin server, the `mlsysops` CLI, the black-box tests and the
//! agents: the gateway serializes these types, everyone else deserializes them. Nothing here
//! depends on the gateway. Telemetry answers stay [`serde_json::Value`]: their types live in the
//! `telemetry` crate, which is far heavier than a client should pull in.
//!
//! The storage policy (code, backends, encryption, intent of a bucket) is named so throughout,
//! never "bucket policy", which in S3 means access control.

pub mod agents;
pub mod anomaly;
#[cfg(feature = "server")]
pub mod auth;
pub mod backends;
pub mod error;
pub mod health;
pub mod migration;
pub mod principals;
pub mod reads;
pub mod routes;
pub mod storage_policy;
pub mod token;
pub mod trust;
pub mod usage;
pub mod workers;

#[cfg(feature = "client")]
mod client;

pub use agents::{
    AgentMode, AgentModeRequest, AgentStatus, AgentsView, AppView, AppsView, BucketIntent, Decision, DecisionStatus,
    DecisionsPage, Effect, IntentView, MetricInput, OptionScore,
};
pub use anomaly::{AnomaliesPage, AnomalyClass, AnomalyView, DeviationView};
pub use backends::{BackendInfo, BackendsView, Faults};
#[cfg(feature = "client")]
pub use client::{Client, ClientError};
pub use error::ErrorBody;
pub use health::{
    BackendHealth, BucketRedundancy, HealPass, HealerCounters, RedundancyView, ScrubPass, ScrubberCounters,
};
pub use migration::{MigrationProgress, MigrationState, MigrationThrottle, MigrationThrottleRequest};
pub use placement::Redundancy;
pub use principals::{ThrottleRequest, ThrottleView, ThrottlesView};
pub use reads::{ReadSettings, ReadSettingsRequest, ReadStrategy};
#[cfg(feature = "client")]
pub use reqwest::{Method, StatusCode, Url};
pub use storage_policy::{
    BackendsField, LocationRestrictions, PrefixPolicyRequest, PrefixPolicyView, StoragePolicyChange,
    StoragePolicyChanged, StoragePolicyHistory, StoragePolicyRequest, StoragePolicyView,
};
pub use token::{admin_token, admin_token_from_env, TokenFileError, ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE};
pub use trust::{
    EnrolRequest, EnrolledBy, EvidenceKind, EvidenceView, FeedbackOutcome, FeedbackRequest, IdentitiesView,
    IdentityKind, IdentityView, Revocation, RevokeRequest, SubjectView, TrustConfig, TrustSubjectsView,
};
pub use usage::{BucketUsage, PrefixUsage};
pub use workers::{ThrottleSettings, WorkerChange, WorkerState, WorkerStatus, WorkersView};
