//! A fixed-bucket histogram over atomics: one `fetch_add` on the bucket and one on the sum per observation,
//! no locks. Buckets are stored non-cumulative; [`Histogram::snapshot`] accumulates them, and derives the
//! count from the buckets, so an exposition always has non-decreasing buckets and `+Inf` equal to `_count`
//! even while observations race with the scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the raw `u64` observations are, and how they are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Observed in nanoseconds, exported in seconds.
    Seconds,
    /// Observed and exported as plain counts.
    Count,
}

impl Unit {
    fn export(self, raw: u64) -> f64 {
        match self {
            Unit::Seconds => raw as f64 / 1e9,
            Unit::Count => raw as f64,
        }
    }
}

/// `N` finite upper bounds (inclusive, ascending, in raw units) plus `+Inf`.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    unit: Unit,
    bounds: [u64; N],
    buckets: [AtomicU64; N],
    overflow: AtomicU64,
    sum: AtomicU64,
}

/// A consistent view for exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// (upper bound in exported units, cumulative count), ascending; `+Inf` not included.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl<const N: usize> Histogram<N> {
    /// `bounds` must be strictly ascending (checked in tests of every histogram the gateway declares).
    pub const fn new(unit: Unit, bounds: [u64; N]) -> Self {
        Histogram {
            unit,
            bounds,
            buckets: [const { AtomicU64::new(0) }; N],
            overflow: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one raw value (nanoseconds for [`Unit::Seconds`]).
    #[inline]
    pub fn observe(&self, raw: u64) {
        match self.bounds.iter().position(|b| raw <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum.fetch_add(raw, Ordering::Relaxed);
    }

    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut cumulative = 0u64;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (self.unit.export(*b), cumulative)
            })
            .collect();
        Snapshot {
            buckets,
            count: cumulative + self.overflow.load(Ordering::Relaxed),
            sum: self.unit.export(self.sum.load(Ordering::Relaxed)),
        }
    }

    #[cfg(test)]
    pub fn bounds_ascending(&self) -> bool {
        self.bounds.windows(2).all(|w| w[0] < w[1])
    }
}

/// Milliseconds in nanoseconds, for bucket bounds.
pub const fn ms(n: u64) -> u64 {
    n * 1_000_000
}

/// Microseconds in nanoseconds, for bucket bounds.
pub const fn us(n: u64) -> u64 {
    n * 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them_and_counts_are_cumulative() {
        let h = Histogram::new(Unit::Count, [1, 4, 16]);
        for v in [0, 1, 2, 4, 5, 16, 17, 1000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1.0, 2), (4.0, 4), (16.0, 6)]);
        assert_eq!(s.count, 8);
        assert_eq!(s.sum, 1045.0);
    }

    #[test]
    fn seconds_are_observed_in_nanoseconds_and_exported_in_seconds() {
        let h = Histogram::new(Unit::Seconds, [us(500), ms(1)]);
        h.observe_duration(Duration::from_micros(200));
        h.observe_duration(Duration::from_millis(3));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.0005, 1), (0.001, 1)]);
        assert_eq!(s.count, 2);
        assert!((s.sum - 0.0032).abs() < 1e-12, "{}", s.sum);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::new(Unit::Count, [10, 100]));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe((i + t) % 150);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.snapshot().count, 40_000);
    }
}
