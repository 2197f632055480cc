//! Gateway configuration, as assembled by the binary from file, env and flags.

use placement::BucketPolicy;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything the gateway needs to start; the binary fills it in.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Root of all local state: `meta/` (RocksDB), `backends/` (local backends), credentials.
    pub data_dir: PathBuf,
    /// Address the S3 API listens on.
    pub s3_addr: SocketAddr,
    /// The backends, in configuration order (ids are unique).
    pub backends: Vec<crate::backend::BackendSpec>,
    /// Policy of buckets created without a preset.
    pub default_policy: BucketPolicy,
    /// Base domains for virtual-host-style addressing (`bucket.domain`).
    pub domains: Vec<String>,
    /// Credentials accepted by SigV4.
    pub credentials: Credentials,
    /// The admin REST API.
    pub admin: AdminConfig,
    /// The healer.
    pub heal: crate::engine::heal::HealConfig,
    /// The scrubber.
    pub scrub: crate::engine::scrub::ScrubConfig,
    /// Whether new buckets encrypt at rest (auto: when any backend is remote).
    pub encryption: crate::crypto::EncryptionMode,
    /// Master keys given by the environment; `None` uses (or creates) `DATA/master-keys.json`.
    pub master_keys: Option<crate::crypto::KeyRing>,
    /// Where backend calls and S3 requests are recorded (the binary builds it, as it owns the
    /// tracing subscriber the OTLP span exporter hooks into); `None`: Prometheus text only.
    pub telemetry: Option<std::sync::Arc<telemetry::Telemetry>>,
    /// How GETs read at start (shard strategy, hedging); the admin API changes it at run time.
    pub reads: control_api::ReadSettings,
    /// The migrator's throttle at start (the admin API changes it at run time).
    pub migration: crate::engine::migrate::MigrationConfig,
    /// The start-up sweep: grace period, quarantine retention, ownership overrides.
    pub sweep: crate::engine::sweep::SweepConfig,
    /// What clients may hold of the S3 port: connections, timeouts, header sizes, body memory.
    pub limits: crate::limits::LimitsConfig,
    /// How long a GET response may wait on a client that takes none of its bytes before it is
    /// abandoned and the object's shard sets are unpinned (so the reaper can delete replaced
    /// ones); see [`crate::s3::DEFAULT_RESPONSE_STALL`].
    pub response_stall: std::time::Duration,
    /// How durable a write is when it is acknowledged.
    pub durability: crate::Durability,
    /// How often every healthy backend is read by an audit (`None`: never); see
    /// [`crate::backend::audit`].
    pub audit_interval: Option<std::time::Duration>,
    /// Whether backends' injected faults may be changed at run time through the admin API.
    /// When on, every backend is wrapped in a [`crate::backend::FaultyStore`] (with an empty
    /// spec unless it has a `faults` table); when off, only backends with a `faults` table are,
    /// and their specs are fixed.
    pub allow_fault_injection: bool,
}

/// Where the admin API listens and the bearer token it wants.
#[derive(Clone)]
pub struct AdminConfig {
    /// Address of the admin API.
    pub addr: SocketAddr,
    /// Bearer token; never logged.
    pub token: String,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// One access key / secret key pair.
#[derive(Clone)]
pub struct Credentials {
    /// Public key id.
    pub access_key: String,
    /// Secret; never logged.
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}
