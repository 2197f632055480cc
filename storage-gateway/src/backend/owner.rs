//! The owner marker: which deployment the shards on a backend belong to.
//!
//! Every start writes `.mlsysops/owner.json` beside `shards/` (under the backend's `prefix`,
//! if any) on each backend it can reach. The start-up checks read it before anything is swept:
//! a backend owned by another deployment, or claimed by a later start of this one than the
//! metadata knows, is not touched without an override.

use super::Backend;
use crate::error::{Error, Result};
use bytes::Bytes;
use object_store::path::Path;
use object_store::PutPayload;
use serde::{Deserialize, Serialize};
use telemetry::stats::BackendOp;
use uuid::Uuid;

/// Where the marker lives on every backend.
pub const MARKER_PATH: &str = ".mlsysops/owner.json";

/// Format of the markers this build writes.
const FORMAT: u32 = 1;

/// The content of `.mlsysops/owner.json`. Unknown fields are ignored, so a later build may add
/// some without making the marker unreadable here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerMarker {
    /// Format of this file.
    pub format: u32,
    /// The deployment whose shards these are.
    pub deployment_id: Uuid,
    /// Which start of the deployment wrote the marker (the metadata counts its starts).
    pub start: u64,
    /// When the deployment first started (RFC 3339).
    pub deployment_created_at: String,
    /// When this marker was written (RFC 3339).
    pub written_at: String,
    /// Host the writing gateway ran on.
    pub hostname: String,
    /// Version of the gateway that wrote it.
    pub gateway_version: String,
}

impl OwnerMarker {
    /// The marker a start of deployment `id` (created at `created_ms`) writes.
    #[must_use]
    pub fn new(id: Uuid, start: u64, created_ms: i64) -> Self {
        Self {
            format: FORMAT,
            deployment_id: id,
            start,
            deployment_created_at: rfc3339_ms(created_ms),
            written_at: rfc3339_ms(crate::records::now_ms()),
            hostname: hostname(),
            gateway_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// What a backend holds at [`MARKER_PATH`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// Nothing: a new backend, or one written by a build without markers.
    Absent,
    /// A marker.
    Found(OwnerMarker),
    /// Something that does not parse as a marker; why.
    Unreadable(String),
}

impl Backend {
    /// Reads the owner marker; an error means the backend did not answer. (Local backends read
    /// their directory directly, like their sweeps: injected faults never fake a foreign marker.)
    pub async fn read_marker(&self) -> Result<Marker> {
        if let Some(root) = &self.local_root {
            let file = root.join(MARKER_PATH);
            return match tokio::fs::read(&file).await {
                Ok(bytes) => Ok(parse(&bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Marker::Absent),
                Err(e) => Err(Error::io(format!("backend {}: reading {}", self.id, file.display()), e)),
            };
        }
        let path = Path::from(MARKER_PATH);
        let get = async {
            let res = self.store.get(&path).await?;
            res.bytes().await
        };
        match self
            .call(BackendOp::Get, "get", &path, |b: &Bytes| b.len() as u64, get)
            .await
        {
            Ok(bytes) => Ok(parse(&bytes)),
            Err(e) if e.is_not_found() => Ok(Marker::Absent),
            Err(e) => Err(e),
        }
    }

    /// Writes (replaces) the owner marker.
    pub async fn write_marker(&self, marker: &OwnerMarker) -> Result<()> {
        let path = Path::from(MARKER_PATH);
        // Serializing a struct of strings and numbers cannot fail.
        let body = serde_json::to_vec_pretty(marker).expect("owner marker serializes");
        if let Some(root) = &self.local_root {
            let file = root.join(MARKER_PATH);
            let tmp = file.with_extension("json.tmp");
            let io = |e| Error::io(format!("backend {}: writing {}", self.id, file.display()), e);
            if let Some(dir) = file.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(io)?;
            }
            // Written aside and renamed, so a crash never leaves a torn marker.
            tokio::fs::write(&tmp, &body).await.map_err(io)?;
            return tokio::fs::rename(&tmp, &file).await.map_err(io);
        }
        let len = body.len() as u64;
        let put = self.store.put(&path, PutPayload::from(body));
        self.call(BackendOp::Put, "put", &path, |_| len, put).await.map(|_| ())
    }
}

fn parse(bytes: &[u8]) -> Marker {
    match serde_json::from_slice(bytes) {
        Ok(m) => Marker::Found(m),
        Err(e) => Marker::Unreadable(format!("{MARKER_PATH} is not an owner marker: {e}")),
    }
}

/// `ms` (Unix milliseconds) as RFC 3339, UTC.
#[must_use]
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms after the Unix epoch"))
}

/// The host's name, for the marker (so an operator can tell whose gateway claimed a backend).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    #[tokio::test]
    async fn markers_round_trip_and_garbage_is_unreadable() {
        let store = Arc::new(InMemory::new());
        let b = Backend::remote("m", store.clone());
        assert_eq!(b.read_marker().await.unwrap(), Marker::Absent);
        let id = Uuid::new_v4();
        let m = OwnerMarker::new(id, 7, 1_700_000_000_000);
        b.write_marker(&m).await.unwrap();
        assert_eq!(b.read_marker().await.unwrap(), Marker::Found(m.clone()));
        assert_eq!(m.deployment_created_at, "2023-11-14T22:13:20Z");
        object_store::ObjectStore::put(&*store, &Path::from(MARKER_PATH), PutPayload::from_static(b"{not json"))
            .await
            .unwrap();
        assert!(matches!(b.read_marker().await.unwrap(), Marker::Unreadable(_)));
    }

    #[tokio::test]
    async fn local_markers_are_files_beside_the_shards() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::local("l", dir.path()).unwrap();
        assert_eq!(b.read_marker().await.unwrap(), Marker::Absent);
        let m = OwnerMarker::new(Uuid::new_v4(), 1, 0);
        b.write_marker(&m).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join(MARKER_PATH)).unwrap();
        assert!(text.contains(&m.deployment_id.to_string()), "{text}");
        assert_eq!(b.read_marker().await.unwrap(), Marker::Found(m));
    }
}
