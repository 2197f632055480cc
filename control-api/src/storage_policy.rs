//! A bucket's storage policy: its code, eligible backends, encryption and intent (redundancy,
//! latency and bandwidth targets, location), the change request operators and agents send
//! (`PUT /api/v1/buckets/{bucket}/storage-policy`), the view the API shows, and its history.

use crate::migration::MigrationProgress;
use placement::Redundancy;
use serde::{Deserialize, Deserializer, Serialize};

/// A requested change; every field is optional and absent ones keep the current value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoragePolicyRequest {
    /// `ec-K-M` or `replicate-N` (excludes `k` and `m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Data shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<u8>,
    /// Parity shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m: Option<u8>,
    /// Plaintext bytes per block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// Eligible backends: a selector (`region=eu,local3`) or a list of ids; empty = all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<BackendsField>,
    /// Encrypt new objects at rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<bool>,
    /// The MLSysOps spelling of `encryption`: `on` or `off` (any case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_side_encryption: Option<String>,
    /// Backend losses the bucket must survive; `Some(None)` (JSON `null`) lifts the constraint.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<Option<Redundancy>>,
    /// Highest acceptable backend GET latency, ms; `Some(None)` (`null`) lifts it.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<Option<u64>>,
    /// Lowest acceptable backend download bandwidth, MiB/s; `Some(None)` (`null`) lifts it.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub min_download_speed: Option<Option<f64>>,
    /// Where data may be stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_restrictions: Option<LocationRestrictions>,
    /// From a human: the token agents must present from now on (`""` removes it). From an
    /// agent (`automatic`): the token it presents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_update_token: Option<String>,
    /// The change is made by an agent, not a human.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automatic: bool,
    /// Who makes the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    /// Why (agents give their explanation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The prefix rules, replacing the current ones (`[]` removes them all; absent: kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefixes: Option<Vec<PrefixPolicyRequest>>,
}

/// The code and backends of the keys under one prefix, overriding the bucket's for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixPolicyRequest {
    /// Keys starting with it (non-empty; the longest matching rule wins).
    pub prefix: String,
    /// `ec-K-M` or `replicate-N` (excludes `k` and `m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Data shards (default: the bucket's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u8>,
    /// Parity shards (default: the bucket's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<u8>,
    /// Eligible backends (default: the bucket's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<BackendsField>,
}

/// A prefix rule as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixPolicyView {
    /// Keys starting with it.
    pub prefix: String,
    /// k and m as a preset name.
    pub preset: String,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Selector text (`""` = all backends).
    pub backends: String,
    /// Backends the selector admits now (absent in history entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible: Option<Vec<String>>,
}

impl From<&PrefixPolicyView> for PrefixPolicyRequest {
    /// The request that restates a rule as it is (its preset and its selector text).
    fn from(r: &PrefixPolicyView) -> Self {
        Self {
            prefix: r.prefix.clone(),
            preset: Some(r.preset.clone()),
            k: None,
            m: None,
            backends: Some(BackendsField::Selector(r.backends.clone())),
        }
    }
}

impl StoragePolicyRequest {
    /// Whether the request asks for nothing at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Distinguishes a field set to `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Eligible backends as a selector text or a list of ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackendsField {
    /// `region=eu,gdpr=true`, `local0,local1` or `""` (all).
    Selector(String),
    /// Backend ids; empty = all.
    Ids(Vec<String>),
}

impl BackendsField {
    /// Plain backend ids (`local0,local1`) as a list, so the server can name an unknown one;
    /// anything with a label term, empty or malformed as selector text for the server to judge.
    #[must_use]
    pub fn from_text(text: &str) -> Self {
        let terms: Vec<&str> = text.split(',').map(str::trim).collect();
        let plain_ids = !text.trim().is_empty() && terms.iter().all(|t| !t.is_empty() && !t.contains('='));
        if plain_ids {
            BackendsField::Ids(terms.into_iter().map(str::to_owned).collect())
        } else {
            BackendsField::Selector(text.trim().to_owned())
        }
    }
}

/// `location_restrictions` of the MLSysOps bucket description.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationRestrictions {
    /// Only backends labelled `gdpr=true` may hold the bucket's data.
    #[serde(default)]
    pub gdpr: bool,
}

/// A bucket's storage policy as the admin API shows it (never its update token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoragePolicyView {
    /// Bucket.
    pub bucket: String,
    /// Policy epoch.
    pub epoch: u64,
    /// k and m as a preset name.
    pub preset: String,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Plaintext bytes per block.
    pub block_size: u32,
    /// Selector text (`""` = all backends).
    pub backends: String,
    /// Backends the selector admits now (absent in history entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible: Option<Vec<String>>,
    /// New objects encrypted at rest.
    pub encryption: bool,
    /// The same, as `on` / `off`.
    pub server_side_encryption: String,
    /// Stated redundancy (`None`: not constrained).
    pub redundancy: Option<Redundancy>,
    /// Latency target, ms.
    pub max_latency: Option<u64>,
    /// Bandwidth target, MiB/s.
    pub min_download_speed: Option<f64>,
    /// Location restrictions.
    pub location_restrictions: LocationRestrictions,
    /// Whether agents may change the policy (a token is set).
    pub automatic_updates: bool,
    /// When the current epoch began, Unix ms.
    pub changed_ms: i64,
    /// Who began it.
    pub changed_by: String,
    /// Made by an agent.
    pub automatic: bool,
    /// Why.
    pub reason: String,
    /// Eligible backends that miss the bucket's latency or bandwidth target right now (absent in
    /// history entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
    /// Prefix rules overriding the code and backends for the keys under them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixPolicyView>,
}

/// The answer of a storage policy change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoragePolicyChanged {
    /// Whether anything changed (a new epoch began).
    pub changed: bool,
    /// The policy now.
    pub policy: StoragePolicyView,
    /// The migration towards it.
    pub migration: MigrationProgress,
}

/// A bucket's storage policy changes, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoragePolicyHistory {
    /// Bucket.
    pub bucket: String,
    /// Every change.
    pub changes: Vec<StoragePolicyChange>,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoragePolicyChange {
    /// The epoch the change began.
    pub epoch: u64,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Who.
    pub changed_by: String,
    /// Made by an agent.
    pub automatic: bool,
    /// Why.
    pub reason: String,
    /// Before.
    pub old: StoragePolicyView,
    /// After.
    pub new: StoragePolicyView,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn request(v: Value) -> StoragePolicyRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_request_sends_only_its_fields_and_null_lifts() {
        assert_eq!(
            serde_json::to_value(StoragePolicyRequest::default()).unwrap(),
            json!({})
        );
        assert!(StoragePolicyRequest::default().is_empty());
        // Every field of the PUT table of docs/admin-api.md, as the CLI sends them.
        let full = json!({
            "preset": "ec-8-4",
            "block_size": 1048576,
            "backends": "region=eu",
            "encryption": true,
            "server_side_encryption": "on",
            "redundancy": "high",
            "max_latency": 200,
            "min_download_speed": 50.5,
            "location_restrictions": {"gdpr": true},
            "policy_update_token": "secret",
            "automatic": true,
            "changed_by": "agent-7",
            "reason": "move to EU",
        });
        let req = request(full.clone());
        assert_eq!(req.redundancy, Some(Some(Redundancy::High)));
        assert_eq!(req.backends, Some(BackendsField::Selector("region=eu".into())));
        assert_eq!(serde_json::to_value(&req).unwrap(), full);
        let lift = json!({"redundancy": null, "max_latency": null, "min_download_speed": null});
        let req = request(lift.clone());
        assert_eq!(
            (req.redundancy, req.max_latency, req.min_download_speed),
            (Some(None), Some(None), Some(None))
        );
        assert_eq!(serde_json::to_value(&req).unwrap(), lift);
        let req = request(json!({"k": 8, "m": 4, "backends": ["local0", "local1"]}));
        assert_eq!((req.k, req.m, req.redundancy), (Some(8), Some(4), None));
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"k": 8, "m": 4, "backends": ["local0", "local1"]})
        );
    }

    #[test]
    fn requests_the_server_must_refuse_do_not_parse() {
        for bad in [
            json!({"colour": "red"}),
            json!({"preset": "ec-2-1", "colour": "red"}),
            json!({"k": 300}),
            json!({"k": -1}),
            json!({"block_size": 5000000000u64}),
            json!({"redundancy": "two"}),
            json!({"location_restrictions": {"gdpr": true, "eu": true}}),
            json!({"backends": 3}),
            json!([]),
        ] {
            assert!(
                serde_json::from_value::<StoragePolicyRequest>(bad.clone()).is_err(),
                "{bad} parsed"
            );
        }
        assert!(serde_json::from_str::<StoragePolicyRequest>(r#"{"preset": "#).is_err());
    }

    #[test]
    fn backend_ids_go_as_a_list_and_selectors_as_text() {
        let ids = |v: &[&str]| BackendsField::Ids(v.iter().map(|s| (*s).to_owned()).collect());
        let sel = |s: &str| BackendsField::Selector(s.to_owned());
        assert_eq!(BackendsField::from_text("local0,local1"), ids(&["local0", "local1"]));
        assert_eq!(BackendsField::from_text(" s3a , gcs1 "), ids(&["s3a", "gcs1"]));
        assert_eq!(BackendsField::from_text("local3"), ids(&["local3"]));
        assert_eq!(BackendsField::from_text("region=eu,local3"), sel("region=eu,local3"));
        assert_eq!(BackendsField::from_text("a,,b"), sel("a,,b"));
        assert_eq!(BackendsField::from_text(""), sel(""));
    }

    fn doc_view() -> Value {
        // The example of docs/admin-api.md.
        json!({
          "bucket": "b", "epoch": 3, "preset": "ec-4-2", "k": 4, "m": 2, "block_size": 1048576,
          "backends": "region=eu,local3", "eligible": ["local0", "local3"],
          "encryption": true, "server_side_encryption": "on",
          "redundancy": "high", "max_latency": 200, "min_download_speed": 50.0,
          "location_restrictions": {"gdpr": false},
          "automatic_updates": false,
          "changed_ms": 1764300000000u64, "changed_by": "alice", "automatic": false, "reason": "move to EU",
          "warnings": ["backend local3: p95 GET latency 250.0 ms over the last minute exceeds max_latency 200 ms"]
        })
    }

    #[test]
    fn a_view_reads_and_writes_as_documented() {
        let view: StoragePolicyView = serde_json::from_value(doc_view()).unwrap();
        assert_eq!((view.k, view.m, view.redundancy), (4, 2, Some(Redundancy::High)));
        assert_eq!(serde_json::to_value(&view).unwrap(), doc_view());
        // A history entry's views carry neither eligibility nor warnings: the keys are absent.
        let mut bare = doc_view();
        bare.as_object_mut().unwrap().remove("eligible");
        bare.as_object_mut().unwrap().remove("warnings");
        bare["redundancy"] = Value::Null;
        let view: StoragePolicyView = serde_json::from_value(bare.clone()).unwrap();
        assert_eq!((view.eligible.as_ref(), view.redundancy), (None, None));
        let text = serde_json::to_string(&view).unwrap();
        assert!(!text.contains("eligible") && !text.contains("warnings") && text.contains(r#""redundancy":null"#));
        let history = json!({"bucket": "b", "changes": [
            {"epoch": 2, "at_ms": 1764300000000u64, "changed_by": "alice", "automatic": false,
             "reason": "move to EU", "old": bare, "new": bare}]});
        let h: StoragePolicyHistory = serde_json::from_value(history.clone()).unwrap();
        assert_eq!(h.changes[0].changed_by, "alice");
        assert_eq!(serde_json::to_value(&h).unwrap(), history);
    }

    #[test]
    fn a_change_answer_has_the_policy_and_the_migration() {
        let answer = json!({
            "changed": true,
            "policy": doc_view(),
            "migration": {
                "bucket": "b", "target_epoch": 3, "state": "running",
                "objects_total": 0, "objects_done": 0, "bytes_total": 0, "bytes_done": 0,
                "objects_reencoded": 0, "objects_moved": 0, "objects_relabelled": 0,
                "objects_remaining": 0, "rate_bytes_per_sec": 0.0, "eta_secs": null,
                "errors": 0, "last_error": null, "skipped": 0, "started_ms": 0, "finished_ms": null
            }
        });
        let a: StoragePolicyChanged = serde_json::from_value(answer.clone()).unwrap();
        assert!(a.changed);
        assert_eq!(a.policy.epoch, a.migration.target_epoch);
        assert_eq!(serde_json::to_value(&a).unwrap(), answer);
    }
}
