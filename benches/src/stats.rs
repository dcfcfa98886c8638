//! Latency percentiles from all samples, sorted (exact, no histogram buckets).

use std::time::Duration;

/// Latency samples in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    ns: Vec<u64>,
    sorted: bool,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Samples {
        Samples {
            ns: Vec::with_capacity(n),
            sorted: true,
        }
    }

    pub fn record(&mut self, d: Duration) {
        self.ns.push(d.as_nanos().min(u64::MAX as u128) as u64);
        self.sorted = false;
    }

    pub fn merge(&mut self, other: Samples) {
        self.ns.extend(other.ns);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ns.is_empty()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.ns.sort_unstable();
            self.sorted = true;
        }
    }

    /// The nearest-rank percentile `q` (0..=1), in microseconds.
    pub fn percentile_us(&mut self, q: f64) -> Option<f64> {
        if self.ns.is_empty() {
            return None;
        }
        self.sort();
        let rank = ((q * self.ns.len() as f64).ceil() as usize).clamp(1, self.ns.len());
        Some(self.ns[rank - 1] as f64 / 1000.0)
    }

    pub fn mean_us(&self) -> Option<f64> {
        if self.ns.is_empty() {
            return None;
        }
        Some(self.ns.iter().map(|&n| n as f64).sum::<f64>() / self.ns.len() as f64 / 1000.0)
    }

    pub fn max_us(&mut self) -> Option<f64> {
        self.sort();
        self.ns.last().map(|&n| n as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut s = Samples::default();
        for us in 1..=1000u64 {
            s.record(Duration::from_micros(us));
        }
        assert_eq!(s.percentile_us(0.5), Some(500.0));
        assert_eq!(s.percentile_us(0.99), Some(990.0));
        assert_eq!(s.percentile_us(0.999), Some(999.0));
        assert_eq!(s.percentile_us(1.0), Some(1000.0));
        assert_eq!(s.max_us(), Some(1000.0));
        assert_eq!(s.mean_us(), Some(500.5));
    }
}
