//! Storage backends: any `object_store::ObjectStore`, holding shard objects.
//!
//! A backend stores, for every shard set (one PUT, or one multipart part), one object
//! `shards/<set-id>/<shard-index>`. Everything above this module speaks in shard sets and
//! indices; which store sits below (local directory, S3, GCS, Azure, memory) is invisible to it.
//!
//! Beside `shards/`, `.mlsysops/` holds the gateway's own housekeeping: the owner marker and the
//! quarantine of swept sets.
//!
//! - [`spec`]: `[[backend]]` configuration and the object_store builders.
//! - [`health`]: the circuit breaker that routes around failing backends.
//! - [`owner`]: the owner marker (which deployment the shards belong to).
//! - [`quarantine`]: sets moved aside by the start-up sweep, and set ages.

pub mod audit;
pub mod faults;
pub mod health;
pub mod owner;
pub mod quarantine;
pub mod spec;

pub use faults::{FaultSpec, FaultyStore};
pub use health::{Health, HealthStatus};
pub use owner::{Marker, OwnerMarker};
pub use quarantine::{QuarantinedSet, StoredSet};
pub use spec::{BackendKind, BackendSpec};

use crate::durability::Durability;
use crate::error::{Error, Result};
use bytes::{Bytes, BytesMut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, PutPayload};
use placement::BackendLabels;
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use telemetry::stats::{BackendOp, Outcome};
use telemetry::Telemetry;
use tracing::Instrument;
use uuid::Uuid;

/// Top-level prefix of shard objects on every backend.
const SHARDS_PREFIX: &str = "shards";

/// One storage backend.
#[derive(Debug, Clone)]
pub struct Backend {
    id: String,
    /// What kind of store it is (`local`, `memory`, `s3`, `gcs`, `azure`; `remote` when built
    /// from a store directly).
    kind: &'static str,
    store: Arc<dyn ObjectStore>,
    /// The fault injector in front of `store`, when there is one: its spec can be changed at
    /// run time.
    faults: Option<Arc<FaultyStore>>,
    /// Set for local directories: staged writes of a killed process are invisible to
    /// `ObjectStore::list`, so orphan sweeps and set deletion work on the directory itself.
    local_root: Option<PathBuf>,
    /// Local directories with [`Durability::Relaxed`]: finished shards are not fsynced.
    /// Shared by the clones, like the rest of the backend's state.
    local_sync_off: Arc<AtomicBool>,
    /// Writes are coalesced into parts of this size before they reach the store.
    part_size: usize,
    labels: BackendLabels,
    health: Arc<Health>,
    /// Where every call's latency, bytes and outcome go.
    telemetry: Option<Arc<Telemetry>>,
    /// Calls in flight per operation ([`BackendOp::ALL`] order), read by a metrics gauge:
    /// an atomic per call is far cheaper than recording into an instrument twice.
    inflight: Arc<[AtomicI64; BackendOp::ALL.len()]>,
}

impl Backend {
    /// A backend on a local directory, created if missing.
    pub fn local(id: impl Into<String>, root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join(SHARDS_PREFIX))
            .map_err(|e| Error::io(format!("creating backend directory {}", root.display()), e))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|source| Error::Backend {
            backend: root.display().to_string(),
            op: "open",
            path: String::new(),
            source: Box::new(source),
        })?;
        Ok(Self {
            id: id.into(),
            kind: "local",
            store: Arc::new(store),
            faults: None,
            local_root: Some(root),
            local_sync_off: Arc::default(),
            part_size: 1 << 20,
            labels: BackendLabels {
                provider: "local".into(),
                ..BackendLabels::default()
            },
            health: Arc::default(),
            telemetry: None,
            inflight: Arc::default(),
        })
    }

    /// A backend on any object store (remote kinds; multipart parts must be >= 5 MiB there).
    pub fn remote(id: impl Into<String>, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            id: id.into(),
            kind: "remote",
            store,
            faults: None,
            local_root: None,
            local_sync_off: Arc::default(),
            part_size: 8 << 20,
            labels: BackendLabels::default(),
            health: Arc::default(),
            telemetry: None,
            inflight: Arc::default(),
        }
    }

    /// Sets how durable a finished shard is: with [`Durability::Fsync`] (the default) a local
    /// backend fsyncs the shard file, its set's directory and the directory of sets before the
    /// shard counts as written. Remote stores are durable when they answer: nothing to do.
    pub fn set_durability(&self, durability: Durability) {
        self.local_sync_off.store(!durability.syncs(), Ordering::Relaxed);
    }

    /// Makes the directories that lead to the shard sets of a local backend survive a power
    /// loss (`shards/`, the backend's directory and the one holding it: created at start,
    /// perhaps just now). Run once at start; nothing to do for remote stores or when relaxed.
    pub async fn sync_root(&self) -> Result<()> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        if self.local_sync_off.load(Ordering::Relaxed) {
            return Ok(());
        }
        let id = self.id.clone();
        tokio::task::spawn_blocking(move || {
            fsync(&id, &root.join(SHARDS_PREFIX))?;
            fsync(&id, &root)?;
            root.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or(Ok(()), |p| fsync(&id, p))
        })
        .await
        .map_err(|e| Error::Internal(format!("fsync task: {e}")))?
    }

    /// Makes a finished shard object survive a power loss (see [`Backend::set_durability`]):
    /// the file, its set's directory and the directory of sets, fsynced at once. Each is a
    /// journal commit on most file systems; issued together, and with those of concurrent
    /// writes, the kernel covers them with one (and an fsync of a directory whose change a
    /// commit already covered returns at once), which beats issuing them one after the other
    /// or queueing them behind one another here.
    async fn sync_shard(&self, path: &Path) -> Result<()> {
        let Some(root) = &self.local_root else { return Ok(()) };
        if self.local_sync_off.load(Ordering::Relaxed) {
            return Ok(());
        }
        let blocking = |path: std::path::PathBuf| {
            let id = self.id.clone();
            async move {
                tokio::task::spawn_blocking(move || fsync(&id, &path))
                    .await
                    .map_err(|e| Error::Internal(format!("fsync task: {e}")))?
            }
        };
        let file = root.join(path.as_ref());
        let set_dir = file.parent().unwrap_or(root).to_path_buf();
        let sets_dir = root.join(SHARDS_PREFIX);
        tokio::try_join!(blocking(file), blocking(set_dir), blocking(sets_dir)).map(|_| ())
    }

    /// The same backend with faults injected into every call of its store. (Local backends
    /// still sweep and delete on their directory directly: those paths stay fault-free.)
    #[must_use]
    pub fn with_faults(mut self, spec: FaultSpec) -> Self {
        let faulty = Arc::new(FaultyStore::new(self.store, spec));
        self.store = faulty.clone();
        self.faults = Some(faulty);
        self
    }

    /// The fault injector in front of the store, if the backend has one (a `faults` table, or
    /// a gateway started with fault injection allowed).
    #[must_use]
    pub fn faults(&self) -> Option<&FaultyStore> {
        self.faults.as_deref()
    }

    /// The same backend, reporting `kind` as its kind of store.
    #[must_use]
    pub fn with_kind(mut self, kind: BackendKind) -> Self {
        self.kind = kind.name();
        self
    }

    /// What kind of store holds the shards (`local`, `memory`, `s3`, `gcs`, `azure`, or
    /// `remote` for a store given directly).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The same backend, recording every call into `telemetry`.
    #[must_use]
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        telemetry.register_backend(&self.id);
        self.telemetry = Some(telemetry);
        self
    }

    /// The same backend with `labels`.
    #[must_use]
    pub fn with_labels(mut self, labels: BackendLabels) -> Self {
        self.labels = labels;
        self
    }

    /// What placement knows about this backend.
    #[must_use]
    pub fn labels(&self) -> &BackendLabels {
        &self.labels
    }

    /// Whether shards live in a local directory (as opposed to a remote or in-memory store).
    #[must_use]
    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    /// Bytes a shard writer buffers before handing a part to the store.
    #[must_use]
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// Calls in flight now, per operation.
    pub fn in_flight(&self) -> impl Iterator<Item = (BackendOp, u64)> + '_ {
        BackendOp::ALL
            .iter()
            .zip(self.inflight.iter())
            .map(|(op, n)| (*op, u64::try_from(n.load(Ordering::Relaxed)).unwrap_or(0)))
    }

    /// The backend's health tracker.
    #[must_use]
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Refuses the call at once while the backend is suspect.
    fn admit(&self, op: &'static str, path: &Path) -> Result<()> {
        self.health
            .admit()
            .map_err(|(retry_in, last_error)| Error::BackendDown {
                backend: self.id.clone(),
                op,
                path: path.to_string(),
                retry_in,
                last_error,
            })
    }

    /// Runs one store call, feeding its outcome to the health tracker ("not found" is an
    /// answer, not a fault) and its latency, bytes and outcome to telemetry, inside a
    /// `backend.call` span.
    async fn measured<T>(
        &self,
        op: BackendOp,
        bytes: impl FnOnce(&T) -> u64,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        let span =
            tracing::info_span!("backend.call", mlsysops.backend = %self.id, mlsysops.backend.operation = op.name());
        let mut guard = CallGuard::new(self.telemetry.as_deref(), &self.id, op, &self.inflight);
        let res = call.instrument(span).await;
        let outcome = match &res {
            Ok(_) => Outcome::Ok,
            Err(object_store::Error::NotFound { .. }) => Outcome::NotFound,
            Err(_) => Outcome::Error,
        };
        match &res {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => self.health.success(),
            Err(e) => self.health.failure(&e.to_string()),
        }
        guard.finish(res.as_ref().map_or(0, bytes), outcome);
        res
    }

    /// Admits, runs and measures one store call, naming the backend, operation and path in
    /// its error.
    async fn call<T>(
        &self,
        op: BackendOp,
        name: &'static str,
        path: &Path,
        bytes: impl FnOnce(&T) -> u64,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        self.admit(name, path)?;
        self.measured(op, bytes, call)
            .await
            .map_err(|e| self.err(name, path, e))
    }

    /// Checks that the backend answers and its bucket/container exists: a listing of the shard
    /// prefix (a HEAD would take "no such bucket" for "no such key" and pass).
    pub async fn probe(&self) -> Result<()> {
        let path = Path::from(SHARDS_PREFIX);
        let res = self
            .measured(BackendOp::List, |_| 0, self.store.list_with_delimiter(Some(&path)))
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => {
                let msg = "the bucket or container does not exist (or is not visible with these credentials)";
                self.health.failure(msg);
                Err(Error::Config(format!("backend {}: {msg}", self.id)))
            }
            Err(e) => Err(self.err("probe", &path, e)),
        }
    }

    /// The backend's configured id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where shard `idx` of set `set` lives.
    #[must_use]
    pub fn shard_path(set: Uuid, idx: usize) -> Path {
        Path::from(format!("{SHARDS_PREFIX}/{set}/{idx}"))
    }

    fn err(&self, op: &'static str, path: &Path, source: object_store::Error) -> Error {
        Error::Backend {
            backend: self.id.clone(),
            op,
            path: path.to_string(),
            source: Box::new(source),
        }
    }

    /// Opens a streaming writer for one shard object.
    #[must_use]
    pub fn writer(&self, path: Path) -> ShardWriter {
        ShardWriter {
            backend: self.clone(),
            path,
            buf: BytesMut::new(),
            upload: None,
            written: 0,
        }
    }

    /// Reads `range` of a shard object.
    pub async fn read_range(&self, path: &Path, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let len = |b: &Bytes| b.len() as u64;
        self.call(
            BackendOp::Get,
            "get_range",
            path,
            len,
            self.store.get_range(path, range),
        )
        .await
    }

    /// Deletes every shard object of a set; a set that is already gone is not an error.
    pub async fn delete_set(&self, set: Uuid, shard_indices: impl IntoIterator<Item = usize>) -> Result<()> {
        if let Some(root) = &self.local_root {
            let dir = root.join(SHARDS_PREFIX).join(set.to_string());
            return match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(format!("backend {}: removing {}", self.id, dir.display()), e)),
            };
        }
        for idx in shard_indices {
            let path = Self::shard_path(set, idx);
            match self
                .call(BackendOp::Delete, "delete", &path, |()| 0, self.store.delete(&path))
                .await
            {
                Err(e) if e.is_not_found() => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Deletes shard `idx` of `set` only, leaving any other shard of the set on this backend
    /// (a moved shard's old copy, where a later move may have put another shard of the set).
    pub async fn delete_shard(&self, set: Uuid, idx: usize) -> Result<()> {
        if let Some(root) = &self.local_root {
            let dir = root.join(SHARDS_PREFIX).join(set.to_string());
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io(format!("backend {}: listing {}", self.id, dir.display()), e)),
            };
            let name = idx.to_string();
            let staged = format!("{idx}#");
            let mut others = false;
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| Error::io(format!("backend {}: listing {}", self.id, dir.display()), e))?
            {
                let file = entry.file_name().to_string_lossy().into_owned();
                // object_store stages a local write as `<name>#<n>` before renaming it.
                if file == name || file.starts_with(&staged) {
                    match tokio::fs::remove_file(entry.path()).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(Error::io(
                                format!("backend {}: removing {}", self.id, entry.path().display()),
                                e,
                            ))
                        }
                    }
                } else {
                    others = true;
                }
            }
            if !others {
                // Another shard may land meanwhile; then the directory stays, as it should.
                let _ = tokio::fs::remove_dir(&dir).await;
            }
            return Ok(());
        }
        let path = Self::shard_path(set, idx);
        match self
            .call(BackendOp::Delete, "delete", &path, |()| 0, self.store.delete(&path))
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

/// fsyncs a file or directory of backend `id`.
fn fsync(id: &str, path: &std::path::Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("backend {id}: fsync of {}", path.display()), e))
}

/// Streams one shard object to its backend: small objects in one put, large ones as a
/// multipart upload of `part_size` parts, so memory stays at one part per shard.
pub struct ShardWriter {
    backend: Backend,
    path: Path,
    buf: BytesMut,
    upload: Option<Box<dyn MultipartUpload>>,
    written: u64,
}

impl ShardWriter {
    /// Appends bytes to the shard object.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buf.len() >= self.backend.part_size {
            let part = self.buf.split().freeze();
            self.put_part(part).await?;
        }
        Ok(())
    }

    async fn put_part(&mut self, part: Bytes) -> Result<()> {
        let b = &self.backend;
        if self.upload.is_none() {
            let create = b.store.put_multipart(&self.path);
            self.upload = Some(
                b.call(BackendOp::Put, "put_multipart", &self.path, |_| 0, create)
                    .await?,
            );
        }
        let Some(up) = self.upload.as_mut() else {
            unreachable!("upload was just created")
        };
        let len = part.len() as u64;
        let put = up.put_part(PutPayload::from(part));
        b.call(BackendOp::Put, "put_part", &self.path, |_| len, put).await
    }

    /// Makes the shard object durable (as [`Backend::set_durability`] says) and visible;
    /// returns its length.
    pub async fn finish(mut self) -> Result<u64> {
        if self.upload.is_none() {
            let data = self.buf.split().freeze();
            let len = data.len() as u64;
            let put = self.backend.store.put(&self.path, PutPayload::from(data));
            self.backend
                .call(BackendOp::Put, "put", &self.path, |_| len, put)
                .await?;
            self.backend.sync_shard(&self.path).await?;
            return Ok(self.written);
        }
        if !self.buf.is_empty() {
            let part = self.buf.split().freeze();
            self.put_part(part).await?;
        }
        let Some(mut up) = self.upload.take() else {
            unreachable!("checked above")
        };
        let b = &self.backend;
        b.call(BackendOp::Put, "complete", &self.path, |_| 0, up.complete())
            .await?;
        b.sync_shard(&self.path).await?;
        Ok(self.written)
    }

    /// Abandons the write; staged data is removed where the store allows it.
    pub async fn abort(mut self) {
        if let Some(mut up) = self.upload.take() {
            let _ = up.abort().await;
        }
    }
}

/// Counts a call in flight for as long as it lives and records how it ended. A call dropped
/// before it finished (a hedged read that lost the race) is recorded as cancelled with the time
/// it had taken: a lower bound that still tells the reader this backend is slow, where
/// recording nothing would leave a slow backend's record looking fast forever.
struct CallGuard<'a> {
    telemetry: Option<&'a Telemetry>,
    backend: &'a str,
    op: BackendOp,
    inflight: &'a AtomicI64,
    start: Instant,
    finished: bool,
}

impl<'a> CallGuard<'a> {
    fn new(
        telemetry: Option<&'a Telemetry>,
        backend: &'a str,
        op: BackendOp,
        inflight: &'a [AtomicI64; BackendOp::ALL.len()],
    ) -> Self {
        let inflight = &inflight[op as usize];
        inflight.fetch_add(1, Ordering::Relaxed);
        Self {
            telemetry,
            backend,
            op,
            inflight,
            start: Instant::now(),
            finished: false,
        }
    }

    fn finish(&mut self, bytes: u64, outcome: Outcome) {
        self.finished = true;
        if let Some(t) = self.telemetry {
            t.backend_call(self.backend, self.op, self.start.elapsed(), bytes, outcome);
        }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
        if let (false, Some(t)) = (self.finished, self.telemetry) {
            t.backend_call(self.backend, self.op, self.start.elapsed(), 0, Outcome::Cancelled);
        }
    }
}
