//! Latency statistics for the benchmark (pure).
//!
//! Percentiles use the nearest-rank method on the sorted samples: p50 of 100 samples is the
//! 50th smallest, p99 the 99th. No interpolation, so every reported number was measured.

use std::time::Duration;

/// Summary of a sample set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

/// Nearest-rank percentile `p` (0 < p <= 100) of already sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Summarizes samples (any order); `None` when empty.
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    Some(Summary {
        count: sorted.len(),
        p50: percentile(&sorted, 50.0)?,
        p99: percentile(&sorted, 99.0)?,
        max: *sorted.last()?,
    })
}

/// Milliseconds with two decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_vec(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_table() {
        let hundred: Vec<u64> = (1..=100).rev().collect();
        let s = summarize(&ms_vec(&hundred)).unwrap();
        assert_eq!(
            (s.count, s.p50, s.p99, s.max),
            (100, ms_vec(&[50])[0], ms_vec(&[99])[0], ms_vec(&[100])[0])
        );
        let one = summarize(&ms_vec(&[7])).unwrap();
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
        let three = summarize(&ms_vec(&[3, 1, 2])).unwrap();
        assert_eq!(
            (three.p50, three.p99),
            (Duration::from_millis(2), Duration::from_millis(3))
        );
    }

    #[test]
    fn empty_and_bad_percentiles() {
        assert!(summarize(&[]).is_none());
        assert!(percentile(&ms_vec(&[1]), 0.0).is_none());
        assert!(percentile(&ms_vec(&[1]), 101.0).is_none());
    }

    #[test]
    fn formats_milliseconds() {
        assert_eq!(ms(Duration::from_micros(1234)), "1.23");
    }
}
