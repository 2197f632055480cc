//! How the gateway reads (`GET`/`PUT /api/v1/reads`): which shards a GET asks first, and
//! whether a lagging shard is hedged. Changeable at run time; the node agent turns hedging on
//! when a backend lags and off again when hedging only costs egress.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which shards a GET asks first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadStrategy {
    /// The k shards whose backends are predicted fastest (from telemetry), data shards
    /// preferred at equal speed.
    #[default]
    Latency,
    /// Data shards first, in order (no decoding when they all answer).
    DataFirst,
}

impl ReadStrategy {
    /// The name on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ReadStrategy::Latency => "latency",
            ReadStrategy::DataFirst => "data-first",
        }
    }
}

impl fmt::Display for ReadStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReadStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "latency" => Ok(ReadStrategy::Latency),
            "data-first" => Ok(ReadStrategy::DataFirst),
            _ => Err(format!("read strategy {s:?}: expected latency or data-first")),
        }
    }
}

/// How the gateway reads now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadSettings {
    /// Which shards a GET asks first.
    pub strategy: ReadStrategy,
    /// Whether a shard that lags past its backend's predicted p95 is hedged with one more.
    pub hedging: bool,
}

impl ReadSettings {
    /// Shards by predicted latency, laggards hedged (`read_strategy = "hedged"`, the default).
    pub const HEDGED: ReadSettings = ReadSettings {
        strategy: ReadStrategy::Latency,
        hedging: true,
    };
    /// Data shards first, never hedged (`read_strategy = "data-first"`).
    pub const DATA_FIRST: ReadSettings = ReadSettings {
        strategy: ReadStrategy::DataFirst,
        hedging: false,
    };
}

impl Default for ReadSettings {
    fn default() -> Self {
        Self::HEDGED
    }
}

/// A change of the read settings: any subset of the fields; absent ones keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadSettingsRequest {
    /// Which shards a GET asks first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<ReadStrategy>,
    /// Hedge lagging shards (`true`) or never (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedging: Option<bool>,
}

impl ReadSettingsRequest {
    /// Whether the request changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `current` with the fields this request gives replaced.
    #[must_use]
    pub fn applied_to(&self, current: ReadSettings) -> ReadSettings {
        ReadSettings {
            strategy: self.strategy.unwrap_or(current.strategy),
            hedging: self.hedging.unwrap_or(current.hedging),
        }
    }
}

impl From<ReadSettings> for ReadSettingsRequest {
    fn from(s: ReadSettings) -> Self {
        Self {
            strategy: Some(s.strategy),
            hedging: Some(s.hedging),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_read_as_documented() {
        // The example of docs/admin-api.md.
        let doc = json!({"strategy": "data-first", "hedging": false});
        let s: ReadSettings = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(s, ReadSettings::DATA_FIRST);
        assert_eq!(serde_json::to_value(s).unwrap(), doc);
        assert_eq!(
            serde_json::to_string(&ReadSettings::default()).unwrap(),
            r#"{"strategy":"latency","hedging":true}"#
        );
        assert!(serde_json::from_value::<ReadSettings>(json!({"strategy": "latency"})).is_err());
    }

    #[test]
    fn strategies_have_one_name_each() {
        for s in [ReadStrategy::Latency, ReadStrategy::DataFirst] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(s.as_str().parse::<ReadStrategy>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert!("hedged".parse::<ReadStrategy>().is_err());
        assert!(serde_json::from_value::<ReadStrategy>(json!("data_first")).is_err());
    }

    #[test]
    fn a_request_sends_only_its_fields_and_keeps_the_rest() {
        let off = ReadSettingsRequest {
            hedging: Some(false),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(off).unwrap(), json!({"hedging": false}));
        assert!(ReadSettingsRequest::default().is_empty() && !off.is_empty());
        assert_eq!(
            off.applied_to(ReadSettings::HEDGED),
            ReadSettings {
                strategy: ReadStrategy::Latency,
                hedging: false
            }
        );
        let latency: ReadSettingsRequest = serde_json::from_value(json!({"strategy": "latency"})).unwrap();
        assert_eq!(
            latency.applied_to(ReadSettings::DATA_FIRST).strategy,
            ReadStrategy::Latency
        );
        assert!(!latency.applied_to(ReadSettings::DATA_FIRST).hedging);
        assert_eq!(
            ReadSettingsRequest::from(ReadSettings::HEDGED).applied_to(ReadSettings::DATA_FIRST),
            ReadSettings::HEDGED
        );
        assert!(serde_json::from_value::<ReadSettingsRequest>(json!({"hedge": true})).is_err());
        assert!(serde_json::from_value::<ReadSettingsRequest>(json!({"hedging": "yes"})).is_err());
        assert!(serde_json::from_value::<ReadSettingsRequest>(json!({"strategy": "fast"})).is_err());
    }
}
