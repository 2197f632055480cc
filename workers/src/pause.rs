//! A pause switch: set by the runner or a throttle, waited on by the worker's task.

use std::sync::Arc;
use tokio::sync::watch;

/// Whether a worker is asked to pause; cheap to clone, every clone is the same switch.
#[derive(Debug, Clone)]
pub(crate) struct Pause(Arc<watch::Sender<bool>>);

impl Pause {
    pub(crate) fn new(paused: bool) -> Self {
        Self(Arc::new(watch::Sender::new(paused)))
    }

    pub(crate) fn is_paused(&self) -> bool {
        *self.0.borrow()
    }

    /// Sets the switch; returns whether it changed.
    pub(crate) fn set(&self, paused: bool) -> bool {
        self.0.send_if_modified(|p| std::mem::replace(p, paused) != paused)
    }

    /// Resolves once the switch is off (at once if it is). Cancellation-safe.
    pub(crate) async fn resumed(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|p| !*p).await;
    }

    /// A receiver that sees every change of the switch.
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}
