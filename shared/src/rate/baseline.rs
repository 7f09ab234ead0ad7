//! Naive admission, for the benchmark only (`scorecards bench`): an optional fixed delay
//! before every request and nothing else; each 429 is waited out by the request that got
//! it, honouring `Retry-After`.
//! - `Baseline::new(200 ms)` with one request at a time: the common forum advice;
//! - `Baseline::new(0)` with many in flight: what the Genesys SDKs do when retries are on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{Admission, AdmissionError, RateHeaders};
use crate::clock::Clock;

/// Sleeps a fixed delay (possibly zero) before each request; sleeps out each 429 in place.
pub struct Baseline {
    delay: Duration,
    clock: Arc<dyn Clock>,
    waited_ms: AtomicU64,
}

impl Baseline {
    /// A baseline with `delay` before each request.
    pub fn new(delay: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            delay,
            clock,
            waited_ms: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl Admission for Baseline {
    async fn admit(&self) -> Result<(), AdmissionError> {
        if !self.delay.is_zero() {
            self.clock.sleep(self.delay).await;
        }
        Ok(())
    }
    fn observe(&self, _: &RateHeaders) {}
    async fn on_429(&self, until: Timestamp) -> Result<(), AdmissionError> {
        let wait = until.duration_since(self.clock.now());
        if wait.is_positive() {
            self.waited_ms
                .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
            self.clock.sleep(wait.unsigned_abs()).await;
        }
        Ok(())
    }
    fn waited_ms(&self) -> u64 {
        self.waited_ms.load(Ordering::Relaxed)
    }
    async fn release(&self) {}
}
