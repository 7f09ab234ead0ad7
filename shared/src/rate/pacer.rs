//! GCRA pacing with governor, driven by the [`Clock`] port so a fake clock paces in tests.

use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as GovernorClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::clock::Clock;

/// Nanoseconds since the Unix epoch, as read from a [`Clock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PortInstant(u64);

impl Add<Nanos> for PortInstant {
    type Output = Self;
    fn add(self, other: Nanos) -> Self {
        Self(self.0.saturating_add(other.as_u64()))
    }
}

impl Reference for PortInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_sub(earlier.0))
    }
    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.saturating_sub(duration.as_u64()))
    }
}

/// governor's view of the [`Clock`] port.
#[derive(Clone)]
pub(crate) struct PortClock(Arc<dyn Clock>);

impl GovernorClock for PortClock {
    type Instant = PortInstant;
    fn now(&self) -> PortInstant {
        PortInstant(self.0.now().as_nanosecond().max(0) as u64)
    }
}

/// Paces requests at a steady rate (GCRA).
pub(crate) struct Pacer {
    rate_per_sec: f64,
    clock: PortClock,
    limiter: RateLimiter<NotKeyed, InMemoryState, PortClock, NoOpMiddleware<PortInstant>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("rate_per_sec", &self.rate_per_sec)
            .finish_non_exhaustive()
    }
}

impl Pacer {
    /// A pacer admitting `rate_per_sec` requests per second (at least one per hour), with
    /// up to `burst` (at least 1) at once after an idle moment. A pacer that replaces one
    /// in use starts `spent`: its burst is used up and its first request waits one period,
    /// so a rate change never grants a fresh burst.
    pub(crate) fn new(rate_per_sec: f64, burst: u32, clock: Arc<dyn Clock>, spent: bool) -> Self {
        let rate = rate_per_sec.max(1.0 / 3600.0);
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .expect("period is positive")
            .allow_burst(burst);
        let clock = PortClock(clock);
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
        if spent {
            // The whole burst fits a fresh limiter, so this always succeeds.
            let _ = limiter.check_n(burst);
        }
        Self {
            rate_per_sec: rate,
            limiter,
            clock,
        }
    }

    /// The configured rate, requests per second.
    pub(crate) fn rate_per_sec(&self) -> f64 {
        self.rate_per_sec
    }

    /// Takes a slot now (`None`), or says how long to wait before trying again.
    pub(crate) fn try_acquire(&self) -> Option<Duration> {
        match self.limiter.check() {
            Ok(()) => None,
            Err(not_until) => Some(
                not_until
                    .wait_time_from(self.clock.now())
                    .max(Duration::from_micros(1)),
            ),
        }
    }
}
