//! Classification of a flagged window by the features that deviate most.

use control_api::{AnomalyClass, DeviationView};

use crate::features::{Feature, Kind};

/// One feature's deviation in a judged window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Deviation {
    /// The feature.
    pub feature: Feature,
    /// Its raw value.
    pub value: f64,
    /// The baseline's median in raw units (the peers' at cold start).
    pub baseline: f64,
    /// Robust z in the harmful direction (negative: better than usual).
    pub z: f64,
    /// Whether the feature broke its absolute limit.
    pub over_limit: bool,
}

impl Deviation {
    /// As the API shows it.
    #[must_use]
    pub fn view(&self) -> DeviationView {
        DeviationView {
            feature: self.feature.name().to_owned(),
            value: round(self.value),
            baseline: round(self.baseline),
            z: round(self.z),
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The class of an anomaly of a `kind` subject explained by `top` (most deviating first).
///
/// Checksum failures make it tampering whatever else moved: stored data changed, which no
/// latency or client behaviour explains. Otherwise each class collects the z of its features
/// and the largest wins; a feature's class follows what it measures (latency and errors are a
/// backend's own malfunction, signatures and request mix are a client's behaviour), so a slow
/// and erratic backend cannot come out as an attack. Without an explanation, the subject's
/// kind decides.
#[must_use]
pub fn classify(kind: Kind, top: &[Deviation]) -> AnomalyClass {
    if top.iter().any(|d| d.feature.class() == AnomalyClass::Tampering) {
        return AnomalyClass::Tampering;
    }
    let weight = |c: AnomalyClass| -> f64 {
        top.iter()
            .filter(|d| d.feature.class() == c)
            .map(|d| if d.over_limit { d.z.max(1.0) + 6.0 } else { d.z.max(0.0) })
            .sum()
    };
    let (m, a) = (weight(AnomalyClass::Malfunction), weight(AnomalyClass::Attack));
    if m == 0.0 && a == 0.0 {
        return match kind {
            Kind::Principal => AnomalyClass::Attack,
            Kind::Backend | Kind::Node => AnomalyClass::Malfunction,
        };
    }
    if a > m {
        AnomalyClass::Attack
    } else {
        AnomalyClass::Malfunction
    }
}

/// One sentence naming the subject, the class and the top deviations.
#[must_use]
pub fn summary(subject: &str, class: AnomalyClass, top: &[Deviation]) -> String {
    let what = match class {
        AnomalyClass::Malfunction => "malfunctions",
        AnomalyClass::Attack => "behaves like an attack",
        AnomalyClass::Tampering => "returns data that fails its checksums (tampering)",
    };
    if top.is_empty() {
        return format!("{subject} {what}: its features as a whole left its baseline");
    }
    let parts: Vec<String> = top
        .iter()
        .map(|d| {
            format!(
                "{} {} against a usual {} (z {:.1}{})",
                d.feature.name(),
                short(d.value),
                short(d.baseline),
                d.z,
                if d.over_limit { ", over its limit" } else { "" }
            )
        })
        .collect();
    format!("{subject} {what}: {}", parts.join("; "))
}

fn short(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}").trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(feature: Feature, z: f64) -> Deviation {
        Deviation {
            feature,
            value: 1.0,
            baseline: 0.0,
            z,
            over_limit: false,
        }
    }

    #[test]
    fn checksum_failures_are_tampering_whatever_else_moved() {
        let top = [dev(Feature::GetP95Ms, 40.0), dev(Feature::ChecksumFailuresPerS, 2.0)];
        assert_eq!(classify(Kind::Backend, &top), AnomalyClass::Tampering);
    }

    #[test]
    fn slow_and_erratic_is_malfunction_and_bad_signatures_are_attack() {
        let slow = [
            dev(Feature::GetP95Ms, 30.0),
            dev(Feature::GetJitter, 12.0),
            dev(Feature::CallsPerS, 1.0),
        ];
        assert_eq!(classify(Kind::Backend, &slow), AnomalyClass::Malfunction);
        let sigs = [dev(Feature::AuthFailuresPerS, 50.0), dev(Feature::DeniedShare, 20.0)];
        assert_eq!(classify(Kind::Principal, &sigs), AnomalyClass::Attack);
        assert_eq!(classify(Kind::Principal, &[]), AnomalyClass::Attack);
        assert_eq!(classify(Kind::Node, &[]), AnomalyClass::Malfunction);
    }

    #[test]
    fn the_summary_names_subject_class_and_features() {
        let s = summary("backend:b1", AnomalyClass::Malfunction, &[dev(Feature::GetP95Ms, 30.0)]);
        assert_eq!(s, "backend:b1 malfunctions: get_p95_ms 1 against a usual 0 (z 30.0)");
    }
}
