//! Shard sets a commit marked Deleting: a value that must reach the reaper.
//!
//! A commit that stops naming shard sets (an overwrite, a delete, an abort) marks them Deleting
//! in its batch and returns them as [`Doomed`]. Their shards are deleted only once the value is
//! handed to the engine's reaper, so forgetting it leaks the shards until the next start (the
//! startup sweep deletes sets left Deleting). Hence the guard rails: the type is `#[must_use]`,
//! has no public fields and no public way to take the sets out, and dropping it unconsumed logs
//! an error (and fails the crate's unit tests).

use crate::records::SetRecord;
use uuid::Uuid;

/// One shard set on its way through the reaper, with the record it had when doomed.
pub(crate) type DoomedEntry = (Uuid, SetRecord);

/// Shard sets now Deleting, to be handed to the reaper (`Engine::reap`).
#[must_use = "doomed shard sets must be handed to the reaper, or their shards stay until the next start"]
pub struct Doomed {
    sets: Vec<DoomedEntry>,
}

impl Doomed {
    /// No sets: nothing to reap.
    pub(crate) fn none() -> Self {
        Self { sets: Vec::new() }
    }

    /// Sets a committed batch marked Deleting. Built only after the batch is written: a failed
    /// batch doomed nothing.
    pub(crate) fn new(sets: Vec<DoomedEntry>) -> Self {
        Self { sets }
    }

    /// How many sets are doomed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether no set is doomed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Ids of the doomed sets.
    pub fn ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.sets.iter().map(|(id, _)| *id)
    }

    /// The sets, for the reaper: the value is consumed.
    pub(crate) fn into_entries(mut self) -> Vec<DoomedEntry> {
        std::mem::take(&mut self.sets)
    }
}

impl Drop for Doomed {
    fn drop(&mut self) {
        if self.sets.is_empty() {
            return;
        }
        let ids: Vec<String> = self.ids().map(|id| id.to_string()).collect();
        tracing::error!(
            sets = %ids.join(","),
            "doomed shard sets dropped without reaping; their shards stay until the startup sweep"
        );
        if cfg!(test) && !std::thread::panicking() {
            panic!("doomed shard sets {ids:?} dropped without reaping");
        }
    }
}

impl std::fmt::Debug for Doomed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.ids()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::SetState;

    fn entry() -> DoomedEntry {
        let rec = SetRecord {
            state: SetState::Deleting,
            backends: vec!["a".into()],
            segment: None,
            owner: None,
            moves: Vec::new(),
        };
        (Uuid::now_v7(), rec)
    }

    #[test]
    fn consumed_or_empty_sets_drop_quietly() {
        drop(Doomed::none());
        let d = Doomed::new(vec![entry(), entry()]);
        assert_eq!((d.len(), d.ids().count()), (2, 2));
        assert_eq!(d.into_entries().len(), 2);
    }

    #[test]
    #[should_panic(expected = "dropped without reaping")]
    fn dropping_unreaped_sets_is_caught() {
        drop(Doomed::new(vec![entry()]));
    }
}
