//! `mlsysops why`: a bucket's storage policy, its intent, the decisions about it, and a
//! paragraph on why its data is where it is.

use super::format::reason_with_status;
use crate::text::{columns, intent_line, or_dash, pairs, time_ms};
use control_api::{Decision, DecisionStatus, IntentView, MetricInput, StoragePolicyView};

/// How many of a decision's inputs and options the paragraph names.
const NAMED: usize = 4;

/// The whole answer of `why`.
pub(super) fn format_why(policy: &StoragePolicyView, intent: Option<&IntentView>, decisions: &[Decision]) -> String {
    let backends = if policy.backends.is_empty() {
        "(all)".to_owned()
    } else {
        policy.backends.clone()
    };
    let eligible = match policy.eligible.as_deref() {
        None => "-".to_owned(),
        Some([]) => "(none)".to_owned(),
        Some(ids) => ids.join(", "),
    };
    let by = if policy.automatic {
        format!("{} (an agent)", policy.changed_by)
    } else {
        policy.changed_by.clone()
    };
    let intent_text = match intent {
        Some(i) => format!("{} (from {})", intent_line(&i.intent), i.source),
        None => "(none: the agents keep the storage policy as it is)".into(),
    };
    let mut out = pairs(&[
        ("bucket", policy.bucket.clone()),
        (
            "storage policy",
            format!(
                "{} (k={}, m={}), epoch {}",
                policy.preset, policy.k, policy.m, policy.epoch
            ),
        ),
        ("backends", backends),
        ("eligible now", eligible),
        ("encryption", policy.server_side_encryption.clone()),
        ("changed", format!("{} by {by}", time_ms(Some(policy.changed_ms)))),
        ("reason", or_dash(&policy.reason)),
        ("intent", intent_text),
    ]);
    out.push('\n');
    if decisions.is_empty() {
        out.push_str("no decision about this bucket recorded\n");
    } else {
        out.push_str("decisions, newest first:\n");
        let rows: Vec<Vec<String>> = decisions
            .iter()
            .map(|d| {
                vec![
                    time_ms(Some(d.at_ms)),
                    d.policy.clone(),
                    d.choice.clone(),
                    d.status.as_str().to_owned(),
                    reason_with_status(d),
                ]
            })
            .collect();
        out.push_str(&columns(&["TIME", "POLICY", "CHOICE", "STATUS", "REASON"], &rows));
    }
    out.push('\n');
    out.push_str(&format!("why: {}\n", why_paragraph(policy, decisions)));
    out
}

/// Why the bucket's data is where it is: from the person who last set the policy, or from the
/// applied decision that made the current epoch (else the latest applied one).
pub(super) fn why_paragraph(policy: &StoragePolicyView, decisions: &[Decision]) -> String {
    let reason = if policy.reason.is_empty() {
        "no reason given"
    } else {
        policy.reason.as_str()
    };
    if !policy.automatic {
        return format!(
            "set by {}: {reason} (epoch {}, {}).",
            policy.changed_by,
            policy.epoch,
            time_ms(Some(policy.changed_ms))
        );
    }
    let applied = |d: &&Decision| matches!(d.status, DecisionStatus::Applied | DecisionStatus::Pending);
    let made_this_epoch = decisions.iter().filter(applied).find(|d| d.epoch == Some(policy.epoch));
    let Some(d) = made_this_epoch.or_else(|| decisions.iter().find(applied)) else {
        return format!(
            "changed by the agent {} at {}: {reason} (no applied decision about this bucket is in the log).",
            policy.changed_by,
            time_ms(Some(policy.changed_ms))
        );
    };
    let mut text = format!(
        "policy {} of agent {} chose {} at {} (decision {}",
        d.policy,
        d.agent,
        d.choice,
        time_ms(Some(d.at_ms)),
        d.id
    );
    if let Some(epoch) = d.epoch {
        text.push_str(&format!(", epoch {epoch}"));
    }
    if d.status == DecisionStatus::Pending {
        text.push_str(", its migration still running");
    }
    text.push_str(&format!("): {}", d.reason.trim_end_matches('.')));
    if !d.trigger.is_empty() {
        text.push_str(&format!(", triggered by {}", d.trigger));
    }
    text.push('.');
    if !d.inputs.is_empty() {
        let inputs: Vec<String> = d.inputs.iter().take(NAMED).map(input_text).collect();
        let more = more(d.inputs.len());
        text.push_str(&format!(" It read {}{more}.", inputs.join("; ")));
    }
    if !d.options.is_empty() {
        let options: Vec<String> = d
            .options
            .iter()
            .take(NAMED)
            .map(|o| match o.score {
                Some(s) => format!("{} (score {s:.2})", o.option),
                None => format!("{} (ruled out: {})", o.option, o.note),
            })
            .collect();
        let more = more(d.options.len());
        text.push_str(&format!(" It weighed {}{more}.", options.join(", ")));
    }
    text
}

/// `, and N more` past the first few.
fn more(n: usize) -> String {
    if n > NAMED {
        format!(", and {} more", n - NAMED)
    } else {
        String::new()
    }
}

/// `get_p95_ms of backend/aws-us = 412.0 over 1m (target 100.0)`.
fn input_text(i: &MetricInput) -> String {
    let value = i.value.map_or_else(|| "no samples".to_owned(), |v| format!("{v:.1}"));
    let target = i.target.map(|t| format!(" (target {t:.1})")).unwrap_or_default();
    format!("{} of {} = {value} over {}{target}", i.metric, i.subject, i.window)
}

#[cfg(test)]
mod tests {
    use super::super::format::tests::decision;
    use super::*;
    use control_api::{BucketIntent, LocationRestrictions, Redundancy};

    fn policy(automatic: bool) -> StoragePolicyView {
        StoragePolicyView {
            bucket: "photos".into(),
            epoch: 7,
            preset: "ec-4-2".into(),
            k: 4,
            m: 2,
            block_size: 1 << 20,
            backends: "aws-eu,gcp-eu".into(),
            eligible: Some(vec!["aws-eu".into(), "gcp-eu".into()]),
            encryption: true,
            server_side_encryption: "on".into(),
            redundancy: Some(Redundancy::One),
            max_latency: Some(100),
            min_download_speed: None,
            location_restrictions: LocationRestrictions::default(),
            automatic_updates: true,
            changed_ms: 1_764_300_001_000,
            changed_by: if automatic { "agent:cluster" } else { "alice" }.into(),
            automatic,
            reason: if automatic { "drain aws-us" } else { "move to EU" }.into(),
            warnings: None,
            prefixes: Vec::new(),
        }
    }

    #[test]
    fn the_latest_applied_decision_explains_an_automatic_policy() {
        let mut older = decision();
        older.id = "old".into();
        older.epoch = Some(6);
        older.at_ms -= 3_600_000;
        let mut dampened = decision();
        dampened.id = "late".into();
        dampened.status = DecisionStatus::Dampened;
        dampened.at_ms += 60_000;
        let text = why_paragraph(&policy(true), &[dampened, decision(), older]);
        assert_eq!(
            text,
            "policy slo-keeper of agent cluster chose drain aws-us at 2025-11-28T03:20:00Z (decision 0190a-d1, epoch 7): \
             aws-us p95 GET 412 ms exceeds max_latency 100 ms, triggered by backend aws-us over max_latency. \
             It read get_p95_ms of backend/aws-us = 412.0 over 1m (target 100.0); bandwidth_mib_s of backend/aws-us = no samples over 1m. \
             It weighed ec-4-2 on aws-eu,gcp-eu (score 0.82), keep aws-us (ruled out: misses max_latency)."
        );
        // No decision for this epoch: the newest applied one.
        let mut pending = decision();
        pending.epoch = None;
        pending.status = DecisionStatus::Pending;
        pending.inputs.clear();
        pending.options.clear();
        pending.trigger.clear();
        assert_eq!(
            why_paragraph(&policy(true), &[pending]),
            "policy slo-keeper of agent cluster chose drain aws-us at 2025-11-28T03:20:00Z (decision 0190a-d1, \
             its migration still running): aws-us p95 GET 412 ms exceeds max_latency 100 ms."
        );
        assert_eq!(
            why_paragraph(&policy(true), &[]),
            "changed by the agent agent:cluster at 2025-11-28T03:20:01Z: drain aws-us (no applied decision about this bucket is in the log)."
        );
    }

    #[test]
    fn a_human_change_is_named_as_such() {
        assert_eq!(
            why_paragraph(&policy(false), &[decision()]),
            "set by alice: move to EU (epoch 7, 2025-11-28T03:20:01Z)."
        );
        let mut silent = policy(false);
        silent.reason.clear();
        assert!(why_paragraph(&silent, &[]).starts_with("set by alice: no reason given"));
    }

    #[test]
    fn the_whole_answer_is_aligned_text() {
        let intent = IntentView {
            state: "applied".into(),
            error: None,
            bucket: "photos".into(),
            intent: BucketIntent {
                max_latency: Some(100),
                ..BucketIntent::default()
            },
            source: "app:photo-ai".into(),
            has_token: true,
            updated_ms: 0,
            cluster: None,
        };
        let mut d = decision();
        d.inputs.clear();
        d.options.clear();
        assert_eq!(
            format_why(&policy(true), Some(&intent), &[d]),
            "\
bucket          photos
storage policy  ec-4-2 (k=4, m=2), epoch 7
backends        aws-eu,gcp-eu
eligible now    aws-eu, gcp-eu
encryption      on
changed         2025-11-28T03:20:01Z by agent:cluster (an agent)
reason          drain aws-us
intent          max_latency=100ms (from app:photo-ai)

decisions, newest first:
TIME                  POLICY      CHOICE        STATUS   REASON
2025-11-28T03:20:00Z  slo-keeper  drain aws-us  applied  aws-us p95 GET 412 ms exceeds max_latency 100 ms.

why: policy slo-keeper of agent cluster chose drain aws-us at 2025-11-28T03:20:00Z (decision 0190a-d1, epoch 7): \
aws-us p95 GET 412 ms exceeds max_latency 100 ms, triggered by backend aws-us over max_latency.
"
        );
        let text = format_why(&policy(false), None, &[]);
        assert!(
            text.contains("intent          (none: the agents keep the storage policy as it is)\n"),
            "{text}"
        );
        assert!(text.contains("no decision about this bucket recorded\n"));
        assert!(
            text.ends_with("why: set by alice: move to EU (epoch 7, 2025-11-28T03:20:01Z).\n"),
            "{text}"
        );
    }
}
