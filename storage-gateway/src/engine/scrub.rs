//! The scrubber: reads every shard of every live set at a bounded rate, verifies each shard
//! block's checksum (and keyed MAC, in sets that have one), and queues repairs for what is
//! missing, short, corrupt or forged. As a worker it verifies one set per step, so it pauses,
//! stops and reports between sets.
//!
//! A shard of an encrypted set rewritten with a valid checksum is not found here: only
//! authenticating a decoded block shows it, which needs the data key that set records do not
//! keep. Reads find it.

use super::Engine;
use crate::backend::Backend;
use crate::codec::Faults;
use crate::error::Result;
use crate::records::SetState;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use uuid::Uuid;
use workers::{Context, Next, Status, StepError, Throttle, Worker};

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
    /// Shard blocks whose checksum matched but whose keyed MAC did not: rewritten.
    pub forged_blocks: AtomicU64,
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

/// Where the scrubber is between steps.
enum Phase {
    /// Before the first pass: sleep `interval` first.
    Start,
    /// A pass is due.
    Due,
    /// A pass is under way: the sets still to verify, and what it found so far.
    Scanning { sets: VecDeque<Uuid>, pass: ScrubPass },
}

/// The scrubber as a worker: every `interval`, a pass over every live set, one set per step.
pub struct Scrubber {
    engine: Engine,
    interval: Duration,
    throttle: Throttle,
    phase: Phase,
}

impl Scrubber {
    /// The scrubber of `engine` with the start-up settings `config`.
    #[must_use]
    pub fn new(engine: Engine, config: ScrubConfig) -> Self {
        Self {
            engine,
            interval: config.interval,
            // Sets are verified one at a time.
            throttle: Throttle::new(config.max_bytes_per_sec, 1, 1),
            phase: Phase::Start,
        }
    }

    /// Verifies the next set of the pass, or begins or ends a pass.
    async fn advance(&mut self) -> Result<Next> {
        match &mut self.phase {
            Phase::Start => {
                self.phase = Phase::Due;
                Ok(Next::Idle(self.interval))
            }
            Phase::Due => {
                let sets = self.engine.catalog().sets()?.into_iter().map(|(set, _)| set).collect();
                self.phase = Phase::Scanning {
                    sets,
                    pass: ScrubPass::default(),
                };
                Ok(Next::Busy)
            }
            Phase::Scanning { sets, pass } => match sets.pop_front() {
                Some(set) => {
                    let p = self.engine.scrub_set(set, &self.throttle).await?;
                    pass.shards += p.shards;
                    pass.queued += p.queued;
                    Ok(Next::Busy)
                }
                None => {
                    let p = *pass;
                    self.engine.scrub_counters().passes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(shards = p.shards, queued = p.queued, "scrub pass done");
                    self.phase = Phase::Due;
                    Ok(Next::Idle(self.interval))
                }
            },
        }
    }
}

#[async_trait::async_trait]
impl Worker for Scrubber {
    fn name(&self) -> &str {
        "scrubber"
    }

    async fn step(&mut self, _: &Context) -> Result<Next, StepError> {
        match self.advance().await {
            Ok(next) => Ok(next),
            Err(e) => {
                // The pass is abandoned; the next one starts over after `interval`.
                self.phase = Phase::Due;
                Err(format!("scrub pass failed: {e}").into())
            }
        }
    }

    fn status(&self) -> Status {
        let c = self.engine.scrub_counters();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let status = Status::default()
            .counter("passes", load(&c.passes))
            .counter("shards_checked", load(&c.shards_checked))
            .counter("blocks_checked", load(&c.blocks_checked))
            .counter("corrupt_blocks", load(&c.corrupt_blocks))
            .counter("forged_blocks", load(&c.forged_blocks))
            .counter("missing_shards", load(&c.missing_shards))
            .counter("bytes_read", load(&c.bytes_read));
        match &self.phase {
            Phase::Scanning { sets, .. } => status.info("sets_left_in_pass", sets.len()),
            Phase::Start | Phase::Due => status,
        }
    }

    fn throttle(&self) -> Option<Throttle> {
        Some(self.throttle.clone())
    }

    fn after_error(&self) -> Next {
        Next::Idle(self.interval)
    }
}

impl Engine {
    /// One pass over every live set, reading at most `max_bytes_per_sec` (`None`: unlimited);
    /// what `POST /api/v1/scrub` runs.
    pub async fn scrub_pass(&self, max_bytes_per_sec: Option<u64>) -> Result<ScrubPass> {
        let throttle = Throttle::new(max_bytes_per_sec, 1, 1);
        let mut pass = ScrubPass::default();
        for (set, _) in self.catalog().sets()? {
            let p = self.scrub_set(set, &throttle).await?;
            pass.shards += p.shards;
            pass.queued += p.queued;
        }
        self.scrub_counters().passes.fetch_add(1, Ordering::Relaxed);
        Ok(pass)
    }

    /// Verifies every shard of `set` if it is live, under `throttle`'s rate; queues repairs for
    /// what is missing, short or corrupt.
    async fn scrub_set(&self, set: Uuid, throttle: &Throttle) -> Result<ScrubPass> {
        let mut pass = ScrubPass::default();
        let c = self.scrub_counters();
        let _pins = self.pins().pin(vec![set]);
        let Some(rec) = self.catalog().set(set)? else {
            return Ok(pass);
        };
        let (SetState::Live, Some(segment)) = (rec.state, rec.segment) else {
            return Ok(pass);
        };
        let mac = match &segment.integrity {
            None => None,
            Some(rec) => match crate::crypto::open_set_mac(set, rec, self.keys()) {
                Ok(mac) => Some(mac),
                Err(e) => {
                    // Not the shards' fault: nothing is queued, and the next pass tries again.
                    tracing::warn!(%set, error = %e, "cannot verify the shards of a set with keyed integrity");
                    return Ok(pass);
                }
            },
        };
        let layout = segment.layout();
        let blocks = layout.blocks();
        if blocks == 0 {
            return Ok(pass);
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
            let mut faults = Faults::default();
            let mut problem: Option<String> = None;
            let mut first = 0;
            while first < blocks && problem.is_none() {
                let last = (first + per_window - 1).min(blocks - 1);
                match backend.read_range(&path, layout.shard_window(first, last)).await {
                    Ok(bytes) => match layout.verify_window(first, last, &bytes, i, mac.as_ref()) {
                        Some(blocks) => {
                            let f = Faults::of(&blocks);
                            faults.checksum += f.checksum;
                            faults.mac += f.mac;
                            c.blocks_checked.fetch_add(last - first + 1, Ordering::Relaxed);
                            c.bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                            throttle.spend(bytes.len() as u64).await;
                        }
                        None => problem = Some("short shard (found by scrub)".into()),
                    },
                    Err(e) if e.is_not_found() => problem = Some("shard missing (found by scrub)".into()),
                    // Backend down or failing: not the shard's fault; the next pass retries.
                    Err(_) => break,
                }
                first = last + 1;
            }
            if problem.is_some() {
                c.missing_shards.fetch_add(1, Ordering::Relaxed);
            }
            c.corrupt_blocks.fetch_add(faults.checksum, Ordering::Relaxed);
            c.forged_blocks.fetch_add(faults.mac, Ordering::Relaxed);
            self.telemetry().integrity_failures(id, faults.checksum + faults.mac);
            self.integrity_counters()
                .forged_shard_blocks
                .fetch_add(faults.mac, Ordering::Relaxed);
            if let Some(reason) = faults.reason() {
                problem = Some(format!("{reason} (found by scrub)"));
            }
            c.shards_checked.fetch_add(1, Ordering::Relaxed);
            pass.shards += 1;
            if let Some(reason) = problem {
                tracing::warn!(%set, shard = i, backend = %id, %reason, "scrub found a bad shard");
                self.catalog().queue_repair(set, i, id, &reason)?;
                pass.queued += 1;
            }
        }
        Ok(pass)
    }
}
