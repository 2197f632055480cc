//! Hot/cold per key prefix. In a bucket that is neither hot nor cold as a whole, a prefix read
//! rarely for long gets a prefix rule with a wider code on the cheapest backends, and a prefix
//! read often one on the fastest backends (the gateway's prefix rules: the keys under a prefix
//! get their own code and backends, and the migrator moves them). A rule this policy made is
//! removed once its prefix is neither, so its keys go back to the bucket's policy; rules an
//! operator made are left alone. A prefix smaller than `min_prefix_bytes` is not worth a rule.
//!
//! One plan per bucket carries every prefix change of a period: its command replaces the
//! bucket's prefix rules, so two prefixes never race for the bucket's lock.

use super::{cheaper_wider, faster, step, Heat, HotColdConfig, NAME};
use crate::ml::Models;
use crate::plan::{Explanation, Plan, Priority};
use crate::policies::candidates::{self, backend_inputs, describe, Rules, Temperature};
use crate::world::{BucketView, PrefixView, World};
use control_api::{BackendsField, Effect, MetricInput, OptionScore, PrefixPolicyRequest, StoragePolicyRequest};
use std::collections::{BTreeMap, BTreeSet};

/// What hot/cold keeps per prefix across periods.
#[derive(Debug, Default)]
pub(super) struct PrefixState {
    /// (bucket, prefix) -> its temperature and streaks.
    heat: BTreeMap<(String, String), Heat>,
    /// The prefix rules this policy asked for, so it only ever removes its own.
    ruled: BTreeSet<(String, String)>,
}

impl PrefixState {
    /// The temperature held for `prefix` of `bucket`.
    pub(super) fn temperature(&self, bucket: &str, prefix: &str) -> Temperature {
        self.heat
            .get(&(bucket.to_owned(), prefix.to_owned()))
            .map(|h| h.temp)
            .unwrap_or_default()
    }

    /// Forgets the buckets not in `keep`.
    pub(super) fn retain_buckets(&mut self, keep: &BTreeSet<&str>) {
        self.heat.retain(|(b, _), _| keep.contains(b.as_str()));
        self.ruled.retain(|(b, _)| keep.contains(b.as_str()));
    }
}

/// One prefix's change: a rule set (k, m, backends) or removed.
enum Change {
    Set { k: u8, m: u8, ids: Vec<String> },
    Remove,
}

/// The subject of a prefix in decisions: `bucket/<b>/prefix/<p>`.
fn subject(bucket: &str, prefix: &str) -> String {
    format!("{}/prefix/{prefix}", Plan::bucket_target(bucket))
}

fn rate_inputs(b: &BucketView, p: &PrefixView, c: &HotColdConfig) -> Vec<MetricInput> {
    let s = subject(&b.name, &p.prefix);
    let input = |metric: &str, value: f64, window: &str, target: Option<f64>| MetricInput {
        metric: metric.to_owned(),
        subject: s.clone(),
        value: Some(value),
        window: window.to_owned(),
        target,
    };
    vec![
        input("reads_per_s", p.reads_per_s, "1m", Some(c.hot_reads_per_s)),
        input("reads_per_s", p.reads_per_s_1h, "1h", Some(c.cold_reads_per_s)),
        input("bytes", p.bytes as f64, "now", Some(c.min_prefix_bytes as f64)),
    ]
}

/// The plan changing `b`'s prefix rules this period, if any prefix calls for one.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    c: &HotColdConfig,
    world: &World,
    b: &BucketView,
    rules: &Rules,
    admissible: &[String],
    state: &mut PrefixState,
    models: Option<&Models>,
) -> Option<Plan> {
    let present: BTreeSet<&str> = b.prefixes.iter().map(|p| p.prefix.as_str()).collect();
    state
        .heat
        .retain(|(bucket, p), _| bucket != &b.name || present.contains(p.as_str()));
    let bucket_ids = candidates::eligible(world, b);
    let mut changes: Vec<(String, Change)> = Vec::new();
    let (mut triggers, mut reasons, mut choices) = (Vec::new(), Vec::new(), Vec::new());
    let (mut inputs, mut options, mut expected, mut seen) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in &b.prefixes {
        let key = (b.name.clone(), p.prefix.clone());
        let h = state.heat.entry(key.clone()).or_default();
        step(c, h, p.reads_per_s, p.reads_per_s_1h);
        let temp = h.temp;
        let rule = b.policy.prefixes.iter().find(|r| r.prefix == p.prefix);
        let (k, m, eligible) = match rule {
            Some(r) => (r.k, r.m, r.eligible.clone().unwrap_or_default()),
            None => (b.policy.k, b.policy.m, bucket_ids.clone()),
        };
        let size = format!("{:.1} MiB", p.bytes as f64 / f64::from(1u32 << 20));
        let named = |o: OptionScore| OptionScore {
            option: format!("{}: {}", p.prefix, o.option),
            ..o
        };
        match temp {
            Temperature::Cold if p.bytes >= c.min_prefix_bytes => {
                let (current, opts, best) = cheaper_wider(c, world, rules, admissible, (k, m), &eligible);
                options.extend(opts.into_iter().map(named));
                let Some((k2, m2, ids, cost)) = best else { continue };
                triggers.push(format!(
                    "prefix {}: {:.4} reads/s over the last hour, below the cold threshold {}/s for {} periods",
                    p.prefix, p.reads_per_s_1h, c.cold_reads_per_s, c.cold_after_periods
                ));
                reasons.push(format!(
                    "prefix {} ({size}) is cold: {} on the cheapest backends costs {cost:.4} per GiB-month against {current:.4}",
                    p.prefix,
                    describe(k2, m2, &ids)
                ));
                choices.push(format!("{}: {}", p.prefix, describe(k2, m2, &ids)));
                expected.push(Effect {
                    metric: "cost_per_gib_month".into(),
                    subject: subject(&b.name, &p.prefix),
                    before: Some(current),
                    after: Some(cost),
                });
                inputs.extend(rate_inputs(b, p, c));
                seen.extend(eligible.iter().chain(&ids).cloned());
                changes.push((p.prefix.clone(), Change::Set { k: k2, m: m2, ids }));
            }
            Temperature::Hot if p.bytes >= c.min_prefix_bytes => {
                let Some(f) = faster(c, world, rules, admissible, (k, m), &eligible, models) else {
                    continue;
                };
                options.extend(f.options.into_iter().map(named));
                triggers.push(format!(
                    "prefix {}: {:.2} reads/s over the last minute, above the hot threshold {}/s for {} periods",
                    p.prefix, p.reads_per_s, c.hot_reads_per_s, c.hot_after_periods
                ));
                reasons.push(format!(
                    "prefix {} ({size}) is hot: the fastest backends {} have a worst p95 GET of {:.1} ms against {:.1} ms now",
                    p.prefix,
                    f.ids.join(", "),
                    f.after,
                    f.before
                ));
                choices.push(format!("{}: {}", p.prefix, describe(f.k, f.m, &f.ids)));
                expected.push(Effect {
                    metric: "worst_get_p95_ms".into(),
                    subject: subject(&b.name, &p.prefix),
                    before: Some(f.before),
                    after: Some(f.after),
                });
                inputs.extend(rate_inputs(b, p, c));
                seen.extend(eligible.iter().chain(&f.ids).cloned());
                changes.push((
                    p.prefix.clone(),
                    Change::Set {
                        k: f.k,
                        m: f.m,
                        ids: f.ids,
                    },
                ));
            }
            Temperature::Normal if rule.is_some() && state.ruled.contains(&key) => {
                triggers.push(format!("prefix {}: neither hot nor cold any more", p.prefix));
                reasons.push(format!(
                    "prefix {} is neither hot nor cold any more ({:.2} reads/s over the last minute, {:.4} over the hour): its keys go back to the bucket's {}",
                    p.prefix,
                    p.reads_per_s,
                    p.reads_per_s_1h,
                    describe(b.policy.k, b.policy.m, &bucket_ids)
                ));
                choices.push(format!("{}: the bucket's policy", p.prefix));
                options.push(OptionScore {
                    option: format!("{}: keep {}", p.prefix, describe(k, m, &eligible)),
                    score: None,
                    note: "the rule was made for a hot or cold prefix; this one is neither".into(),
                });
                inputs.extend(rate_inputs(b, p, c));
                changes.push((p.prefix.clone(), Change::Remove));
            }
            _ => {}
        }
    }
    if changes.is_empty() {
        return None;
    }
    // The bucket's rules as they are, with this period's changes.
    let mut list: Vec<PrefixPolicyRequest> = b.policy.prefixes.iter().map(Into::into).collect();
    for (prefix, change) in &changes {
        list.retain(|r| &r.prefix != prefix);
        let key = (b.name.clone(), prefix.clone());
        match change {
            Change::Set { k, m, ids } => {
                list.push(PrefixPolicyRequest {
                    prefix: prefix.clone(),
                    preset: None,
                    k: Some(*k),
                    m: Some(*m),
                    backends: Some(BackendsField::Ids(ids.clone())),
                });
                state.ruled.insert(key);
            }
            Change::Remove => {
                state.ruled.remove(&key);
            }
        }
    }
    list.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    let reason = format!("Bucket {}: {}.", b.name, reasons.join("; "));
    let command = serde_json::to_value(StoragePolicyRequest {
        prefixes: Some(list),
        reason: Some(reason.clone()),
        ..StoragePolicyRequest::default()
    })
    .ok()?;
    seen.sort();
    seen.dedup();
    inputs.extend(backend_inputs(world, &seen, rules));
    Some(candidates::plan(
        NAME,
        &b.name,
        command,
        Explanation {
            trigger: triggers.join("; "),
            inputs,
            options,
            choice: choices.join("; "),
            reason,
            expected,
        },
        Priority::default(),
    ))
}
