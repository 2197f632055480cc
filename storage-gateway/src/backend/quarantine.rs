//! Shard sets moved aside instead of deleted, and the ages the start-up sweep decides by.
//!
//! The sweep never deletes a set it cannot account for: it moves it to
//! `.mlsysops/quarantine/<run>/<set>/<index>`, `<run>` being the UTC time of the sweep
//! (`20250102T030405Z`), where it stays for the configured retention. Local backends rename
//! the set's files (instant on one file system, so quarantine costs them nothing); remote ones
//! copy each shard object and then delete the original (a crash in between leaves both, and
//! the next sweep moves the set again).

use super::{Backend, SHARDS_PREFIX};
use crate::error::{Error, Result};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectMeta;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;
use telemetry::stats::BackendOp;
use time::format_description::BorrowedFormatItem;
use uuid::Uuid;

/// Where quarantined sets go on every backend.
pub const QUARANTINE_PREFIX: &str = ".mlsysops/quarantine";

/// `<run>`: the UTC second of the sweep that quarantined a set.
const RUN_FORMAT: &[BorrowedFormatItem<'_>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

/// A shard set found under `shards/`, with the time anything of it last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSet {
    /// The set.
    pub set: Uuid,
    /// The newest modification time of its objects (files and directory, locally); `None`
    /// when the lister was told it is not needed (local backends then spare the `stat`s).
    pub modified: Option<SystemTime>,
}

/// A set in quarantine.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QuarantinedSet {
    /// The sweep that moved it there.
    pub run: String,
    /// The set.
    pub set: Uuid,
}

/// The run name of a sweep at `at`.
#[must_use]
pub fn run_name(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(RUN_FORMAT)
        .unwrap_or_else(|_| "19700101T000000Z".into())
}

/// When the sweep named `run` ran; `None` for a name no sweep writes.
#[must_use]
pub fn run_time(run: &str) -> Option<SystemTime> {
    time::PrimitiveDateTime::parse(run, RUN_FORMAT)
        .ok()
        .map(|t| SystemTime::from(t.assume_utc()))
}

fn io(backend: &str, what: &str, path: &std::path::Path, e: std::io::Error) -> Error {
    Error::io(format!("backend {backend}: {what} {}", path.display()), e)
}

/// Ignores "not found" (someone else finished the job).
fn absent_ok(res: std::io::Result<()>) -> std::io::Result<()> {
    match res {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The newest modification time of `dir` and the entries directly in it.
async fn newest_mtime(dir: &std::path::Path) -> std::io::Result<SystemTime> {
    let mut newest = tokio::fs::metadata(dir).await?.modified()?;
    let mut rd = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = rd.next_entry().await? {
        match entry.metadata().await.and_then(|m| m.modified()) {
            Ok(t) => newest = newest.max(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(newest)
}

/// Names of the entries of `dir`; none when it does not exist.
async fn entries(dir: &std::path::Path) -> std::io::Result<Vec<(std::ffi::OsString, PathBuf)>> {
    let mut out = Vec::new();
    let mut rd = match tokio::fs::read_dir(dir).await {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    while let Some(entry) = rd.next_entry().await? {
        out.push((entry.file_name(), entry.path()));
    }
    Ok(out)
}

impl Backend {
    /// Lists every object under `prefix`.
    async fn list_all(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        let listing = self.store.list(Some(prefix)).try_collect::<Vec<_>>();
        self.call(BackendOp::List, "list", prefix, |_| 0, listing).await
    }

    /// Deletes one object; one already gone is fine.
    async fn delete_object(&self, path: &Path) -> Result<()> {
        match self
            .call(BackendOp::Delete, "delete", path, |()| 0, self.store.delete(path))
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Every shard set on this backend, with when it last changed for those `needs_age`
    /// picks (remote listings carry every object's time anyway).
    pub async fn list_sets_aged(&self, needs_age: impl Fn(Uuid) -> bool) -> Result<Vec<StoredSet>> {
        if let Some(root) = &self.local_root {
            let dir = root.join(SHARDS_PREFIX);
            let mut out = Vec::new();
            for (name, path) in entries(&dir).await.map_err(|e| io(&self.id, "listing", &dir, e))? {
                let Some(set) = name.to_str().and_then(|s| Uuid::parse_str(s).ok()) else {
                    continue;
                };
                if !needs_age(set) {
                    out.push(StoredSet { set, modified: None });
                    continue;
                }
                match newest_mtime(&path).await {
                    Ok(modified) => out.push(StoredSet {
                        set,
                        modified: Some(modified),
                    }),
                    // Deleted meanwhile (a set being reaped): nothing to sweep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&self.id, "reading", &path, e)),
                }
            }
            out.sort_by_key(|s| s.set);
            return Ok(out);
        }
        let mut newest: BTreeMap<Uuid, SystemTime> = BTreeMap::new();
        for meta in self.list_all(&Path::from(SHARDS_PREFIX)).await? {
            let Some(set) = meta
                .location
                .parts()
                .nth(1)
                .and_then(|p| Uuid::parse_str(p.as_ref()).ok())
            else {
                continue;
            };
            let t = SystemTime::from(meta.last_modified);
            newest.entry(set).and_modify(|n| *n = (*n).max(t)).or_insert(t);
        }
        Ok(newest
            .into_iter()
            .map(|(set, modified)| StoredSet {
                set,
                modified: Some(modified),
            })
            .collect())
    }

    fn local_quarantine(root: &std::path::Path) -> PathBuf {
        root.join(QUARANTINE_PREFIX)
    }

    /// Moves everything of `set` under `shards/` to quarantine run `run`; returns how many
    /// shard objects (files) moved.
    pub async fn quarantine_set(&self, set: Uuid, run: &str) -> Result<usize> {
        if let Some(root) = &self.local_root {
            let src = root.join(SHARDS_PREFIX).join(set.to_string());
            let dst = Self::local_quarantine(root).join(run).join(set.to_string());
            let files = entries(&src).await.map_err(|e| io(&self.id, "listing", &src, e))?;
            if files.is_empty() {
                absent_ok(tokio::fs::remove_dir(&src).await).map_err(|e| io(&self.id, "removing", &src, e))?;
                return Ok(0);
            }
            tokio::fs::create_dir_all(&dst)
                .await
                .map_err(|e| io(&self.id, "creating", &dst, e))?;
            // File by file rather than the directory at once, so a second sweep of the same
            // set in the same run merges into it (a rename onto a non-empty directory fails).
            for (name, path) in &files {
                absent_ok(tokio::fs::rename(path, dst.join(name)).await)
                    .map_err(|e| io(&self.id, "quarantining", path, e))?;
            }
            absent_ok(tokio::fs::remove_dir(&src).await).map_err(|e| io(&self.id, "removing", &src, e))?;
            return Ok(files.len());
        }
        let objects = self.list_all(&Path::from(format!("{SHARDS_PREFIX}/{set}"))).await?;
        for meta in &objects {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let to = Path::from(format!("{QUARANTINE_PREFIX}/{run}/{set}/{name}"));
            let copy = self.store.copy(&meta.location, &to);
            self.call(BackendOp::Put, "copy", &meta.location, |()| 0, copy).await?;
            self.delete_object(&meta.location).await?;
        }
        Ok(objects.len())
    }

    /// Every set in quarantine on this backend.
    pub async fn list_quarantine(&self) -> Result<Vec<QuarantinedSet>> {
        let mut out = Vec::new();
        if let Some(root) = &self.local_root {
            let dir = Self::local_quarantine(root);
            for (run, path) in entries(&dir).await.map_err(|e| io(&self.id, "listing", &dir, e))? {
                let Some(run) = run.to_str() else { continue };
                for (set, _) in entries(&path).await.map_err(|e| io(&self.id, "listing", &path, e))? {
                    if let Some(set) = set.to_str().and_then(|s| Uuid::parse_str(s).ok()) {
                        out.push(QuarantinedSet {
                            run: run.to_owned(),
                            set,
                        });
                    }
                }
            }
        } else {
            for meta in self.list_all(&Path::from(QUARANTINE_PREFIX)).await? {
                let mut parts = meta.location.parts().skip(2);
                let (Some(run), Some(set)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if let Ok(set) = Uuid::parse_str(set.as_ref()) {
                    out.push(QuarantinedSet {
                        run: run.as_ref().to_owned(),
                        set,
                    });
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Moves a quarantined set back under `shards/`; a shard already there wins over its
    /// quarantined copy (which then stays until the retention ends). Returns how many shard
    /// objects came back.
    pub async fn restore_set(&self, q: &QuarantinedSet) -> Result<usize> {
        let mut restored = 0;
        if let Some(root) = &self.local_root {
            let run_dir = Self::local_quarantine(root).join(&q.run);
            let src = run_dir.join(q.set.to_string());
            let dst = root.join(SHARDS_PREFIX).join(q.set.to_string());
            tokio::fs::create_dir_all(&dst)
                .await
                .map_err(|e| io(&self.id, "creating", &dst, e))?;
            for (name, path) in entries(&src).await.map_err(|e| io(&self.id, "listing", &src, e))? {
                let to = dst.join(&name);
                if tokio::fs::try_exists(&to).await.unwrap_or(true) {
                    continue;
                }
                tokio::fs::rename(&path, &to)
                    .await
                    .map_err(|e| io(&self.id, "restoring", &path, e))?;
                restored += 1;
            }
            // Left in place when a copy stayed behind.
            let _ = tokio::fs::remove_dir(&src).await;
            let _ = tokio::fs::remove_dir(&run_dir).await;
            return Ok(restored);
        }
        let prefix = Path::from(format!("{QUARANTINE_PREFIX}/{}/{}", q.run, q.set));
        for meta in self.list_all(&prefix).await? {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let to = Path::from(format!("{SHARDS_PREFIX}/{}/{name}", q.set));
            match self
                .call(BackendOp::Head, "head", &to, |_| 0, self.store.head(&to))
                .await
            {
                Ok(_) => continue,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            let copy = self.store.copy(&meta.location, &to);
            self.call(BackendOp::Put, "copy", &meta.location, |()| 0, copy).await?;
            self.delete_object(&meta.location).await?;
            restored += 1;
        }
        Ok(restored)
    }

    /// Deletes everything quarantine run `run` holds.
    pub async fn purge_quarantine_run(&self, run: &str) -> Result<()> {
        if let Some(root) = &self.local_root {
            let dir = Self::local_quarantine(root).join(run);
            return absent_ok(tokio::fs::remove_dir_all(&dir).await).map_err(|e| io(&self.id, "removing", &dir, e));
        }
        for meta in self.list_all(&Path::from(format!("{QUARANTINE_PREFIX}/{run}"))).await? {
            self.delete_object(&meta.location).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, PutPayload};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn run_names_round_trip_to_the_second() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(run_name(at), "20231114T221320Z");
        assert_eq!(run_time(&run_name(at)), Some(at));
        assert_eq!(run_time("not-a-run"), None);
    }

    async fn put(store: &dyn ObjectStore, path: &str) {
        store
            .put(&Path::from(path), PutPayload::from_static(b"shard"))
            .await
            .unwrap();
    }

    /// The same moves on a remote store and on a local directory.
    async fn quarantine_and_restore(b: &Backend, shards: impl Fn(Uuid) -> Vec<String>) {
        let (a, c) = {
            let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
            (x.min(y), x.max(y))
        };
        for p in shards(a).into_iter().chain(shards(c)) {
            put(&*b.store, &p).await;
        }
        let sets = b.list_sets_aged(|_| true).await.unwrap();
        assert_eq!(sets.iter().map(|s| s.set).collect::<Vec<_>>(), vec![a, c]);
        assert!(sets.iter().all(|s| s
            .modified
            .is_some_and(|t| t <= SystemTime::now() + Duration::from_secs(5))));

        assert_eq!(b.quarantine_set(a, "20240101T000000Z").await.unwrap(), 2);
        assert_eq!(
            b.list_sets_aged(|_| true)
                .await
                .unwrap()
                .iter()
                .map(|s| s.set)
                .collect::<Vec<_>>(),
            vec![c]
        );
        let q = b.list_quarantine().await.unwrap();
        assert_eq!(
            q,
            vec![QuarantinedSet {
                run: "20240101T000000Z".into(),
                set: a
            }]
        );
        assert_eq!(b.restore_set(&q[0]).await.unwrap(), 2);
        assert!(b.list_quarantine().await.unwrap().is_empty());
        assert_eq!(b.list_sets_aged(|_| true).await.unwrap().len(), 2);

        b.quarantine_set(c, "20240101T000000Z").await.unwrap();
        b.purge_quarantine_run("20240101T000000Z").await.unwrap();
        assert!(b.list_quarantine().await.unwrap().is_empty());
        assert_eq!(
            b.list_sets_aged(|_| true)
                .await
                .unwrap()
                .iter()
                .map(|s| s.set)
                .collect::<Vec<_>>(),
            vec![a]
        );
    }

    #[tokio::test]
    async fn remote_sets_move_to_quarantine_and_back() {
        let b = Backend::remote("m", Arc::new(InMemory::new()));
        quarantine_and_restore(&b, |s| vec![format!("shards/{s}/0"), format!("shards/{s}/3")]).await;
    }

    #[tokio::test]
    async fn local_sets_move_to_quarantine_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::local("l", dir.path()).unwrap();
        quarantine_and_restore(&b, |s| vec![format!("shards/{s}/0"), format!("shards/{s}/3")]).await;
        assert!(!dir.path().join(QUARANTINE_PREFIX).join("20240101T000000Z").exists());
        // Ages nobody asked for are not looked up.
        let unaged = b.list_sets_aged(|_| false).await.unwrap();
        assert!(unaged.len() == 1 && unaged[0].modified.is_none(), "{unaged:?}");
    }
}
