//! Deleting unreferenced shard sets: the reaper (at run time) and the sweep (at start-up).
//!
//! The reaper deletes what the metadata doomed. The start-up sweep also deals with sets the
//! metadata does not name (orphans of a crash, or someone else's data): only on backends this
//! deployment owns ([`super::ownership`]), only once they are older than a grace period, and
//! by moving them to quarantine rather than deleting them.

use super::ownership::Overrides;
use super::Engine;
use crate::backend::{quarantine, Backend, StoredSet};
use crate::error::Result;
use crate::meta::doomed::DoomedEntry;
use crate::records::{SetRecord, SetState, ShardMove};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;
use workers::{Context, Next, Status, StepError, Worker};

/// How often the reaper retries sets whose deletion failed (a backend was down).
const RETRY_EVERY: Duration = Duration::from_secs(60);

/// Sets the reaper deletes per step before it looks at its other duties.
const BATCH: usize = 64;

/// The reaper as a worker: deletes the shards of every set handed to it (through
/// [`Engine::reap`] or a last unpin), then forgets the set; every [`RETRY_EVERY`] it retries the
/// sets still `Deleting` (a backend was down).
pub struct Reaper {
    engine: Engine,
    rx: mpsc::UnboundedReceiver<DoomedEntry>,
    /// A set taken off the channel while waiting, not handled yet.
    next: Option<DoomedEntry>,
    /// Every sender is gone (the engine was dropped): nothing more will come.
    closed: bool,
    retry_at: Instant,
    deleted: u64,
    deferred: u64,
    failed: u64,
    retries: u64,
}

impl Reaper {
    /// The reaper of `engine`, fed by `rx`.
    pub(super) fn new(engine: Engine, rx: mpsc::UnboundedReceiver<DoomedEntry>) -> Self {
        Self {
            engine,
            rx,
            next: None,
            closed: false,
            retry_at: Instant::now() + RETRY_EVERY,
            deleted: 0,
            deferred: 0,
            failed: 0,
            retries: 0,
        }
    }

    /// Whether every commit so far is durable; if not (the sync failed), nothing may be
    /// deleted yet: the sets stay Deleting on record, for the retry scan.
    async fn settled(&mut self) -> bool {
        match self.engine.settle().await {
            Ok(()) => true,
            Err(e) => {
                self.failed += 1;
                tracing::warn!(error = %e, "cannot make the catalog durable; replaced sets are deleted later");
                false
            }
        }
    }

    /// Deletes `doomed` unless a reader pins it (then the last unpin hands it back).
    async fn reap(&mut self, doomed: &DoomedEntry) {
        crate::crash::point(crate::crash::CrashPoint::BeforeReap);
        if !self.engine.pins().release_for_deletion(doomed) {
            self.deferred += 1;
        } else if delete_set(&self.engine, doomed.0, &doomed.1).await {
            self.deleted += 1;
        } else {
            self.failed += 1;
        }
    }
}

#[async_trait::async_trait]
impl Worker for Reaper {
    fn name(&self) -> &str {
        "reaper"
    }

    async fn step(&mut self, _: &Context) -> Result<Next, StepError> {
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            match self.next.take() {
                Some(d) => batch.push(d),
                None => match self.rx.try_recv() {
                    Ok(d) => batch.push(d),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.closed = true;
                        break;
                    }
                },
            }
        }
        let handled = batch.len();
        // Every set in the batch was doomed by a commit written before it was sent here: once
        // that commit is durable, no power loss can bring back a version that names the set.
        if !batch.is_empty() && self.settled().await {
            for doomed in &batch {
                self.reap(doomed).await;
            }
        }
        if Instant::now() >= self.retry_at {
            self.retry_at = Instant::now() + RETRY_EVERY;
            self.retries += 1;
            match self.engine.catalog().sets() {
                Ok(sets) => {
                    let deleting: Vec<_> = sets.into_iter().filter(|d| d.1.state == SetState::Deleting).collect();
                    if !deleting.is_empty() && self.settled().await {
                        for doomed in &deleting {
                            self.reap(doomed).await;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reaper could not list shard sets"),
            }
        }
        Ok(if handled == BATCH {
            Next::Busy
        } else if self.closed {
            Next::Done
        } else {
            Next::Wait
        })
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            d = self.rx.recv() => match d {
                Some(d) => self.next = Some(d),
                None => self.closed = true,
            },
            () = tokio::time::sleep_until(self.retry_at) => {}
        }
    }

    fn status(&self) -> Status {
        Status::default()
            .counter("sets_deleted", self.deleted)
            .counter("sets_deferred", self.deferred)
            .counter("deletions_failed", self.failed)
            .counter("retry_scans", self.retries)
    }
}

/// Deletes a set everywhere (unfinished moves' copies too); forgets it only when every
/// backend confirmed.
async fn delete_set(engine: &Engine, set: Uuid, rec: &SetRecord) -> bool {
    let mut all = true;
    for (n, (id, idx)) in rec.all_locations().into_iter().enumerate() {
        if n == 1 {
            crate::crash::point(crate::crash::CrashPoint::MidReap);
        }
        let res = match engine.backend(&id) {
            Ok(b) => b.delete_set(set, [idx]).await,
            // Removed from the configuration: nothing of ours can be deleted there any more.
            Err(_) => Ok(()),
        };
        if let Err(e) = res {
            tracing::warn!(%set, backend = %id, error = %e, "deleting shard set failed; will retry");
            all = false;
        }
    }
    if all {
        if let Err(e) = engine.catalog().forget_set(set, rec.backends.len()) {
            tracing::warn!(%set, error = %e, "could not forget deleted shard set");
            return false;
        }
    }
    all
}

/// How the start-up sweep treats shard sets the metadata does not account for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepConfig {
    /// Sets changed more recently than this are left alone at start (they may still be being
    /// written by someone), and looked at again once they are this old.
    pub grace: Duration,
    /// How long quarantined sets are kept before a sweep deletes them.
    pub quarantine_retention: Duration,
    /// The operator's overrides of the ownership checks, for this start.
    pub overrides: Overrides,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3600),
            quarantine_retention: Duration::from_secs(7 * 24 * 3600),
            overrides: Overrides::default(),
        }
    }
}

/// What a sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Sets left Pending by a process that died mid-write, quarantined (or forgotten when no
    /// shard of them was written).
    pub pending: usize,
    /// Sets left Deleting, deleted.
    pub deleting: usize,
    /// Sets found on a backend with no record at all, quarantined.
    pub orphans: usize,
    /// Shard copies left by moves a crash interrupted, deleted.
    pub moves: usize,
    /// Unaccounted sets younger than the grace period, kept for a later look.
    pub young: usize,
    /// Quarantined sets the metadata names (a wrong start took them), moved back.
    pub restored: usize,
    /// Quarantine runs older than the retention, deleted.
    pub purged: usize,
    /// Backends that did not answer, not swept.
    pub unreachable: usize,
}

/// Deletes the side of each unfinished move of a live set that the set no longer names (the
/// copy if the move was not committed, the original if it was), then forgets the moves.
async fn finish_moves(engine: &Engine, set: Uuid, rec: &SetRecord) -> usize {
    engine
        .drop_move_copies(set, &rec.moves, |mv| {
            if rec.backends.get(mv.idx) == Some(&mv.to) {
                &mv.from
            } else {
                &mv.to
            }
        })
        .await
}

impl Engine {
    /// Deletes the copy `stale` picks (`from` or `to`) of each of `moves` of `set`, then
    /// forgets the moves whose copy is gone; returns how many. A copy that cannot be deleted
    /// stays on record for the startup sweep.
    pub(super) async fn drop_move_copies(
        &self,
        set: Uuid,
        moves: &[ShardMove],
        stale: impl Fn(&ShardMove) -> &String,
    ) -> usize {
        // The commit that made a copy stale must be durable before the copy goes.
        if let Err(e) = self.settle().await {
            tracing::warn!(%set, error = %e, "cannot make the catalog durable; stale copies of moved shards stay for now");
            return 0;
        }
        let mut done = Vec::new();
        for mv in moves {
            let backend = stale(mv);
            let res = match self.backend(backend) {
                Ok(b) => b.delete_shard(set, mv.idx).await,
                // Removed from the configuration: nothing of ours can be deleted there any more.
                Err(_) => Ok(()),
            };
            match res {
                Ok(()) => done.push(mv.idx),
                Err(e) => {
                    tracing::warn!(%set, shard = mv.idx, %backend, error = %e, "cannot delete a stale copy of a moved shard; left for the startup sweep")
                }
            }
        }
        if let Err(e) = self.catalog().end_moves(set, &done) {
            tracing::warn!(%set, error = %e, "cannot forget finished shard moves");
        }
        done.len()
    }
}

impl Engine {
    /// Checks that the backends are ours ([`Engine::claim_backends`]; refusing, before anything
    /// is touched, when they are not and no override says so), then cleans up after a crash:
    /// deletes sets left Deleting and the stale side of unfinished moves, and moves sets
    /// nobody names (Pending ones, and unrecorded ones) to quarantine once they are older than
    /// the grace period. Quarantined sets the metadata names are moved back; quarantine runs
    /// past their retention are deleted. Younger sets are looked at again in the background
    /// when they come of age. Run before serving, so no write of this process is in flight.
    pub async fn startup_sweep(&self, cfg: &SweepConfig) -> Result<SweepReport> {
        // What the store recovered may have been written but never synced by the process that
        // died: durable first, then acted upon.
        self.settle().await?;
        for b in self.backends() {
            if let Err(e) = b.sync_root().await {
                // Like a backend down at start: reported, not fatal; its shard writes fail too.
                tracing::warn!(backend = %b.id(), error = %e, "cannot make the backend's directories durable");
            }
        }
        let records: HashMap<Uuid, SetRecord> = self.catalog().sets()?.into_iter().collect();
        let claim = self.claim_backends(cfg.overrides, &records).await?;
        let mut report = SweepReport {
            unreachable: claim.unreachable.len(),
            ..SweepReport::default()
        };
        let mut pending = HashMap::new();
        for (set, rec) in records {
            match rec.state {
                SetState::Live => {
                    if !rec.moves.is_empty() {
                        report.moves += finish_moves(self, set, &rec).await;
                    }
                }
                SetState::Deleting => {
                    report.deleting += 1;
                    delete_set(self, set, &rec).await;
                }
                SetState::Pending => {
                    pending.insert(set, rec);
                }
            }
        }
        let now = SystemTime::now();
        let run = quarantine::run_name(now);
        for owned in &claim.owned {
            let (restored, purged) = self.tend_quarantine(&owned.backend, cfg, now).await;
            report.restored += restored;
            report.purged += purged;
        }
        let candidates = claim
            .owned
            .iter()
            .flat_map(|o| o.sets.iter().map(move |s| (&o.backend, *s)));
        let outcome = self.quarantine_unnamed(candidates, cfg.grace, now, &run).await;
        report.orphans = outcome.unrecorded;
        report.young = outcome.young.len();
        let owned: HashSet<&str> = claim.owned.iter().map(|o| o.backend.id()).collect();
        for (set, rec) in pending {
            if outcome.kept.contains(&set) {
                continue;
            }
            // A backend that did not answer may still hold shards: forget only what was seen.
            let seen = rec
                .all_locations()
                .iter()
                .all(|(b, _)| owned.contains(b.as_str()) || self.backend(b).is_err());
            if seen {
                match self.catalog().forget_set(set, rec.backends.len()) {
                    Ok(()) => report.pending += 1,
                    Err(e) => tracing::warn!(%set, error = %e, "cannot forget a swept Pending set"),
                }
            }
        }
        if !outcome.young.is_empty() {
            self.sweep_later(outcome.young, cfg.grace);
        }
        Ok(report)
    }

    /// Moves back the quarantined sets on `backend` that the metadata names Live there, and deletes
    /// quarantine runs older than the retention; returns (sets restored, runs deleted).
    async fn tend_quarantine(&self, backend: &Backend, cfg: &SweepConfig, now: SystemTime) -> (usize, usize) {
        let quarantined = match backend.list_quarantine().await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(backend = %backend.id(), error = %e, "cannot list the quarantine");
                return (0, 0);
            }
        };
        let (mut restored, mut purged) = (0, 0);
        let mut keep_runs = HashSet::new();
        for q in &quarantined {
            // Only shards the record places here: another copy would be garbage nobody sweeps.
            let named_here = matches!(self.catalog().set(q.set), Ok(Some(rec))
                if rec.state == SetState::Live && rec.all_locations().iter().any(|(b, _)| b == backend.id()));
            if !named_here {
                continue;
            }
            match backend.restore_set(q).await {
                Ok(n) => {
                    restored += 1;
                    tracing::warn!(backend = %backend.id(), set = %q.set, run = %q.run, shards = n, "a quarantined set is named by the metadata: moved back");
                }
                Err(e) => {
                    keep_runs.insert(q.run.clone());
                    tracing::warn!(backend = %backend.id(), set = %q.set, error = %e, "cannot move a quarantined set back");
                }
            }
        }
        let runs: BTreeSet<&str> = quarantined.iter().map(|q| q.run.as_str()).collect();
        for run in runs {
            let expired = quarantine::run_time(run)
                .and_then(|t| t.checked_add(cfg.quarantine_retention))
                .is_some_and(|until| until <= now);
            if !expired || keep_runs.contains(run) {
                continue;
            }
            match backend.purge_quarantine_run(run).await {
                Ok(()) => {
                    purged += 1;
                    tracing::info!(backend = %backend.id(), %run, "quarantine run past its retention deleted");
                }
                Err(e) => tracing::warn!(backend = %backend.id(), %run, error = %e, "cannot delete a quarantine run"),
            }
        }
        (restored, purged)
    }

    /// Quarantines each candidate set (a backend and a set on it, with its age) that the
    /// metadata has no record of or only a Pending one, if it is older than `grace`.
    async fn quarantine_unnamed<'a>(
        &self,
        candidates: impl Iterator<Item = (&'a Backend, StoredSet)>,
        grace: Duration,
        now: SystemTime,
        run: &str,
    ) -> Unnamed {
        let mut out = Unnamed::default();
        let mut unrecorded = HashSet::new();
        for (backend, stored) in candidates {
            let set = stored.set;
            let is_pending = match self.catalog().set(set) {
                Ok(None) => false,
                Ok(Some(rec)) if rec.state == SetState::Pending => true,
                Ok(Some(_)) => continue,
                Err(e) => {
                    tracing::warn!(%set, error = %e, "cannot read a set record; not swept");
                    out.kept.insert(set);
                    continue;
                }
            };
            // Listed without its age only if it was settled at the listing; unknown: young.
            let age = stored
                .modified
                .map_or(Duration::ZERO, |t| now.duration_since(t).unwrap_or_default());
            if !grace.is_zero() && age < grace {
                out.kept.insert(set);
                out.young.push((backend.id().to_owned(), stored));
                continue;
            }
            match backend.quarantine_set(set, run).await {
                Ok(n) => {
                    tracing::info!(backend = %backend.id(), %set, pending = is_pending, shards = n, age_secs = age.as_secs(), %run, "unnamed shard set quarantined");
                    if !is_pending {
                        unrecorded.insert(set);
                    }
                }
                Err(e) => {
                    tracing::warn!(backend = %backend.id(), %set, error = %e, "cannot quarantine an unnamed shard set");
                    out.kept.insert(set);
                }
            }
        }
        out.unrecorded = unrecorded.len();
        out
    }

    /// Looks again at `young` sets once the youngest is `grace` old: those still unnamed are
    /// quarantined then (their Pending records forgotten), without waiting for a restart; those
    /// changed meanwhile get another look later.
    fn sweep_later(&self, young: Vec<(String, StoredSet)>, grace: Duration) {
        let now = SystemTime::now();
        let Some(due) = young
            .iter()
            .filter_map(|(_, s)| s.modified.unwrap_or(now).checked_add(grace))
            .max()
        else {
            return;
        };
        tracing::info!(
            sets = young.len(),
            in_secs = due.duration_since(now).unwrap_or_default().as_secs(),
            "unnamed shard sets younger than the grace period kept; looking again when they are older"
        );
        let engine = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(due.duration_since(SystemTime::now()).unwrap_or_default()).await;
            engine.sweep_young(young, grace).await;
        });
    }

    /// The later look of [`Engine::sweep_later`]: fresh ages from a new listing of each
    /// backend, then the same rule as at start.
    async fn sweep_young(&self, young: Vec<(String, StoredSet)>, grace: Duration) {
        let mut by_backend: HashMap<String, HashSet<Uuid>> = HashMap::new();
        for (b, s) in young {
            by_backend.entry(b).or_default().insert(s.set);
        }
        let now = SystemTime::now();
        let run = quarantine::run_name(now);
        let mut candidates = Vec::new();
        for (id, sets) in &by_backend {
            let Ok(backend) = self.backend(id) else { continue };
            match backend.list_sets_aged(|s| sets.contains(&s)).await {
                Ok(listed) => candidates.extend(
                    listed
                        .into_iter()
                        .filter(|s| sets.contains(&s.set))
                        .map(|s| (backend, s)),
                ),
                Err(e) => tracing::warn!(backend = %id, error = %e, "cannot list the backend for the delayed sweep"),
            }
        }
        let outcome = self.quarantine_unnamed(candidates.into_iter(), grace, now, &run).await;
        let mut forgotten = 0;
        for set in by_backend.values().flatten().collect::<HashSet<_>>() {
            if outcome.kept.contains(set) {
                continue;
            }
            if let Ok(Some(rec)) = self.catalog().set(*set) {
                if rec.state == SetState::Pending && self.catalog().forget_set(*set, rec.backends.len()).is_ok() {
                    forgotten += 1;
                }
            }
        }
        tracing::info!(
            orphans = outcome.unrecorded,
            pending = forgotten,
            still_young = outcome.young.len(),
            "delayed sweep done"
        );
        // Changed again meanwhile: someone is still writing them; look again later.
        if !outcome.young.is_empty() {
            self.sweep_later(outcome.young, grace);
        }
    }
}

/// What [`Engine::quarantine_unnamed`] did.
#[derive(Default)]
struct Unnamed {
    /// Distinct unrecorded sets quarantined.
    unrecorded: usize,
    /// Sets left in place somewhere (young, or failed to move).
    kept: HashSet<Uuid>,
    /// The young ones, by backend.
    young: Vec<(String, StoredSet)>,
}
