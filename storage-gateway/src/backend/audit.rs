//! Active audits: every healthy backend is read on a timer, whether clients read it or not.
//! Readers steer around a slow backend, and a backend the agents drained from a bucket gets no
//! client reads at all; without audits its latency would go unmeasured and its recovery unseen.
//! An audit is a GET of a small object of our own (`.mlsysops/audit`, written on first use),
//! through the same fault injection, recorded apart from client reads (`audit` in the backend
//! telemetry): a hedged reader abandons a slow backend's reads early, so client GET latencies
//! understate it, while an audit always waits for its answer.

use super::Backend;
use crate::error::Result;
use bytes::Bytes;
use object_store::path::Path;
use object_store::PutPayload;
use telemetry::stats::BackendOp;

/// Where the audit object lives, beside `shards/`.
pub const AUDIT_PATH: &str = ".mlsysops/audit";
/// Its size: large enough that the GET counts towards the bandwidth estimate (64 KiB and up).
pub const AUDIT_BYTES: usize = 64 * 1024;

impl Backend {
    /// Reads the audit object (writing it when it is missing).
    pub async fn audit(&self) -> Result<()> {
        let path = Path::from(AUDIT_PATH);
        let get = async {
            let res = self.store.get(&path).await?;
            res.bytes().await
        };
        match self
            .call(BackendOp::Audit, "get", &path, |b: &Bytes| b.len() as u64, get)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                let put = self.store.put(&path, PutPayload::from(vec![0u8; AUDIT_BYTES]));
                self.call(BackendOp::Put, "put", &path, |_| AUDIT_BYTES as u64, put)
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}
