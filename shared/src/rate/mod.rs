//! Rate control (DESIGN §5): every request to a Genesys API host is admitted here first.
//!
//! [`Admission`] is the small interface the Genesys client uses. [`RateControl`] is this
//! product's admission: per-bucket GCRA pacing (governor) at this holder's share of the
//! learned limit, AIMD on 429, and the `blocked_until` deadline shared through the
//! [`RateLedger`]. [`baseline`] holds the naive strategies the benchmark compares against.

pub mod baseline;
mod pacer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::clock::{self, Clock};
use crate::ports::{BucketKey, LearnedLimit, RateLedger, StoreError};
use pacer::Pacer;

/// `inin-ratelimit-*` headers of one response (reference §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateHeaders {
    /// `inin-ratelimit-allowed`: requests allowed in the current window.
    pub allowed: Option<u32>,
    /// `inin-ratelimit-count`: requests used in the current window.
    pub count: Option<u32>,
    /// `inin-ratelimit-reset`: seconds until the window resets.
    pub reset_secs: Option<u64>,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdmissionError {
    /// The bucket is blocked past what this run may wait: checkpoint and resume at `until`.
    #[error("rate-limited until {until}, beyond this run's wait budget")]
    Defer {
        /// The shared `Retry-After` deadline, UTC.
        until: Timestamp,
    },
    /// The ledger failed.
    #[error("rate ledger: {0}")]
    Ledger(String),
}

impl From<StoreError> for AdmissionError {
    fn from(e: StoreError) -> Self {
        Self::Ledger(e.to_string())
    }
}

/// Decides when a request may be sent. One per org (bucket) and exporter.
#[async_trait]
pub trait Admission: Send + Sync {
    /// Waits until one request may be sent, or says to defer.
    async fn admit(&self) -> Result<(), AdmissionError>;
    /// Feeds back a response's `inin-ratelimit-*` headers.
    fn observe(&self, headers: &RateHeaders);
    /// Records a 429 whose `Retry-After` ends at `until`.
    async fn on_429(&self, until: Timestamp) -> Result<(), AdmissionError>;
    /// Milliseconds spent waiting on deadlines so far.
    fn waited_ms(&self) -> u64;
    /// Leaves the bucket (releases this holder in the ledger).
    async fn release(&self);
}

/// Settings of [`RateControl`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateConfig {
    /// The limit assumed until a response says otherwise. Default 300 per 60,000 ms
    /// (`token.rate.per.minute`, reference §5.1).
    pub default_limit: LearnedLimit,
    /// Fraction of the limit kept in reserve. Default 0.01.
    pub safety: f64,
    /// Requests a holder may send at once after an idle moment (GCRA burst), so timer
    /// lateness is won back. Each holder's burst is taken out of the window's budget, so
    /// no fixed window can see more than the limit. Default 2.
    pub burst: u32,
    /// Longest `blocked_until` wait honoured in-process; longer waits defer. Default 120 s.
    pub max_wait: Duration,
    /// Longest interval between a holder's ledger renewals (which read shared state); a
    /// holder renews about every 10 requests' worth of time, at least every second.
    /// Default 5 s.
    pub renew_every: Duration,
    /// Lease length of a holder in the ledger. Default 20 s.
    pub lease: Duration,
    /// Multiplicative decrease on 429 (AIMD). Default 0.5.
    pub decrease: f64,
    /// Additive increase per response with headroom, as a fraction of the full rate. Default 0.02.
    pub increase: f64,
    /// Lowest AIMD factor. Default 0.05.
    pub min_factor: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            default_limit: LearnedLimit {
                allowed: 300,
                window_ms: 60_000,
            },
            safety: 0.01,
            burst: 2,
            max_wait: Duration::from_secs(120),
            renew_every: Duration::from_secs(5),
            lease: Duration::from_secs(20),
            decrease: 0.5,
            increase: 0.02,
            min_factor: 0.05,
        }
    }
}

#[derive(Debug)]
struct Local {
    limit: LearnedLimit,
    /// A limit seen in headers, not yet written to the ledger.
    unpublished: Option<LearnedLimit>,
    holders: u32,
    factor: f64,
    blocked_until: Option<Timestamp>,
    next_renew: Option<Timestamp>,
    /// A holder joining a busy bucket starts after the others' next renewal.
    start_after: Option<Timestamp>,
    waited_ms: u64,
    pacer: Pacer,
}

impl Local {
    /// This holder's pace: the window's budget (limit less the reserve, times the AIMD
    /// factor, less every holder's burst) shared among the holders, per second.
    fn rate_per_sec(&self, config: &RateConfig) -> f64 {
        let allowed = f64::from(self.limit.allowed);
        let holders = f64::from(self.holders.max(1));
        let budget = (allowed * (1.0 - config.safety) * self.factor
            - holders * f64::from(config.burst.max(1)))
        .max(allowed * config.min_factor);
        budget / holders * 1000.0 / self.limit.window_ms.max(1) as f64
    }
}

/// This product's admission control for one bucket (one client-credentials token's quota).
pub struct RateControl {
    bucket: BucketKey,
    holder: String,
    ledger: Arc<dyn RateLedger>,
    clock: Arc<dyn Clock>,
    config: RateConfig,
    local: Mutex<Local>,
}

impl std::fmt::Debug for RateControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateControl")
            .field("bucket", &self.bucket)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl RateControl {
    /// Rate control for `bucket`, registered in `ledger` as `holder` on first use.
    pub fn new(
        bucket: BucketKey,
        holder: impl Into<String>,
        ledger: Arc<dyn RateLedger>,
        clock: Arc<dyn Clock>,
        config: RateConfig,
    ) -> Self {
        let limit = config.default_limit;
        let mut local = Local {
            limit,
            unpublished: None,
            holders: 1,
            factor: 1.0,
            blocked_until: None,
            next_renew: None,
            start_after: None,
            waited_ms: 0,
            pacer: Pacer::new(1.0, config.burst, Arc::clone(&clock)),
        };
        local.pacer = Pacer::new(
            local.rate_per_sec(&config),
            config.burst,
            Arc::clone(&clock),
        );
        Self {
            bucket,
            holder: holder.into(),
            ledger,
            clock,
            config,
            local: Mutex::new(local),
        }
    }

    /// The pace this holder currently keeps, in requests per second.
    pub fn rate_per_sec(&self) -> f64 {
        self.lock().rate_per_sec(&self.config)
    }

    /// The limit currently assumed for the bucket.
    pub fn limit(&self) -> LearnedLimit {
        self.lock().limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn repace(&self, local: &mut Local) {
        let rate = local.rate_per_sec(&self.config);
        if (rate - local.pacer.rate_per_sec()).abs() > f64::EPSILON * rate.max(1.0) {
            local.pacer = Pacer::new(rate, self.config.burst, Arc::clone(&self.clock));
        }
    }

    /// How often a holder pacing at `rate_per_sec` renews: about once per 10 requests
    /// (≤ 1 ledger write per 10 API requests), between 250 ms and `renew_every`.
    fn renew_interval(&self, rate_per_sec: f64) -> Duration {
        Duration::from_secs_f64(10.0 / rate_per_sec.max(1e-3)).clamp(
            Duration::from_millis(250).min(self.config.renew_every),
            self.config.renew_every,
        )
    }

    /// Renews the holder lease when due (see [`Self::renew_interval`]). On the first
    /// renewal, a holder that finds others already working waits for their next renewal
    /// before its first request, so that they slow down to their new share first.
    async fn renew_if_due(&self) -> Result<(), AdmissionError> {
        let now = self.clock.now();
        let (publish, first, solo_interval) = {
            let mut local = self.lock();
            if local.next_renew.is_some_and(|t| t > now) {
                return Ok(());
            }
            let first = local.next_renew.is_none();
            let interval = self.renew_interval(local.rate_per_sec(&self.config));
            local.next_renew = Some(clock::add(now, interval));
            (local.unpublished.take(), first, interval)
        };
        let state = self
            .ledger
            .renew(
                &self.bucket,
                &self.holder,
                clock::add(now, self.config.lease),
                now,
                publish,
            )
            .await?;
        let mut local = self.lock();
        local.holders = state.active_holders.max(1);
        if first && local.holders > 1 {
            // The others renew at about the interval a lone holder would use.
            local.start_after = Some(clock::add(now, solo_interval));
        }
        if let Some(limit) = state.limit
            && local.unpublished.is_none()
        {
            local.limit = limit;
        }
        local.blocked_until = max_opt(local.blocked_until, state.blocked_until);
        self.repace(&mut local);
        Ok(())
    }
}

fn max_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[async_trait]
impl Admission for RateControl {
    async fn admit(&self) -> Result<(), AdmissionError> {
        loop {
            self.renew_if_due().await?;
            let now = self.clock.now();
            let start_after = self.lock().start_after.filter(|t| *t > now);
            if let Some(start) = start_after {
                self.clock.sleep_until(start).await;
                continue;
            }
            let blocked = self.lock().blocked_until.filter(|b| *b > now);
            if let Some(until) = blocked {
                let wait = until.duration_since(now).unsigned_abs();
                if wait > self.config.max_wait {
                    return Err(AdmissionError::Defer { until });
                }
                self.clock.sleep(wait).await;
                self.lock().waited_ms += wait.as_millis() as u64;
                continue;
            }
            let pacer_wait = self.lock().pacer.try_acquire();
            match pacer_wait {
                None => return Ok(()),
                Some(wait) => self.clock.sleep(wait).await,
            }
        }
    }

    fn observe(&self, headers: &RateHeaders) {
        let mut local = self.lock();
        if let Some(allowed) = headers.allowed.filter(|a| *a > 0) {
            let mut limit = local.limit;
            limit.allowed = allowed;
            if let Some(reset) = headers.reset_secs {
                // A reset longer than the assumed window means the window is longer.
                limit.window_ms = limit.window_ms.max(reset.saturating_mul(1000));
            }
            if limit != local.limit {
                local.limit = limit;
                local.unpublished = Some(limit);
            }
            // The server says this window is spent: hold off until it resets.
            if let (Some(count), Some(reset)) = (headers.count, headers.reset_secs)
                && count >= allowed
                && reset > 0
            {
                let until = clock::add(self.clock.now(), Duration::from_secs(reset));
                tracing::debug!(bucket = %self.bucket.0, count, allowed, reset, "window spent; holding off until it resets");
                local.blocked_until = max_opt(local.blocked_until, Some(until));
            } else if headers
                .count
                .is_some_and(|c| f64::from(c) < 0.9 * f64::from(allowed))
                && local.factor < 1.0
            {
                local.factor = (local.factor + self.config.increase).min(1.0);
            }
        }
        self.repace(&mut local);
    }

    async fn on_429(&self, until: Timestamp) -> Result<(), AdmissionError> {
        {
            let mut local = self.lock();
            local.factor = (local.factor * self.config.decrease).max(self.config.min_factor);
            local.blocked_until = max_opt(local.blocked_until, Some(until));
            self.repace(&mut local);
        }
        let state = self.ledger.block_until(&self.bucket, until).await?;
        let mut local = self.lock();
        local.blocked_until = max_opt(local.blocked_until, state.blocked_until);
        Ok(())
    }

    fn waited_ms(&self) -> u64 {
        self.lock().waited_ms
    }

    async fn release(&self) {
        if let Err(e) = self.ledger.release(&self.bucket, &self.holder).await {
            tracing::warn!(bucket = %self.bucket.0, error = %e, "could not release rate ledger holder");
        }
    }
}

#[cfg(test)]
mod tests;
