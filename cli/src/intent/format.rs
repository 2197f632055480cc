//! A bucket's intent as text.

use crate::text::{number, pairs, time_ms};
use control_api::IntentView;

/// An intent as a two-column table: where it comes from, then every constraint.
pub(super) fn format_intent(view: &IntentView) -> String {
    let i = &view.intent;
    let or = |v: Option<String>, absent: &str| v.unwrap_or_else(|| absent.to_owned());
    pairs(&[
        ("bucket", view.bucket.clone()),
        ("source", view.source.clone()),
        ("updated", time_ms(Some(view.updated_ms))),
        (
            "agents may change",
            if view.has_token {
                "yes (they hold its policy_update_token)".into()
            } else {
                "no (no policy_update_token given)".into()
            },
        ),
        ("redundancy", or(i.redundancy.map(|r| r.to_string()), "any")),
        ("max latency", or(i.max_latency.map(|ms| format!("{ms} ms")), "none")),
        (
            "min download speed",
            or(i.min_download_speed.map(|s| format!("{} MiB/s", number(s))), "none"),
        ),
        ("gdpr only", i.gdpr.to_string()),
        (
            "encryption",
            or(
                i.encryption.map(|e| if e { "on" } else { "off" }.to_owned()),
                "as the bucket has it",
            ),
        ),
        ("max overhead", or(i.max_overhead.map(number), "none")),
        (
            "max cost",
            or(
                i.max_cost_per_gib_month.map(|c| format!("{} per GiB-month", number(c))),
                "none",
            ),
        ),
        ("min trust", or(i.min_trust.map(number), "none")),
        (
            "clusters",
            if i.clusters.is_empty() {
                "any".into()
            } else {
                i.clusters.join(", ")
            },
        ),
        ("held by", or(view.cluster.clone(), "no cluster yet")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_api::{BucketIntent, Redundancy};

    #[test]
    fn an_intent_reads_as_a_table() {
        let view = IntentView {
            state: "applied".into(),
            error: None,
            bucket: "photos".into(),
            intent: BucketIntent {
                redundancy: Some(Redundancy::High),
                max_latency: Some(100),
                min_download_speed: Some(20.0),
                encryption: Some(false),
                max_cost_per_gib_month: Some(0.02),
                ..BucketIntent::default()
            },
            source: "operator".into(),
            has_token: true,
            updated_ms: 1_764_300_000_000,
            cluster: None,
        };
        assert_eq!(
            format_intent(&view),
            "\
bucket              photos
source              operator
updated             2025-11-28T03:20:00Z
agents may change   yes (they hold its policy_update_token)
redundancy          high
max latency         100 ms
min download speed  20.0 MiB/s
gdpr only           false
encryption          off
max overhead        none
max cost            0.02 per GiB-month
min trust           none
clusters            any
held by             no cluster yet
"
        );
        let bare = IntentView {
            state: "applied".into(),
            error: None,
            intent: BucketIntent::default(),
            has_token: false,
            ..view
        };
        let text = format_intent(&bare);
        let placed = format_intent(&IntentView {
            intent: BucketIntent {
                clusters: vec!["edge-1".into(), "edge-2".into()],
                ..BucketIntent::default()
            },
            cluster: Some("edge-2".into()),
            ..bare.clone()
        });
        assert!(
            placed.contains("clusters            edge-1, edge-2\nheld by             edge-2\n"),
            "{placed}"
        );
        assert!(
            text.contains("agents may change   no (no policy_update_token given)\n"),
            "{text}"
        );
        assert!(
            text.contains("redundancy          any\n") && text.contains("encryption          as the bucket has it\n")
        );
    }
}
