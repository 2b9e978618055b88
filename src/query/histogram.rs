//! The latency histogram behind every percentile: fixed logarithmic buckets, so that
//! histograms kept per time slot merge exactly.
//!
//! Bucket 0 holds 0 µs; bucket `b ≥ 1` holds the durations `v` with
//! `GROWTH^(b-1) ≤ v < GROWTH^b` microseconds. A percentile reports its bucket's
//! harmonic midpoint `2·lo·hi / (lo + hi)`, rounded to the microsecond, which is within
//! `(GROWTH - 1) / (GROWTH + 1)` ≈ 1.96% of every duration in the bucket.

use std::collections::BTreeMap;

/// The ratio between a bucket's upper and lower bound.
const GROWTH: f64 = 1.04;

/// The bucket of a duration in microseconds.
pub(crate) fn bucket(micros: i64) -> u16 {
    if micros <= 0 {
        return 0;
    }
    // `ln` of an integer ≥ 1 is exact enough that the same input always gives the same
    // bucket; every backend's rows are bucketed here, never in SQL.
    let b = 1.0 + (micros as f64).ln() / GROWTH.ln();
    b.floor().min(f64::from(u16::MAX)) as u16
}

/// The lower bound of every bucket: entry `b` is the smallest duration in bucket `b` or
/// above (`i64::MIN` for bucket 0), so that `v` lies in the last bucket whose bound is at
/// most `v`. Buckets no integer falls in share the next bucket's bound. Lets a database
/// bucket durations with integer comparisons alone, exactly as [`bucket`] does.
pub(crate) fn lower_bounds() -> Vec<i64> {
    let last = bucket(i64::MAX);
    let mut bounds = vec![i64::MIN];
    let mut low = 1i64;
    for b in 1..=last {
        // The smallest v ≥ low with bucket(v) ≥ b; `bucket` never decreases.
        let mut high = i64::MAX;
        while low < high {
            let mid = low + (high - low) / 2;
            if bucket(mid) >= b {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        bounds.push(low);
    }
    bounds
}

/// The value a percentile in bucket `b` reports, in microseconds.
pub(crate) fn representative(b: u16) -> u64 {
    if b == 0 {
        return 0;
    }
    let lo = GROWTH.powi(i32::from(b) - 1);
    let hi = lo * GROWTH;
    (2.0 * lo * hi / (lo + hi)).round() as u64
}

/// A duration as a percentile would report it: the representative of its bucket.
///
/// The histogram's percentiles are exactly this function applied to the nearest-rank
/// percentile of the raw durations, which is how a reference computation can check them.
///
/// ```
/// use tower_usage::query::quantize_micros;
/// let q = quantize_micros(250_000);
/// assert!((q as f64 - 250_000.0).abs() / 250_000.0 < 0.02);
/// ```
pub fn quantize_micros(micros: u64) -> u64 {
    representative(bucket(i64::try_from(micros).unwrap_or(i64::MAX)))
}

/// Counts per bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Histogram {
    counts: BTreeMap<u16, i64>,
}

impl Histogram {
    pub(crate) fn add(&mut self, micros: i64, count: i64) {
        self.add_bucket(bucket(micros), count);
    }

    /// Adds `count` durations known only by their bucket.
    pub(crate) fn add_bucket(&mut self, b: u16, count: i64) {
        let slot = self.counts.entry(b).or_default();
        *slot = slot.saturating_add(count);
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (&b, &n) in &other.counts {
            let slot = self.counts.entry(b).or_default();
            *slot = slot.saturating_add(n);
        }
    }

    pub(crate) fn total(&self) -> i64 {
        self.counts
            .values()
            .fold(0i64, |total, &n| total.saturating_add(n))
    }

    /// The nearest-rank percentile `per_mille / 1000`: the representative of the bucket
    /// holding the `ceil(n · p)`-th smallest duration.
    pub(crate) fn percentile(&self, per_mille: i64) -> Option<u64> {
        let n = self.total();
        if n <= 0 {
            return None;
        }
        let rank = ((i128::from(n) * i128::from(per_mille) + 999) / 1000).max(1);
        let mut seen = 0i128;
        for (&b, &count) in &self.counts {
            seen += i128::from(count);
            if seen >= rank {
                return Some(representative(b));
            }
        }
        self.counts.keys().next_back().map(|&b| representative(b))
    }

    /// The non-empty buckets and their counts, in bucket order.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (u16, i64)> + '_ {
        self.counts.iter().map(|(&b, &n)| (b, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_is_reported_within_two_percent() {
        let mut v = 1u64;
        while v < 10_000_000_000 {
            let q = quantize_micros(v) as f64;
            // Rounding to whole microseconds adds at most 0.5 µs.
            let error = (q - v as f64).abs() - 0.5;
            assert!(error / (v as f64) < 0.0197, "{v} -> {q}");
            v = v * 11 / 10 + 1;
        }
    }

    #[test]
    fn lower_bounds_bucket_like_the_logarithm() {
        let bounds = lower_bounds();
        assert_eq!(bounds.len(), usize::from(bucket(i64::MAX)) + 1);
        let by_bounds = |v: i64| bounds.partition_point(|&low| low <= v) - 1;
        let mut v = -3i64;
        while v < i64::MAX / 2 {
            for probe in [v - 1, v, v + 1] {
                assert_eq!(by_bounds(probe), usize::from(bucket(probe)), "{probe}");
            }
            v = if v < 100 { v + 1 } else { v + v / 97 };
        }
        for &low in &bounds[1..] {
            assert_eq!(by_bounds(low), usize::from(bucket(low)));
            assert_eq!(by_bounds(low - 1), usize::from(bucket(low - 1)));
        }
    }

    #[test]
    fn counts_saturate_instead_of_overflowing() {
        let mut h = Histogram::default();
        h.add_bucket(1, i64::MAX);
        h.add_bucket(2, i64::MAX);
        assert_eq!(h.total(), i64::MAX);
        h.add_bucket(2, i64::MAX);
        assert_eq!(h.total(), i64::MAX);
        assert_eq!(h.percentile(1000), Some(representative(2)));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.add(v * 1_000, 1);
        }
        assert_eq!(h.percentile(500), Some(quantize_micros(50_000)));
        assert_eq!(h.percentile(990), Some(quantize_micros(99_000)));
        assert_eq!(h.percentile(1000), Some(quantize_micros(100_000)));
        assert_eq!(Histogram::default().percentile(500), None);
    }
}
