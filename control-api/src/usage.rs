//! What a bucket holds (`GET /api/v1/buckets/{bucket}/usage`): the logical size that storage
//! prices multiply, and that egress is weighed against.

use serde::{Deserialize, Serialize};

/// A bucket's committed objects, counted now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketUsage {
    /// Bucket.
    pub bucket: String,
    /// Objects.
    pub objects: u64,
    /// Their logical bytes (before erasure coding).
    pub bytes: u64,
    /// Key components a prefix has below (the gateway's `prefix_depth`; 0: none counted).
    #[serde(default)]
    pub prefix_depth: usize,
    /// Objects and bytes under each prefix (at most 1000, in key order; keys without a prefix
    /// at that depth count in the totals only).
    #[serde(default)]
    pub prefixes: Vec<PrefixUsage>,
}

/// What one key prefix of a bucket holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixUsage {
    /// The prefix (`photos/`).
    pub prefix: String,
    /// Objects under it.
    pub objects: u64,
    /// Their logical bytes.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_round_trips() {
        let u = BucketUsage {
            bucket: "logs".into(),
            objects: 3,
            bytes: 12_582_912,
            prefix_depth: 1,
            prefixes: vec![PrefixUsage {
                prefix: "2026/".into(),
                objects: 2,
                bytes: 8_388_608,
            }],
        };
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"bucket": "logs", "objects": 3, "bytes": 12_582_912, "prefix_depth": 1,
                               "prefixes": [{"prefix": "2026/", "objects": 2, "bytes": 8_388_608}]})
        );
        assert_eq!(serde_json::from_value::<BucketUsage>(v).unwrap(), u);
    }
}
