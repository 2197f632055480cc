//! A subject's baseline: a bounded ring of its recent unflagged windows and their robust
//! statistics (median and MAD per feature), from which a value's robust z-score follows.

use std::collections::VecDeque;

use crate::features::Feature;

/// MAD times this estimates the standard deviation of normal data, so z reads like a z-score.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Median and median absolute deviation of one feature, in transformed units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Robust {
    /// The median.
    pub median: f64,
    /// The median absolute deviation from it (not floored).
    pub mad: f64,
}

impl Robust {
    /// Robust statistics of `values` (NaN ignored); `None` when there are none.
    #[must_use]
    pub fn of(values: impl Iterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let median = median_of(&mut v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
        let mad = median_of(&mut dev);
        Some(Self { median, mad })
    }

    /// The signed robust z of transformed value `t` for feature `f`, the MAD floored.
    #[must_use]
    pub fn z(&self, f: Feature, t: f64) -> f64 {
        (t - self.median) / (MAD_TO_SIGMA * self.mad.max(f.mad_floor()))
    }
}

fn median_of(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The last `capacity` unflagged windows of one subject (rows of transformed features in its
/// kind's order, NaN where not measured) and their statistics, refreshed lazily.
#[derive(Clone, Debug)]
pub struct Baseline {
    rows: VecDeque<Vec<f64>>,
    capacity: usize,
    stats: Vec<Option<Robust>>,
    pushed_since_stats: usize,
}

impl Baseline {
    /// An empty baseline of rows `width` wide, keeping at most `capacity` rows.
    #[must_use]
    pub fn new(width: usize, capacity: usize) -> Self {
        Self {
            rows: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            stats: vec![None; width],
            pushed_since_stats: 0,
        }
    }

    /// Adds a window (the oldest goes when full).
    pub fn push(&mut self, row: Vec<f64>) {
        if self.rows.len() == self.capacity {
            self.rows.pop_front();
        }
        self.rows.push_back(row);
        self.pushed_since_stats += 1;
        // Recomputing costs O(n log n); doing it every n/16 pushes keeps the cost per window
        // O(16 log n) while the statistics lag the ring by at most 1/16 of it.
        if self.pushed_since_stats > self.rows.len() / 16 {
            self.refresh();
        }
    }

    fn refresh(&mut self) {
        for (j, s) in self.stats.iter_mut().enumerate() {
            *s = Robust::of(self.rows.iter().map(|r| r[j]));
        }
        self.pushed_since_stats = 0;
    }

    /// Windows held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no window is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The statistics of column `j` (`None` if never measured).
    #[must_use]
    pub fn stats(&self, j: usize) -> Option<Robust> {
        self.stats.get(j).copied().flatten()
    }

    /// The held windows, oldest first.
    pub fn rows(&self) -> impl Iterator<Item = &Vec<f64>> {
        self.rows.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_ignore_outliers_and_nan() {
        let r = Robust::of([1.0, 2.0, 3.0, 4.0, 1000.0, f64::NAN].into_iter()).unwrap();
        assert_eq!(r.median, 3.0);
        assert_eq!(r.mad, 1.0);
        assert!(Robust::of([f64::NAN].into_iter()).is_none());
    }

    #[test]
    fn a_flat_baseline_is_floored_not_infinite() {
        let r = Robust::of([0.0; 50].into_iter()).unwrap();
        let f = Feature::AuthFailuresPerS;
        let one = r.z(f, f.transform(1.0 / 60.0));
        assert!(one.is_finite() && one < 1.0, "one failure a minute is wobble: {one}");
        let burst = r.z(f, f.transform(5.0));
        assert!(burst > 6.0, "five a second is not: {burst}");
    }

    #[test]
    fn the_ring_is_bounded_and_stats_follow_it() {
        let mut b = Baseline::new(1, 32);
        for i in 0..100 {
            b.push(vec![f64::from(i)]);
        }
        assert_eq!(b.len(), 32);
        let m = b.stats(0).unwrap().median;
        assert!(
            (80.0..=84.0).contains(&m),
            "median of the last 32 (68..99), lagging a little: {m}"
        );
    }
}
