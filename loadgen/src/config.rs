//! What a benchmark runs.

use crate::BenchError;
use std::str::FromStr;
use std::time::Duration;

/// Which operations the workers issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// PutObject of fresh keys.
    Put,
    /// GetObject of prepared objects.
    Get,
    /// GetObject with probability `read_ratio`, else PutObject overwriting a prepared key.
    Mixed,
    /// ListObjectsV2 pages over the prepared objects.
    List,
    /// Multipart uploads (create, parts of `part_size`, complete) of fresh keys.
    Multipart,
}

impl FromStr for Workload {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "put" => Self::Put,
            "get" => Self::Get,
            "mixed" => Self::Mixed,
            "list" => Self::List,
            "multipart" => Self::Multipart,
            other => {
                return Err(BenchError::Config(format!(
                    "unknown workload {other:?}: put, get, mixed, list or multipart"
                )))
            }
        })
    }
}

/// A benchmark run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchConfig {
    /// S3 endpoint URL.
    pub endpoint: String,
    /// Region to sign for.
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key (never serialized).
    #[serde(skip)]
    pub secret_key: String,
    /// Bucket to use; created when missing.
    pub bucket: String,
    /// Key prefix of every object the run touches.
    pub prefix: String,
    /// The operations.
    pub workload: Workload,
    /// Object size, bytes.
    pub object_size: u64,
    /// Part size of multipart uploads, bytes.
    pub part_size: u64,
    /// Objects prepared for get/mixed/list.
    pub objects: usize,
    /// Operations in flight.
    pub concurrency: usize,
    /// Stop after this long (the first of `duration` and `max_ops`).
    pub duration: Duration,
    /// Stop after this many operations.
    pub max_ops: Option<u64>,
    /// Share of GETs in the mixed workload.
    pub read_ratio: f64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl BenchConfig {
    /// Checks that the numbers make sense together.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Config(m.to_owned()));
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if self.duration.is_zero() && self.max_ops.is_none() {
            return bad("give a duration or a number of operations");
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return bad("read ratio must be within 0..=1");
        }
        if matches!(self.workload, Workload::Get | Workload::Mixed | Workload::List) && self.objects == 0 {
            return bad("get, mixed and list need at least one prepared object");
        }
        if self.workload == Workload::Multipart && self.part_size < 5 << 20 {
            return bad("multipart parts must be at least 5 MiB (S3's minimum)");
        }
        Ok(())
    }
}

/// Parses `1024`, `64KiB`, `8MiB`, `1GiB` (also `k`, `m`, `g`, `KB`... as binary units).
pub fn parse_size(s: &str) -> Result<u64, BenchError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| BenchError::Config(format!("size {s:?}: expected a number with an optional unit")))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(BenchError::Config(format!("size {s:?}: unknown unit {other:?}"))),
    };
    n.checked_mul(mult)
        .ok_or_else(|| BenchError::Config(format!("size {s:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        for (s, want) in [
            ("0", 0),
            ("1024", 1024),
            ("64KiB", 65536),
            ("8m", 8 << 20),
            ("1 GiB", 1 << 30),
        ] {
            assert_eq!(parse_size(s).unwrap(), want, "{s}");
        }
        for s in ["", "MiB", "1XB", "-1"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
    }

    #[test]
    fn workloads_parse() {
        assert_eq!("mixed".parse::<Workload>().unwrap(), Workload::Mixed);
        assert!("delete".parse::<Workload>().is_err());
    }
}
