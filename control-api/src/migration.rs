//! Migrations: a bucket's progress towards its current storage policy
//! (`GET /api/v1/buckets/{bucket}/migration`) and the migrator's throttle
//! (`GET`/`PUT /api/v1/migration`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How far one bucket's migration has come.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationProgress {
    /// Bucket.
    pub bucket: String,
    /// The policy epoch objects are being brought to.
    pub target_epoch: u64,
    /// Where the job stands.
    pub state: MigrationState,
    /// Objects of older epochs found since the job started.
    pub objects_total: u64,
    /// Of those, objects migrated (or overwritten by clients meanwhile).
    pub objects_done: u64,
    /// Bytes of those objects.
    pub bytes_total: u64,
    /// Bytes migrated.
    pub bytes_done: u64,
    /// Objects re-encoded under the new code.
    pub objects_reencoded: u64,
    /// Objects whose shards were moved without re-encoding.
    pub objects_moved: u64,
    /// Objects that already conformed: only their epoch changed.
    pub objects_relabelled: u64,
    /// Objects still on an older epoch.
    pub objects_remaining: u64,
    /// Bytes migrated per second, over the last 10 s.
    pub rate_bytes_per_sec: f64,
    /// Seconds until done at that rate.
    pub eta_secs: Option<f64>,
    /// Objects that failed in the current pass (retried by a later one).
    pub errors: u64,
    /// The latest failure.
    pub last_error: Option<String>,
    /// Objects that cannot be migrated (SSE-C objects that would need re-encoding).
    pub skipped: u64,
    /// When the job started, Unix ms.
    pub started_ms: i64,
    /// When it finished, Unix ms.
    pub finished_ms: Option<i64>,
}

/// Where a bucket's migration stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationState {
    /// The bucket's policy never changed: nothing was ever to migrate.
    #[default]
    Idle,
    /// Objects of older epochs are being migrated (or are about to be).
    Running,
    /// The throttle paused the migrator.
    Paused,
    /// Every object is on the target epoch.
    Done,
}

impl MigrationState {
    /// The name on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Idle => "idle",
            MigrationState::Running => "running",
            MigrationState::Paused => "paused",
            MigrationState::Done => "done",
        }
    }
}

impl fmt::Display for MigrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MigrationState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "idle" => Ok(MigrationState::Idle),
            "running" => Ok(MigrationState::Running),
            "paused" => Ok(MigrationState::Paused),
            "done" => Ok(MigrationState::Done),
            _ => Err(format!("migration state {s:?}: expected idle, running, paused or done")),
        }
    }
}

/// The migrator's throttle, shared by all buckets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MigrationThrottle {
    /// MiB per second read for migration; 0 = unlimited.
    pub max_mib_per_sec: f64,
    /// Objects migrated at once (1..=64).
    pub concurrency: usize,
    /// Whether migration is paused.
    pub paused: bool,
}

/// A throttle change: any subset of the fields; absent ones keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationThrottleRequest {
    /// MiB per second read for migration; 0 = unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_mib_per_sec: Option<f64>,
    /// Objects migrated at once (1..=64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Pause (`true`) or resume (`false`) migration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

impl MigrationThrottleRequest {
    /// Whether the request changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `current` with the fields this request gives replaced.
    #[must_use]
    pub fn applied_to(&self, current: MigrationThrottle) -> MigrationThrottle {
        MigrationThrottle {
            max_mib_per_sec: self.max_mib_per_sec.unwrap_or(current.max_mib_per_sec),
            concurrency: self.concurrency.unwrap_or(current.concurrency),
            paused: self.paused.unwrap_or(current.paused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_migration_view_reads_as_documented() {
        // The example of docs/admin-api.md.
        let doc = json!({
          "bucket": "b", "target_epoch": 3, "state": "running",
          "objects_total": 120, "objects_done": 40, "objects_remaining": 80,
          "bytes_total": 125829120, "bytes_done": 41943040,
          "objects_reencoded": 30, "objects_moved": 5, "objects_relabelled": 5,
          "rate_bytes_per_sec": 20971520.0, "eta_secs": 4.0,
          "errors": 0, "last_error": null, "skipped": 0,
          "started_ms": 1764300000000u64, "finished_ms": null
        });
        let view: MigrationProgress = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(view.state, MigrationState::Running);
        assert_eq!((view.objects_remaining, view.eta_secs), (80, Some(4.0)));
        assert_eq!(serde_json::to_value(&view).unwrap(), doc);
        let text = serde_json::to_string(&view).unwrap();
        assert!(
            text.starts_with(r#"{"bucket":"b","target_epoch":3,"state":"running","#),
            "{text}"
        );
        assert!(serde_json::from_value::<MigrationProgress>(json!({"state": "running"})).is_err());
    }

    #[test]
    fn states_have_one_name_each() {
        for s in [
            MigrationState::Idle,
            MigrationState::Running,
            MigrationState::Paused,
            MigrationState::Done,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(s.as_str().parse::<MigrationState>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert!("Done".parse::<MigrationState>().is_err());
        assert!(serde_json::from_value::<MigrationState>(json!("stalled")).is_err());
    }

    #[test]
    fn a_throttle_request_sends_only_its_fields() {
        let pause = MigrationThrottleRequest {
            paused: Some(true),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(pause).unwrap(), json!({"paused": true}));
        assert!(MigrationThrottleRequest::default().is_empty() && !pause.is_empty());
        let unlimited: MigrationThrottleRequest = serde_json::from_value(json!({"max_mib_per_sec": 0})).unwrap();
        assert_eq!(unlimited.max_mib_per_sec, Some(0.0));
        assert!(serde_json::from_value::<MigrationThrottleRequest>(json!({"rate": 1})).is_err());
        let cur = MigrationThrottle {
            max_mib_per_sec: 64.0,
            concurrency: 4,
            paused: false,
        };
        assert_eq!(
            unlimited.applied_to(cur),
            MigrationThrottle {
                max_mib_per_sec: 0.0,
                ..cur
            }
        );
        assert_eq!(
            serde_json::to_string(&cur).unwrap(),
            r#"{"max_mib_per_sec":64.0,"concurrency":4,"paused":false}"#
        );
    }
}
