//! Deleting unreferenced shard sets: the reaper (at run time) and the sweep (at start-up).

use super::Engine;
use crate::error::Result;
use crate::meta::doomed::DoomedEntry;
use crate::records::{SetRecord, SetState, ShardMove};
use std::collections::HashSet;
use std::time::Duration;
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

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Sets left Pending by a process that died mid-write.
    pub pending: usize,
    /// Sets left Deleting.
    pub deleting: usize,
    /// Sets found on a backend with no record at all.
    pub orphans: usize,
    /// Shard copies left by moves a crash interrupted, deleted.
    pub moves: usize,
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
    /// Removes every shard set nobody references. Run before serving: then no write is in
    /// flight, so Pending sets and unrecorded sets are certainly orphans of a crash.
    pub async fn startup_sweep(&self) -> Result<SweepReport> {
        // What the store recovered may have been written but never synced by the process that
        // died: durable first, then acted upon.
        self.settle().await?;
        for b in self.backends() {
            if let Err(e) = b.sync_root().await {
                // Like a backend down at start: reported, not fatal; its shard writes fail too.
                tracing::warn!(backend = %b.id(), error = %e, "cannot make the backend's directories durable");
            }
        }
        let mut report = SweepReport::default();
        let mut known = HashSet::new();
        for (set, rec) in self.catalog().sets()? {
            match rec.state {
                SetState::Live => {
                    known.insert(set);
                    if !rec.moves.is_empty() {
                        report.moves += finish_moves(self, set, &rec).await;
                    }
                }
                SetState::Pending | SetState::Deleting => {
                    if rec.state == SetState::Pending {
                        report.pending += 1;
                    } else {
                        report.deleting += 1;
                    }
                    if !delete_set(self, set, &rec).await {
                        known.insert(set);
                    }
                }
            }
        }
        for backend in self.backends() {
            let sets = match backend.list_sets().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(backend = %backend.id(), error = %e, "cannot list backend for orphan sweep");
                    continue;
                }
            };
            for set in sets {
                if !known.contains(&set) {
                    report.orphans += 1;
                    if let Err(e) = backend.delete_set(set, 0..crate::MAX_SHARDS).await {
                        tracing::warn!(backend = %backend.id(), %set, error = %e, "cannot delete orphan shard set");
                    }
                }
            }
        }
        Ok(report)
    }
}
