//! One throttle for background work: a byte rate shared by every user, a limit on units of work
//! in flight, and a pause switch, all changeable at run time.
//!
//! The rate is a virtual clock (GCRA): each [`Throttle::spend`] moves the time the next byte may
//! go by its cost, and waits until then. At most [`BURST`] of unused rate may be spent at once,
//! so a worker that was idle does not hit clients with a burst. The limit holds on average over
//! a few seconds, not per call: a caller waits for what it spends, so concurrent callers can be
//! ahead of the rate by one call's bytes each.

use crate::bell::Bell;
use crate::pause::Pause;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Largest concurrency any throttle accepts.
pub const MAX_CONCURRENCY: usize = 64;

/// Unused rate that may be spent at once after an idle spell.
const BURST: Duration = Duration::from_millis(100);

/// Longest single sleep of a waiting caller: a raised or lifted limit frees it within this.
const SLICE: Duration = Duration::from_millis(200);

/// Window over which [`Throttle::measured_rate`] measures.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// How far apart the rate samples are.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Bytes in a MiB, the unit of the settings.
const MIB: f64 = 1_048_576.0;

/// A throttle's settings as the admin API shows and changes them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThrottleSettings {
    /// MiB per second; 0 = unlimited.
    pub max_mib_per_sec: f64,
    /// Units of work (objects, shard sets) in flight at once.
    pub concurrency: usize,
    /// Whether the work is paused.
    pub paused: bool,
}

/// A change of some of a throttle's settings; the others stay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleChange {
    /// New MiB per second (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mib_per_sec: Option<f64>,
    /// New concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Pause (true) or resume (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// Settings a throttle refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThrottleError {
    /// The rate is negative, infinite or not a number.
    #[error("max_mib_per_sec must be a number >= 0 (0 = unlimited), got {0}")]
    Rate(f64),
    /// The concurrency is outside what this throttle allows.
    #[error("concurrency must be within 1..={max}, got {got}")]
    Concurrency {
        /// What was asked for.
        got: usize,
        /// This throttle's largest.
        max: usize,
    },
}

/// A byte-rate and concurrency limit with a pause switch; cheap to clone, every clone is the
/// same throttle (shared by all the tasks of a worker, and by the runner that shows and
/// changes it).
#[derive(Debug, Clone)]
pub struct Throttle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Bytes per second; 0 = unlimited.
    rate: AtomicU64,
    concurrency: AtomicUsize,
    max_concurrency: usize,
    pause: Pause,
    /// Theoretical arrival time of the next byte, shared by every caller.
    tat: Mutex<Option<Instant>>,
    /// Bytes spent since creation, and (when, that count) samples of the last [`RATE_WINDOW`].
    spent: AtomicU64,
    samples: Mutex<VecDeque<(Instant, u64)>>,
    /// Rung at every change of the settings (e.g. to wake the worker that uses the throttle).
    on_change: OnceLock<Bell>,
}

/// Locks a mutex that guards only counters and clock state: a panic elsewhere leaves them
/// usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Throttle {
    /// A running throttle of `bytes_per_sec` (`None` or 0: unlimited) and `concurrency`, which
    /// accepts concurrencies up to `max_concurrency` (at least 1, at most [`MAX_CONCURRENCY`]);
    /// `concurrency` is brought within that range.
    #[must_use]
    pub fn new(bytes_per_sec: Option<u64>, concurrency: usize, max_concurrency: usize) -> Self {
        let max_concurrency = max_concurrency.clamp(1, MAX_CONCURRENCY);
        Self {
            inner: Arc::new(Inner {
                rate: AtomicU64::new(bytes_per_sec.unwrap_or(0)),
                concurrency: AtomicUsize::new(concurrency.clamp(1, max_concurrency)),
                max_concurrency,
                pause: Pause::new(false),
                tat: Mutex::new(None),
                spent: AtomicU64::new(0),
                samples: Mutex::new(VecDeque::new()),
                on_change: OnceLock::new(),
            }),
        }
    }

    /// Rings `bell` at every later change of the settings; only one bell per throttle, a
    /// second is refused (returns false).
    pub fn ring_on_change(&self, bell: Bell) -> bool {
        self.inner.on_change.set(bell).is_ok()
    }

    /// The current settings.
    #[must_use]
    pub fn settings(&self) -> ThrottleSettings {
        ThrottleSettings {
            max_mib_per_sec: self.inner.rate.load(Ordering::Relaxed) as f64 / MIB,
            concurrency: self.concurrency(),
            paused: self.is_paused(),
        }
    }

    /// Replaces the settings; takes effect for bytes and units of work not yet started (and
    /// frees callers waiting under a rate that changed).
    pub fn set(&self, s: ThrottleSettings) -> Result<(), ThrottleError> {
        if !s.max_mib_per_sec.is_finite() || s.max_mib_per_sec < 0.0 {
            return Err(ThrottleError::Rate(s.max_mib_per_sec));
        }
        if !(1..=self.inner.max_concurrency).contains(&s.concurrency) {
            return Err(ThrottleError::Concurrency {
                got: s.concurrency,
                max: self.inner.max_concurrency,
            });
        }
        // Float to integer bytes: the value was checked finite and non-negative above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rate = (s.max_mib_per_sec * MIB).round() as u64;
        self.inner.rate.store(rate, Ordering::Relaxed);
        self.inner.concurrency.store(s.concurrency, Ordering::Relaxed);
        self.inner.pause.set(s.paused);
        *lock(&self.inner.tat) = None;
        self.changed();
        Ok(())
    }

    /// Applies the fields `c` gives; returns the settings now in force.
    pub fn change(&self, c: ThrottleChange) -> Result<ThrottleSettings, ThrottleError> {
        let cur = self.settings();
        self.set(ThrottleSettings {
            max_mib_per_sec: c.max_mib_per_sec.unwrap_or(cur.max_mib_per_sec),
            concurrency: c.concurrency.unwrap_or(cur.concurrency),
            paused: c.paused.unwrap_or(cur.paused),
        })?;
        Ok(self.settings())
    }

    /// Pauses or resumes; the rate and concurrency stay.
    pub fn set_paused(&self, paused: bool) {
        if self.inner.pause.set(paused) {
            self.changed();
        }
    }

    fn changed(&self) {
        if let Some(bell) = self.inner.on_change.get() {
            bell.ring();
        }
    }

    /// Bytes per second allowed (`None`: unlimited).
    #[must_use]
    pub fn bytes_per_sec(&self) -> Option<u64> {
        Some(self.inner.rate.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// Units of work allowed in flight at once.
    #[must_use]
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency.load(Ordering::Relaxed)
    }

    /// The largest concurrency this throttle accepts.
    #[must_use]
    pub fn max_concurrency(&self) -> usize {
        self.inner.max_concurrency
    }

    /// Whether the work is paused.
    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.inner.pause.is_paused()
    }

    /// Resolves once the throttle is not paused (at once if it is not). Cancellation-safe.
    pub async fn while_paused(&self) {
        self.inner.pause.resumed().await;
    }

    /// The pause switch, which the runner shares for a worker with this throttle.
    pub(crate) fn pause(&self) -> &Pause {
        &self.inner.pause
    }

    /// Waits until `n` more bytes may go under the rate (none when unlimited). The bytes count
    /// as spent from the call on: cancelling the wait does not give them back, so a cancelled
    /// caller never lets the next ones run ahead of the rate.
    pub async fn spend(&self, n: u64) {
        self.measure(n);
        let rate = self.inner.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return;
        }
        let due = {
            let mut tat = lock(&self.inner.tat);
            let now = Instant::now();
            let floor = now.checked_sub(BURST).unwrap_or(now);
            let start = tat.map_or(now, |t| t.max(floor));
            let next = start + Duration::from_secs_f64(n as f64 / rate as f64);
            *tat = Some(next);
            next
        };
        // In slices, so raising or lifting the limit frees waiting callers quickly.
        loop {
            let now = Instant::now();
            if now >= due || self.inner.rate.load(Ordering::Relaxed) != rate {
                return;
            }
            tokio::time::sleep((due - now).min(SLICE)).await;
        }
    }

    /// Counts `n` bytes for [`Throttle::spent`] and [`Throttle::measured_rate`].
    fn measure(&self, n: u64) {
        let total = self.inner.spent.fetch_add(n, Ordering::Relaxed) + n;
        let mut samples = lock(&self.inner.samples);
        let now = Instant::now();
        if samples.is_empty() {
            // The rate counts from before these bytes, not from after them.
            samples.push_back((now, total - n));
        }
        if samples.back().is_none_or(|s| now - s.0 > SAMPLE_EVERY) {
            samples.push_back((now, total));
            while samples.front().is_some_and(|s| now - s.0 > RATE_WINDOW) {
                samples.pop_front();
            }
        }
    }

    /// Bytes spent since the throttle was made.
    #[must_use]
    pub fn spent(&self) -> u64 {
        self.inner.spent.load(Ordering::Relaxed)
    }

    /// Bytes spent per second over the last 10 s, up to now (0 until half a second is known).
    #[must_use]
    pub fn measured_rate(&self) -> f64 {
        let samples = lock(&self.inner.samples);
        let now = Instant::now();
        let Some(first) = samples.iter().find(|s| now - s.0 <= RATE_WINDOW) else {
            return 0.0;
        };
        let secs = (now - first.0).as_secs_f64();
        if secs < 0.5 {
            return 0.0;
        }
        self.spent().saturating_sub(first.1) as f64 / secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB_U: u64 = 1 << 20;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[tokio::test(start_paused = true)]
    async fn spending_takes_bytes_over_rate_seconds() {
        let t = Throttle::new(Some(MIB_U), 1, 1);
        let t0 = Instant::now();
        t.spend(MIB_U).await;
        let first = secs(t0.elapsed());
        assert!((0.99..1.01).contains(&first), "1 MiB at 1 MiB/s took {first} s");
        for _ in 0..10 {
            t.spend(MIB_U / 10).await;
        }
        let total = secs(t0.elapsed());
        assert!((1.99..2.02).contains(&total), "2 MiB at 1 MiB/s took {total} s");
        assert_eq!(t.spent(), MIB_U + 10 * (MIB_U / 10));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let t = Throttle::new(None, 4, 8);
        let t0 = Instant::now();
        for _ in 0..100 {
            t.spend(100 * MIB_U).await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO);
        assert_eq!(t.bytes_per_sec(), None);
        assert_eq!(t.spent(), 10_000 * MIB_U);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_spell_leaves_at_most_a_100ms_burst() {
        let t = Throttle::new(Some(MIB_U), 1, 1);
        t.spend(MIB_U).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let t0 = Instant::now();
        t.spend(MIB_U).await;
        let took = secs(t0.elapsed());
        assert!(
            (0.89..0.91).contains(&took),
            "after idling, 1 MiB took {took} s, not 1 s minus 100 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_rate() {
        let t = Throttle::new(Some(MIB_U), 4, 4);
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                tokio::spawn(async move {
                    for _ in 0..4 {
                        t.spend(MIB_U / 8).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // 16 x 1/8 MiB = 2 MiB at 1 MiB/s, whoever spent them.
        let took = secs(t0.elapsed());
        assert!((1.99..2.02).contains(&took), "2 MiB from 4 tasks took {took} s");
    }

    #[tokio::test(start_paused = true)]
    async fn lifting_the_limit_frees_a_waiting_caller() {
        let t = Throttle::new(Some(MIB_U), 1, 1);
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.spend(100 * MIB_U).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        t.set(ThrottleSettings {
            max_mib_per_sec: 0.0,
            concurrency: 1,
            paused: false,
        })
        .unwrap();
        let t0 = Instant::now();
        waiter.await.unwrap();
        assert!(
            t0.elapsed() <= SLICE,
            "waited {:?} after the limit was lifted",
            t0.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn measured_rate_is_bytes_over_the_window() {
        let t = Throttle::new(Some(2 * MIB_U), 1, 1);
        assert_eq!(t.measured_rate(), 0.0);
        for _ in 0..40 {
            t.spend(MIB_U / 4).await;
        }
        // 10 MiB over 5 s of virtual time; the window reaches back 10 s.
        let rate = t.measured_rate() / MIB;
        assert!((1.9..2.1).contains(&rate), "measured {rate} MiB/s at a 2 MiB/s limit");
    }

    #[test]
    fn settings_round_trip_and_bad_values_are_refused_with_their_cause() {
        let t = Throttle::new(Some(64 * MIB_U), 4, MAX_CONCURRENCY);
        assert_eq!(
            t.settings(),
            ThrottleSettings {
                max_mib_per_sec: 64.0,
                concurrency: 4,
                paused: false
            }
        );
        let now = t
            .change(ThrottleChange {
                max_mib_per_sec: Some(0.25),
                paused: Some(true),
                ..ThrottleChange::default()
            })
            .unwrap();
        assert_eq!(now.max_mib_per_sec, 0.25);
        assert_eq!(now.concurrency, 4);
        assert!(now.paused && t.is_paused());
        assert_eq!(t.bytes_per_sec(), Some(MIB_U / 4));
        let cases = [
            (
                ThrottleChange {
                    max_mib_per_sec: Some(-1.0),
                    ..ThrottleChange::default()
                },
                "max_mib_per_sec must be a number >= 0 (0 = unlimited), got -1",
            ),
            (
                ThrottleChange {
                    max_mib_per_sec: Some(f64::NAN),
                    ..ThrottleChange::default()
                },
                "max_mib_per_sec must be a number >= 0 (0 = unlimited), got NaN",
            ),
            (
                ThrottleChange {
                    concurrency: Some(0),
                    ..ThrottleChange::default()
                },
                "concurrency must be within 1..=64, got 0",
            ),
            (
                ThrottleChange {
                    concurrency: Some(65),
                    ..ThrottleChange::default()
                },
                "concurrency must be within 1..=64, got 65",
            ),
        ];
        for (change, want) in cases {
            let err = t.change(change).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
        // A refused change changes nothing.
        assert_eq!(t.settings(), now);
        let narrow = Throttle::new(None, 3, 1);
        assert_eq!(narrow.concurrency(), 1);
        assert_eq!(
            narrow.change(ThrottleChange {
                concurrency: Some(2),
                ..ThrottleChange::default()
            }),
            Err(ThrottleError::Concurrency { got: 2, max: 1 })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn changes_ring_the_bell_once_registered() {
        let t = Throttle::new(None, 1, 1);
        let bell = Bell::new();
        assert!(t.ring_on_change(bell.clone()));
        assert!(!t.ring_on_change(Bell::new()));
        t.set_paused(true);
        let rung = tokio::time::timeout(Duration::from_secs(5), bell.rung()).await;
        assert!(rung.is_ok(), "pausing did not ring the bell");
        // Setting the same pause again is no change.
        t.set_paused(true);
        let rung = tokio::time::timeout(Duration::from_secs(5), bell.rung()).await;
        assert!(rung.is_err(), "a pause that changed nothing rang the bell");
    }

    #[test]
    fn change_bodies_parse_and_unknown_fields_are_refused() {
        let c: ThrottleChange = serde_json::from_str(r#"{"paused": true}"#).unwrap();
        assert_eq!(
            c,
            ThrottleChange {
                paused: Some(true),
                ..ThrottleChange::default()
            }
        );
        assert!(serde_json::from_str::<ThrottleChange>(r#"{"rate": 1}"#).is_err());
        let s = serde_json::to_value(Throttle::new(Some(32 * MIB_U), 1, 1).settings()).unwrap();
        assert_eq!(
            s,
            serde_json::json!({"max_mib_per_sec": 32.0, "concurrency": 1, "paused": false})
        );
    }
}
