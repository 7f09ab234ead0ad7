//! Naive admission strategies, for the benchmark only (`scorecards bench`):
//! - [`FixedDelay`]: a fixed delay before every request (the common forum advice, e.g.
//!   200 ms, with one request at a time);
//! - [`Unpaced`]: no pacing at all; each 429 is waited out by the request that got it,
//!   honouring `Retry-After` (what the Genesys SDKs do when retries are on).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{Admission, AdmissionError, RateHeaders};
use crate::clock::Clock;

/// Sleeps a fixed delay before each request; sleeps out each 429 in place.
pub struct FixedDelay {
    delay: Duration,
    clock: Arc<dyn Clock>,
    waited_ms: AtomicU64,
}

impl FixedDelay {
    /// A fixed delay of `delay` before each request.
    pub fn new(delay: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            delay,
            clock,
            waited_ms: AtomicU64::new(0),
        }
    }
}

/// No pacing; sleeps out each 429 in place.
pub struct Unpaced {
    clock: Arc<dyn Clock>,
    waited_ms: AtomicU64,
}

impl Unpaced {
    /// An unpaced admission.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            waited_ms: AtomicU64::new(0),
        }
    }
}

async fn sleep_out(clock: &dyn Clock, until: Timestamp, waited: &AtomicU64) {
    let wait = until.duration_since(clock.now());
    if wait.is_positive() {
        waited.fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
        clock.sleep(wait.unsigned_abs()).await;
    }
}

#[async_trait]
impl Admission for FixedDelay {
    async fn admit(&self) -> Result<(), AdmissionError> {
        self.clock.sleep(self.delay).await;
        Ok(())
    }
    fn observe(&self, _: &RateHeaders) {}
    async fn on_429(&self, until: Timestamp) -> Result<(), AdmissionError> {
        sleep_out(self.clock.as_ref(), until, &self.waited_ms).await;
        Ok(())
    }
    fn waited_ms(&self) -> u64 {
        self.waited_ms.load(Ordering::Relaxed)
    }
    async fn release(&self) {}
}

#[async_trait]
impl Admission for Unpaced {
    async fn admit(&self) -> Result<(), AdmissionError> {
        Ok(())
    }
    fn observe(&self, _: &RateHeaders) {}
    async fn on_429(&self, until: Timestamp) -> Result<(), AdmissionError> {
        sleep_out(self.clock.as_ref(), until, &self.waited_ms).await;
        Ok(())
    }
    fn waited_ms(&self) -> u64 {
        self.waited_ms.load(Ordering::Relaxed)
    }
    async fn release(&self) {}
}
