//! Storage backends: any `object_store::ObjectStore`, holding shard objects.
//!
//! A backend stores, for every shard set (one PUT, or one multipart part), one object
//! `shards/<set-id>/<shard-index>`. Everything above this module speaks in shard sets and
//! indices; which store sits below (local directory now, S3/GCS/Azure next) is invisible to it.

use crate::error::{Error, Result};
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, PutPayload};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use uuid::Uuid;

/// Top-level prefix of shard objects on every backend.
const SHARDS_PREFIX: &str = "shards";

/// One storage backend.
#[derive(Debug, Clone)]
pub struct Backend {
    id: String,
    store: Arc<dyn ObjectStore>,
    /// Set for local directories: staged writes of a killed process are invisible to
    /// `ObjectStore::list`, so orphan sweeps and set deletion work on the directory itself.
    local_root: Option<PathBuf>,
    /// Writes are coalesced into parts of this size before they reach the store.
    part_size: usize,
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
            store: Arc::new(store),
            local_root: Some(root),
            part_size: 1 << 20,
        })
    }

    /// A backend on any object store (remote kinds; multipart parts must be >= 5 MiB there).
    pub fn remote(id: impl Into<String>, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            id: id.into(),
            store,
            local_root: None,
            part_size: 8 << 20,
        }
    }

    /// The backend's configured id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the backend is a directory of this machine (its bytes never leave it).
    #[must_use]
    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
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
        self.store
            .get_range(path, range)
            .await
            .map_err(|e| self.err("get_range", path, e))
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
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete", &path, e)),
            }
        }
        Ok(())
    }

    /// Lists the ids of every shard set that has anything on this backend.
    pub async fn list_sets(&self) -> Result<Vec<Uuid>> {
        if let Some(root) = &self.local_root {
            let dir = root.join(SHARDS_PREFIX);
            let mut out = Vec::new();
            let mut rd = match tokio::fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(Error::io(format!("backend {}: listing {}", self.id, dir.display()), e)),
            };
            while let Some(entry) = rd
                .next_entry()
                .await
                .map_err(|e| Error::io(format!("backend {}: listing", self.id), e))?
            {
                if let Some(id) = entry.file_name().to_str().and_then(|s| Uuid::parse_str(s).ok()) {
                    out.push(id);
                }
            }
            return Ok(out);
        }
        let prefix = Path::from(SHARDS_PREFIX);
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.err("list", &prefix, e))?;
        let mut out: Vec<Uuid> = metas
            .iter()
            .filter_map(|m| m.location.parts().nth(1).and_then(|p| Uuid::parse_str(p.as_ref()).ok()))
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
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
        if self.upload.is_none() {
            let up = self
                .backend
                .store
                .put_multipart(&self.path)
                .await
                .map_err(|e| self.backend.err("put_multipart", &self.path, e))?;
            self.upload = Some(up);
        }
        let Some(up) = self.upload.as_mut() else {
            unreachable!("upload was just created")
        };
        up.put_part(PutPayload::from(part))
            .await
            .map_err(|e| self.backend.err("put_part", &self.path, e))
    }

    /// Makes the shard object durable and visible; returns its length.
    pub async fn finish(mut self) -> Result<u64> {
        if self.upload.is_none() {
            let data = self.buf.split().freeze();
            self.backend
                .store
                .put(&self.path, PutPayload::from(data))
                .await
                .map_err(|e| self.backend.err("put", &self.path, e))?;
            return Ok(self.written);
        }
        if !self.buf.is_empty() {
            let part = self.buf.split().freeze();
            self.put_part(part).await?;
        }
        let Some(mut up) = self.upload.take() else {
            unreachable!("checked above")
        };
        up.complete()
            .await
            .map_err(|e| self.backend.err("complete", &self.path, e))?;
        Ok(self.written)
    }

    /// Abandons the write; staged data is removed where the store allows it.
    pub async fn abort(mut self) {
        if let Some(mut up) = self.upload.take() {
            let _ = up.abort().await;
        }
    }
}
