//! The [`Worker`] trait: what a background worker does, step by step.

use crate::bell::Bell;
use crate::throttle::Throttle;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a worker sleeps after a failed step unless it says otherwise
/// ([`Worker::after_error`]).
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(10);

/// What a worker does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Step again now (there is more to do).
    Busy,
    /// Sleep this long, or until woken ([`crate::Bell`], [`crate::Runner::wake`]).
    Idle(Duration),
    /// Sleep until woken or until [`Worker::wait_for_work`] finds work.
    Wait,
    /// Finished for good: the runner stops the worker.
    Done,
}

/// Why a step failed; the runner reports it as the worker's last error.
pub type StepError = Box<dyn std::error::Error + Send + Sync>;

/// What a step may ask of the runner: whether shutdown began. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Context {
    cancel: CancellationToken,
}

impl Context {
    /// A context cancelled with `cancel` (a [`Context::default`] is never cancelled: for a
    /// step run by hand outside a runner).
    #[must_use]
    pub fn new(cancel: CancellationToken) -> Self {
        Self { cancel }
    }

    /// Whether the runner is shutting down: a long step should stop at its next boundary.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the runner shuts down.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Runs `f` unless the runner shuts down first (then `None`, and `f` is dropped: use it
    /// only for cancellation-safe waits).
    pub async fn unless_cancelled<F: Future>(&self, f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => None,
            out = f => Some(out),
        }
    }
}

/// What a worker says about itself: counters since start and free-form facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Named counters (passes, items done, bytes, failures...).
    pub counters: BTreeMap<String, u64>,
    /// Anything else worth showing (the current phase, a position...).
    pub info: BTreeMap<String, String>,
}

impl Status {
    /// This status with counter `name` set to `value`.
    #[must_use]
    pub fn counter(mut self, name: &str, value: u64) -> Self {
        self.counters.insert(name.to_owned(), value);
        self
    }

    /// This status with fact `name` set to `value`.
    #[must_use]
    pub fn info(mut self, name: &str, value: impl ToString) -> Self {
        self.info.insert(name.to_owned(), value.to_string());
        self
    }
}

/// A unit of background work the [`crate::Runner`] drives: it steps, one bounded piece of work
/// at a time, and says what comes next; between steps the runner pauses it, stops it, or lets
/// it sleep.
#[async_trait::async_trait]
pub trait Worker: Send + 'static {
    /// The worker's name, unique within its runner (the admin API addresses it by this).
    fn name(&self) -> &str;

    /// Does one bounded piece of work and says what comes next. A long step should look at
    /// `ctx` at its inner boundaries and end early when shutdown began.
    async fn step(&mut self, ctx: &Context) -> Result<Next, StepError>;

    /// After [`Next::Wait`]: waits until there is work (the default waits forever, i.e. only
    /// a ring of the worker's bell wakes it). Must be cancellation-safe: the runner drops it
    /// when the bell rings or shutdown begins.
    async fn wait_for_work(&mut self) {
        std::future::pending::<()>().await;
    }

    /// Counters and facts for the runner's status report, read after every step.
    fn status(&self) -> Status {
        Status::default()
    }

    /// The worker's throttle, shared with the runner (which shows and changes it, and whose
    /// pause is the throttle's), if it has one. Read once, at spawn.
    fn throttle(&self) -> Option<Throttle> {
        None
    }

    /// A bell others already hold to wake this worker (e.g. a policy change); without one the
    /// runner makes one. Read once, at spawn.
    fn bell(&self) -> Option<Bell> {
        None
    }

    /// Whether the runner holds the worker between steps while it is paused (the default). A
    /// worker whose steps honour the pause themselves (and keep reporting while paused) says
    /// false.
    fn parks_when_paused(&self) -> bool {
        true
    }

    /// What comes after a failed step (default: sleep 10 s, or until woken).
    fn after_error(&self) -> Next {
        Next::Idle(RETRY_AFTER_ERROR)
    }
}
