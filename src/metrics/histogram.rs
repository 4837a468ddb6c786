//! A histogram of fixed buckets on atomics only: observing takes no lock (the
//! library's own histogram takes a mutex per observation), so it may sit on the
//! writer thread and in the hub's shards.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, TypedMetric},
};

/// Cheap to clone: the clones share their counts.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Upper bounds (inclusive), ascending; `+Inf` is implicit.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative); one more than `bounds` (`+Inf`).
    counts: Box<[AtomicU64]>,
    /// Sum of the observations, as the bits of an `f64`.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (sorted here; non-finite ones dropped).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Histogram {
        let mut bounds: Vec<f64> = bounds.into_iter().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(Inner {
            bounds: bounds.into(),
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// `count` bounds from `start`, each `factor` times the one before.
    pub fn exponential(start: f64, factor: f64, count: usize) -> Histogram {
        Histogram::new(std::iter::successors(Some(start), |b| Some(b * factor)).take(count))
    }

    /// Records one observation (a NaN is ignored).
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let i = self.0.bounds.partition_point(|b| *b < v);
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = self.0.sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
            Some((f64::from_bits(s) + v).to_bits())
        });
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: std::time::Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// (sum, count, non-cumulative buckets with `+Inf` last).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (f64::from_bits(self.0.sum.load(Ordering::Relaxed)), count, buckets)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new([1.0, 2.0, 5.0]);
        for v in [0.5, 1.0, 1.5, 5.0, 7.0, f64::NAN] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 5);
        assert_eq!(sum, 15.0);
        assert_eq!(buckets, vec![(1.0, 2), (2.0, 1), (5.0, 1), (f64::INFINITY, 1)]);
    }

    #[test]
    fn exponential_bounds() {
        let h = Histogram::exponential(1.0, 2.0, 4);
        assert_eq!(&*h.0.bounds, &[1.0, 2.0, 4.0, 8.0]);
    }
}
