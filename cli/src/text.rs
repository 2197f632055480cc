//! Answers as text for people, shared by the command families: aligned tables, times, and an
//! intent in one line.

use control_api::BucketIntent;

/// Rows as `label  value` with the values aligned.
pub(crate) fn pairs<L: AsRef<str>>(rows: &[(L, String)]) -> String {
    let width = rows.iter().map(|(l, _)| l.as_ref().chars().count()).max().unwrap_or(0);
    rows.iter()
        .map(|(l, v)| {
            let l = l.as_ref();
            let pad = width - l.chars().count();
            format!("{l}{:pad$}  {v}\n", "")
        })
        .collect()
}

/// A table with a header, every column but the last padded to its widest cell.
pub(crate) fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                out.push_str(&format!("{cell}{:pad$}  ", ""));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A Unix-ms timestamp as UTC RFC 3339 to the second; `-` when absent.
pub(crate) fn time_ms(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A number as JSON writes it (`50.0`, not `50`); `-` for what JSON cannot hold.
pub(crate) fn number(v: f64) -> String {
    serde_json::Number::from_f64(v).map_or_else(|| "-".into(), |n| n.to_string())
}

/// `-` for an empty text.
pub(crate) fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_owned()
    }
}

/// An intent's constraints in one line (`redundancy=one max_latency=50ms gdpr`); `(none)` when
/// it has none.
pub(crate) fn intent_line(intent: &BucketIntent) -> String {
    let mut parts = Vec::new();
    if let Some(r) = intent.redundancy {
        parts.push(format!("redundancy={r}"));
    }
    if let Some(ms) = intent.max_latency {
        parts.push(format!("max_latency={ms}ms"));
    }
    if let Some(s) = intent.min_download_speed {
        parts.push(format!("min_download_speed={}MiB/s", number(s)));
    }
    if intent.gdpr {
        parts.push("gdpr".into());
    }
    if let Some(e) = intent.encryption {
        parts.push(format!("encryption={}", if e { "on" } else { "off" }));
    }
    if let Some(o) = intent.max_overhead {
        parts.push(format!("max_overhead={}", number(o)));
    }
    if let Some(c) = intent.max_cost_per_gib_month {
        parts.push(format!("max_cost={}/GiB-month", number(c)));
    }
    if let Some(t) = intent.min_trust {
        parts.push(format!("min_trust={}", number(t)));
    }
    if !intent.clusters.is_empty() {
        parts.push(format!("clusters={}", intent.clusters.join(",")));
    }
    if parts.is_empty() {
        "(none)".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_api::Redundancy;

    #[test]
    fn tables_align_and_drop_trailing_space() {
        assert_eq!(
            pairs(&[("a", "1".to_owned()), ("long", "2".to_owned())]),
            "a     1\nlong  2\n"
        );
        let t = columns(
            &["NAME", "N", "NOTE"],
            &[
                vec!["x".into(), "10".into(), "".into()],
                vec!["yyyy".into(), "1".into(), "ok".into()],
            ],
        );
        assert_eq!(t, "NAME  N   NOTE\nx     10\nyyyy  1   ok\n");
    }

    #[test]
    fn times_and_intents_read_well() {
        assert_eq!(time_ms(Some(1_764_300_000_123)), "2025-11-28T03:20:00Z");
        assert_eq!(time_ms(None), "-");
        assert_eq!(intent_line(&BucketIntent::default()), "(none)");
        let intent = BucketIntent {
            redundancy: Some(Redundancy::One),
            max_latency: Some(50),
            min_download_speed: Some(20.0),
            gdpr: true,
            encryption: Some(true),
            max_overhead: Some(1.5),
            max_cost_per_gib_month: Some(0.02),
            min_trust: Some(0.8),
            policy_update_token: Some("secret".into()),
            clusters: vec!["edge-1".into(), "edge-2".into()],
        };
        assert_eq!(
            intent_line(&intent),
            "redundancy=one max_latency=50ms min_download_speed=20.0MiB/s gdpr encryption=on max_overhead=1.5 max_cost=0.02/GiB-month min_trust=0.8 clusters=edge-1,edge-2"
        );
    }
}
