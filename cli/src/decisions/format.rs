//! Decisions as text: the log as a table, one line per followed decision.

use crate::text::{columns, time_ms};
use control_api::Decision;

/// The log as a table, in the order given (the API's: newest first).
pub(super) fn format_decisions(decisions: &[Decision]) -> String {
    if decisions.is_empty() {
        return "no decision recorded\n".into();
    }
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            vec![
                time_ms(Some(d.at_ms)),
                d.id.clone(),
                d.status.as_str().to_owned(),
                d.policy.clone(),
                d.target.clone(),
                d.choice.clone(),
                reason_with_status(d),
            ]
        })
        .collect();
    columns(&["TIME", "ID", "STATUS", "POLICY", "TARGET", "CHOICE", "REASON"], &rows)
}

/// One decision on one line, for `--follow` (fixed columns: later lines cannot realign).
pub(super) fn decision_line(d: &Decision) -> String {
    format!(
        "{}  {:<11}  {}  {}  {}  {}: {}",
        time_ms(Some(d.at_ms)),
        d.status.as_str(),
        d.id,
        d.policy,
        d.target,
        d.choice,
        reason_with_status(d)
    )
}

/// The reason, and why the decision has its status when that is not plain success.
pub(super) fn reason_with_status(d: &Decision) -> String {
    if d.status_reason.is_empty() {
        d.reason.clone()
    } else {
        format!("{} [{}: {}]", d.reason, d.status.as_str(), d.status_reason)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use control_api::{DecisionStatus, MetricInput, OptionScore};
    use serde_json::json;

    /// An SLO keeper's decision draining a slow backend from `photos`.
    pub(in crate::decisions) fn decision() -> Decision {
        Decision {
            undo: None,
            id: "0190a-d1".into(),
            at_ms: 1_764_300_000_000,
            agent: "cluster".into(),
            policy: "slo-keeper".into(),
            mechanism: "ccstorage".into(),
            target: "bucket/photos".into(),
            bucket: Some("photos".into()),
            trigger: "backend aws-us over max_latency".into(),
            inputs: vec![
                MetricInput {
                    metric: "get_p95_ms".into(),
                    subject: "backend/aws-us".into(),
                    value: Some(412.0),
                    window: "1m".into(),
                    target: Some(100.0),
                },
                MetricInput {
                    metric: "bandwidth_mib_s".into(),
                    subject: "backend/aws-us".into(),
                    value: None,
                    window: "1m".into(),
                    target: None,
                },
            ],
            options: vec![
                OptionScore {
                    option: "ec-4-2 on aws-eu,gcp-eu".into(),
                    score: Some(0.82),
                    note: "meets every target".into(),
                },
                OptionScore {
                    option: "keep aws-us".into(),
                    score: None,
                    note: "misses max_latency".into(),
                },
            ],
            choice: "drain aws-us".into(),
            command: json!({"backends": "aws-eu,gcp-eu"}),
            reason: "aws-us p95 GET 412 ms exceeds max_latency 100 ms.".into(),
            expected: vec![],
            observed: vec![],
            status: DecisionStatus::Applied,
            status_reason: String::new(),
            rollback_of: None,
            epoch: Some(7),
            updated_ms: 1_764_300_001_000,
        }
    }

    #[test]
    fn the_log_reads_as_a_table() {
        let mut superseded = decision();
        superseded.id = "0190a-d0".into();
        superseded.at_ms -= 60_000;
        superseded.policy = "cost".into();
        superseded.choice = "ec-6-2 on cheap".into();
        superseded.reason = "cheaper.".into();
        superseded.status = DecisionStatus::Superseded;
        superseded.status_reason = "0190a-d1 (slo-keeper) won".into();
        assert_eq!(
            format_decisions(&[decision(), superseded.clone()]),
            "\
TIME                  ID        STATUS      POLICY      TARGET         CHOICE           REASON
2025-11-28T03:20:00Z  0190a-d1  applied     slo-keeper  bucket/photos  drain aws-us     aws-us p95 GET 412 ms exceeds max_latency 100 ms.
2025-11-28T03:19:00Z  0190a-d0  superseded  cost        bucket/photos  ec-6-2 on cheap  cheaper. [superseded: 0190a-d1 (slo-keeper) won]
"
        );
        assert_eq!(format_decisions(&[]), "no decision recorded\n");
        assert_eq!(
            decision_line(&superseded),
            "2025-11-28T03:19:00Z  superseded   0190a-d0  cost  bucket/photos  ec-6-2 on cheap: cheaper. [superseded: 0190a-d1 (slo-keeper) won]"
        );
    }
}
