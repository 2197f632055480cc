//! Redundancy and repair: `GET /api/v1/redundancy` and the answers of a heal or scrub pass run
//! on demand (`POST /api/v1/heal`, `POST /api/v1/scrub`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Redundancy per bucket, the repair queue, healer and scrubber counters, backend health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedundancyView {
    /// Objects of each bucket by how much redundancy they have left.
    pub buckets: BTreeMap<String, BucketRedundancy>,
    /// Shards queued for repair.
    pub repair_queue: usize,
    /// Shards still being written after their PUT was acknowledged.
    pub straggling_shards: usize,
    /// The healer's counters since start.
    pub healer: HealerCounters,
    /// The scrubber's counters since start.
    pub scrubber: ScrubberCounters,
    /// Every configured backend, in configuration order.
    pub backends: Vec<BackendHealth>,
}

/// Objects of one bucket by how much redundancy they have left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRedundancy {
    /// No shard queued for repair.
    pub full: u64,
    /// Some shards queued for repair, still rebuildable.
    pub degraded: u64,
    /// Some block the healer found with fewer than k verified shards (until a backend returns).
    pub unreadable: u64,
}

/// The healer's counters since start (fields in the order the API has always sent them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealerCounters {
    /// Bytes of rebuilt shards written.
    pub bytes_written: u64,
    /// Queue entries dropped (their set was deleted meanwhile).
    pub dropped: u64,
    /// Rebuilds that failed.
    pub failures: u64,
    /// Passes over the repair queue.
    pub passes: u64,
    /// Shards rebuilt.
    pub shards_repaired: u64,
}

/// The scrubber's counters since start (fields in the order the API has always sent them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubberCounters {
    /// Shard blocks whose CRC32C was checked.
    pub blocks_checked: u64,
    /// Shard bytes read.
    pub bytes_read: u64,
    /// Blocks whose checksum did not match.
    pub corrupt_blocks: u64,
    /// Shards not found on their backend.
    pub missing_shards: u64,
    /// Passes over every live set.
    pub passes: u64,
    /// Shards read.
    pub shards_checked: u64,
}

/// One backend's health as the router sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendHealth {
    /// Backend id.
    pub id: String,
    /// A local directory backend.
    pub local: bool,
    /// Failed recently: calls are skipped until `retry_in_ms` has passed.
    pub suspect: bool,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Milliseconds until the next call is tried, while suspect.
    pub retry_in_ms: Option<u64>,
    /// The latest failure.
    pub last_error: Option<String>,
}

/// What a heal pass run on demand did (`POST /api/v1/heal`; fields in the order the API has
/// always sent them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealPass {
    /// Entries dropped (set deleted meanwhile).
    pub dropped: usize,
    /// Shards that could not be rebuilt this time.
    pub failed: usize,
    /// Shards rebuilt.
    pub repaired: usize,
}

/// What a scrub pass run on demand did (`POST /api/v1/scrub`; fields in the order the API has
/// always sent them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubPass {
    /// Shards queued for repair.
    pub queued: usize,
    /// Shards verified.
    pub shards: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_redundancy_view_reads_as_documented() {
        // The example of docs/admin-api.md.
        let doc = json!({
          "buckets": { "photos": { "full": 120, "degraded": 3, "unreadable": 0 } },
          "repair_queue": 5,
          "straggling_shards": 0,
          "healer": { "shards_repaired": 24, "bytes_written": 12632064, "failures": 0, "dropped": 0, "passes": 17 },
          "scrubber": { "passes": 1, "shards_checked": 24, "blocks_checked": 768, "corrupt_blocks": 100,
                        "missing_shards": 0, "bytes_read": 12632064 },
          "backends": [
            { "id": "local0", "local": true, "suspect": false, "consecutive_failures": 0,
              "retry_in_ms": null, "last_error": null }
          ]
        });
        let view: RedundancyView = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(view.buckets["photos"].degraded, 3);
        assert_eq!(view.healer.shards_repaired, 24);
        assert_eq!(view.scrubber.corrupt_blocks, 100);
        assert_eq!(view.backends[0].retry_in_ms, None);
        assert_eq!(serde_json::to_value(&view).unwrap(), doc);
        // The counters keep the key order of the map they once were.
        let text = serde_json::to_string(&view.healer).unwrap();
        assert!(text.starts_with(r#"{"bytes_written":12632064,"dropped":0"#), "{text}");
    }

    #[test]
    fn pass_answers_are_flat_counts() {
        let heal = HealPass {
            repaired: 2,
            failed: 1,
            dropped: 0,
        };
        assert_eq!(
            serde_json::to_string(&heal).unwrap(),
            r#"{"dropped":0,"failed":1,"repaired":2}"#
        );
        let scrub: ScrubPass = serde_json::from_value(json!({"shards": 24, "queued": 3})).unwrap();
        assert_eq!(scrub, ScrubPass { shards: 24, queued: 3 });
    }
}
