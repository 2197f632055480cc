//! The migrator: brings objects written under an older policy epoch to their bucket's
//! current policy, in the background, while clients keep reading and writing.
//!
//! Per object, per segment, the cheapest step that makes it conform:
//! - **keep**: the code, block size and encryption match and every shard is on an eligible
//!   backend; only the manifest's epoch changes (a relabel);
//! - **move**: only some shards' backends are no longer eligible; those shards are copied
//!   (verified block by block) to eligible backends, same set, no re-encoding;
//! - **re-encode**: anything else; the segment is read through the normal (hedged, verified)
//!   read path and written as a new set under the new policy.
//!
//! The new manifest replaces the old one only if the object was not overwritten, deleted or
//! otherwise changed meanwhile and the policy did not move on ([`Catalog::migrate_object`]): a
//! client's write always wins over the migrator's copy of older data. Progress needs no
//! journal: what is left is exactly the objects whose manifests carry an older epoch, so after a
//! crash the next pass starts over with them. New sets left Pending and move copies left on
//! record are deleted by the startup sweep.
//!
//! [`Catalog::migrate_object`]: crate::meta::Catalog::migrate_object

use super::write::Target;
use super::{Engine, Swap};
use crate::backend::Backend;
use crate::crypto::Encryption;
use crate::engine::BodyHasher;
use crate::error::{Error, Result};
use crate::records::{now_ms, BucketRecord, KeyWrap, ObjectManifest, Segment, ShardMove};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use workers::{Bell, Context, Next, Status, StepError, Worker};

/// Objects read from the catalog per scan step.
const PAGE: usize = 256;

/// Shard bytes copied per request when a shard moves.
const MOVE_WINDOW: u64 = 8 << 20;

/// How long the migrator waits between looks at the buckets when there is nothing to do
/// (a policy change wakes it at once).
const IDLE: Duration = Duration::from_secs(1);

/// How long after a pass with errors its bucket is tried again.
const RETRY_ERRORS: Duration = Duration::from_secs(30);

/// How long the migrator waits before looking again when objects must be retried soon.
const AGAIN: Duration = Duration::from_millis(250);

/// How long a moved shard's old copy is kept for readers still holding its set.
const MAX_UNPIN_WAIT: Duration = Duration::from_secs(600);

/// Migrator settings at start; [`Migrations::set_throttle`] changes them at run time.
#[derive(Debug, Clone, Copy)]
pub struct MigrationConfig {
    /// Upper bound on bytes read for migration per second (`None`: unlimited).
    pub max_bytes_per_sec: Option<u64>,
    /// Objects migrated at once.
    pub concurrency: usize,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        Self {
            max_bytes_per_sec: Some(64 << 20),
            concurrency: 4,
        }
    }
}

/// The migrator's throttle as the admin API shows and changes it (`max_mib_per_sec`: MiB per
/// second read for migration, 0 = unlimited; `concurrency`: objects migrated at once; `paused`).
pub type Throttle = workers::ThrottleSettings;

/// Largest accepted concurrency.
pub const MAX_CONCURRENCY: usize = 64;

/// How far one bucket's migration has come.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrationView {
    /// Bucket.
    pub bucket: String,
    /// The epoch objects are being brought to.
    pub target_epoch: u64,
    /// `idle` (never anything to do), `running`, `paused` or `done`.
    pub state: &'static str,
    /// Objects of older epochs found since the job started.
    pub objects_total: u64,
    /// Of those, objects migrated (or overwritten by clients meanwhile).
    pub objects_done: u64,
    /// Bytes of those objects.
    pub bytes_total: u64,
    /// Bytes migrated.
    pub bytes_done: u64,
    /// Objects re-encoded under the new code.
    pub objects_reencoded: u64,
    /// Objects whose shards were moved without re-encoding.
    pub objects_moved: u64,
    /// Objects that already conformed: only their epoch changed.
    pub objects_relabelled: u64,
    /// Objects still on an older epoch.
    pub objects_remaining: u64,
    /// Bytes migrated per second, over the last 10 s.
    pub rate_bytes_per_sec: f64,
    /// Seconds until done at that rate.
    pub eta_secs: Option<f64>,
    /// Objects that failed (retried by a later pass).
    pub errors: u64,
    /// The latest failure.
    pub last_error: Option<String>,
    /// Objects that cannot be migrated (SSE-C objects that would need re-encoding).
    pub skipped: u64,
    /// When the job started, Unix ms.
    pub started_ms: i64,
    /// When it finished, Unix ms.
    pub finished_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Job {
    view: MigrationView,
    /// Lifetime totals per outcome, for the metrics (they survive new jobs).
    counters: Counters,
}

/// Lifetime migration counters of one bucket.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// Objects re-encoded.
    pub reencoded: u64,
    /// Objects whose shards were moved.
    pub moved: u64,
    /// Objects relabelled.
    pub relabelled: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Objects skipped.
    pub skipped: u64,
    /// Bytes migrated.
    pub bytes: u64,
}

/// The migrator's shared state: throttle, per-bucket jobs, and the bell a policy change rings.
pub struct Migrations {
    /// Shared by all migrating tasks; it also measures the rate. One bucket migrates at a
    /// time, so that is its rate.
    throttle: workers::Throttle,
    jobs: Mutex<HashMap<String, Job>>,
    /// Wakes the migrator: a policy change, or a throttle change (the throttle rings it).
    bell: Bell,
}

impl Migrations {
    /// Migrator state with the start-up settings.
    #[must_use]
    pub fn new(config: MigrationConfig) -> Self {
        let throttle = workers::Throttle::new(config.max_bytes_per_sec, config.concurrency, MAX_CONCURRENCY);
        let bell = Bell::new();
        throttle.ring_on_change(bell.clone());
        Self {
            throttle,
            jobs: Mutex::new(HashMap::new()),
            bell,
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        // Only counters live under this lock; keep using them after a panic elsewhere.
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current throttle.
    #[must_use]
    pub fn throttle(&self) -> Throttle {
        self.throttle.settings()
    }

    /// Changes the throttle; takes effect for bytes and objects not yet started, and wakes
    /// the migrator.
    pub fn set_throttle(&self, t: Throttle) -> std::result::Result<(), String> {
        self.throttle.set(t).map_err(|e| e.to_string())
    }

    /// Tells the migrator a bucket's policy changed.
    pub fn wake(&self) {
        self.bell.ring();
    }

    /// Waits until `n` more bytes may be read under the rate limit (a shared virtual clock:
    /// each read moves the time the next may start by its cost).
    async fn spend(&self, n: u64) {
        self.throttle.spend(n).await;
    }

    /// The progress of `bucket`'s migration; `epoch` is the bucket's current epoch.
    #[must_use]
    pub fn view(&self, bucket: &str, epoch: u64) -> MigrationView {
        let mut jobs = self.jobs();
        match jobs.get_mut(bucket) {
            Some(job) => {
                let mut v = job.view.clone();
                if v.target_epoch <= 1 && v.objects_total == 0 {
                    v.state = "idle";
                }
                if v.state == "running" && self.throttle.is_paused() {
                    v.state = "paused";
                }
                if v.target_epoch < epoch {
                    // A newer change the migrator has not picked up yet.
                    v.state = "running";
                    v.target_epoch = epoch;
                    v.finished_ms = None;
                }
                if v.state == "running" {
                    v.rate_bytes_per_sec = self.throttle.measured_rate();
                }
                if v.state != "done" && v.rate_bytes_per_sec > 0.0 {
                    v.eta_secs = Some(v.bytes_total.saturating_sub(v.bytes_done) as f64 / v.rate_bytes_per_sec);
                }
                v
            }
            None => MigrationView {
                bucket: bucket.to_owned(),
                target_epoch: epoch,
                state: if epoch > 1 { "running" } else { "idle" },
                ..MigrationView::default()
            },
        }
    }

    /// Lifetime counters and remaining work of every bucket with a job, for the metrics.
    #[must_use]
    pub fn counters(&self) -> Vec<(String, Counters, u64, u64)> {
        self.jobs()
            .iter()
            .map(|(b, j)| {
                (
                    b.clone(),
                    j.counters,
                    j.view.objects_remaining,
                    j.view.bytes_total.saturating_sub(j.view.bytes_done),
                )
            })
            .collect()
    }

    fn update(&self, bucket: &str, f: impl FnOnce(&mut Job)) {
        let mut jobs = self.jobs();
        let job = jobs.entry(bucket.to_owned()).or_default();
        f(job);
    }

    fn forget(&self, live: &[String]) {
        self.jobs().retain(|b, _| live.contains(b));
    }
}

/// What happened to one object.
enum Outcome {
    Reencoded(u64),
    Moved(u64),
    Relabelled,
    /// Overwritten, deleted or changed by someone else meanwhile: not ours any more.
    Raced,
    /// The bucket's policy changed again: the pass stops.
    Superseded,
    /// Not now (shards of its last write still landing).
    Later,
    Skipped(String),
}

/// How a pass over a bucket ended.
enum PassEnd {
    /// Every object of an older epoch was handled (errors and skips aside).
    Complete { errors: bool },
    /// The policy changed again, or an object must be retried soon.
    Again,
}

/// What the objects of a pass so far say about the pass.
#[derive(Default)]
struct PassFlags {
    /// Some object failed (the bucket is tried again later).
    errors: bool,
    /// Some object must be looked at again soon (raced by a client, stragglers landing).
    again: bool,
    /// The bucket's policy changed again.
    superseded: bool,
}

/// What one segment needs.
enum Step {
    Keep,
    Move(Vec<ShardMove>),
    Reencode,
}

/// One look over the buckets: those not looked at yet, and whether some bucket must be looked
/// at again soon.
struct Round {
    buckets: VecDeque<(String, BucketRecord)>,
    again: bool,
}

/// The migrator as a worker: looks over the buckets, one bucket's pass per step, then waits
/// [`IDLE`] or until a policy or throttle change rings it. It honours its throttle's pause
/// inside a pass (objects in flight finish, no new one starts), so it goes on looking and
/// reporting while paused.
pub struct Migrator {
    engine: Engine,
    /// Buckets known to be fully migrated, at which epoch; cleared when a write commits under
    /// an older epoch than its bucket's (it began before a change).
    clean: HashMap<String, u64>,
    retry_at: HashMap<String, Instant>,
    seen_stale: u64,
    round: Option<Round>,
}

impl Migrator {
    /// The migrator of `engine`.
    #[must_use]
    pub fn new(engine: Engine) -> Self {
        let seen_stale = engine.catalog().stale_commits();
        Self {
            engine,
            clean: HashMap::new(),
            retry_at: HashMap::new(),
            seen_stale,
            round: None,
        }
    }

    /// Begins a look over the buckets; `None` when they cannot be listed.
    fn begin_round(&mut self) -> Option<Round> {
        let stale = self.engine.catalog().stale_commits();
        if stale != self.seen_stale {
            self.clean.clear();
            self.seen_stale = stale;
        }
        match self.engine.catalog().list_buckets() {
            Ok(buckets) => {
                let names: Vec<String> = buckets.iter().map(|(n, _)| n.clone()).collect();
                self.engine.migrations().forget(&names);
                self.clean.retain(|b, _| names.contains(b));
                Some(Round {
                    buckets: buckets.into(),
                    again: false,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "migrator cannot list buckets");
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl Worker for Migrator {
    fn name(&self) -> &str {
        "migrator"
    }

    async fn step(&mut self, ctx: &Context) -> std::result::Result<Next, StepError> {
        let round = match self.round.take() {
            Some(r) => Some(r),
            None => self.begin_round(),
        };
        let Some(mut round) = round else {
            return Ok(Next::Idle(IDLE));
        };
        while let Some((name, rec)) = round.buckets.pop_front() {
            if self.clean.get(&name) == Some(&rec.policy_epoch)
                && self.retry_at.get(&name).is_none_or(|t| Instant::now() < *t)
            {
                continue;
            }
            self.retry_at.remove(&name);
            match self.engine.migrate_bucket(&name, &rec, ctx).await {
                Ok(PassEnd::Complete { errors }) => {
                    self.clean.insert(name.clone(), rec.policy_epoch);
                    if errors {
                        self.retry_at.insert(name, Instant::now() + RETRY_ERRORS);
                    }
                }
                Ok(PassEnd::Again) => round.again = true,
                Err(e) => {
                    tracing::warn!(bucket = %name, error = %e, "migration pass failed; will retry");
                    self.retry_at.insert(name.clone(), Instant::now() + RETRY_ERRORS);
                    self.clean.insert(name, rec.policy_epoch);
                }
            }
            self.round = Some(round);
            return Ok(Next::Busy);
        }
        Ok(Next::Idle(if round.again { AGAIN } else { IDLE }))
    }

    fn status(&self) -> Status {
        let mut total = Counters::default();
        let (mut objects_left, mut bytes_left) = (0, 0);
        for (_, c, objects, bytes) in self.engine.migrations().counters() {
            total.reencoded += c.reencoded;
            total.moved += c.moved;
            total.relabelled += c.relabelled;
            total.failed += c.failed;
            total.skipped += c.skipped;
            total.bytes += c.bytes;
            objects_left += objects;
            bytes_left += bytes;
        }
        Status::default()
            .counter("objects_reencoded", total.reencoded)
            .counter("objects_moved", total.moved)
            .counter("objects_relabelled", total.relabelled)
            .counter("objects_failed", total.failed)
            .counter("objects_skipped", total.skipped)
            .counter("bytes_migrated", total.bytes)
            .counter("objects_remaining", objects_left)
            .counter("bytes_remaining", bytes_left)
    }

    fn throttle(&self) -> Option<workers::Throttle> {
        Some(self.engine.migrations().throttle.clone())
    }

    fn bell(&self) -> Option<Bell> {
        Some(self.engine.migrations().bell.clone())
    }

    fn parks_when_paused(&self) -> bool {
        false
    }
}

impl Engine {
    /// One pass over a bucket: migrates every object whose epoch is older than `rec`'s; stops
    /// starting objects when `ctx` is cancelled.
    async fn migrate_bucket(&self, bucket: &str, rec: &BucketRecord, ctx: &Context) -> Result<PassEnd> {
        let target = rec.policy_epoch;
        let (found, found_bytes) = self.count_stale(bucket, target)?;
        let m = self.migrations();
        m.update(bucket, |job| {
            let v = &mut job.view;
            if v.target_epoch != target {
                *v = MigrationView {
                    bucket: bucket.to_owned(),
                    target_epoch: target,
                    started_ms: now_ms(),
                    ..MigrationView::default()
                };
            }
            v.objects_total = v.objects_done + found;
            v.bytes_total = v.bytes_done + found_bytes;
            v.objects_remaining = found;
            v.errors = 0;
            v.skipped = 0;
            v.state = if found == 0 { "done" } else { "running" };
            if found == 0 {
                v.finished_ms.get_or_insert_with(now_ms);
            } else {
                v.finished_ms = None;
            }
        });
        if found == 0 {
            return Ok(PassEnd::Complete { errors: false });
        }
        tracing::info!(
            bucket,
            epoch = target,
            objects = found,
            bytes = found_bytes,
            "migrating to the new policy"
        );
        let mut from: Vec<u8> = Vec::new();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut pass = PassFlags::default();
        'scan: loop {
            let page = self.catalog().list_objects(bucket, &from, "", PAGE)?;
            let last = page.last().map(|l| l.key.clone());
            for listed in page {
                if listed.manifest.policy_epoch >= target {
                    continue;
                }
                if ctx.unless_cancelled(m.throttle.while_paused()).await.is_none() {
                    pass.again = true;
                    break 'scan;
                }
                while in_flight.len() >= m.throttle.concurrency() {
                    let next: Option<(String, u64, Result<Outcome>)> = in_flight.next().await;
                    if let Some((key, size, res)) = next {
                        self.record(bucket, &key, size, res, &mut pass);
                    }
                }
                if pass.superseded || self.catalog().bucket(bucket)?.is_none_or(|b| b.policy_epoch != target) {
                    pass.superseded = true;
                    break 'scan;
                }
                let key = listed.key;
                let size = listed.manifest.size;
                in_flight.push(async move {
                    let res = self.migrate_object(bucket, &key, rec).await;
                    (key, size, res)
                });
            }
            match last {
                Some(k) if !pass.superseded => {
                    from = k.into_bytes();
                    from.push(0);
                }
                _ => break,
            }
        }
        while let Some((key, size, res)) = in_flight.next().await {
            self.record(bucket, &key, size, res, &mut pass);
        }
        if pass.superseded || pass.again {
            return Ok(PassEnd::Again);
        }
        m.update(bucket, |job| {
            job.view.state = "done";
            job.view.finished_ms = Some(now_ms());
        });
        tracing::info!(bucket, epoch = target, errors = pass.errors, "migration pass complete");
        Ok(PassEnd::Complete { errors: pass.errors })
    }

    /// Counts one object's outcome in the bucket's job and in `pass`.
    fn record(&self, bucket: &str, key: &str, size: u64, res: Result<Outcome>, pass: &mut PassFlags) {
        let m = self.migrations();
        m.update(bucket, |job| {
            let v = &mut job.view;
            let c = &mut job.counters;
            let done = |v: &mut MigrationView, bytes: u64| {
                v.objects_done += 1;
                v.objects_remaining = v.objects_remaining.saturating_sub(1);
                v.bytes_done += bytes;
            };
            match res {
                Ok(Outcome::Reencoded(b)) => {
                    done(v, size);
                    v.objects_reencoded += 1;
                    c.reencoded += 1;
                    c.bytes += b;
                }
                Ok(Outcome::Moved(b)) => {
                    done(v, size);
                    v.objects_moved += 1;
                    c.moved += 1;
                    c.bytes += b;
                }
                Ok(Outcome::Relabelled) => {
                    done(v, size);
                    v.objects_relabelled += 1;
                    c.relabelled += 1;
                }
                Ok(Outcome::Raced) => {
                    // A client's write took the object over; a pass looks again in case it
                    // was written under the old policy.
                    done(v, size);
                    pass.again = true;
                }
                Ok(Outcome::Superseded) => pass.superseded = true,
                Ok(Outcome::Later) => pass.again = true,
                Ok(Outcome::Skipped(why)) => {
                    v.skipped += 1;
                    c.skipped += 1;
                    v.last_error = Some(format!("{bucket}/{key}: skipped: {why}"));
                }
                Err(e) => {
                    pass.errors = true;
                    v.errors += 1;
                    c.failed += 1;
                    tracing::warn!(bucket, key, error = %e, "migrating object failed; a later pass retries it");
                    v.last_error = Some(format!("{bucket}/{key}: {e}"));
                }
            }
        });
    }

    /// Objects of `bucket` on an epoch older than `target`, and their bytes.
    fn count_stale(&self, bucket: &str, target: u64) -> Result<(u64, u64)> {
        let mut from: Vec<u8> = Vec::new();
        let (mut n, mut bytes) = (0, 0);
        loop {
            let page = self.catalog().list_objects(bucket, &from, "", 4096)?;
            let Some(last) = page.last().map(|l| l.key.clone()) else {
                return Ok((n, bytes));
            };
            for l in &page {
                if l.manifest.policy_epoch < target {
                    n += 1;
                    bytes += l.manifest.size;
                }
            }
            from = last.into_bytes();
            from.push(0);
        }
    }

    /// What a segment needs to conform to `rec`'s policy; `Err` names why it cannot.
    fn step_for(
        &self,
        key: &str,
        seg: &Segment,
        rec: &BucketRecord,
        eligible: &[String],
    ) -> std::result::Result<Step, String> {
        // The key's own code: its prefix rule's, if one matches.
        let p = rec.layout_for(key).0;
        let customer = matches!(
            seg.encryption.as_ref().map(|e| &e.wrapped_by),
            Some(KeyWrap::Customer { .. })
        );
        let recode = seg.k != p.k
            || seg.m != p.m
            || seg.block_size != p.block_size
            || (rec.encrypted && seg.encryption.is_none());
        if recode {
            return if customer {
                Err("encrypted with a customer key (SSE-C), so it cannot be re-encoded without the client's key".into())
            } else {
                Ok(Step::Reencode)
            };
        }
        let bad: Vec<usize> = (0..seg.backends.len())
            .filter(|&i| !eligible.contains(&seg.backends[i]))
            .collect();
        if bad.is_empty() {
            return Ok(Step::Keep);
        }
        // Replacements: eligible backends not holding a shard of the set, healthy ones first,
        // in the key's rendezvous order (as a fresh write would place them).
        let free: Vec<&String> = eligible.iter().filter(|b| !seg.backends.contains(b)).collect();
        let ranked = placement::place_shards(&free, key.as_bytes(), free.len());
        let healthy = |i: &usize| self.backend(free[*i]).is_ok_and(|b| b.health().is_healthy());
        let (mut order, sick): (Vec<usize>, Vec<usize>) = ranked.into_iter().partition(healthy);
        order.extend(sick);
        if order.len() < bad.len() {
            return Ok(Step::Reencode);
        }
        Ok(Step::Move(
            bad.iter()
                .zip(order)
                .map(|(&idx, to)| ShardMove {
                    idx,
                    from: seg.backends[idx].clone(),
                    to: free[to].clone(),
                })
                .collect(),
        ))
    }

    /// Whether segment `seg` of `key` already conforms to `rec`'s policy (nothing to move or
    /// re-encode).
    #[must_use]
    pub fn conforms(&self, key: &str, seg: &Segment, rec: &BucketRecord) -> bool {
        matches!(
            self.step_for(key, seg, rec, &self.eligible(rec.layout_for(key).1)),
            Ok(Step::Keep)
        )
    }

    /// Brings one object to `rec`'s policy.
    async fn migrate_object(&self, bucket: &str, key: &str, rec: &BucketRecord) -> Result<Outcome> {
        let Some((m, pins)) = self.pinned_object(bucket, key)? else {
            return Ok(Outcome::Raced);
        };
        if m.policy_epoch >= rec.policy_epoch {
            return Ok(Outcome::Raced);
        }
        let straggling = m
            .segments
            .iter()
            .any(|s| (0..s.backends.len()).any(|i| self.stragglers().contains(s.set, i)));
        if straggling {
            return Ok(Outcome::Later);
        }
        let eligible = self.eligible(rec.layout_for(key).1);
        let mut steps = Vec::with_capacity(m.segments.len());
        for seg in &m.segments {
            match self.step_for(key, seg, rec, &eligible) {
                Ok(s) => steps.push(s),
                Err(why) => return Ok(Outcome::Skipped(why)),
            }
        }
        let mut new = m.clone();
        new.policy_epoch = rec.policy_epoch;
        let mut written: Vec<Segment> = Vec::new();
        let mut failed = Vec::new();
        let mut moved: Vec<(uuid::Uuid, Vec<ShardMove>)> = Vec::new();
        let mut bytes = 0u64;
        let mut reencoded = false;
        let mut offset = 0u64;
        let res: Result<()> = async {
            for (i, step) in steps.into_iter().enumerate() {
                let seg = &m.segments[i];
                let range = offset..offset + seg.size;
                offset += seg.size;
                let mut recode = matches!(step, Step::Reencode);
                if let Step::Move(moves) = step {
                    match self.copy_shards(seg, &moves).await {
                        Ok(n) => {
                            bytes += n;
                            for mv in &moves {
                                new.segments[i].backends[mv.idx].clone_from(&mv.to);
                            }
                            moved.push((seg.set, moves));
                        }
                        // A source shard is missing or corrupt (the healer will hear of it):
                        // re-encoding reads any k shards instead.
                        Err(e) => {
                            tracing::info!(bucket, key, set = %seg.set, error = %e, "moving shards failed; re-encoding instead");
                            recode = true;
                        }
                    }
                }
                if recode {
                    let (segment, f) = self.reencode(bucket, key, &m, seg, range, rec).await?;
                    bytes += seg.size;
                    reencoded = true;
                    failed.extend(f);
                    written.push(segment.clone());
                    new.segments[i] = segment;
                }
            }
            Ok(())
        }
        .await;
        let undo = |this: &Self| {
            for s in &written {
                match this.catalog().abandon_set(s.set, &s.backends) {
                    Ok(d) => this.reap(d),
                    Err(e) => tracing::warn!(set = %s.set, error = %e, "could not abandon migrated set"),
                }
            }
        };
        if let Err(e) = res {
            undo(self);
            self.undo_moves(&moved).await;
            return Err(e);
        }
        drop(pins);
        match self.swap_migrated(bucket, key, &m, &new, &failed)? {
            Swap::Done => {
                for (set, moves) in moved {
                    let this = self.clone();
                    tokio::spawn(async move { this.finish_moves(set, moves).await });
                }
                Ok(if reencoded {
                    Outcome::Reencoded(bytes)
                } else if bytes > 0 {
                    Outcome::Moved(bytes)
                } else {
                    Outcome::Relabelled
                })
            }
            refused @ (Swap::Superseded | Swap::Raced) => {
                undo(self);
                self.undo_moves(&moved).await;
                Ok(if refused == Swap::Superseded {
                    Outcome::Superseded
                } else {
                    Outcome::Raced
                })
            }
        }
    }

    /// Re-encodes the bytes `range` of `m` (segment `seg`) under `rec`'s policy as a new set.
    async fn reencode(
        &self,
        bucket: &str,
        key: &str,
        m: &ObjectManifest,
        seg: &Segment,
        range: std::ops::Range<u64>,
        rec: &BucketRecord,
    ) -> Result<(Segment, Vec<(uuid::Uuid, usize, String, String)>)> {
        // Objects encrypted before stay encrypted, whatever the bucket says now.
        let encryption = if rec.encrypted || seg.encryption.is_some() {
            Encryption::Master(self.keys().clone())
        } else {
            Encryption::None
        };
        let pins = self.pins().pin(vec![seg.set]);
        let reader = self.reader(bucket, key, m, pins, range);
        let body = throttled(self.clone(), reader);
        let hasher = BodyHasher::new(s3s::checksum::ChecksumHasher::default());
        let target = Target::for_key(rec, key);
        let (w, hasher) = self.write_set_with(key, target, body, hasher, &encryption).await?;
        let plain_md5 = m.segments.len() == 1 && m.parts_count.is_none() && seg.encryption.is_none();
        let mismatch = if hasher.size != seg.size {
            Some(format!("read {} bytes, the segment has {}", hasher.size, seg.size))
        } else if plain_md5 && m.etag.len() == 32 {
            use md5::Digest;
            let md5 = hex::encode(hasher.md5.finalize());
            (md5 != m.etag).then(|| format!("MD5 of the bytes read is {md5}, the object's ETag is {}", m.etag))
        } else {
            None
        };
        if let Some(why) = mismatch {
            // Dropping the written set abandons it.
            return Err(Error::Internal(format!("re-encoding {bucket}/{key}: {why}")));
        }
        Ok(w.into_parts())
    }

    /// Copies shards of `seg` to their new backends, each verified block by block; returns
    /// the bytes copied. The moves are on record before the first byte is written.
    async fn copy_shards(&self, seg: &Segment, moves: &[ShardMove]) -> Result<u64> {
        if !self.catalog().begin_moves(seg.set, moves)? {
            return Err(Error::Unavailable(format!("shard set {} is no longer live", seg.set)));
        }
        let layout = seg.layout();
        let mac = match &seg.integrity {
            Some(rec) => Some(crate::crypto::open_set_mac(seg.set, rec, self.keys())?),
            None => None,
        };
        let blocks = layout.blocks();
        let per_window = (MOVE_WINDOW / layout.shard_len_for(layout.block_size).max(1)).max(1);
        let mut total = 0u64;
        for mv in moves {
            let res: Result<u64> = async {
                let src = self.backend(&mv.from)?;
                let dst = self.backend(&mv.to)?;
                let path = Backend::shard_path(seg.set, mv.idx);
                let mut w = dst.writer(path.clone());
                let mut first = 0;
                let mut n = 0u64;
                let copied: Result<()> = async {
                    while first < blocks {
                        let last = (first + per_window - 1).min(blocks - 1);
                        let window = layout.shard_window(first, last);
                        self.migrations().spend(window.end - window.start).await;
                        let bytes = src.read_range(&path, window).await?;
                        let verified = layout.verify_window(first, last, &bytes, mv.idx, mac.as_ref());
                        if let Some(blocks) = &verified {
                            let f = crate::codec::Faults::of(blocks);
                            self.telemetry().integrity_failures(&mv.from, f.checksum + f.mac);
                        }
                        let ok = verified.is_some_and(|b| b.iter().all(std::result::Result::is_ok));
                        if !ok {
                            let reason = "checksum or keyed MAC mismatch, or short shard (found while migrating)";
                            self.catalog().queue_repair(seg.set, mv.idx, &mv.from, reason)?;
                            return Err(Error::Internal(format!(
                                "shard {} of set {} on {}: {reason}",
                                mv.idx, seg.set, mv.from
                            )));
                        }
                        n += bytes.len() as u64;
                        w.write(&bytes).await?;
                        first = last + 1;
                    }
                    Ok(())
                }
                .await;
                match copied {
                    Ok(()) => {
                        w.finish().await?;
                        Ok(n)
                    }
                    Err(e) => {
                        w.abort().await;
                        Err(e)
                    }
                }
            }
            .await;
            match res {
                Ok(n) => total += n,
                Err(e) => {
                    self.undo_moves(&[(seg.set, moves.to_vec())]).await;
                    return Err(e);
                }
            }
        }
        Ok(total)
    }

    /// Deletes the copies of moves that were not committed, and forgets the moves.
    async fn undo_moves(&self, moved: &[(uuid::Uuid, Vec<ShardMove>)]) {
        for (set, moves) in moved {
            self.drop_move_copies(*set, moves, |mv| &mv.to).await;
        }
    }

    /// Deletes the old copies of committed moves once no reader holds their set.
    async fn finish_moves(&self, set: uuid::Uuid, moves: Vec<ShardMove>) {
        let started = Instant::now();
        while self.pins().is_pinned(set) && started.elapsed() < MAX_UNPIN_WAIT {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.drop_move_copies(set, &moves, |mv| &mv.from).await;
    }
}

/// An object reader as a body stream, each chunk paid for under the migration rate limit.
fn throttled(engine: Engine, reader: super::ObjectReader) -> impl Stream<Item = Result<Bytes>> + Unpin {
    Box::pin(futures::stream::try_unfold(
        (engine, reader),
        |(engine, mut r)| async move {
            match r.next_chunk().await? {
                Some(b) => {
                    engine.migrations().spend(b.len() as u64).await;
                    Ok(Some((b, (engine, r))))
                }
                None => Ok(None),
            }
        },
    ))
}
