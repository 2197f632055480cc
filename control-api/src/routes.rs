//! The admin API's paths, as the server routes them (`{bucket}`: one path segment, the bucket
//! name percent-encoded) and the client fills them.

/// `GET`: redundancy per bucket, repair queue, healer and scrubber counters, backend health.
pub const REDUNDANCY: &str = "/api/v1/redundancy";
/// `POST`: one heal pass now.
pub const HEAL: &str = "/api/v1/heal";
/// `POST`: one scrub pass now.
pub const SCRUB: &str = "/api/v1/scrub";
/// `GET`: sliding-window statistics of every backend.
pub const BACKEND_TELEMETRY: &str = "/api/v1/telemetry/backends";
/// `GET`: sliding-window statistics of one bucket.
pub const BUCKET_TELEMETRY: &str = "/api/v1/telemetry/buckets/{bucket}";
/// `GET`: every OpenTelemetry instrument in the Prometheus text format.
pub const METRICS: &str = "/metrics";
/// `GET`, `PUT`: a bucket's storage policy.
pub const STORAGE_POLICY: &str = "/api/v1/buckets/{bucket}/storage-policy";
/// `GET`: a bucket's storage policy changes, oldest first.
pub const STORAGE_POLICY_HISTORY: &str = "/api/v1/buckets/{bucket}/storage-policy/history";
/// Deprecated alias of [`STORAGE_POLICY`], served for clients written before the rename.
pub const STORAGE_POLICY_ALIAS: &str = "/api/v1/buckets/{bucket}/policy";
/// Deprecated alias of [`STORAGE_POLICY_HISTORY`].
pub const STORAGE_POLICY_HISTORY_ALIAS: &str = "/api/v1/buckets/{bucket}/policy/history";
/// `GET`: a bucket's objects and logical bytes, counted now.
pub const BUCKET_USAGE: &str = "/api/v1/buckets/{bucket}/usage";
/// `GET`: the progress of a bucket's migration to its current storage policy.
pub const MIGRATION: &str = "/api/v1/buckets/{bucket}/migration";
/// `GET`, `PUT`: the migrator's throttle.
pub const MIGRATION_THROTTLE: &str = "/api/v1/migration";
/// `GET`, `PUT`: how GETs read (shard strategy, hedging).
pub const READS: &str = "/api/v1/reads";
/// `GET`: every background worker's status (healer, scrubber, reaper, migrator).
pub const WORKERS: &str = "/api/v1/workers";
/// `PUT`: pause, resume or re-throttle one worker.
pub const WORKER: &str = "/api/v1/workers/{name}";

/// `GET`: every backend with its labels, health and injected faults.
pub const BACKENDS: &str = "/api/v1/backends";
/// `GET`, `PUT`, `DELETE`: faults injected into one backend at run time (only when the gateway
/// was started with `--allow-fault-injection` or the `multicloud-sim` profile).
pub const BACKEND_FAULTS: &str = "/api/v1/backends/{id}/faults";
/// `PUT`: creates a bucket with the gateway's default policy (nothing if it exists).
pub const BUCKET_ADMIN: &str = "/api/v1/buckets/{bucket}";
/// `GET`, `POST`: deployed MLSysOps applications; `POST` takes a descriptor (JSON or YAML).
pub const APPS: &str = "/api/v1/apps";
/// `GET`, `DELETE`: one application (deleting it keeps its buckets' data).
pub const APP: &str = "/api/v1/apps/{name}";
/// `GET`, `PUT`: a bucket's intent (what it must achieve; the agents choose how).
pub const BUCKET_INTENT: &str = "/api/v1/buckets/{bucket}/intent";
/// `GET`: the agents, their health, last period and pending plans.
pub const AGENTS: &str = "/api/v1/agents";
/// `PUT`: `heuristic` or `ml`.
pub const AGENTS_MODE: &str = "/api/v1/agents/mode";
/// `GET`: the decision log, newest first (`?bucket=&since=&limit=`).
pub const DECISIONS: &str = "/api/v1/decisions";
/// `GET`: one decision.
pub const DECISION: &str = "/api/v1/decisions/{id}";

/// `GET`: every S3 principal's (access key's) request statistics, windows and totals.
pub const PRINCIPAL_TELEMETRY: &str = "/api/v1/telemetry/principals";
/// `GET`: every principal throttled now, and why.
pub const PRINCIPAL_THROTTLES: &str = "/api/v1/principals/throttles";
/// `PUT`, `DELETE`: throttle one S3 principal (503 SlowDown beyond a rate), or stop.
pub const PRINCIPAL_THROTTLE: &str = "/api/v1/principals/{principal}/throttle";

/// `GET`: enrolled identities (agents, gateway nodes) and their keys; `POST`: enrol one.
pub const IDENTITIES: &str = "/api/v1/identities";
/// `GET`: one identity.
pub const IDENTITY: &str = "/api/v1/identities/{id}";
/// `POST`: revoke one identity (kept, refused from then on).
pub const IDENTITY_REVOKE: &str = "/api/v1/identities/{id}/revoke";
/// `GET`: every trust subject with its score and indexes.
pub const TRUST_SUBJECTS: &str = "/api/v1/trust/subjects";
/// `GET`: one subject (`backend:b1`, `principal:AKIA...`, `agent:c1`, `node:n1`): score, each
/// index, the evidence that moved it.
pub const TRUST_SUBJECT: &str = "/api/v1/trust/subjects/{id}";
/// `POST`: an operator's feedback on one subject.
pub const TRUST_FEEDBACK: &str = "/api/v1/trust/subjects/{id}/feedback";
/// `GET`, `PUT`: the trust model's configuration (node ids, index names, weights).
pub const TRUST_CONFIG: &str = "/api/v1/trust/config";
/// `GET`: anomaly verdicts, newest first (`?subject=&class=&since=&limit=`).
pub const ANOMALIES: &str = "/api/v1/anomalies";

/// The placeholder of a bucket name in a path.
pub const BUCKET: &str = "{bucket}";
