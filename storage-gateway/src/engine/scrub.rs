//! The scrubber: reads every shard of every live set at a bounded rate, verifies each shard
//! block's checksum, and queues repairs for what is missing, short or corrupt.

use super::Engine;
use crate::backend::Backend;
use crate::error::Result;
use crate::records::SetState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shard bytes read per request.
const WINDOW_BYTES: u64 = 4 << 20;

/// Counters of the scrubber since start.
#[derive(Debug, Default)]
pub struct ScrubCounters {
    /// Completed passes over all sets.
    pub passes: AtomicU64,
    /// Shards read and verified.
    pub shards_checked: AtomicU64,
    /// Shard blocks verified.
    pub blocks_checked: AtomicU64,
    /// Shard blocks whose checksum did not match.
    pub corrupt_blocks: AtomicU64,
    /// Shards missing or short.
    pub missing_shards: AtomicU64,
    /// Shard bytes read.
    pub bytes_read: AtomicU64,
}

/// Scrubber settings.
#[derive(Debug, Clone, Copy)]
pub struct ScrubConfig {
    /// Pause between passes.
    pub interval: Duration,
    /// Upper bound on shard bytes read per second (None: unlimited).
    pub max_bytes_per_sec: Option<u64>,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(24 * 3600),
            max_bytes_per_sec: Some(32 << 20),
        }
    }
}

/// What one pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScrubPass {
    /// Shards verified.
    pub shards: usize,
    /// Shards queued for repair.
    pub queued: usize,
}

/// Runs passes forever, `interval` apart.
pub async fn scrubber(engine: Engine, config: ScrubConfig) {
    loop {
        tokio::time::sleep(config.interval).await;
        match engine.scrub_pass(config.max_bytes_per_sec).await {
            Ok(p) => tracing::info!(shards = p.shards, queued = p.queued, "scrub pass done"),
            Err(e) => tracing::warn!(error = %e, "scrub pass failed"),
        }
    }
}

impl Engine {
    /// One pass over every live set.
    pub async fn scrub_pass(&self, max_bytes_per_sec: Option<u64>) -> Result<ScrubPass> {
        let started = Instant::now();
        let mut read = 0u64;
        let mut pass = ScrubPass::default();
        let c = self.scrub_counters();
        for (set, _) in self.catalog().sets()? {
            let _pins = self.pins().pin(vec![set]);
            let Some(rec) = self.catalog().set(set)? else { continue };
            let (SetState::Live, Some(segment)) = (rec.state, rec.segment) else {
                continue;
            };
            let layout = segment.layout();
            let blocks = layout.blocks();
            if blocks == 0 {
                continue;
            }
            let per_window = (WINDOW_BYTES / layout.stored_len(0)).max(1);
            for (i, id) in segment.backends.iter().enumerate() {
                if self.stragglers().contains(set, i) {
                    // Still being written: not missing, just late; the writer queues it if it fails.
                    continue;
                }
                let Ok(backend) = self.backend(id) else {
                    // Removed from the configuration: the healer rebuilds the shard elsewhere.
                    c.missing_shards.fetch_add(1, Ordering::Relaxed);
                    self.catalog()
                        .queue_repair(set, i, id, "backend no longer configured (found by scrub)")?;
                    pass.queued += 1;
                    continue;
                };
                let path = Backend::shard_path(set, i);
                let mut corrupt = 0u64;
                let mut problem: Option<String> = None;
                let mut first = 0;
                while first < blocks && problem.is_none() {
                    let last = (first + per_window - 1).min(blocks - 1);
                    match backend.read_range(&path, layout.shard_window(first, last)).await {
                        Ok(bytes) => match layout.verify_window(first, last, &bytes) {
                            Some(blocks) => {
                                corrupt += blocks.iter().filter(|b| b.is_none()).count() as u64;
                                c.blocks_checked.fetch_add(last - first + 1, Ordering::Relaxed);
                                c.bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                                read += bytes.len() as u64;
                            }
                            None => problem = Some("short shard (found by scrub)".into()),
                        },
                        Err(e) if e.is_not_found() => problem = Some("shard missing (found by scrub)".into()),
                        // Backend down or failing: not the shard's fault; the next pass retries.
                        Err(_) => break,
                    }
                    first = last + 1;
                    if let Some(rate) = max_bytes_per_sec.filter(|r| *r > 0) {
                        let due = Duration::from_secs_f64(read as f64 / rate as f64);
                        if due > started.elapsed() {
                            tokio::time::sleep(due - started.elapsed()).await;
                        }
                    }
                }
                if problem.is_some() {
                    c.missing_shards.fetch_add(1, Ordering::Relaxed);
                }
                if corrupt > 0 {
                    c.corrupt_blocks.fetch_add(corrupt, Ordering::Relaxed);
                    problem = Some(format!("checksum mismatch in {corrupt} blocks (found by scrub)"));
                }
                c.shards_checked.fetch_add(1, Ordering::Relaxed);
                pass.shards += 1;
                if let Some(reason) = problem {
                    tracing::warn!(%set, shard = i, backend = %id, %reason, "scrub found a bad shard");
                    self.catalog().queue_repair(set, i, id, &reason)?;
                    pass.queued += 1;
                }
            }
        }
        c.passes.fetch_add(1, Ordering::Relaxed);
        Ok(pass)
    }
}
