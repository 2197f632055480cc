//! A ring of 5-second slots covering one hour, read back as 1-minute, 15-minute and 1-hour
//! windows.
//!
//! Each slot remembers which epoch (5-second interval since the owner's origin) it holds, so
//! nothing ever sweeps the ring: a slot is reset when first written in a new epoch, and a read
//! skips slots whose epoch lies outside the window. An idle hour therefore costs nothing, and a
//! slot reused after a long gap cannot resurrect old counts.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Length of one slot.
pub const SLOT_SECONDS: u64 = 5;
/// Slots in the ring: one hour, the longest window.
pub const SLOTS: usize = 720;

/// A sliding window ending now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Window {
    /// The last minute.
    #[serde(rename = "1m")]
    OneMinute,
    /// The last 15 minutes.
    #[serde(rename = "15m")]
    FifteenMinutes,
    /// The last hour.
    #[serde(rename = "1h")]
    OneHour,
    /// The last 15 seconds (three slots): how a backend behaves now, for the agents. Backend
    /// snapshots list it after the others, so the long windows keep their places.
    #[serde(rename = "15s")]
    FifteenSeconds,
}

impl Window {
    /// Every window, shortest first (the order snapshots list them in).
    pub const ALL: [Window; 3] = [Window::OneMinute, Window::FifteenMinutes, Window::OneHour];
    /// The windows of a backend snapshot: [`Self::ALL`], then the last 15 seconds.
    pub const BACKEND: [Window; 4] = [
        Window::OneMinute,
        Window::FifteenMinutes,
        Window::OneHour,
        Window::FifteenSeconds,
    ];

    /// Length in seconds.
    #[must_use]
    pub const fn seconds(self) -> u64 {
        match self {
            Window::OneMinute => 60,
            Window::FifteenMinutes => 900,
            Window::OneHour => 3600,
            Window::FifteenSeconds => 15,
        }
    }

    /// Slots covered, the current (partial) one included.
    #[must_use]
    pub const fn slots(self) -> u64 {
        self.seconds() / SLOT_SECONDS
    }

    /// "1m", "15m" or "1h", as serialized.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Window::OneMinute => "1m",
            Window::FifteenMinutes => "15m",
            Window::OneHour => "1h",
            Window::FifteenSeconds => "15s",
        }
    }

    /// Seconds to divide a window's counts by for a per-second rate: the window's length, or,
    /// while the stats are younger than that, their age (at least 1 s), so that a freshly
    /// started server does not under-report its 1-hour rates 60-fold.
    #[must_use]
    pub fn rate_seconds(self, origin: Instant, now: Instant) -> f64 {
        let age = now.saturating_duration_since(origin).as_secs_f64().max(1.0);
        age.min(self.seconds() as f64)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Window::BACKEND
            .into_iter()
            .find(|w| w.label() == s)
            .ok_or_else(|| format!("unknown window {s:?} (expected 15s, 1m, 15m or 1h)"))
    }
}

/// The epoch (5-second slot number since `origin`) that `now` falls in; instants before the
/// origin count as epoch 0.
#[must_use]
pub fn epoch_of(origin: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(origin).as_secs() / SLOT_SECONDS
}

/// When the epoch `epoch` starts, for callers that need slot boundaries.
#[must_use]
pub fn epoch_start(origin: Instant, epoch: u64) -> Instant {
    origin + Duration::from_secs(epoch * SLOT_SECONDS)
}

/// What a slot holds: something that can be emptied in place for reuse.
pub trait SlotData: Default {
    /// Forgets everything, keeping allocations for the slot's next epoch.
    fn reset(&mut self);
}

/// A lazily allocated payload: a slot never written costs only the pointer.
impl<T: SlotData> SlotData for Option<Box<T>> {
    fn reset(&mut self) {
        if let Some(b) = self {
            b.reset();
        }
    }
}

/// Marks a slot that has never been written.
const NEVER: u64 = u64::MAX;

#[derive(Debug)]
struct Slot<T> {
    epoch: u64,
    data: T,
}

/// `N` slots indexed by epoch: by default one hour of 5-second slots. A ring of coarser slots
/// (the caller numbers its epochs, e.g. minutes) costs less where many owners are kept.
#[derive(Debug)]
pub struct SlotRing<T, const N: usize = SLOTS> {
    slots: Vec<Slot<T>>,
}

impl<T: SlotData, const N: usize> Default for SlotRing<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: SlotData, const N: usize> SlotRing<T, N> {
    /// A ring of `N` empty slots.
    #[must_use]
    pub fn new() -> Self {
        Self {
            slots: (0..N)
                .map(|_| Slot {
                    epoch: NEVER,
                    data: T::default(),
                })
                .collect(),
        }
    }

    /// The slot of `epoch`, reset first if it still holds an older epoch; `None` when a newer
    /// epoch already took it over (a sample delayed by more than an hour is dropped).
    pub fn slot_mut(&mut self, epoch: u64) -> Option<&mut T> {
        let slot = &mut self.slots[(epoch % N as u64) as usize];
        if slot.epoch != epoch {
            if slot.epoch != NEVER && slot.epoch > epoch {
                return None;
            }
            slot.data.reset();
            slot.epoch = epoch;
        }
        Some(&mut slot.data)
    }

    /// The slots among the last `slots` epochs ending at `now_epoch` (included) that were
    /// written, each with its age in slots (0 = current), newest first.
    pub fn recent(&self, now_epoch: u64, slots: u64) -> impl Iterator<Item = (u64, &T)> + '_ {
        (0..slots.min(N as u64)).filter_map(move |age| {
            let epoch = now_epoch.checked_sub(age)?;
            let slot = &self.slots[(epoch % N as u64) as usize];
            (slot.epoch == epoch).then_some((age, &slot.data))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug)]
    struct Count(u64);

    impl SlotData for Count {
        fn reset(&mut self) {
            self.0 = 0;
        }
    }

    fn add(ring: &mut SlotRing<Count>, epoch: u64, n: u64) {
        if let Some(c) = ring.slot_mut(epoch) {
            c.0 += n;
        }
    }

    fn sum(ring: &SlotRing<Count>, now_epoch: u64, w: Window) -> u64 {
        ring.recent(now_epoch, w.slots()).map(|(_, c)| c.0).sum()
    }

    #[test]
    fn window_constants_and_labels() {
        assert_eq!(Window::OneMinute.slots(), 12);
        assert_eq!(Window::FifteenMinutes.slots(), 180);
        assert_eq!(Window::OneHour.slots(), SLOTS as u64);
        for w in Window::ALL {
            assert_eq!(serde_json::to_string(&w).unwrap(), format!("\"{}\"", w.label()));
            assert_eq!(serde_json::from_str::<Window>(&format!("\"{w}\"")).unwrap(), w);
            assert_eq!(w.label().parse::<Window>(), Ok(w));
        }
        assert!("2h".parse::<Window>().is_err());
    }

    #[test]
    fn epochs_follow_the_clock() {
        let t0 = Instant::now();
        assert_eq!(epoch_of(t0, t0), 0);
        assert_eq!(epoch_of(t0, t0 + Duration::from_millis(4_999)), 0);
        assert_eq!(epoch_of(t0, t0 + Duration::from_secs(5)), 1);
        assert_eq!(epoch_of(t0 + Duration::from_secs(10), t0), 0);
        assert_eq!(epoch_start(t0, 3), t0 + Duration::from_secs(15));
    }

    #[test]
    fn a_window_covers_its_slots_including_the_current_one() {
        let mut ring = SlotRing::<Count>::new();
        // One sample per epoch for the first 100 epochs.
        for e in 0..100 {
            add(&mut ring, e, 1);
        }
        assert_eq!(sum(&ring, 99, Window::OneMinute), 12);
        assert_eq!(sum(&ring, 99, Window::FifteenMinutes), 100);
        assert_eq!(sum(&ring, 99, Window::OneHour), 100);
        // Newest first, ages counted from the current slot.
        let ages: Vec<u64> = ring.recent(99, 3).map(|(a, _)| a).collect();
        assert_eq!(ages, vec![0, 1, 2]);
        // Slots written "in the future" of the reader are not counted.
        assert_eq!(sum(&ring, 50, Window::OneMinute), 12);
    }

    #[test]
    fn old_samples_expire_window_by_window() {
        let mut ring = SlotRing::<Count>::new();
        add(&mut ring, 0, 7);
        // 55 s later: still in the minute (12 slots: epochs 0..=11).
        assert_eq!(sum(&ring, 11, Window::OneMinute), 7);
        // 60 s later: gone from the minute, kept by the longer windows.
        assert_eq!(sum(&ring, 12, Window::OneMinute), 0);
        assert_eq!(sum(&ring, 12, Window::FifteenMinutes), 7);
        assert_eq!(sum(&ring, 12, Window::OneHour), 7);
        assert_eq!(sum(&ring, 179, Window::FifteenMinutes), 7);
        assert_eq!(sum(&ring, 180, Window::FifteenMinutes), 0);
        assert_eq!(sum(&ring, 719, Window::OneHour), 7);
        assert_eq!(sum(&ring, 720, Window::OneHour), 0);
    }

    #[test]
    fn reuse_after_a_long_gap_does_not_resurrect_old_counts() {
        let mut ring = SlotRing::<Count>::new();
        add(&mut ring, 0, 5);
        add(&mut ring, 1, 5);
        // Exactly one ring later, the same physical slot is reused and reset.
        add(&mut ring, 720, 1);
        // The hour ending in epoch 720 still holds epoch 1, but no longer epoch 0.
        assert_eq!(sum(&ring, 720, Window::OneHour), 6);
        assert_eq!(sum(&ring, 721, Window::OneHour), 1);
        // Far later, different physical slots: the ones left from epoch 1 are stale and skipped.
        add(&mut ring, 10_000, 2);
        assert_eq!(sum(&ring, 10_000, Window::OneHour), 2);
        assert_eq!(ring.recent(10_001 + 720, 720).count(), 0);
    }

    #[test]
    fn samples_older_than_the_ring_are_dropped() {
        let mut ring = SlotRing::<Count>::new();
        add(&mut ring, 800, 1);
        // Epoch 80 maps to the same slot as 800 but is long gone.
        assert!(ring.slot_mut(80).is_none());
        assert_eq!(sum(&ring, 800, Window::OneHour), 1);
        // Out-of-order but recent samples still land in their own slot.
        add(&mut ring, 799, 1);
        assert_eq!(sum(&ring, 800, Window::OneMinute), 2);
    }

    #[test]
    fn lazy_payload_is_allocated_on_first_write_only() {
        let mut ring = SlotRing::<Option<Box<Count>>>::new();
        assert!(ring.slot_mut(3).unwrap().is_none());
        ring.slot_mut(3).unwrap().get_or_insert_with(Box::default).0 += 4;
        let held: Vec<u64> = ring
            .recent(3, 12)
            .filter_map(|(_, d)| d.as_ref().map(|c| c.0))
            .collect();
        assert_eq!(held, vec![4]);
        // Reused an hour later: the allocation is kept, the count is not.
        let reused = ring.slot_mut(3 + 720).unwrap();
        assert_eq!(reused.as_ref().map(|c| c.0), Some(0));
    }

    #[test]
    fn rate_seconds_uses_the_age_of_young_stats() {
        let t0 = Instant::now();
        assert_eq!(Window::OneHour.rate_seconds(t0, t0), 1.0);
        assert_eq!(Window::OneHour.rate_seconds(t0, t0 + Duration::from_secs(120)), 120.0);
        assert_eq!(Window::OneMinute.rate_seconds(t0, t0 + Duration::from_secs(120)), 60.0);
        assert_eq!(Window::OneHour.rate_seconds(t0, t0 + Duration::from_secs(7200)), 3600.0);
    }
}
