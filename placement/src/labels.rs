//! Backend labels and the selectors that pick the backends eligible for a bucket.
//!
//! A selector is written `region=eu,gdpr=true` (every label term must match) or `s3a,s3b,gcs1`
//! (any of the ids); both kinds may be mixed: `region=eu,local3` keeps backends matching all
//! label terms plus the listed ids.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What placement knows about a backend besides its id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendLabels {
    /// Who runs it (`aws`, `gcp`, `azure`, `local`, ...).
    #[serde(default)]
    pub provider: String,
    /// Where it is (`eu-west-1`, `eu`, ...).
    #[serde(default)]
    pub region: String,
    /// Whether data stored there stays under GDPR jurisdiction.
    #[serde(default)]
    pub gdpr: bool,
    /// Storage price, for cost-aware placement.
    #[serde(default)]
    pub cost_per_gib_month: f64,
    /// Egress price, for cost-aware reads.
    #[serde(default)]
    pub egress_per_gib: f64,
    /// Declared GET bandwidth, MiB/s: the capability trust measures the backend against
    /// (`None`: not declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mib_s: Option<f64>,
}

impl BackendLabels {
    /// The value of label `name`, as text, if such a label exists.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "provider" => self.provider.clone(),
            "region" => self.region.clone(),
            "gdpr" => self.gdpr.to_string(),
            "cost_per_gib_month" => self.cost_per_gib_month.to_string(),
            "egress_per_gib" => self.egress_per_gib.to_string(),
            "bandwidth_mib_s" => self.bandwidth_mib_s?.to_string(),
            _ => return None,
        })
    }
}

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A term names a label that does not exist.
    #[error("backend selector {selector:?}: unknown label {label:?} (known: provider, region, gdpr, cost_per_gib_month, egress_per_gib, bandwidth_mib_s)")]
    UnknownLabel {
        /// The selector as written.
        selector: String,
        /// The unknown label.
        label: String,
    },
    /// An empty term (`a,,b`) or an empty selector.
    #[error("backend selector {0:?} has an empty term")]
    Empty(String),
}

/// Which backends a bucket may use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendSelector {
    /// `label=value` terms, all of which must match.
    pub labels: Vec<(String, String)>,
    /// Backend ids, any of which is eligible.
    pub ids: Vec<String>,
}

impl BackendSelector {
    /// Whether the selector admits every backend.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.labels.is_empty() && self.ids.is_empty()
    }

    /// Whether backend `id` with `labels` is eligible.
    #[must_use]
    pub fn matches(&self, id: &str, labels: &BackendLabels) -> bool {
        if self.is_all() {
            return true;
        }
        let by_id = self.ids.iter().any(|i| i == id);
        let by_labels = !self.labels.is_empty()
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| have.eq_ignore_ascii_case(v)));
        by_id || by_labels
    }
}

impl FromStr for BackendSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut sel = Self::default();
        if s.trim().is_empty() {
            return Err(SelectorError::Empty(s.to_owned()));
        }
        for term in s.split(',').map(str::trim) {
            if term.is_empty() {
                return Err(SelectorError::Empty(s.to_owned()));
            }
            match term.split_once('=') {
                Some((k, v)) => {
                    let k = k.trim();
                    if BackendLabels::default().get(k).is_none() {
                        return Err(SelectorError::UnknownLabel {
                            selector: s.to_owned(),
                            label: k.to_owned(),
                        });
                    }
                    sel.labels.push((k.to_owned(), v.trim().to_owned()));
                }
                None => sel.ids.push(term.to_owned()),
            }
        }
        Ok(sel)
    }
}

impl fmt::Display for BackendSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(self.ids.iter().cloned())
            .collect();
        f.write_str(&terms.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(provider: &str, region: &str, gdpr: bool) -> BackendLabels {
        BackendLabels {
            provider: provider.into(),
            region: region.into(),
            gdpr,
            ..BackendLabels::default()
        }
    }

    #[test]
    fn selectors_match_labels_ids_and_mixtures() {
        let eu_aws = labels("aws", "eu", true);
        let us_gcp = labels("gcp", "us", false);
        let cases: &[(&str, &str, &BackendLabels, bool)] = &[
            ("region=eu", "a", &eu_aws, true),
            ("region=eu", "b", &us_gcp, false),
            ("region=EU", "a", &eu_aws, true),
            ("region=eu,gdpr=true", "a", &eu_aws, true),
            ("region=eu,provider=gcp", "a", &eu_aws, false),
            ("gdpr=false", "b", &us_gcp, true),
            ("a,c", "a", &eu_aws, true),
            ("a,c", "b", &us_gcp, false),
            ("region=eu,b", "b", &us_gcp, true),
        ];
        for (sel, id, l, want) in cases {
            let s: BackendSelector = sel.parse().unwrap();
            assert_eq!(s.matches(id, l), *want, "{sel} on {id}");
            assert_eq!(
                s.to_string().parse::<BackendSelector>().unwrap(),
                s,
                "round trip of {sel}"
            );
        }
    }

    #[test]
    fn bad_selectors_are_refused() {
        assert!(matches!(
            "colour=red".parse::<BackendSelector>(),
            Err(SelectorError::UnknownLabel { .. })
        ));
        assert!(matches!(
            "a,,b".parse::<BackendSelector>(),
            Err(SelectorError::Empty(_))
        ));
        assert!(matches!("".parse::<BackendSelector>(), Err(SelectorError::Empty(_))));
    }
}
