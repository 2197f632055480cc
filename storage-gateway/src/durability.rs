//! Durability of acknowledged writes: the setting, and the group commit that keeps it cheap.
//!
//! With [`Durability::Fsync`] a write is acknowledged only once it would survive a power loss:
//! the shard files on local backends are fsynced with their directories before the commit, the
//! catalog's WAL is synced after it, and the shard sets a commit replaced are deleted only once
//! that commit is durable (else the metadata could roll back to a version whose shards are
//! gone). Remote backends (S3, GCS, Azure) store an object durably before they answer 200, so
//! nothing more is done for them. [`Durability::Relaxed`] skips the syncs: a crash of the
//! process still loses nothing acknowledged (the OS has the data), a power loss may.
//!
//! WAL syncs are shared: every caller waiting when a sync starts is covered by the next one
//! ([`GroupSync`]), so many concurrent writes cost one WAL fsync, not one each. (Concurrent
//! fsyncs of files and directories need no such help: the kernel's journal groups them.)

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// How durable a write is when it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Shard files on local backends and their directories fsynced, the metadata WAL synced,
    /// before a write is acknowledged; replaced shard sets deleted only after that.
    #[default]
    Fsync,
    /// Nothing synced: safe against a crash of the process, not against a power loss.
    Relaxed,
}

impl Durability {
    /// The setting's name, as the flag and the TOML key take it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Fsync => "fsync",
            Self::Relaxed => "relaxed",
        }
    }

    /// Whether writes are synced before they are acknowledged.
    #[must_use]
    pub fn syncs(self) -> bool {
        self == Self::Fsync
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Durability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fsync" => Ok(Self::Fsync),
            "relaxed" => Ok(Self::Relaxed),
            other => Err(Error::Config(format!(
                "durability: {other:?} is neither fsync nor relaxed"
            ))),
        }
    }
}

/// Group commit of one sync operation (a WAL sync, a directory fsync): a caller holds a ticket
/// (a position in some sequence of writes it has seen finish) and waits until a sync that
/// began at or after that position has finished. One caller at a time runs the sync; those
/// that queue behind it are covered together by the next one.
#[derive(Debug, Default)]
pub struct GroupSync {
    /// Highest position known durable.
    synced: AtomicU64,
    /// Held by the caller running a sync; the others queue behind it in order.
    leader: tokio::sync::Mutex<()>,
    /// Syncs run to completion, for the metrics.
    pub(crate) syncs: AtomicU64,
}

impl GroupSync {
    /// Returns once everything up to `ticket` is durable: at once if a finished sync covered
    /// it, else after the next sync, run here (off the async threads) unless another caller
    /// runs one that covers it. `position` reads the current position (read just before the
    /// sync starts: what the sync covers). Cancelling the wait is safe: the next caller syncs.
    pub async fn wait(
        &self,
        ticket: u64,
        position: impl FnOnce() -> u64,
        sync: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<()> {
        if self.synced.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let _leader = self.leader.lock().await;
        if self.synced.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let upto = position();
        tokio::task::spawn_blocking(sync)
            .await
            .map_err(|e| Error::Internal(format!("sync task: {e}")))??;
        self.synced.fetch_max(upto, Ordering::Release);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn names_round_trip() {
        for d in [Durability::Fsync, Durability::Relaxed] {
            assert_eq!(d.name().parse::<Durability>().unwrap(), d);
        }
        assert_eq!(Durability::default(), Durability::Fsync);
        let err = "sync".parse::<Durability>().unwrap_err().to_string();
        assert!(err.contains("\"sync\" is neither fsync nor relaxed"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_syncs() {
        let group = Arc::new(GroupSync::default());
        let written = Arc::new(AtomicU64::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let waiters = 64;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..waiters {
            let (group, written, runs) = (group.clone(), written.clone(), runs.clone());
            tasks.spawn(async move {
                // A write, then the wait for it to be durable.
                let ticket = written.fetch_add(1, Ordering::SeqCst) + 1;
                let position = || written.load(Ordering::SeqCst);
                let sync = move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    Ok(())
                };
                group.wait(ticket, position, sync).await
            });
        }
        while let Some(res) = tasks.join_next().await {
            res.unwrap().unwrap();
        }
        let runs = runs.load(Ordering::SeqCst);
        assert!(runs >= 1 && runs < waiters / 4, "{runs} syncs for {waiters} waiters");
    }

    #[tokio::test]
    async fn a_sync_covers_only_what_came_before_it() {
        let g = GroupSync::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let count = |runs: &Arc<AtomicUsize>| {
            let runs = runs.clone();
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        };
        g.wait(5, || 7, count(&runs)).await.unwrap();
        g.wait(7, || 9, count(&runs)).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "7 was covered by the first sync");
        g.wait(8, || 9, count(&runs)).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let failed = g.wait(10, || 10, || Err(Error::Internal("disk gone".into()))).await;
        assert!(failed.is_err());
        g.wait(10, || 10, count(&runs)).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3, "a failed sync covers nothing");
        assert_eq!(g.syncs.load(Ordering::Relaxed), 3);
    }
}
