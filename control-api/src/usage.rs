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
        };
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"bucket": "logs", "objects": 3, "bytes": 12_582_912})
        );
        assert_eq!(serde_json::from_value::<BucketUsage>(v).unwrap(), u);
    }
}
