//! Changing a bucket's storage policy (code, backends, encryption, intent; not an S3 bucket
//! policy, which is access control): the validation of a [`StoragePolicyRequest`] against the
//! configured backends, its commit, and the [`StoragePolicyView`] the admin API returns.
//!
//! A change is computed from the current record (fields left out keep their value), refused
//! with a reason that names the cause, or committed as a new epoch with its history entry;
//! the migrator is woken to bring older objects along.

use crate::engine::{Engine, PolicyChanged};
use crate::error::Error;
use crate::records::PrefixRule;
use crate::records::{now_ms, BucketRecord, ChangeInfo, PolicyChange};
use control_api::{
    BackendsField, LocationRestrictions, PrefixPolicyRequest, PrefixPolicyView, StoragePolicyChange,
    StoragePolicyRequest, StoragePolicyView,
};
use placement::{BackendSelector, BucketPolicy};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use telemetry::stats::principal::ADMIN_API;

/// Shortest policy update token accepted: it is a credential.
const MIN_TOKEN_LEN: usize = 8;
/// Most prefix rules a bucket holds: each write looks them all up.
pub const MAX_PREFIX_RULES: usize = 64;
/// Longest prefix of a rule, in bytes (S3 keys are at most 1024).
const MAX_PREFIX_BYTES: usize = 1024;

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request is invalid (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// An automatic change without the bucket's token (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// No such bucket (HTTP 404).
    #[error("no such bucket: {0}")]
    NoSuchBucket(String),
    /// The catalog failed (HTTP 500).
    #[error(transparent)]
    Internal(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        match e {
            Error::NoSuchBucket(b) => Refusal::NoSuchBucket(b),
            other => Refusal::Internal(other),
        }
    }
}

/// The view of a bucket record; `engine` adds eligibility and warnings when given.
#[must_use]
pub fn view(bucket: &str, rec: &BucketRecord, engine: Option<&Engine>) -> StoragePolicyView {
    let changed = rec.changed.clone().unwrap_or(ChangeInfo {
        at_ms: rec.created_ms,
        by: "s3:CreateBucket".into(),
        automatic: false,
        reason: String::new(),
    });
    StoragePolicyView {
        bucket: bucket.to_owned(),
        epoch: rec.policy_epoch,
        preset: rec.policy.to_string(),
        k: rec.policy.k,
        m: rec.policy.m,
        block_size: rec.policy.block_size,
        backends: rec.backends.to_string(),
        eligible: engine.map(|e| e.eligible(&rec.backends)),
        encryption: rec.encrypted,
        server_side_encryption: if rec.encrypted { "on" } else { "off" }.to_owned(),
        redundancy: rec.intent.redundancy,
        max_latency: rec.intent.max_latency_ms,
        min_download_speed: rec.intent.min_download_mib_s,
        location_restrictions: LocationRestrictions { gdpr: rec.intent.gdpr },
        automatic_updates: rec.update_token_sha256.is_some(),
        changed_ms: changed.at_ms,
        changed_by: changed.by,
        automatic: changed.automatic,
        reason: changed.reason,
        warnings: engine.map(|e| warnings(e, rec)),
        prefixes: rec
            .prefixes
            .iter()
            .map(|r| PrefixPolicyView {
                prefix: r.prefix.clone(),
                preset: r.policy.to_string(),
                k: r.policy.k,
                m: r.policy.m,
                backends: r.backends.to_string(),
                eligible: engine.map(|e| e.eligible(&r.backends)),
            })
            .collect(),
    }
}

/// The bucket's history as shown.
#[must_use]
pub fn history_view(bucket: &str, changes: Vec<PolicyChange>) -> Vec<StoragePolicyChange> {
    changes
        .into_iter()
        .map(|c| StoragePolicyChange {
            epoch: c.epoch,
            at_ms: c.change.at_ms,
            changed_by: c.change.by,
            automatic: c.change.automatic,
            reason: c.change.reason,
            old: view(bucket, &c.old, None),
            new: view(bucket, &c.new, None),
        })
        .collect()
}

/// Eligible backends whose last minute of telemetry misses the bucket's targets.
fn warnings(engine: &Engine, rec: &BucketRecord) -> Vec<String> {
    let mut out = Vec::new();
    let eligible = engine.eligible(&rec.backends);
    if let Some(max) = rec.intent.max_latency_ms {
        for id in &eligible {
            if let Some(p) = engine.telemetry().predict(id, telemetry::stats::BackendOp::Get) {
                let p95 = p.p95.as_secs_f64() * 1000.0;
                #[allow(clippy::cast_precision_loss)]
                if p95 > max as f64 {
                    out.push(format!(
                        "backend {id}: p95 GET latency {p95:.1} ms over the last minute exceeds max_latency {max} ms"
                    ));
                }
            }
        }
    }
    if let Some(min) = rec.intent.min_download_mib_s {
        for snap in engine.telemetry().backends() {
            if !eligible.contains(&snap.backend) {
                continue;
            }
            let bw = snap.windows.first().and_then(|w| w.get.bandwidth_mib_s);
            if let Some(bw) = bw.filter(|bw| *bw < min) {
                out.push(format!(
                    "backend {}: GET bandwidth {bw:.1} MiB/s over the last minute is below min_download_speed {min} MiB/s",
                    snap.backend
                ));
            }
        }
    }
    out
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks that an automatic change carries the bucket's token.
fn authorize_automatic(bucket: &str, cur: &BucketRecord, req: &StoragePolicyRequest) -> Result<(), Refusal> {
    let Some(want) = &cur.update_token_sha256 else {
        return Err(Refusal::Forbidden(format!(
            "bucket {bucket} does not accept automatic policy changes: no policy_update_token is set on it"
        )));
    };
    let Some(given) = &req.policy_update_token else {
        return Err(Refusal::Forbidden(format!(
            "automatic policy change of bucket {bucket} without its policy_update_token"
        )));
    };
    if bool::from(token_hash(given).as_bytes().ct_eq(want.as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::Forbidden(format!(
            "policy_update_token does not match the token of bucket {bucket}"
        )))
    }
}

/// The record `req` asks for, from the current one; `Err` says why it is refused.
pub fn decide(
    engine: &Engine,
    bucket: &str,
    cur: &BucketRecord,
    req: &StoragePolicyRequest,
) -> Result<BucketRecord, Refusal> {
    let invalid = |m: String| Refusal::Invalid(m);
    if req.automatic {
        if let Err(refusal) = authorize_automatic(bucket, cur, req) {
            // Evidence for trust and anomaly detection: guessing a bucket's token is an attack
            // on its placement. The admin API has no access key (one token for every caller),
            // so the refusals are counted under the one principal `admin-api`.
            engine.telemetry().token_failure(ADMIN_API);
            return Err(refusal);
        }
    }
    let mut new = cur.clone();
    // Intent first: redundancy decides m when only it is given.
    if let Some(r) = req.redundancy {
        new.intent.redundancy = r;
    }
    if let Some(l) = req.max_latency {
        if l == Some(0) {
            return Err(invalid("max_latency must be at least 1 ms (or null to lift it)".into()));
        }
        new.intent.max_latency_ms = l;
    }
    if let Some(s) = req.min_download_speed {
        if s.is_some_and(|s| !s.is_finite() || s <= 0.0) {
            return Err(invalid(
                "min_download_speed must be a positive number of MiB/s (or null to lift it)".into(),
            ));
        }
        new.intent.min_download_mib_s = s;
    }
    if let Some(l) = req.location_restrictions {
        new.intent.gdpr = l.gdpr;
    }
    // The code.
    let (k, m) = match (&req.preset, req.k, req.m) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(invalid("give either preset or k and m, not both".into()));
        }
        (Some(p), None, None) => {
            let p: BucketPolicy = p.parse().map_err(|e: placement::PolicyError| invalid(e.to_string()))?;
            (p.k, p.m)
        }
        (None, k, m) => {
            let m = m.unwrap_or_else(|| match req.redundancy {
                Some(Some(r)) if k.is_none() => r.min_parity(),
                _ => cur.policy.m,
            });
            (k.unwrap_or(cur.policy.k), m)
        }
    };
    let block_size = req.block_size.unwrap_or(cur.policy.block_size);
    let policy = BucketPolicy { k, m, block_size };
    policy.validate().map_err(|e| invalid(e.to_string()))?;
    if let Some(why) = new.intent.parity_shortfall(m) {
        return Err(invalid(why));
    }
    new.policy = policy;
    // Backends.
    let selector = match &req.backends {
        None => cur.backends.clone(),
        Some(field) => parse_selector(engine, field)?,
    };
    new.backends = fit_selector(engine, selector, policy, new.intent.gdpr, "")?;
    // Prefix rules: replaced when given; every rule, old or new, must meet the bucket's intent
    // as it is now (a stricter redundancy or GDPR binds them too).
    if let Some(rules) = &req.prefixes {
        if rules.len() > MAX_PREFIX_RULES {
            return Err(invalid(format!(
                "prefixes: {} rules, more than the {MAX_PREFIX_RULES} a bucket may hold",
                rules.len()
            )));
        }
        let mut parsed: Vec<PrefixRule> = Vec::with_capacity(rules.len());
        for r in rules {
            let rule = prefix_rule(engine, r, &new)?;
            if parsed.iter().any(|p| p.prefix == rule.prefix) {
                return Err(invalid(format!("prefixes: prefix {:?} is given twice", rule.prefix)));
            }
            parsed.push(rule);
        }
        new.prefixes = parsed;
    }
    let (gdpr, block_size) = (new.intent.gdpr, new.policy.block_size);
    for rule in &mut new.prefixes {
        let what = format!("prefix {:?}: ", rule.prefix);
        rule.policy.block_size = block_size;
        if let Some(why) = new.intent.parity_shortfall(rule.policy.m) {
            return Err(invalid(format!("{what}{why}")));
        }
        rule.backends = fit_selector(engine, rule.backends.clone(), rule.policy, gdpr, &what)?;
    }
    // Encryption.
    let sse = match req
        .server_side_encryption
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("on") => Some(true),
        Some("off") => Some(false),
        Some(other) => {
            return Err(invalid(format!("server_side_encryption {other:?}: expected on or off")));
        }
    };
    match (req.encryption, sse) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid("encryption and server_side_encryption disagree".into()));
        }
        (Some(on), _) | (None, Some(on)) => {
            if on && !cur.encrypted {
                engine
                    .keys()
                    .active()
                    .map_err(|e| invalid(format!("cannot turn encryption on: {e}")))?;
            }
            new.encrypted = on;
        }
        (None, None) => {}
    }
    // Who may change it next.
    if let Some(t) = &req.policy_update_token {
        if !req.automatic {
            if t.is_empty() {
                new.update_token_sha256 = None;
            } else if t.len() < MIN_TOKEN_LEN {
                return Err(invalid(format!(
                    "policy_update_token must be at least {MIN_TOKEN_LEN} characters"
                )));
            } else {
                new.update_token_sha256 = Some(token_hash(t));
            }
        }
    }
    Ok(new)
}

/// The selector a `backends` field names, its ids checked against the configured backends.
fn parse_selector(engine: &Engine, field: &BackendsField) -> Result<BackendSelector, Refusal> {
    let invalid = |m: String| Refusal::Invalid(m);
    let selector = match field {
        BackendsField::Selector(s) if s.trim().is_empty() => BackendSelector::default(),
        BackendsField::Selector(s) => s
            .parse()
            .map_err(|e: placement::SelectorError| invalid(e.to_string()))?,
        BackendsField::Ids(ids) => {
            if ids
                .iter()
                .any(|i| i.trim().is_empty() || i.contains(',') || i.contains('='))
            {
                return Err(invalid(format!("backends {ids:?}: every entry must be a backend id")));
            }
            BackendSelector {
                labels: Vec::new(),
                ids: ids.clone(),
            }
        }
    };
    let configured: Vec<&str> = engine.backends().iter().map(crate::backend::Backend::id).collect();
    if let Some(unknown) = selector.ids.iter().find(|i| !configured.contains(&i.as_str())) {
        return Err(invalid(format!(
            "unknown backend {unknown:?} (configured: {})",
            configured.join(", ")
        )));
    }
    Ok(selector)
}

/// `selector` restricted to GDPR-labelled backends when `gdpr`, and checked to admit enough
/// backends for `policy`; `what` starts each refusal (empty for the bucket's own).
fn fit_selector(
    engine: &Engine,
    mut selector: BackendSelector,
    policy: BucketPolicy,
    gdpr: bool,
    what: &str,
) -> Result<BackendSelector, Refusal> {
    let invalid = |m: String| Refusal::Invalid(format!("{what}{m}"));
    let gdpr_term = ("gdpr".to_owned(), "true".to_owned());
    selector.labels.retain(|t| *t != gdpr_term);
    if gdpr {
        let outside: Vec<&str> = selector
            .ids
            .iter()
            .filter(|id| engine.backend(id).is_ok_and(|b| !b.labels().gdpr))
            .map(String::as_str)
            .collect();
        if !outside.is_empty() {
            return Err(invalid(format!(
                "location_restrictions.gdpr is set but backends {} are not labelled gdpr = true",
                outside.join(", ")
            )));
        }
        if selector.ids.is_empty() || !selector.labels.is_empty() {
            selector.labels.push(gdpr_term);
        }
    }
    let eligible = engine.eligible(&selector);
    if policy.shards() > eligible.len() {
        return Err(invalid(format!(
            "policy {policy} needs {} backends, {} eligible ({}{})",
            policy.shards(),
            eligible.len(),
            if selector.is_all() {
                "all configured".to_owned()
            } else {
                format!("matching {selector}")
            },
            if eligible.is_empty() {
                String::new()
            } else {
                format!(": {}", eligible.join(", "))
            }
        )));
    }
    Ok(selector)
}

/// The prefix rule `r` asks for; code and backends default to the bucket's (`bucket`, already
/// decided). GDPR and the backend count are checked afterwards, with every other rule.
fn prefix_rule(engine: &Engine, r: &PrefixPolicyRequest, bucket: &BucketRecord) -> Result<PrefixRule, Refusal> {
    let what = format!("prefix {:?}: ", r.prefix);
    let invalid = |m: String| Refusal::Invalid(format!("{what}{m}"));
    if r.prefix.is_empty() {
        return Err(Refusal::Invalid(
            "prefixes: a rule's prefix must not be empty (the bucket's own policy covers every key)".into(),
        ));
    }
    if r.prefix.len() > MAX_PREFIX_BYTES {
        return Err(Refusal::Invalid(format!(
            "prefixes: a prefix of {} bytes is longer than the {MAX_PREFIX_BYTES} a key may have",
            r.prefix.len()
        )));
    }
    let (k, m) = match (&r.preset, r.k, r.m) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(invalid("give either preset or k and m, not both".into()));
        }
        (Some(p), None, None) => {
            let p: BucketPolicy = p.parse().map_err(|e: placement::PolicyError| invalid(e.to_string()))?;
            (p.k, p.m)
        }
        (None, k, m) => (k.unwrap_or(bucket.policy.k), m.unwrap_or(bucket.policy.m)),
    };
    let policy = BucketPolicy {
        k,
        m,
        block_size: bucket.policy.block_size,
    };
    policy.validate().map_err(|e| invalid(e.to_string()))?;
    let backends = match &r.backends {
        None => bucket.backends.clone(),
        Some(field) => parse_selector(engine, field).map_err(|e| match e {
            Refusal::Invalid(m) => invalid(m),
            other => other,
        })?,
    };
    Ok(PrefixRule {
        prefix: r.prefix.clone(),
        policy,
        backends,
    })
}

/// What [`apply`] did.
pub struct Applied {
    /// Whether anything changed (a new epoch began).
    pub changed: bool,
    /// The bucket record now.
    pub record: BucketRecord,
}

/// Validates and commits a policy change to `bucket`, and wakes the migrator.
pub fn apply(engine: &Engine, bucket: &str, req: &StoragePolicyRequest) -> Result<Applied, Refusal> {
    let change = ChangeInfo {
        at_ms: now_ms(),
        by: req
            .changed_by
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| if req.automatic { "agent" } else { "admin" }.to_owned()),
        automatic: req.automatic,
        reason: req.reason.clone().unwrap_or_default(),
    };
    let res = engine.change_bucket_policy(bucket, change, |cur| {
        decide(engine, bucket, cur, req).map(|new| {
            let same = new.policy == cur.policy
                && new.backends == cur.backends
                && new.encrypted == cur.encrypted
                && new.intent == cur.intent
                && new.update_token_sha256 == cur.update_token_sha256
                && new.prefixes == cur.prefixes;
            (!same).then_some(new)
        })
    })?;
    match res {
        PolicyChanged::Changed { old, new } => {
            tracing::info!(
                bucket,
                epoch = new.policy_epoch,
                old = %old.policy,
                new = %new.policy,
                backends = %new.backends,
                encrypted = new.encrypted,
                prefix_rules = new.prefixes.len(),
                by = new.changed.as_ref().map_or("", |c| c.by.as_str()),
                automatic = req.automatic,
                "storage policy changed"
            );
            engine.migrations().wake();
            Ok(Applied {
                changed: true,
                record: *new,
            })
        }
        PolicyChanged::Unchanged => Ok(Applied {
            changed: false,
            record: engine.require_bucket(bucket)?,
        }),
        PolicyChanged::Refused(r) => Err(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::meta::{Catalog, RocksStore};
    use placement::BackendLabels;
    use std::sync::Arc;

    /// Six local backends (local3..local5 GDPR-labelled) and a bucket `b` on ec-4-2.
    fn engine(dir: &std::path::Path) -> Engine {
        let backends = (0..6)
            .map(|i| {
                Backend::local(format!("local{i}"), dir.join(format!("b{i}")))
                    .unwrap()
                    .with_labels(BackendLabels {
                        gdpr: i >= 3,
                        ..BackendLabels::default()
                    })
            })
            .collect();
        let store = RocksStore::open(&dir.join("meta")).unwrap();
        let e = Engine::new(Catalog::new(Arc::new(store)), backends);
        let rec = BucketRecord {
            created_ms: 1,
            policy: BucketPolicy::default(),
            policy_epoch: 1,
            encrypted: false,
            backends: BackendSelector::default(),
            intent: placement::BucketIntent::default(),
            update_token_sha256: None,
            changed: None,
            prefixes: Vec::new(),
        };
        e.create_bucket("b", &rec).unwrap();
        e
    }

    fn req(json: &str) -> StoragePolicyRequest {
        serde_json::from_str(json).unwrap()
    }

    #[tokio::test]
    async fn invalid_changes_are_refused_with_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let cases = [
            (r#"{"preset": "ec-8-4"}"#, "needs 12 backends, 6 eligible"),
            (r#"{"k": 0}"#, "k must be at least 1"),
            (r#"{"preset": "ec-2-1", "k": 2}"#, "not both"),
            (r#"{"preset": "raid5"}"#, "unknown policy preset"),
            (r#"{"block_size": 100}"#, "block size 100"),
            (r#"{"redundancy": "high", "m": 1}"#, "m >= 2"),
            (r#"{"backends": ["local0", "nope"]}"#, "unknown backend \"nope\""),
            (r#"{"backends": "colour=red"}"#, "unknown label"),
            (
                r#"{"backends": "local0,local1", "preset": "ec-2-1"}"#,
                "needs 3 backends, 2 eligible",
            ),
            (
                r#"{"location_restrictions": {"gdpr": true}, "preset": "ec-2-1", "backends": ["local0", "local3", "local4"]}"#,
                "local0 are not labelled gdpr",
            ),
            (
                r#"{"location_restrictions": {"gdpr": true}}"#,
                "needs 6 backends, 3 eligible",
            ),
            (r#"{"encryption": true, "server_side_encryption": "off"}"#, "disagree"),
            (r#"{"server_side_encryption": "maybe"}"#, "expected on or off"),
            (r#"{"max_latency": 0}"#, "at least 1 ms"),
            (r#"{"min_download_speed": -1}"#, "positive"),
            (r#"{"policy_update_token": "short"}"#, "at least 8"),
        ];
        for (body, want) in cases {
            match apply(&e, "b", &req(body)) {
                Err(Refusal::Invalid(m)) => assert!(m.contains(want), "{body}: {m:?} lacks {want:?}"),
                Err(other) => panic!("{body}: refused as {other:?}, not as invalid"),
                Ok(_) => panic!("{body}: accepted"),
            }
        }
        assert_eq!(
            e.require_bucket("b").unwrap().policy_epoch,
            1,
            "refusals change nothing"
        );
        assert!(matches!(apply(&e, "nope", &req("{}")), Err(Refusal::NoSuchBucket(_))));
        assert!(serde_json::from_str::<StoragePolicyRequest>(r#"{"colour": 1}"#).is_err());
    }

    /// Request bodies as an operator or an agent might send them, well-formed or not.
    fn bodies() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let field = prop_oneof![
            "(ec-[0-9]{1,2}-[0-9]{1,2}|replicate-[0-9]|[a-z0-9-]{0,8})".prop_map(|p| format!(r#""preset": "{p}""#)),
            (0u16..300).prop_map(|k| format!(r#""k": {k}"#)),
            (0u16..300).prop_map(|m| format!(r#""m": {m}"#)),
            prop_oneof![Just(0u64), Just(4096), Just(1 << 20), any::<u32>().prop_map(u64::from)]
                .prop_map(|b| format!(r#""block_size": {b}"#)),
            "(local[0-9]|region=[a-z]{0,3}|gdpr=(true|false)|provider=[a-z]{0,3}|,|=| ){0,4}"
                .prop_map(|b| format!(r#""backends": "{b}""#)),
            proptest::collection::vec("local[0-9]|[a-z=,]{0,4}", 0..7)
                .prop_map(|ids| format!(r#""backends": {}"#, serde_json::to_string(&ids).unwrap())),
            any::<bool>().prop_map(|e| format!(r#""encryption": {e}"#)),
            "(on|off|ON|maybe)".prop_map(|e| format!(r#""server_side_encryption": "{e}""#)),
            "(\"high\"|\"one\"|\"none\"|null)".prop_map(|r| format!(r#""redundancy": {r}"#)),
            prop_oneof![Just("null".to_owned()), (0u64..1000).prop_map(|l| l.to_string())]
                .prop_map(|l| format!(r#""max_latency": {l}"#)),
            prop_oneof![Just("null".to_owned()), (-5i32..500).prop_map(|s| s.to_string())]
                .prop_map(|s| format!(r#""min_download_speed": {s}"#)),
            any::<bool>().prop_map(|g| format!(r#""location_restrictions": {{"gdpr": {g}}}"#)),
            "[a-z-]{0,12}".prop_map(|t| format!(r#""policy_update_token": "{t}""#)),
            any::<bool>().prop_map(|a| format!(r#""automatic": {a}"#)),
        ];
        proptest::collection::vec(field, 0..6).prop_map(|fields| format!("{{{}}}", fields.join(", ")))
    }

    #[test]
    fn any_request_gives_a_consistent_record_or_a_reason() {
        use proptest::test_runner::{Config, TestRunner};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in_runtime = rt.enter();
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let cur = e.require_bucket("b").unwrap();
        let mut runner = TestRunner::new(Config {
            cases: 300,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&bodies(), |body| {
                // A body that is no request is the handler's 400; the rest is decided.
                let Ok(r) = serde_json::from_str::<StoragePolicyRequest>(&body) else {
                    return Ok(());
                };
                match decide(&e, "b", &cur, &r) {
                    Ok(new) => {
                        proptest::prop_assert!(new.policy.validate().is_ok(), "{body}: {}", new.policy);
                        proptest::prop_assert!(
                            new.policy.shards() <= e.eligible(&new.backends).len(),
                            "{body}: {} on {}",
                            new.policy,
                            new.backends
                        );
                        proptest::prop_assert!(new.intent.parity_shortfall(new.policy.m).is_none(), "{body}");
                        proptest::prop_assert!(new.intent.max_latency_ms != Some(0), "{body}");
                        proptest::prop_assert!(
                            new.intent.min_download_mib_s.is_none_or(|s| s.is_finite() && s > 0.0),
                            "{body}"
                        );
                        if new.intent.gdpr {
                            for id in e.eligible(&new.backends) {
                                proptest::prop_assert!(e.backend(&id).unwrap().labels().gdpr, "{body}: {id}");
                            }
                        }
                        proptest::prop_assert!(!r.automatic, "{body}: the bucket has no agent token");
                    }
                    Err(Refusal::Invalid(m) | Refusal::Forbidden(m)) => {
                        proptest::prop_assert!(!m.is_empty(), "{body}");
                    }
                    Err(other) => proptest::prop_assert!(false, "{body}: {other:?}"),
                }
                Ok(())
            })
            .unwrap();
    }

    #[tokio::test]
    async fn changes_make_epochs_and_history_and_tokens_gate_agents() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let a = apply(&e, "b", &req(r#"{"redundancy": "one", "reason": "cheaper"}"#)).unwrap();
        assert!(a.changed);
        assert_eq!((a.record.policy.k, a.record.policy.m, a.record.policy_epoch), (4, 1, 2));
        let same = apply(&e, "b", &req(r#"{"k": 4, "m": 1}"#)).unwrap();
        assert!(!same.changed, "no difference, no epoch");
        // Redundancy stays demanded: m = 0 later is refused.
        assert!(
            matches!(apply(&e, "b", &req(r#"{"m": 0}"#)), Err(Refusal::Invalid(m)) if m.contains("redundancy one"))
        );
        let gdpr = apply(
            &e,
            "b",
            &req(r#"{"preset": "ec-2-1", "location_restrictions": {"gdpr": true}}"#),
        )
        .unwrap();
        assert_eq!(e.eligible(&gdpr.record.backends), ["local3", "local4", "local5"]);
        // Agents: refused without a token on the bucket, then with a wrong one.
        let auto = r#"{"automatic": true, "policy_update_token": "agent-secret", "preset": "ec-2-1", "max_latency": 50, "changed_by": "cluster-agent", "reason": "p95 over target"}"#;
        assert!(
            matches!(apply(&e, "b", &req(auto)), Err(Refusal::Forbidden(m)) if m.contains("no policy_update_token"))
        );
        apply(&e, "b", &req(r#"{"policy_update_token": "agent-secret"}"#)).unwrap();
        let wrong = auto.replace("agent-secret", "agent-secreT");
        assert!(matches!(apply(&e, "b", &req(&wrong)), Err(Refusal::Forbidden(m)) if m.contains("does not match")));
        let ok = apply(&e, "b", &req(auto)).unwrap();
        assert!(ok.changed);
        assert_eq!(ok.record.intent.max_latency_ms, Some(50));
        let v = serde_json::to_string(&view("b", &ok.record, Some(&e))).unwrap();
        assert!(
            !v.contains("agent-secret") && v.contains(r#""automatic_updates":true"#),
            "{v}"
        );
        let h = e.policy_history("b").unwrap();
        assert_eq!(h.iter().map(|c| c.epoch).collect::<Vec<_>>(), [2, 3, 4, 5]);
        let last = h.last().unwrap();
        assert!(last.change.automatic && last.change.by == "cluster-agent" && last.change.reason == "p95 over target");
        assert_eq!(last.old.intent.max_latency_ms, None);
        assert_eq!(h[0].change.by, "admin");
        assert_eq!((h[0].old.policy.m, h[0].new.policy.m), (2, 1));
    }

    #[tokio::test]
    async fn prefix_rules_override_code_and_backends_for_their_keys_and_meet_the_intent() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let a = apply(
            &e,
            "b",
            &req(r#"{"prefixes": [
                {"prefix": "cold/", "preset": "ec-4-1", "backends": ["local1", "local2", "local3", "local4", "local5"]},
                {"prefix": "cold/hot/", "k": 2, "m": 2},
                {"prefix": "logs/", "backends": "local3,local4,local5", "k": 2, "m": 1}
            ]}"#),
        )
        .unwrap();
        assert!(a.changed, "a new epoch: the migrator revisits every object");
        let r = &a.record;
        assert_eq!(r.policy_epoch, 2);
        let layout = |key: &str| {
            let (p, sel) = r.layout_for(key);
            (p.to_string(), e.eligible(sel))
        };
        let all: Vec<String> = (0..6).map(|i| format!("local{i}")).collect();
        assert_eq!(layout("photos/a"), ("ec-4-2".to_owned(), all.clone()));
        assert_eq!(
            layout("cold"),
            ("ec-4-2".to_owned(), all.clone()),
            "a prefix is not its key"
        );
        assert_eq!(layout("cold/x"), ("ec-4-1".to_owned(), all[1..].to_vec()));
        assert_eq!(
            layout("cold/hot/y"),
            ("ec-2-2".to_owned(), all.clone()),
            "the longest prefix wins"
        );
        assert_eq!(layout("logs/1").1, ["local3", "local4", "local5"]);
        assert!(r.prefixes.iter().all(|p| p.policy.block_size == r.policy.block_size));
        let v = view("b", r, Some(&e));
        assert_eq!(v.prefixes.len(), 3);
        assert_eq!(
            (v.prefixes[0].prefix.as_str(), v.prefixes[0].preset.as_str()),
            ("cold/", "ec-4-1")
        );
        assert_eq!(
            v.prefixes[2].eligible.as_deref(),
            Some(&["local3".to_owned(), "local4".to_owned(), "local5".to_owned()][..])
        );
        // Other changes keep the rules; rules bind to the intent as it becomes.
        let kept = apply(&e, "b", &req(r#"{"max_latency": 80}"#)).unwrap();
        assert_eq!(kept.record.prefixes, r.prefixes);
        let cases = [
            (r#"{"redundancy": "high"}"#, "prefix \"cold/\": "),
            (
                r#"{"location_restrictions": {"gdpr": true}, "preset": "ec-2-1"}"#,
                "prefix \"cold/\": location_restrictions.gdpr is set but backends local1, local2 are not labelled",
            ),
            (r#"{"prefixes": [{"prefix": ""}]}"#, "must not be empty"),
            (r#"{"prefixes": [{"prefix": "a/"}, {"prefix": "a/"}]}"#, "given twice"),
            (
                r#"{"prefixes": [{"prefix": "a/", "preset": "ec-8-4"}]}"#,
                "prefix \"a/\": policy ec-8-4 needs 12 backends, 6 eligible",
            ),
            (
                r#"{"prefixes": [{"prefix": "a/", "preset": "ec-2-1", "k": 2}]}"#,
                "prefix \"a/\": give either preset",
            ),
            (
                r#"{"prefixes": [{"prefix": "a/", "backends": ["nope"]}]}"#,
                "prefix \"a/\": unknown backend \"nope\"",
            ),
            (r#"{"prefixes": [{"prefix": "a/", "colour": 1}]}"#, "PARSE"),
        ];
        for (body, want) in cases {
            if want == "PARSE" {
                assert!(serde_json::from_str::<StoragePolicyRequest>(body).is_err(), "{body}");
                continue;
            }
            match apply(&e, "b", &req(body)) {
                Err(Refusal::Invalid(m)) => assert!(m.contains(want), "{body}: {m:?} lacks {want:?}"),
                other => panic!("{body}: {:?}", other.map(|a| a.record.prefixes)),
            }
        }
        let many: Vec<String> = (0..=MAX_PREFIX_RULES)
            .map(|i| format!(r#"{{"prefix": "p{i}/"}}"#))
            .collect();
        let body = format!(r#"{{"prefixes": [{}]}}"#, many.join(","));
        assert!(matches!(apply(&e, "b", &req(&body)), Err(Refusal::Invalid(m)) if m.contains("more than the 64")));
        let cleared = apply(&e, "b", &req(r#"{"prefixes": []}"#)).unwrap();
        assert!(cleared.changed && cleared.record.prefixes.is_empty());
        assert_eq!(cleared.record.layout_for("cold/x").0.to_string(), "ec-4-2");
    }
}
