//! Read pins: shard sets a reader is using are not deleted under it.
//!
//! An overwrite or delete commits (making the old sets Deleting) while a GET that resolved the
//! old manifest may still be streaming them. The reader pins the sets, then checks that the
//! manifest still names them; the reaper defers any pinned set until its last pin is dropped.
//! Why the re-check closes the race: a set becomes Deleting only in the same atomic batch that
//! stops the manifest naming it. So a reader whose re-check still sees the set pinned it while it
//! was Live, and every later reaper decision sees the pin; a reader that pinned too late sees a
//! changed manifest and starts over with the new one.

use super::Engine;
use crate::error::Result;
use crate::meta::doomed::DoomedEntry;
use crate::records::ObjectManifest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use uuid::Uuid;

/// How often [`Engine::pinned_object`] retries when overwrites keep changing the manifest
/// between its lookup and its re-check; each retry means another write committed, so this is
/// only reached under a storm of writes to one key.
const MAX_ATTEMPTS: usize = 64;

#[derive(Default)]
struct Entry {
    count: usize,
    /// Handed to the reaper while pinned; sent back to it when the last pin goes.
    doomed: Option<DoomedEntry>,
}

/// Counts of readers per shard set.
pub(super) struct PinTable {
    entries: Mutex<HashMap<Uuid, Entry>>,
    reaper: mpsc::UnboundedSender<DoomedEntry>,
}

impl PinTable {
    pub(super) fn new(reaper: mpsc::UnboundedSender<DoomedEntry>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            reaper,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        // A panic while holding this lock leaves only counters behind; keep going with them.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether any reader holds `set`.
    pub(super) fn is_pinned(&self, set: Uuid) -> bool {
        self.lock().get(&set).is_some_and(|e| e.count > 0)
    }

    /// Whether the reaper may delete `doomed` now; if not, it is kept until unpinned.
    pub(super) fn release_for_deletion(&self, doomed: &DoomedEntry) -> bool {
        let mut map = self.lock();
        match map.get_mut(&doomed.0) {
            Some(e) if e.count > 0 => {
                e.doomed = Some(doomed.clone());
                false
            }
            _ => true,
        }
    }

    pub(super) fn pin(self: &Arc<Self>, sets: Vec<Uuid>) -> Pins {
        let mut map = self.lock();
        for s in &sets {
            map.entry(*s).or_default().count += 1;
        }
        Pins {
            table: Arc::clone(self),
            sets,
        }
    }
}

/// Keeps a reader's shard sets from being deleted until dropped.
pub struct Pins {
    table: Arc<PinTable>,
    sets: Vec<Uuid>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        let mut released = Vec::new();
        {
            let mut map = self.table.lock();
            for s in &self.sets {
                if let Some(e) = map.get_mut(s) {
                    e.count -= 1;
                    if e.count == 0 {
                        if let Some(d) = map.remove(s).and_then(|e| e.doomed) {
                            released.push(d);
                        }
                    }
                }
            }
        }
        for d in released {
            // Fails only at shutdown; the startup sweep then deletes what is left Deleting.
            let _ = self.table.reaper.send(d);
        }
    }
}

impl std::fmt::Debug for Pins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pins").field("sets", &self.sets).finish()
    }
}

fn sets_of(m: &ObjectManifest) -> Vec<Uuid> {
    m.segments.iter().map(|s| s.set).collect()
}

impl Engine {
    /// The manifest of `bucket/key` with its shard sets pinned against deletion, or `None`
    /// when the key does not exist.
    pub fn pinned_object(&self, bucket: &str, key: &str) -> Result<Option<(ObjectManifest, Pins)>> {
        let catalog = self.catalog();
        let mut current = catalog.object(bucket, key)?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(m) = current else { return Ok(None) };
            let pins = self.pins().pin(sets_of(&m));
            let again = catalog.object(bucket, key)?;
            if let Some(a) = &again {
                // Whole segments, not just set ids: the migrator moves shards of a set to other
                // backends and deletes the old copies once the set is unpinned, so a reader
                // must not keep a manifest naming the old backends unless it pinned in time.
                if a.segments == m.segments {
                    return Ok(again.map(|a| (a, pins)));
                }
            }
            current = again;
        }
        Err(crate::error::Error::Unavailable(format!(
            "{bucket}/{key} changed {MAX_ATTEMPTS} times while being opened for reading"
        )))
    }
}
