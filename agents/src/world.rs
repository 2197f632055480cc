//! What an agent knows of the storage at the start of a period: every backend with its labels,
//! health and measured performance, every bucket with its policy, intent and access rates.
//! Policies decide from this snapshot only, so a period's plans agree on one picture.

use control_api::{BucketIntent, MigrationProgress, StoragePolicyView};
use placement::BackendLabels;
use serde::{Deserialize, Serialize};

/// One backend as the agents see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendView {
    /// Backend id.
    pub id: String,
    /// Provider, region, GDPR, prices.
    pub labels: BackendLabels,
    /// The gateway considers it down (consecutive failures; retried later).
    pub suspect: bool,
    /// Since when it has been continuously suspect, Unix ms (kept by the agent).
    pub down_since_ms: Option<i64>,
    /// The window the GET, PUT and error figures below are over: `15s` when the last 15 s
    /// hold enough GETs to judge from (a backend turned slow shows at once, not after a
    /// minute of dilution), else `1m` (empty: `1m`).
    pub recent_window: String,
    /// p95 GET latency, ms: the worse of client reads' (over that window) and audit reads'
    /// (over their own: 15 s with 5 audits, else 1 minute); `None`: no samples.
    pub get_p95_ms: Option<f64>,
    /// p50 GET latency, ms.
    pub get_p50_ms: Option<f64>,
    /// p95 PUT latency, ms.
    pub put_p95_ms: Option<f64>,
    /// GET bandwidth, MiB/s.
    pub bandwidth_mib_s: Option<f64>,
    /// Failed calls / calls.
    pub error_rate: Option<f64>,
    /// Share of health probes that found it up over the last minute.
    pub availability: Option<f64>,
    /// GETs measured over that window.
    pub get_samples: u64,
    /// Trust score 0..=1 (`None`: no trust service).
    pub trust: Option<f64>,
    /// The failure evidence behind that score (decayed, weighted): a backend is drained for low
    /// trust only with evidence against it, never merely for being new (new subjects start
    /// with a cautious score, which keeps them from receiving data but not from keeping it).
    #[serde(default)]
    pub trust_failures: f64,
}

impl BackendView {
    /// The window its figures are over (`15s` or `1m`).
    #[must_use]
    pub fn window(&self) -> &'static str {
        if self.recent_window == "15s" {
            "15s"
        } else {
            "1m"
        }
    }
}

/// One bucket as the agents see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketView {
    /// Bucket name.
    pub name: String,
    /// Its storage policy now.
    pub policy: StoragePolicyView,
    /// What it must achieve (`None`: no intent; the agents leave it alone).
    pub intent: Option<BucketIntent>,
    /// Whether the agents hold its policy-update token.
    pub token: Option<String>,
    /// Reads per second over the last minute.
    pub reads_per_s: f64,
    /// Writes per second over the last minute.
    pub writes_per_s: f64,
    /// Reads per second over the last hour.
    pub reads_per_s_1h: f64,
    /// Bytes sent to clients per second over the last hour (what egress prices multiply).
    #[serde(default)]
    pub read_bytes_per_s_1h: f64,
    /// Its objects' logical bytes, counted at most a minute ago (`None`: not counted).
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Its key prefixes (at the gateway's `prefix_depth`) with their size and reads; empty when
    /// the gateway counts none. Its prefix rules are in `policy.prefixes`.
    #[serde(default)]
    pub prefixes: Vec<PrefixView>,
    /// Its migration towards the current policy, if one is known.
    pub migration: Option<MigrationProgress>,
}

/// One key prefix of a bucket as the agents see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrefixView {
    /// The prefix (`logs/`).
    pub prefix: String,
    /// Objects under it.
    pub objects: u64,
    /// Their logical bytes.
    pub bytes: u64,
    /// Requests naming a key under it, per second over the last minute (an upper bound when the
    /// prefix is not among the bucket's ten most accessed).
    pub reads_per_s: f64,
    /// The same over the last hour.
    pub reads_per_s_1h: f64,
}

/// The snapshot a period decides from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct World {
    /// When it was taken, Unix ms.
    pub now_ms: i64,
    /// The agent's period, seconds.
    pub period_secs: u64,
    /// Every backend.
    pub backends: Vec<BackendView>,
    /// Every bucket.
    pub buckets: Vec<BucketView>,
    /// S3 principals the trust and anomaly services judged (empty without them).
    #[serde(default)]
    pub principals: Vec<PrincipalView>,
    /// The nodes whose node agents report how they reach the backends (empty: none do).
    #[serde(default)]
    pub nodes: Vec<placement::containers::Node>,
    /// App components and the buckets they read (from app descriptors).
    #[serde(default)]
    pub components: Vec<ComponentView>,
}

/// One app component (a container) as the agents see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentView {
    /// Its app.
    pub app: String,
    /// The component (`metadata.name` in the descriptor).
    pub component: String,
    /// The buckets it declares.
    pub buckets: Vec<String>,
    /// The node it is placed on now (`None`: not placed yet).
    pub preferred: Option<String>,
}

/// One S3 principal (access key) as the agents see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrincipalView {
    /// The access key id, as clients claim it.
    pub id: String,
    /// Trust score 0..=1 (`None`: not scored).
    pub trust: Option<f64>,
    /// The open attack verdict on it, in words (`None`: no attack seen lately).
    pub attack: Option<String>,
    /// Periods since an attack verdict on it was last open (0 while one is).
    pub calm_periods: u32,
    /// Why it is throttled at the gateway now (`None`: not throttled).
    pub throttled: Option<String>,
}

impl World {
    /// The backend `id`.
    #[must_use]
    pub fn backend(&self, id: &str) -> Option<&BackendView> {
        self.backends.iter().find(|b| b.id == id)
    }

    /// The bucket `name`.
    #[must_use]
    pub fn bucket(&self, name: &str) -> Option<&BucketView> {
        self.buckets.iter().find(|b| b.name == name)
    }
}

/// Unix ms now.
#[must_use]
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
