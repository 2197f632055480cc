//! Trust: who the agents and gateway nodes are, and how far each subject is to be trusted.
//!
//! - [`subject`]: the `kind:id` names of what is scored (backends, nodes, agents, principals).
//! - [`identity`]: Ed25519 key pairs of agents and nodes, the registry of enrolled keys
//!   (operator or trust on first use, revocation), signature checks and a replay guard.
//! - [`evidence`]: what was observed about a subject and how much each kind weighs.
//! - [`model`]: [`Reputation`], the Beta reputation with decay, capability and identity indexes
//!   combined into a score with configurable weights.
//! - [`telemetry_evidence`]: evidence and capability from the gateway's backend and principal
//!   telemetry (deltas of totals between reads).
//! - [`routes`]: the REST API (`/api/v1/trust/*`, `/api/v1/identities*`) behind the admin token.
//! - [`metrics`]: scores and indexes as OpenTelemetry gauges.
//! - [`files`]: owner-only files written atomically (keys, the identity registry).
//!
//! The model and its API are described in `docs/trust.md`. This crate depends on the wire
//! types (`control-api`) and telemetry only: the agents consume it, never the reverse.

pub mod evidence;
pub mod files;
pub mod identity;
pub mod metrics;
pub mod model;
pub mod routes;
pub mod subject;
pub mod telemetry_evidence;

pub use evidence::Evidence;
pub use identity::{signed_bytes, Identities, IdentityError, KeyPair, PublicKey, ReplayGuard, Signature, VerifyError};
pub use model::{IdentityLevel, ModelError, Reputation};
pub use subject::{Subject, SubjectError, SubjectKind};
pub use telemetry_evidence::TelemetryEvidence;

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
