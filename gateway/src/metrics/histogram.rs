//! A Prometheus histogram of durations on plain atomics: fixed bucket bounds, cumulative counts
//! written at render time, the sum kept in microseconds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// One histogram (one label set).
#[derive(Debug)]
pub(crate) struct Histogram {
    /// The buckets' upper bounds, in seconds, rising.
    bounds: &'static [f64],
    /// Counts per bucket (not cumulative), then the +Inf bucket.
    counts: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// Writes the series of `name` with `labels` (`leg="sip"`, or empty).
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (index, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[index].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {cumulative}"
        );
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braced} {sum}");
        let _ = writeln!(out, "{name}_count{braced} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_labelled() {
        let histogram = Histogram::new(&[0.01, 0.1]);
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_millis(10));
        histogram.observe(Duration::from_secs(2));
        let mut out = String::new();
        histogram.render(&mut out, "x_seconds", "leg=\"sip\"");
        assert_eq!(
            out,
            "x_seconds_bucket{leg=\"sip\",le=\"0.01\"} 2\n\
             x_seconds_bucket{leg=\"sip\",le=\"0.1\"} 2\n\
             x_seconds_bucket{leg=\"sip\",le=\"+Inf\"} 3\n\
             x_seconds_sum{leg=\"sip\"} 2.015\n\
             x_seconds_count{leg=\"sip\"} 3\n"
        );
        let mut out = String::new();
        Histogram::new(&[1.0]).render(&mut out, "y", "");
        assert!(out.starts_with("y_bucket{le=\"1\"} 0\n"), "{out}");
        assert!(out.contains("y_sum 0\ny_count 0\n"), "{out}");
    }
}
