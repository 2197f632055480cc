//! Background workers, run one way: the gateway's healer, scrubber, reaper and migrator, and
//! (next) the agents' MAPE loops.
//!
//! - [`Worker`]: a named unit of background work that steps (one bounded piece of work at a
//!   time, saying what comes [`Next`]), reports a [`Status`], and may have a [`Throttle`] and a
//!   [`Bell`].
//! - [`Runner`]: spawns workers as tasks and owns them: pause and resume, wake-up, shutdown
//!   (cancellation, then a join with a timeout) and a status snapshot of every worker.
//! - [`Throttle`]: one byte-rate and concurrency limit, shared by concurrent users and
//!   changeable at run time (rate, concurrency, paused).
//!
//! The crate knows nothing of storage: anything that runs in the background can be a worker.

mod bell;
mod pause;
mod runner;
mod throttle;
mod worker;

pub use bell::Bell;
pub use runner::{Error, Runner, State, WorkerChange, WorkerHandle, WorkerStatus};
pub use throttle::{Throttle, ThrottleChange, ThrottleError, ThrottleSettings, MAX_CONCURRENCY};
pub use worker::{Context, Next, Status, StepError, Worker};
