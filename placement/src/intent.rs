//! The MLSysOps bucket fields an operator or agent states, besides k and m: how much
//! redundancy a bucket demands, its latency and bandwidth targets and where data may live.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How many backend losses a bucket must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redundancy {
    /// At least two (m >= 2).
    High,
    /// At least one (m >= 1).
    One,
    /// None required (m may be 0).
    None,
}

impl Redundancy {
    /// The fewest parity shards that meet it; also the m chosen when only redundancy is given.
    #[must_use]
    pub fn min_parity(self) -> u8 {
        match self {
            Redundancy::High => 2,
            Redundancy::One => 1,
            Redundancy::None => 0,
        }
    }
}

impl fmt::Display for Redundancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Redundancy::High => "high",
            Redundancy::One => "one",
            Redundancy::None => "none",
        })
    }
}

impl FromStr for Redundancy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" => Ok(Redundancy::High),
            "one" => Ok(Redundancy::One),
            "none" => Ok(Redundancy::None),
            _ => Err(format!("redundancy {s:?}: expected high, one or none")),
        }
    }
}

/// Targets and restrictions a bucket carries besides its code; placement and the agents
/// read them, and the policy API refuses codes that contradict them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketIntent {
    /// Backend losses the bucket must survive (absent: not constrained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<Redundancy>,
    /// Highest acceptable GET latency per backend, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<u64>,
    /// Lowest acceptable download bandwidth per backend, MiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_download_mib_s: Option<f64>,
    /// Data may only be stored on backends labelled `gdpr=true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gdpr: bool,
}

impl BucketIntent {
    /// Why parity `m` does not meet the stated redundancy, if it does not.
    #[must_use]
    pub fn parity_shortfall(&self, m: u8) -> Option<String> {
        let r = self.redundancy?;
        (m < r.min_parity()).then(|| {
            format!(
                "redundancy {r} needs at least {} parity shards (m >= {}), the policy has m = {m}",
                r.min_parity(),
                r.min_parity()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redundancy_parses_and_bounds_parity() {
        let cases = [("high", 2), ("ONE", 1), (" none ", 0)];
        for (s, m) in cases {
            let r: Redundancy = s.parse().unwrap();
            assert_eq!(r.min_parity(), m, "{s}");
            assert_eq!(r.to_string().parse::<Redundancy>().unwrap(), r);
        }
        assert!("two".parse::<Redundancy>().is_err());
        let high = BucketIntent {
            redundancy: Some(Redundancy::High),
            ..BucketIntent::default()
        };
        assert!(high.parity_shortfall(1).unwrap().contains("m >= 2"));
        assert!(high.parity_shortfall(2).is_none());
        assert!(BucketIntent::default().parity_shortfall(0).is_none());
    }
}
