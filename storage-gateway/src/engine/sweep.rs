//! Deleting unreferenced shard sets: the reaper (at run time) and the sweep (at start-up).

use super::Engine;
use crate::error::Result;
use crate::meta::doomed::DoomedEntry;
use crate::records::{SetRecord, SetState, ShardMove};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// How often the reaper retries sets whose deletion failed (a backend was down).
const RETRY_EVERY: Duration = Duration::from_secs(60);

/// Deletes the shards of every set handed to it, then forgets the set.
pub(super) async fn reaper(engine: Engine, mut rx: mpsc::UnboundedReceiver<DoomedEntry>) {
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.tick().await;
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Some(doomed) => {
                    if engine.pins().release_for_deletion(&doomed) {
                        delete_set(&engine, doomed.0, &doomed.1).await;
                    }
                }
                None => return,
            },
            _ = retry.tick() => {
                match engine.catalog().sets() {
                    Ok(sets) => for doomed in sets {
                        if doomed.1.state == SetState::Deleting && engine.pins().release_for_deletion(&doomed) {
                            delete_set(&engine, doomed.0, &doomed.1).await;
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "reaper could not list shard sets"),
                }
            }
        }
    }
}

/// Deletes a set everywhere (unfinished moves' copies too); forgets it only when every
/// backend confirmed.
async fn delete_set(engine: &Engine, set: Uuid, rec: &SetRecord) -> bool {
    let mut all = true;
    for (id, idx) in rec.all_locations() {
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
