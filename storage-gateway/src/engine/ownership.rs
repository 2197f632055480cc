//! Which backends this deployment may sweep: the owner markers are checked before anything is
//! swept, and rewritten once the checks pass.
//!
//! The metadata holds a [`DeploymentRecord`] (an id made once, and a start count); every start
//! writes an [`OwnerMarker`] with both on each backend it reaches. A backend is this
//! deployment's when its marker carries our id and a start count no later than the metadata's,
//! or when it has no marker and either holds no set at all (a new backend) or holds sets some
//! of which the metadata names (written by a build before markers existed). Anything else
//! needs an [`Overrides`] flag, and the refusal says what was found: another deployment's
//! marker, a marker from a later start than this metadata knows (a restored backup, or a copy
//! of the data dir started elsewhere), unmarked sets the metadata names none of, or empty
//! metadata against a backend holding sets.

use super::Engine;
use crate::backend::{Backend, Marker, OwnerMarker, StoredSet};
use crate::error::{Error, Result};
use crate::records::{now_ms, DeploymentRecord, SetRecord, SetState};
use std::collections::HashMap;
use std::fmt::Write as _;
use uuid::Uuid;

/// Flag that takes over backends this metadata cannot vouch for.
pub const ADOPT_FLAG: &str = "--adopt";

/// Flag that starts empty metadata against backends holding shard sets.
pub const EMPTY_METADATA_FLAG: &str = "--i-know-metadata-is-empty";

/// The operator's overrides of the ownership checks, for one start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Take over backends owned by another deployment, claimed by a later start of this one,
    /// or holding unmarked sets the metadata names none of (their markers are rewritten).
    pub adopt: bool,
    /// Start with empty metadata (no bucket, no shard set) against backends holding sets.
    pub metadata_is_empty: bool,
}

/// Why a backend may not be swept without an override.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Finding {
    /// Another deployment's marker.
    Foreign(OwnerMarker),
    /// Something at the marker's path that is not a marker.
    Unreadable(String),
    /// Our id, but written by a later start than the metadata knows.
    Ahead(OwnerMarker),
    /// No marker, and the metadata names none of the sets.
    Unaccounted,
    /// No marker, sets present, and the metadata is empty.
    EmptyMetadata,
}

impl Finding {
    fn overridden(&self, o: Overrides) -> bool {
        match self {
            Finding::EmptyMetadata => o.metadata_is_empty || o.adopt,
            _ => o.adopt,
        }
    }

    fn flag(&self) -> &'static str {
        match self {
            Finding::EmptyMetadata => EMPTY_METADATA_FLAG,
            _ => ADOPT_FLAG,
        }
    }

    fn describe(&self, ours: &DeploymentRecord) -> String {
        let by = |m: &OwnerMarker| {
            format!(
                "written by host {:?} at {} (its start {}, gateway {})",
                m.hostname, m.written_at, m.start, m.gateway_version
            )
        };
        match self {
            Finding::Foreign(m) => format!(
                "owned by deployment {} (created {}), marker {}",
                m.deployment_id,
                m.deployment_created_at,
                by(m)
            ),
            Finding::Unreadable(why) => format!("unreadable owner marker: {why}"),
            Finding::Ahead(m) => format!(
                "claimed by start {} of this deployment, but this metadata has seen only {} starts: \
                 it looks restored from a backup or copied from a gateway that kept running; marker {}",
                m.start,
                ours.starts,
                by(m)
            ),
            Finding::Unaccounted => "no owner marker, and this metadata names none of its shard sets".to_owned(),
            Finding::EmptyMetadata => {
                "no owner marker, and this metadata is empty (no bucket, no shard set)".to_owned()
            }
        }
    }
}

/// A backend this start owns, with what was under `shards/` when it was checked.
#[derive(Debug, Clone)]
pub struct Owned {
    /// The backend.
    pub backend: Backend,
    /// Its shard sets at the check.
    pub sets: Vec<StoredSet>,
}

/// The outcome of the checks: what this start owns.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The deployment, with this start counted.
    pub deployment: DeploymentRecord,
    /// The backends that answered and are ours now.
    pub owned: Vec<Owned>,
    /// Backends that did not answer: neither checked nor swept (nor marked) this time.
    pub unreachable: Vec<String>,
}

/// What one backend answered.
enum Seen {
    Down(Error),
    Up(Marker, Vec<StoredSet>),
}

/// Reads `b`'s marker and lists its sets, with the ages of those the metadata does not
/// settle (no record, or Pending: what the sweep may move).
async fn look(b: &Backend, records: &HashMap<Uuid, SetRecord>) -> Seen {
    let marker = match b.read_marker().await {
        Ok(m) => m,
        Err(e) => return Seen::Down(e),
    };
    let needs_age = |set| records.get(&set).is_none_or(|r| r.state == SetState::Pending);
    match b.list_sets_aged(needs_age).await {
        Ok(sets) => Seen::Up(marker, sets),
        Err(e) => Seen::Down(e),
    }
}

/// What stands between this metadata and backend `b` holding `sets`, if anything.
fn judge(
    ours: &DeploymentRecord,
    meta_empty: bool,
    known: &HashMap<Uuid, SetRecord>,
    marker: Marker,
    sets: &[StoredSet],
) -> Option<Finding> {
    match marker {
        Marker::Found(m) if m.deployment_id != ours.id => Some(Finding::Foreign(m)),
        Marker::Found(m) if m.start > ours.starts => Some(Finding::Ahead(m)),
        Marker::Found(_) => None,
        Marker::Unreadable(why) => Some(Finding::Unreadable(why)),
        Marker::Absent if sets.is_empty() => None,
        Marker::Absent if meta_empty => Some(Finding::EmptyMetadata),
        // Written before markers existed: ours if the metadata names any of it.
        Marker::Absent if sets.iter().any(|s| known.contains_key(&s.set)) => None,
        Marker::Absent => Some(Finding::Unaccounted),
    }
}

impl Engine {
    /// Checks every backend's owner marker against the metadata (`records`: every set it has a
    /// record of); refuses with [`Error::StartRefused`], having changed nothing, when a backend
    /// is not ours and no override says to take it. Otherwise counts this start in the
    /// metadata (durably) and writes our marker on every backend that answered.
    pub(super) async fn claim_backends(
        &self,
        overrides: Overrides,
        records: &HashMap<Uuid, SetRecord>,
    ) -> Result<Claim> {
        let recorded = self.catalog().deployment()?;
        let first_start = recorded.is_none();
        let mut deployment = recorded.unwrap_or_else(|| DeploymentRecord {
            id: Uuid::new_v4(),
            created_ms: now_ms(),
            starts: 0,
        });
        let meta_empty = self.catalog().is_empty()?;
        let seen = futures::future::join_all(self.backends().iter().map(|b| look(b, records))).await;
        let mut owned = Vec::new();
        let mut unreachable = Vec::new();
        let mut refusals = Vec::new();
        let mut adopted = Vec::new();
        for (b, seen) in self.backends().iter().zip(seen) {
            let (marker, sets) = match seen {
                Seen::Up(marker, sets) => (marker, sets),
                Seen::Down(e) => {
                    tracing::warn!(backend = %b.id(), error = %e, "backend did not answer the ownership check: not swept, not marked this start");
                    unreachable.push(b.id().to_owned());
                    continue;
                }
            };
            if let Some(finding) = judge(&deployment, meta_empty, records, marker, &sets) {
                if finding.overridden(overrides) {
                    adopted.push((b.id().to_owned(), finding.describe(&deployment), sets.len()));
                } else {
                    refusals.push((b.id().to_owned(), finding, sets.len()));
                }
            }
            owned.push(Owned {
                backend: b.clone(),
                sets,
            });
        }
        if !refusals.is_empty() {
            return Err(Error::StartRefused(refusal_message(
                &deployment,
                first_start,
                meta_empty,
                &refusals,
            )));
        }
        for (backend, what, sets) in &adopted {
            tracing::warn!(%backend, found = %what, shard_sets = sets, "taking the backend over as told; sets this metadata does not name will be quarantined, not deleted");
        }
        deployment.starts += 1;
        self.catalog().record_start(&deployment)?;
        if first_start {
            tracing::info!(deployment = %deployment.id, "new deployment id recorded in the metadata");
        }
        let marker = OwnerMarker::new(deployment.id, deployment.starts, deployment.created_ms);
        let writes = owned.iter().map(|o| o.backend.write_marker(&marker));
        for (o, res) in owned.iter().zip(futures::future::join_all(writes).await) {
            if let Err(e) = res {
                tracing::warn!(backend = %o.backend.id(), error = %e, "cannot write the owner marker");
            }
        }
        tracing::info!(deployment = %deployment.id, start = deployment.starts, owned = owned.len(), unreachable = unreachable.len(), "backends claimed");
        Ok(Claim {
            deployment,
            owned,
            unreachable,
        })
    }
}

fn refusal_message(
    ours: &DeploymentRecord,
    first_start: bool,
    meta_empty: bool,
    refusals: &[(String, Finding, usize)],
) -> String {
    let mut msg = format!(
        "refusing to start: {} backend(s) hold shard data this metadata cannot vouch for, and the start-up sweep \
         would move it away. This metadata: deployment {}{}, {}. Found:",
        refusals.len(),
        ours.id,
        if first_start {
            " (new: no deployment recorded yet)".to_owned()
        } else {
            format!(" ({} starts so far)", ours.starts)
        },
        if meta_empty { "empty" } else { "not empty" }
    );
    for (backend, finding, sets) in refusals {
        let _ = write!(
            msg,
            "\n  - backend {backend:?}: {}; {sets} shard set(s) there. Pass {} to take it over.",
            finding.describe(ours),
            finding.flag()
        );
    }
    msg.push_str(
        "\nNothing was changed on any backend. If --data-dir (or the [[backend]] list) is wrong, fix it instead. \
         With the flag, this gateway writes its owner marker on these backends, and sets its metadata does not \
         name are moved to .mlsysops/quarantine/ (older than the sweep grace period), not deleted.",
    );
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::owner::MARKER_PATH;
    use crate::meta::{Catalog, RocksStore};
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, PutPayload};
    use std::sync::Arc;

    /// A gateway's metadata over shared stores.
    struct Gw {
        engine: Engine,
        _meta: tempfile::TempDir,
    }

    fn gateway(stores: &[Arc<InMemory>]) -> Gw {
        let meta = tempfile::tempdir().unwrap();
        let store = RocksStore::open(meta.path()).unwrap();
        let backends = stores
            .iter()
            .enumerate()
            .map(|(i, s)| Backend::remote(format!("b{i}"), s.clone()))
            .collect();
        Gw {
            engine: Engine::new(Catalog::new(Arc::new(store)), backends),
            _meta: meta,
        }
    }

    async fn put_set(store: &InMemory, set: Uuid) {
        store
            .put(&Path::from(format!("shards/{set}/0")), PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }

    async fn claim(gw: &Gw, o: Overrides, known: &[Uuid]) -> Result<Claim> {
        let records = gw
            .engine
            .catalog()
            .sets()
            .unwrap()
            .into_iter()
            .collect::<HashMap<_, _>>();
        assert!(
            known.iter().all(|s| records.contains_key(s)),
            "the test's known sets are recorded"
        );
        gw.engine.claim_backends(o, &records).await
    }

    #[tokio::test]
    async fn a_new_deployment_on_empty_backends_starts_and_counts_its_starts() {
        let stores = vec![Arc::new(InMemory::new()), Arc::new(InMemory::new())];
        let gw = gateway(&stores);
        let first = claim(&gw, Overrides::default(), &[]).await.unwrap();
        assert_eq!(first.deployment.starts, 1);
        assert_eq!(first.owned.len(), 2);
        let again = claim(&gw, Overrides::default(), &[]).await.unwrap();
        assert_eq!(again.deployment.id, first.deployment.id);
        assert_eq!(again.deployment.starts, 2);
        for s in &stores {
            let Marker::Found(m) = Backend::remote("x", s.clone()).read_marker().await.unwrap() else {
                panic!("no marker written");
            };
            assert_eq!((m.deployment_id, m.start), (first.deployment.id, 2));
        }
    }

    #[tokio::test]
    async fn another_deployments_backends_are_refused_unless_adopted() {
        let stores = vec![Arc::new(InMemory::new()), Arc::new(InMemory::new())];
        let first = gateway(&stores);
        let owner = claim(&first, Overrides::default(), &[]).await.unwrap().deployment;
        put_set(&stores[0], Uuid::new_v4()).await;

        let second = gateway(&stores);
        let err = claim(&second, Overrides::default(), &[]).await.unwrap_err().to_string();
        assert!(err.contains("backend \"b0\""), "{err}");
        assert!(err.contains(&owner.id.to_string()), "{err}");
        assert!(err.contains("1 shard set(s)"), "{err}");
        assert!(err.contains(ADOPT_FLAG), "{err}");
        // Nothing recorded, nothing rewritten.
        assert!(second.engine.catalog().deployment().unwrap().is_none());
        let Marker::Found(m) = Backend::remote("x", stores[0].clone()).read_marker().await.unwrap() else {
            panic!("marker gone");
        };
        assert_eq!(m.deployment_id, owner.id);
        // Empty metadata alone is not the finding here: the marker is someone else's.
        let o = Overrides {
            metadata_is_empty: true,
            ..Overrides::default()
        };
        assert!(claim(&second, o, &[]).await.is_err());

        let o = Overrides {
            adopt: true,
            ..Overrides::default()
        };
        let taken = claim(&second, o, &[]).await.unwrap();
        assert_ne!(taken.deployment.id, owner.id);
        // Now the first one finds the backends taken.
        let err = claim(&first, Overrides::default(), &[]).await.unwrap_err().to_string();
        assert!(err.contains(&taken.deployment.id.to_string()), "{err}");
    }

    #[tokio::test]
    async fn metadata_behind_the_markers_is_refused() {
        let stores = vec![Arc::new(InMemory::new())];
        let gw = gateway(&stores);
        claim(&gw, Overrides::default(), &[]).await.unwrap();
        let backup = gw.engine.catalog().deployment().unwrap().unwrap();
        claim(&gw, Overrides::default(), &[]).await.unwrap();
        // The metadata rolls back to the backup (one start behind the marker).
        gw.engine.catalog().record_start(&backup).unwrap();
        let err = claim(&gw, Overrides::default(), &[]).await.unwrap_err().to_string();
        assert!(err.contains("claimed by start 2 of this deployment"), "{err}");
        assert!(err.contains("only 1 starts"), "{err}");
        let o = Overrides {
            adopt: true,
            ..Overrides::default()
        };
        assert_eq!(claim(&gw, o, &[]).await.unwrap().deployment.starts, 2);
    }

    #[tokio::test]
    async fn unmarked_backends_are_ours_when_the_metadata_names_their_sets() {
        let stores = vec![Arc::new(InMemory::new()), Arc::new(InMemory::new())];
        let (named, stranger) = (Uuid::new_v4(), Uuid::new_v4());
        put_set(&stores[0], named).await;
        put_set(&stores[0], stranger).await;
        put_set(&stores[1], stranger).await;
        let gw = gateway(&stores);
        // Empty metadata against unmarked sets.
        let err = claim(&gw, Overrides::default(), &[]).await.unwrap_err().to_string();
        assert!(err.contains("this metadata is empty"), "{err}");
        assert!(err.contains(EMPTY_METADATA_FLAG), "{err}");
        // Metadata that names a set of b0 only: b1 is unaccounted for.
        gw.engine.catalog().begin_set(named, &["b0".to_owned()]).unwrap();
        let err = claim(&gw, Overrides::default(), &[named])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("backend \"b1\": no owner marker, and this metadata names none"),
            "{err}"
        );
        assert!(!err.contains("backend \"b0\""), "{err}");
        put_set(&stores[1], named).await;
        let c = claim(&gw, Overrides::default(), &[named]).await.unwrap();
        assert_eq!(c.owned.len(), 2);
    }

    #[tokio::test]
    async fn garbage_at_the_marker_path_is_refused() {
        let stores = vec![Arc::new(InMemory::new())];
        stores[0]
            .put(&Path::from(MARKER_PATH), PutPayload::from_static(b"hello"))
            .await
            .unwrap();
        let gw = gateway(&stores);
        let err = claim(&gw, Overrides::default(), &[]).await.unwrap_err().to_string();
        assert!(err.contains("unreadable owner marker"), "{err}");
    }
}
