//! The [`Runner`]: owns the tasks of its workers, their pause switches, bells and status, and
//! stops them all at shutdown.

use crate::bell::Bell;
use crate::pause::Pause;
use crate::throttle::{Throttle, ThrottleChange, ThrottleError, ThrottleSettings};
use crate::worker::{Context, Next, Status, Worker};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the runner refuses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another worker of the runner has this name.
    #[error("a worker named {0:?} is already running")]
    Duplicate(String),
    /// The runner was shut down; nothing starts any more.
    #[error("the runner is shut down; worker {0:?} was not started")]
    ShutDown(String),
    /// No worker has this name.
    #[error("no worker named {0:?}")]
    NoSuchWorker(String),
    /// A throttle setting was given for a worker without a throttle.
    #[error("worker {0:?} has no throttle: only \"paused\" can be changed")]
    NoThrottle(String),
    /// The worker's throttle refused the settings.
    #[error("worker {name:?}: {source}")]
    Throttle {
        /// The worker.
        name: String,
        /// Why.
        source: ThrottleError,
    },
}

/// What a worker is doing, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// In a step.
    Running,
    /// Sleeping until its next step is due or it is woken.
    Idle,
    /// Asked to pause: no new step starts (and a worker with a throttle starts no new unit of
    /// work inside a step) until resumed.
    Paused,
    /// Finished, shut down, or died; it will not step again.
    Stopped,
}

/// One worker's status, as the runner reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The worker's name.
    pub name: String,
    /// What it is doing.
    pub state: State,
    /// Its throttle's settings, if it has one.
    pub throttle: Option<ThrottleSettings>,
    /// Its counters, as of its last step.
    pub counters: BTreeMap<String, u64>,
    /// Other facts it reports, as of its last step.
    pub info: BTreeMap<String, String>,
    /// Steps done since start.
    pub steps: u64,
    /// Steps that failed since start.
    pub errors: u64,
    /// The latest failure.
    pub last_error: Option<String>,
    /// When the last step ended, Unix ms.
    pub last_step_ms: Option<i64>,
}

/// A change to a worker: pause or resume it, and set its throttle (only for a worker with one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerChange {
    /// Pause (true) or resume (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// New MiB per second of its throttle (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mib_per_sec: Option<f64>,
    /// New concurrency of its throttle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

/// Where a worker's task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    Stepping,
    #[default]
    Sleeping,
    /// Held between steps by the pause switch.
    Parked,
    Stopped,
}

/// What the task records for the status report.
#[derive(Debug, Default)]
struct Record {
    phase: Phase,
    status: Status,
    steps: u64,
    errors: u64,
    last_error: Option<String>,
    last_step_ms: Option<i64>,
}

/// A spawned worker, as others see it: its status, pause switch and bell. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    name: String,
    record: watch::Sender<Record>,
    pause: Pause,
    throttle: Option<Throttle>,
    bell: Bell,
}

impl WorkerHandle {
    /// The worker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The worker's status now (its counters as of its last step).
    #[must_use]
    pub fn status(&self) -> WorkerStatus {
        let paused = self.inner.pause.is_paused();
        let r = self.inner.record.borrow();
        let state = match r.phase {
            Phase::Stopped => State::Stopped,
            _ if paused => State::Paused,
            Phase::Stepping => State::Running,
            Phase::Sleeping | Phase::Parked => State::Idle,
        };
        WorkerStatus {
            name: self.inner.name.clone(),
            state,
            throttle: self.inner.throttle.as_ref().map(Throttle::settings),
            counters: r.status.counters.clone(),
            info: r.status.info.clone(),
            steps: r.steps,
            errors: r.errors,
            last_error: r.last_error.clone(),
            last_step_ms: r.last_step_ms,
        }
    }

    /// The worker's throttle, if it has one.
    #[must_use]
    pub fn throttle(&self) -> Option<&Throttle> {
        self.inner.throttle.as_ref()
    }

    /// Pauses the worker: no new step starts until [`WorkerHandle::resume`] (a step in
    /// progress finishes; one that honours its throttle's pause waits inside).
    pub fn pause(&self) {
        self.set_paused(true);
    }

    /// Resumes a paused worker (it does not cut short a sleep it was in).
    pub fn resume(&self) {
        self.set_paused(false);
    }

    fn set_paused(&self, paused: bool) {
        match &self.inner.throttle {
            // The throttle's switch is the worker's; it also rings whoever listens to it.
            Some(t) => t.set_paused(paused),
            None => {
                self.inner.pause.set(paused);
            }
        }
    }

    /// Wakes the worker (see [`Bell`]).
    pub fn wake(&self) {
        self.inner.bell.ring();
    }

    /// Applies `change`; returns the status after it. Nothing changes if any part is refused.
    pub fn change(&self, change: WorkerChange) -> Result<WorkerStatus, Error> {
        let throttled = change.max_mib_per_sec.is_some() || change.concurrency.is_some();
        match &self.inner.throttle {
            Some(t) => {
                t.change(ThrottleChange {
                    max_mib_per_sec: change.max_mib_per_sec,
                    concurrency: change.concurrency,
                    paused: change.paused,
                })
                .map_err(|source| Error::Throttle {
                    name: self.inner.name.clone(),
                    source,
                })?;
            }
            None if throttled => return Err(Error::NoThrottle(self.inner.name.clone())),
            None => {
                if let Some(p) = change.paused {
                    self.set_paused(p);
                }
            }
        }
        Ok(self.status())
    }

    /// Waits until the worker's status satisfies `done`, and returns that status.
    pub async fn wait_until(&self, mut done: impl FnMut(&WorkerStatus) -> bool) -> WorkerStatus {
        let mut record = self.inner.record.subscribe();
        let mut pause = self.inner.pause.subscribe();
        loop {
            let s = self.status();
            if done(&s) {
                return s;
            }
            // Both senders live in `self`: neither channel can close while this waits.
            tokio::select! {
                _ = record.changed() => {}
                _ = pause.changed() => {}
            }
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.inner
            .record
            .send_if_modified(|r| std::mem::replace(&mut r.phase, phase) != phase);
    }
}

/// Spawns workers as tasks and owns them: pause, wake-up, shutdown and status. Cheap to clone;
/// every clone is the same runner.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    inner: Arc<RunnerInner>,
}

#[derive(Debug, Default)]
struct RunnerInner {
    cancel: CancellationToken,
    spawned: Mutex<Spawned>,
}

#[derive(Debug, Default)]
struct Spawned {
    /// In spawn order.
    workers: Vec<WorkerHandle>,
    /// Tasks not joined yet.
    tasks: Vec<(String, JoinHandle<()>)>,
}

impl Runner {
    /// A runner with no workers.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn spawned(&self) -> MutexGuard<'_, Spawned> {
        // Only handles live under this lock; keep using them after a panic elsewhere.
        self.inner.spawned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts `worker` on its own task (needs a Tokio runtime); it steps at once.
    pub fn spawn<W: Worker>(&self, worker: W) -> Result<WorkerHandle, Error> {
        let name = worker.name().to_owned();
        let throttle = worker.throttle();
        let pause = throttle
            .as_ref()
            .map_or_else(|| Pause::new(false), |t| t.pause().clone());
        let handle = WorkerHandle {
            inner: Arc::new(HandleInner {
                name: name.clone(),
                // Its counters from the start, not only after its first step.
                record: watch::Sender::new(Record {
                    status: worker.status(),
                    ..Record::default()
                }),
                pause,
                throttle,
                bell: worker.bell().unwrap_or_default(),
            }),
        };
        let mut spawned = self.spawned();
        // Under the lock, so a shutdown either sees this task or stops it from starting.
        if self.inner.cancel.is_cancelled() {
            return Err(Error::ShutDown(name));
        }
        if spawned.workers.iter().any(|w| w.name() == name) {
            return Err(Error::Duplicate(name));
        }
        let task = tokio::spawn(drive(worker, handle.clone(), self.inner.cancel.clone()));
        spawned.workers.push(handle.clone());
        spawned.tasks.push((name, task));
        Ok(handle)
    }

    /// The worker named `name`.
    #[must_use]
    pub fn worker(&self, name: &str) -> Option<WorkerHandle> {
        self.spawned().workers.iter().find(|w| w.name() == name).cloned()
    }

    fn get(&self, name: &str) -> Result<WorkerHandle, Error> {
        self.worker(name).ok_or_else(|| Error::NoSuchWorker(name.to_owned()))
    }

    /// Every worker, in spawn order.
    #[must_use]
    pub fn workers(&self) -> Vec<WorkerHandle> {
        self.spawned().workers.clone()
    }

    /// The status of every worker, in spawn order.
    #[must_use]
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        self.workers().iter().map(WorkerHandle::status).collect()
    }

    /// Wakes the worker named `name`.
    pub fn wake(&self, name: &str) -> Result<(), Error> {
        self.get(name).map(|w| w.wake())
    }

    /// Pauses the worker named `name` (see [`WorkerHandle::pause`]).
    pub fn pause(&self, name: &str) -> Result<(), Error> {
        self.get(name).map(|w| w.pause())
    }

    /// Resumes the worker named `name`.
    pub fn resume(&self, name: &str) -> Result<(), Error> {
        self.get(name).map(|w| w.resume())
    }

    /// Applies `change` to the worker named `name` (see [`WorkerHandle::change`]).
    pub fn change(&self, name: &str, change: WorkerChange) -> Result<WorkerStatus, Error> {
        self.get(name)?.change(change)
    }

    /// Whether [`Runner::shutdown`] was called.
    #[must_use]
    pub fn is_shut_down(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Stops every worker: each stops at its next step boundary, or at once if it sleeps,
    /// waits or is paused. Waits up to `timeout` for them all, then aborts those still
    /// stepping; returns their names. Later spawns are refused.
    pub async fn shutdown(&self, timeout: Duration) -> Vec<String> {
        let tasks = {
            let mut spawned = self.spawned();
            self.inner.cancel.cancel();
            std::mem::take(&mut spawned.tasks)
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut aborted = Vec::new();
        for (name, mut task) in tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(worker = %name, error = %e, "worker task died"),
                Err(_) => {
                    tracing::warn!(worker = %name, ?timeout, "worker still stepping at the end of shutdown; aborted");
                    task.abort();
                    aborted.push(name);
                }
            }
        }
        aborted
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Marks the worker stopped however its task ends: returned, aborted or panicked.
struct Stopped<'a>(&'a WorkerHandle);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        self.0.inner.record.send_modify(|r| {
            r.phase = Phase::Stopped;
            if panicked {
                r.errors += 1;
                r.last_error = Some("the worker panicked".to_owned());
            }
        });
    }
}

/// A worker's task: steps it until it is done or the runner shuts down.
async fn drive<W: Worker>(mut worker: W, handle: WorkerHandle, cancel: CancellationToken) {
    let _stopped = Stopped(&handle);
    let h = &handle.inner;
    let parks = worker.parks_when_paused();
    let ctx = Context::new(cancel.clone());
    loop {
        if parks && h.pause.is_paused() {
            handle.set_phase(Phase::Parked);
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = h.pause.resumed() => {}
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        handle.set_phase(Phase::Stepping);
        let result = worker.step(&ctx).await;
        let status = worker.status();
        let next = match &result {
            Ok(next) => *next,
            Err(e) => {
                tracing::warn!(worker = %h.name, error = %e, "worker step failed");
                worker.after_error()
            }
        };
        h.record.send_modify(|r| {
            r.steps += 1;
            r.last_step_ms = Some(now_ms());
            r.status = status;
            if let Err(e) = result {
                r.errors += 1;
                r.last_error = Some(e.to_string());
            }
        });
        match next {
            Next::Busy => tokio::task::yield_now().await,
            Next::Idle(d) => {
                handle.set_phase(Phase::Sleeping);
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    () = h.bell.rung() => {}
                    () = tokio::time::sleep(d) => {}
                }
            }
            Next::Wait => {
                handle.set_phase(Phase::Sleeping);
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    () = h.bell.rung() => {}
                    () = worker.wait_for_work() => {}
                }
            }
            Next::Done => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::StepError;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    const HOUR: Duration = Duration::from_secs(3600);

    /// Steps `limit` times (Busy), then is done; optionally fails its first step.
    struct Counter {
        name: &'static str,
        n: u64,
        limit: u64,
        fail_first: bool,
    }

    #[async_trait::async_trait]
    impl Worker for Counter {
        fn name(&self) -> &str {
            self.name
        }
        async fn step(&mut self, _: &Context) -> Result<Next, StepError> {
            if std::mem::take(&mut self.fail_first) {
                return Err("boom: the first step fails".into());
            }
            self.n += 1;
            Ok(if self.n == self.limit { Next::Done } else { Next::Busy })
        }
        fn status(&self) -> Status {
            Status::default().counter("n", self.n).info("phase", "counting")
        }
        fn after_error(&self) -> Next {
            Next::Busy
        }
    }

    fn counter(name: &'static str, limit: u64) -> Counter {
        Counter {
            name,
            n: 0,
            limit,
            fail_first: false,
        }
    }

    /// Steps once per `every`, counting in a shared counter; may have a throttle.
    struct Ticker {
        name: &'static str,
        every: Duration,
        ticks: Arc<AtomicU64>,
        throttle: Option<Throttle>,
    }

    #[async_trait::async_trait]
    impl Worker for Ticker {
        fn name(&self) -> &str {
            self.name
        }
        async fn step(&mut self, _: &Context) -> Result<Next, StepError> {
            self.ticks.fetch_add(1, Ordering::Relaxed);
            Ok(Next::Idle(self.every))
        }
        fn throttle(&self) -> Option<Throttle> {
            self.throttle.clone()
        }
    }

    fn ticker(name: &'static str, every: Duration) -> (Ticker, Arc<AtomicU64>) {
        let ticks = Arc::new(AtomicU64::new(0));
        let t = Ticker {
            name,
            every,
            ticks: ticks.clone(),
            throttle: None,
        };
        (t, ticks)
    }

    /// Handles items sent on a channel; waits for them between steps.
    struct Inbox {
        rx: mpsc::UnboundedReceiver<u64>,
        next: Option<u64>,
        sum: u64,
    }

    #[async_trait::async_trait]
    impl Worker for Inbox {
        fn name(&self) -> &str {
            "inbox"
        }
        async fn step(&mut self, _: &Context) -> Result<Next, StepError> {
            while let Some(v) = self.next.take().or_else(|| self.rx.try_recv().ok()) {
                self.sum += v;
            }
            Ok(Next::Wait)
        }
        async fn wait_for_work(&mut self) {
            match self.rx.recv().await {
                Some(v) => self.next = Some(v),
                None => std::future::pending().await,
            }
        }
        fn status(&self) -> Status {
            Status::default().counter("sum", self.sum)
        }
    }

    /// A step that never ends.
    struct Stuck;

    #[async_trait::async_trait]
    impl Worker for Stuck {
        fn name(&self) -> &str {
            "stuck"
        }
        async fn step(&mut self, _: &Context) -> Result<Next, StepError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_steps_until_done_and_reports_its_counters() {
        let runner = Runner::new();
        let h = runner.spawn(counter("counter", 5)).unwrap();
        let s = h.wait_until(|s| s.state == State::Stopped).await;
        assert_eq!(s.steps, 5);
        assert_eq!(s.counters["n"], 5);
        assert_eq!(s.info["phase"], "counting");
        assert_eq!((s.errors, s.last_error.as_deref()), (0, None));
        assert!(s.last_step_ms.is_some());
        assert_eq!(runner.shutdown(HOUR).await, Vec::<String>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_step_is_reported_and_the_worker_goes_on() {
        let runner = Runner::new();
        let mut w = counter("flaky", 2);
        w.fail_first = true;
        let h = runner.spawn(w).unwrap();
        let s = h.wait_until(|s| s.state == State::Stopped).await;
        assert_eq!((s.steps, s.errors), (3, 1));
        assert_eq!(s.last_error.as_deref(), Some("boom: the first step fails"));
        assert_eq!(s.counters["n"], 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_worker_does_not_step_until_resumed() {
        let runner = Runner::new();
        let (w, ticks) = ticker("ticker", Duration::from_secs(1));
        let h = runner.spawn(w).unwrap();
        h.wait_until(|s| s.steps >= 3).await;
        runner.pause("ticker").unwrap();
        assert_eq!(h.status().state, State::Paused);
        // Let it finish the sleep it was in and park.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let parked = ticks.load(Ordering::Relaxed);
        tokio::time::sleep(HOUR).await;
        assert_eq!(ticks.load(Ordering::Relaxed), parked, "a paused worker stepped");
        assert_eq!(h.status().state, State::Paused);
        runner.resume("ticker").unwrap();
        let s = h.wait_until(|s| s.steps > parked).await;
        assert_ne!(s.state, State::Paused);
        runner.shutdown(HOUR).await;
    }

    #[tokio::test(start_paused = true)]
    async fn pausing_a_throttled_worker_pauses_its_throttle_and_back() {
        let runner = Runner::new();
        let (mut w, _) = ticker("throttled", HOUR);
        let throttle = Throttle::new(Some(1 << 20), 2, 8);
        w.throttle = Some(throttle.clone());
        let h = runner.spawn(w).unwrap();
        h.pause();
        assert!(throttle.is_paused());
        assert_eq!(h.status().throttle.map(|t| t.paused), Some(true));
        // And the other way: the throttle's switch is the worker's.
        throttle.set_paused(false);
        assert_ne!(h.status().state, State::Paused);
        let s = h
            .change(WorkerChange {
                max_mib_per_sec: Some(2.0),
                concurrency: Some(4),
                paused: Some(true),
            })
            .unwrap();
        assert_eq!(s.state, State::Paused);
        assert_eq!(
            s.throttle,
            Some(ThrottleSettings {
                max_mib_per_sec: 2.0,
                concurrency: 4,
                paused: true
            })
        );
        let err = h
            .change(WorkerChange {
                concurrency: Some(9),
                paused: Some(false),
                ..WorkerChange::default()
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "worker \"throttled\": concurrency must be within 1..=8, got 9"
        );
        assert!(throttle.is_paused(), "a refused change half-applied");
        runner.shutdown(HOUR).await;
    }

    #[tokio::test(start_paused = true)]
    async fn changes_are_refused_for_unknown_workers_and_missing_throttles() {
        let runner = Runner::new();
        let (w, _) = ticker("plain", HOUR);
        runner.spawn(w).unwrap();
        let rate = WorkerChange {
            max_mib_per_sec: Some(1.0),
            ..WorkerChange::default()
        };
        assert!(matches!(runner.change("plain", rate), Err(Error::NoThrottle(n)) if n == "plain"));
        assert!(matches!(runner.change("nope", rate), Err(Error::NoSuchWorker(n)) if n == "nope"));
        let pause = WorkerChange {
            paused: Some(true),
            ..WorkerChange::default()
        };
        assert_eq!(runner.change("plain", pause).unwrap().state, State::Paused);
        runner.shutdown(HOUR).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_ring_wakes_an_idle_worker_before_its_sleep_ends() {
        let runner = Runner::new();
        let (w, _) = ticker("sleeper", HOUR);
        let h = runner.spawn(w).unwrap();
        h.wait_until(|s| s.steps == 1 && s.state == State::Idle).await;
        let t0 = Instant::now();
        runner.wake("sleeper").unwrap();
        h.wait_until(|s| s.steps == 2).await;
        assert!(t0.elapsed() < HOUR, "the worker slept its hour despite the ring");
        runner.shutdown(HOUR).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_steps_when_work_arrives() {
        let runner = Runner::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let h = runner.spawn(Inbox { rx, next: None, sum: 0 }).unwrap();
        for v in [1, 2, 3] {
            tx.send(v).unwrap();
        }
        let s = h.wait_until(|s| s.counters.get("sum") == Some(&6)).await;
        assert_ne!(s.state, State::Stopped);
        runner.shutdown(HOUR).await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_joins_every_worker_wherever_it_is() {
        let runner = Runner::new();
        let (idle, _) = ticker("idle", HOUR);
        let (paused, _) = ticker("paused", HOUR);
        let (_tx, rx) = mpsc::unbounded_channel();
        let handles = [
            runner.spawn(idle).unwrap(),
            runner.spawn(paused).unwrap(),
            runner.spawn(Inbox { rx, next: None, sum: 0 }).unwrap(),
            runner.spawn(counter("busy", u64::MAX)).unwrap(),
        ];
        for h in &handles[..3] {
            h.wait_until(|s| s.steps >= 1).await;
        }
        runner.pause("paused").unwrap();
        let t0 = Instant::now();
        assert_eq!(runner.shutdown(HOUR).await, Vec::<String>::new());
        assert!(t0.elapsed() < HOUR, "shutdown waited for a sleep to end");
        for h in &handles {
            assert_eq!(h.status().state, State::Stopped, "{} still going", h.name());
        }
        assert!(runner.is_shut_down());
        let (late, _) = ticker("late", HOUR);
        assert!(matches!(runner.spawn(late), Err(Error::ShutDown(n)) if n == "late"));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_aborts_a_step_that_does_not_end_in_time() {
        let runner = Runner::new();
        let h = runner.spawn(Stuck).unwrap();
        h.wait_until(|s| s.state == State::Running).await;
        assert_eq!(runner.shutdown(Duration::from_secs(5)).await, vec!["stuck".to_owned()]);
        tokio::task::yield_now().await;
        h.wait_until(|s| s.state == State::Stopped).await;
    }

    #[tokio::test(start_paused = true)]
    async fn names_are_unique_and_statuses_come_in_spawn_order() {
        let runner = Runner::new();
        let (a, _) = ticker("a", HOUR);
        let (b, _) = ticker("b", HOUR);
        let (a2, _) = ticker("a", HOUR);
        runner.spawn(a).unwrap();
        runner.spawn(b).unwrap();
        assert!(matches!(runner.spawn(a2), Err(Error::Duplicate(n)) if n == "a"));
        let names: Vec<String> = runner.statuses().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "b"]);
        runner.shutdown(HOUR).await;
    }

    #[test]
    fn a_status_serialises_with_lowercase_states_and_change_bodies_are_strict() {
        let s = WorkerStatus {
            name: "scrubber".into(),
            state: State::Paused,
            throttle: None,
            counters: BTreeMap::from([("passes".to_owned(), 2)]),
            info: BTreeMap::new(),
            steps: 7,
            errors: 0,
            last_error: None,
            last_step_ms: Some(1),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "paused");
        assert_eq!(v["counters"]["passes"], 2);
        assert!(v["throttle"].is_null() && v["last_error"].is_null());
        let back: WorkerStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        let c: WorkerChange = serde_json::from_str(r#"{"paused": false, "concurrency": 2}"#).unwrap();
        assert_eq!(
            (c.paused, c.concurrency, c.max_mib_per_sec),
            (Some(false), Some(2), None)
        );
        assert!(serde_json::from_str::<WorkerChange>(r#"{"pause": true}"#).is_err());
        assert!(serde_json::from_str::<WorkerChange>(r#"{"paused": "yes"}"#).is_err());
    }
}
