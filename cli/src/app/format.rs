//! Applications as text: one app with its buckets, the list, a removal.

use crate::text::{columns, intent_line, pairs, time_ms};
use control_api::{AppView, IntentView};

/// One application: its name, deployment time and components, then a table of its buckets.
pub(super) fn format_app(app: &AppView) -> String {
    let mut out = pairs(&[
        ("app", app.name.clone()),
        ("deployed", time_ms(Some(app.deployed_ms))),
        ("components", app.components.join(", ")),
    ]);
    if app.buckets.is_empty() {
        out.push_str("buckets     (none)\n");
    } else {
        out.push('\n');
        out.push_str(&bucket_table(&app.buckets));
    }
    out
}

/// Buckets with where their intent comes from, whether the agents may change their policy, and
/// the intent.
fn bucket_table(buckets: &[IntentView]) -> String {
    let rows: Vec<Vec<String>> = buckets
        .iter()
        .map(|b| {
            vec![
                b.bucket.clone(),
                b.source.clone(),
                if b.has_token { "yes" } else { "no" }.into(),
                intent_line(&b.intent),
            ]
        })
        .collect();
    columns(&["BUCKET", "SOURCE", "AGENTS MAY CHANGE", "INTENT"], &rows)
}

/// The deployed applications, one line each.
pub(super) fn format_apps(apps: &[AppView]) -> String {
    if apps.is_empty() {
        return "no application deployed\n".into();
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            let buckets: Vec<&str> = a.buckets.iter().map(|b| b.bucket.as_str()).collect();
            vec![
                a.name.clone(),
                time_ms(Some(a.deployed_ms)),
                a.components.join(","),
                if buckets.is_empty() {
                    "-".into()
                } else {
                    buckets.join(",")
                },
            ]
        })
        .collect();
    columns(&["NAME", "DEPLOYED", "COMPONENTS", "BUCKETS"], &rows)
}

/// What removing an application did (and did not).
pub(super) fn format_removed(app: &AppView) -> String {
    if app.buckets.is_empty() {
        return format!("removed app {}\n", app.name);
    }
    let buckets: Vec<&str> = app.buckets.iter().map(|b| b.bucket.as_str()).collect();
    format!(
        "removed app {}; its buckets keep their data and storage policy: {}\n",
        app.name,
        buckets.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_api::{BucketIntent, Redundancy};

    fn photo_ai() -> AppView {
        AppView {
            name: "photo-ai".into(),
            deployed_ms: 1_764_300_000_000,
            components: vec!["infer".into(), "train".into()],
            buckets: vec![
                IntentView {
                    state: "applied".into(),
                    error: None,
                    bucket: "photos".into(),
                    intent: BucketIntent {
                        redundancy: Some(Redundancy::One),
                        max_latency: Some(50),
                        gdpr: true,
                        ..BucketIntent::default()
                    },
                    source: "app:photo-ai".into(),
                    has_token: true,
                    updated_ms: 1_764_300_000_000,
                    cluster: None,
                },
                IntentView {
                    state: "applied".into(),
                    error: None,
                    bucket: "models".into(),
                    intent: BucketIntent::default(),
                    source: "app:photo-ai".into(),
                    has_token: false,
                    updated_ms: 1_764_300_000_000,
                    cluster: None,
                },
            ],
        }
    }

    #[test]
    fn an_app_shows_its_buckets_as_a_table() {
        assert_eq!(
            format_app(&photo_ai()),
            "\
app         photo-ai
deployed    2025-11-28T03:20:00Z
components  infer, train

BUCKET  SOURCE        AGENTS MAY CHANGE  INTENT
photos  app:photo-ai  yes                redundancy=one max_latency=50ms gdpr
models  app:photo-ai  no                 (none)
"
        );
        let bare = AppView {
            buckets: vec![],
            ..photo_ai()
        };
        assert!(format_app(&bare).ends_with("buckets     (none)\n"));
    }

    #[test]
    fn the_list_and_a_removal() {
        let other = AppView {
            name: "logs".into(),
            components: vec!["ship".into()],
            buckets: vec![],
            ..photo_ai()
        };
        assert_eq!(
            format_apps(&[photo_ai(), other.clone()]),
            "\
NAME      DEPLOYED              COMPONENTS   BUCKETS
photo-ai  2025-11-28T03:20:00Z  infer,train  photos,models
logs      2025-11-28T03:20:00Z  ship         -
"
        );
        assert_eq!(format_apps(&[]), "no application deployed\n");
        assert_eq!(
            format_removed(&photo_ai()),
            "removed app photo-ai; its buckets keep their data and storage policy: photos, models\n"
        );
        assert_eq!(format_removed(&other), "removed app logs\n");
    }
}
