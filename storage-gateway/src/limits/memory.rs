//! One budget in bytes for every PUT and GET body in flight, so that many large requests at
//! once slow down (`503 SlowDown`, which S3 clients retry with backoff) instead of exhausting
//! memory.
//!
//! A request reserves what the engine may hold for it at once (its footprint, estimated from
//! the engine's buffering: blocks, shard queues, part buffers, read windows), not its size: a
//! 5 GiB PUT holds a few blocks at a time. The reservation lives as long as the body streams.

use placement::BucketPolicy;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Granularity of the budget in bytes (a semaphore permit each).
pub const UNIT: u64 = 1 << 10;

/// The shared budget; clones share it.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    units: u32,
    wait: Duration,
}

/// A share of the budget, given back when dropped.
#[derive(Debug)]
#[must_use = "the reservation is given back when dropped"]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    /// A budget of `bytes` (rounded down to whole [`UNIT`]s, at least one); a request waits
    /// up to `wait` for its share.
    #[must_use]
    pub fn new(bytes: u64, wait: Duration) -> Self {
        let max = u64::try_from(Semaphore::MAX_PERMITS)
            .unwrap_or(u64::MAX)
            .min(u64::from(u32::MAX));
        let units = u32::try_from((bytes / UNIT).clamp(1, max)).unwrap_or(u32::MAX);
        Self {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
            wait,
        }
    }

    /// Reserves `bytes` for `what` (a request larger than the whole budget reserves all of it,
    /// so it runs alone rather than never).
    ///
    /// # Errors
    /// `503 SlowDown` when the share is not free within the wait.
    pub async fn reserve(&self, bytes: u64, what: &str) -> Result<Reservation, s3s::S3Error> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).min(self.units);
        if units == 0 {
            return Ok(Reservation { _permit: None });
        }
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_many_owned(units)).await {
            Ok(Ok(permit)) => Ok(Reservation { _permit: Some(permit) }),
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(
                    what,
                    bytes,
                    free_bytes = self.free_bytes(),
                    budget_bytes = u64::from(self.units) * UNIT,
                    "body memory budget exhausted; answering SlowDown"
                );
                Err(s3s::s3_error!(
                    SlowDown,
                    "Please reduce your request rate: the gateway's memory for request and response bodies is in use."
                ))
            }
        }
    }

    /// Bytes of the budget not reserved now.
    #[must_use]
    pub fn free_bytes(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }
}

/// What a write of `len` plaintext bytes (`None`: not declared) under `policy` may hold at
/// once: the block being filled, plus its coded shards queued towards each shard writer and
/// each writer's part buffer (`part_size`), but never more coded bytes than the body makes.
#[must_use]
pub fn write_footprint(policy: &BucketPolicy, len: Option<u64>, part_size: u64) -> u64 {
    let k = u64::from(policy.k).max(1);
    let n = policy.shards() as u64;
    let len = len.unwrap_or(u64::MAX);
    let block = u64::from(policy.block_size).min(len);
    let shard_block = block.div_ceil(k);
    let queued = n
        .saturating_mul(crate::engine::write::CHANNEL_DEPTH as u64 + 1)
        .saturating_mul(shard_block)
        .saturating_add(n.saturating_mul(part_size));
    let coded = len.div_ceil(k).saturating_mul(n);
    block.saturating_add(queued.min(coded))
}

/// What a read of `len` bytes may hold at once: the window being fetched (shards, hedges
/// included, at most twice the window), decoded and copied out, plus `queued_chunks` windows
/// on their way to the client.
#[must_use]
pub fn read_footprint(len: u64, queued_chunks: usize) -> u64 {
    let window = len.min(crate::engine::read::WINDOW_BYTES);
    window.saturating_mul(queued_chunks as u64 + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_answers_slow_down_after_the_wait_and_frees_on_drop() {
        let budget = MemoryBudget::new(10 * UNIT, Duration::from_secs(1));
        let big = budget.reserve(8 * UNIT, "first").await.expect("fits");
        assert_eq!(budget.free_bytes(), 2 * UNIT);
        let err = budget.reserve(3 * UNIT, "second").await.expect_err("does not fit");
        assert_eq!(err.code(), &s3s::S3ErrorCode::SlowDown);
        assert_eq!(err.status_code(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
        let small = budget.reserve(2 * UNIT, "third").await.expect("fits beside");
        drop(big);
        // Larger than the whole budget: waits for all of it, then runs alone.
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(100 * UNIT, "huge").await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(small);
        waiter.await.expect("joined").expect("huge got the whole budget");
        assert_eq!(budget.free_bytes(), 10 * UNIT);
        let _none = budget.reserve(0, "empty").await.expect("nothing to reserve");
    }

    #[test]
    fn footprints_follow_the_engine_buffers() {
        let ec42: BucketPolicy = "ec-4-2".parse().expect("preset");
        let block = u64::from(ec42.block_size);
        // A small object: itself plus its coded shards.
        assert_eq!(write_footprint(&ec42, Some(4000), 1 << 20), 4000 + 6 * 1000);
        // A large one: a block, queued shard blocks and a part buffer per shard.
        let depth = crate::engine::write::CHANNEL_DEPTH as u64 + 1;
        let big = write_footprint(&ec42, Some(5 << 30), 8 << 20);
        assert_eq!(big, block + 6 * depth * block / 4 + 6 * (8 << 20));
        assert_eq!(write_footprint(&ec42, None, 8 << 20), big);
        assert_eq!(read_footprint(10, 2), 60);
        assert_eq!(read_footprint(u64::MAX, 2), 6 * crate::engine::read::WINDOW_BYTES);
    }
}
