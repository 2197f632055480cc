//! Trust scores as metrics: `mlsysops.trust.score{mlsysops.subject}` and
//! `mlsysops.trust.index{mlsysops.subject, mlsysops.index}`, computed at each collection.

use crate::model::Reputation;
use telemetry::otel::{ObservableKind, Otel};

/// Registers the trust gauges on `otel`; they read `reputation` at each scrape or export.
pub fn export(reputation: &Reputation, otel: &Otel) {
    let r = reputation.clone();
    otel.observe_f64(
        "mlsysops.trust.score",
        "Trust score of a subject (backend, node, agent, principal), 0..1",
        "",
        ObservableKind::Gauge,
        move |observe| {
            for (subject, score, _) in r.scores_at(crate::now_ms()) {
                observe(score, &[("mlsysops.subject", &subject.to_string())]);
            }
        },
    );
    let r = reputation.clone();
    otel.observe_f64(
        "mlsysops.trust.index",
        "One index (identity, behaviour, capability) of a subject's trust, 0..1",
        "",
        ObservableKind::Gauge,
        move |observe| {
            for (subject, _, indexes) in r.scores_at(crate::now_ms()) {
                let name = subject.to_string();
                for (index, value) in &indexes {
                    observe(*value, &[("mlsysops.subject", &name), ("mlsysops.index", index)]);
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Evidence;
    use control_api::trust::EvidenceKind;
    use telemetry::otel::OtelConfig;

    #[test]
    fn scores_and_indexes_are_exported() {
        let otel = Otel::init(OtelConfig {
            service_name: "trust-test".into(),
            ..OtelConfig::default()
        })
        .unwrap();
        let r = Reputation::default();
        export(&r, &otel);
        let b1: crate::Subject = "backend:b1".parse().unwrap();
        r.record(Evidence::new(
            b1.clone(),
            EvidenceKind::Success,
            100.0,
            crate::now_ms(),
            "",
        ))
        .unwrap();
        r.set_capability(&b1, Some(0.5), None);
        let text = otel.prometheus_text();
        // The exporter orders labels as it likes: match them as a set.
        let value = |name: &str, labels: &[(&str, &str)]| {
            text.lines()
                .filter_map(|l| l.rsplit_once(' '))
                .find(|(series, _)| {
                    series
                        .strip_prefix(name)
                        .and_then(|r| r.strip_prefix('{'))
                        .is_some_and(|r| {
                            labels
                                .iter()
                                .all(|(k, v)| r.trim_end_matches('}').split(',').any(|l| l == format!("{k}=\"{v}\"")))
                        })
                })
                .unwrap_or_else(|| panic!("no {name} {labels:?} in {text}"))
                .1
                .parse::<f64>()
                .unwrap()
        };
        let score = value("mlsysops_trust_score", &[("mlsysops_subject", "backend:b1")]);
        let want = r.score(&b1).unwrap().score;
        assert!((score - want).abs() < 1e-3, "{score} vs {want}");
        assert_eq!(
            value(
                "mlsysops_trust_index",
                &[("mlsysops_subject", "backend:b1"), ("mlsysops_index", "capability")]
            ),
            0.5,
            "{text}"
        );
    }
}
