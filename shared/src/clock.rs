//! The `Clock` port: wall-clock time (UTC) and sleeping, so every wait is testable.
//!
//! [`SystemClock`] is the production clock (tokio sleeps, system time). [`FakeClock`] is a
//! virtual clock for tests: `sleep` returns at once, advances virtual time by the requested
//! duration and records it, so a test can assert the exact waits the code honoured.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};

/// Time source and sleeper used by the rate control and the engine.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current time, UTC.
    fn now(&self) -> Timestamp;
    /// Sleeps for `duration`.
    async fn sleep(&self, duration: Duration);
    /// Sleeps until `deadline` (returns at once when it is in the past).
    async fn sleep_until(&self, deadline: Timestamp) {
        let wait = deadline.duration_since(self.now());
        if wait > SignedDuration::ZERO {
            self.sleep(wait.unsigned_abs()).await;
        }
    }
}

/// The real clock: system time and `tokio::time::sleep`.
#[derive(Debug, Clone, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A virtual clock for tests. Cloning shares the same virtual time and sleep log.
#[derive(Debug, Clone)]
pub struct FakeClock {
    inner: Arc<Mutex<FakeInner>>,
}

#[derive(Debug)]
struct FakeInner {
    now: Timestamp,
    sleeps: Vec<Duration>,
}

impl FakeClock {
    /// A fake clock that starts at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            inner: Arc::new(Mutex::new(FakeInner {
                now: start,
                sleeps: Vec::new(),
            })),
        }
    }

    /// Moves virtual time forward without recording a sleep.
    pub fn advance(&self, by: Duration) {
        let mut inner = self.inner.lock().expect("fake clock lock");
        inner.now = add(inner.now, by);
    }

    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.inner.lock().expect("fake clock lock").sleeps.clone()
    }
}

#[async_trait]
impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        self.inner.lock().expect("fake clock lock").now
    }
    async fn sleep(&self, duration: Duration) {
        {
            let mut inner = self.inner.lock().expect("fake clock lock");
            inner.sleeps.push(duration);
            inner.now = add(inner.now, duration);
        }
        tokio::task::yield_now().await;
    }
}

/// `t + d`, saturating at the largest timestamp.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fake_clock_records_sleeps_and_advances() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = FakeClock::new(start);
        clock.sleep(Duration::from_millis(1500)).await;
        clock
            .sleep_until("2026-01-01T00:00:05Z".parse().unwrap())
            .await;
        clock.sleep_until(start).await; // in the past: no sleep
        assert_eq!(
            clock.sleeps(),
            vec![Duration::from_millis(1500), Duration::from_millis(3500)]
        );
        assert_eq!(clock.now(), "2026-01-01T00:00:05Z".parse().unwrap());
    }
}
