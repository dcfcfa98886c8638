//! The delay between grabs that grows while handlers report an overloaded
//! downstream and shrinks as their jobs succeed again.

use std::time::{Duration, Instant};

/// How the grab delay reacts to [`JobError::Overloaded`](crate::JobError::Overloaded).
///
/// The first overload sets the delay to `initial`; each further one doubles it,
/// up to `max`. Each successful job halves it, and below `initial` it drops to
/// zero. Both changes happen at most once per current delay: a batch of jobs
/// rejected together (one bulk request refused by Elasticsearch fails every
/// document in it) counts as one signal, not fifty doublings, and recovery
/// goes one step per period rather than collapsing after a burst of quick
/// successes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackpressurePolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackpressurePolicy {
    fn default() -> Self {
        BackpressurePolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Backpressure {
    policy: BackpressurePolicy,
    delay: Duration,
    changed: Option<Instant>,
}

impl Backpressure {
    pub fn new(policy: BackpressurePolicy) -> Backpressure {
        Backpressure {
            policy,
            delay: Duration::ZERO,
            changed: None,
        }
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }

    fn settled(&self, now: Instant) -> bool {
        match self.changed {
            None => true,
            Some(at) => now.saturating_duration_since(at) >= self.delay,
        }
    }

    pub fn overloaded(&mut self, now: Instant) {
        if self.delay.is_zero() {
            self.delay = self.policy.initial.min(self.policy.max);
        } else if self.settled(now) {
            self.delay = self.delay.saturating_mul(2).min(self.policy.max);
        } else {
            return;
        }
        self.changed = Some(now);
    }

    pub fn succeeded(&mut self, now: Instant) {
        if self.delay.is_zero() || !self.settled(now) {
            return;
        }
        self.delay /= 2;
        if self.delay < self.policy.initial {
            self.delay = Duration::ZERO;
        }
        self.changed = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_once_per_period_and_recovers_step_by_step() {
        let policy = BackpressurePolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(800),
        };
        let mut bp = Backpressure::new(policy);
        let t0 = Instant::now();
        bp.overloaded(t0);
        assert_eq!(bp.delay(), Duration::from_millis(100));
        // A burst of rejections within the period counts once.
        for _ in 0..50 {
            bp.overloaded(t0 + Duration::from_millis(10));
        }
        assert_eq!(bp.delay(), Duration::from_millis(100));
        let mut t = t0;
        for expected in [200, 400, 800, 800] {
            t += bp.delay();
            bp.overloaded(t);
            assert_eq!(bp.delay(), Duration::from_millis(expected));
        }
        // Successes within the period do nothing; then one halving per period.
        bp.succeeded(t + Duration::from_millis(1));
        assert_eq!(bp.delay(), Duration::from_millis(800));
        for expected in [400, 200, 100, 0] {
            t += bp.delay();
            bp.succeeded(t);
            assert_eq!(bp.delay(), Duration::from_millis(expected));
        }
        bp.succeeded(t + Duration::from_secs(1));
        assert_eq!(bp.delay(), Duration::ZERO);
    }
}
