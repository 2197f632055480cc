//! The bell that wakes a sleeping worker.

use std::sync::Arc;
use tokio::sync::Notify;

/// Wakes a worker: one that sleeps ([`crate::Next::Idle`] or [`crate::Next::Wait`]) steps at
/// once; one that is stepping steps again as soon as it would otherwise sleep. Rings are not
/// counted: several before the worker gets to sleep wake it once. Cheap to clone; every clone
/// rings the same worker.
#[derive(Debug, Clone, Default)]
pub struct Bell(Arc<Notify>);

impl Bell {
    /// A bell nobody listens to yet (a worker listens once spawned with it).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the worker (see [`Bell`]).
    pub fn ring(&self) {
        // One stored permit: a ring while the worker is busy is kept for its next sleep.
        self.0.notify_one();
    }

    /// Resolves at the next ring (or at once if one is pending). Cancellation-safe.
    pub(crate) async fn rung(&self) {
        self.0.notified().await;
    }
}
