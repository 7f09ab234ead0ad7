//! Rate control (DESIGN §5): every request to a Genesys API host is admitted here first.
//!
//! [`Admission`] is the small interface the Genesys client uses. [`RateControl`] is this
//! product's admission: per-bucket GCRA pacing (governor) at this holder's share of the
//! learned limit, AIMD on 429, and the `blocked_until` deadline shared through the
//! [`RateLedger`]. [`baseline`] holds the naive strategies the benchmark compares against.

pub mod baseline;
mod pacer;

use std::collections::VecDeque;
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
    /// `inin-ratelimit-reset`: whole seconds until the window ends, rounded up.
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

/// Longest window taken from `inin-ratelimit-reset`; longer values are not a window (a
/// daily limit, a broken header) and are ignored: 3,600 s.
const MAX_WINDOW_SECS: u64 = 3600;

/// Settings of [`RateControl`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateConfig {
    /// The limit assumed until responses show otherwise: `allowed` until a response carries
    /// `inin-ratelimit-allowed`, the window (ms) until a response opens a window and so
    /// shows its length (see [`RateControl::observe`]). Default 300 per 60,000 ms
    /// (`token.rate.per.minute`, reference §5.1).
    pub default_limit: LearnedLimit,
    /// Fraction of the limit left unused (for other users of the same quota). Default 0.0:
    /// the pacing bound holds without it (see [`RateControl::rate_per_sec`]).
    pub safety: f64,
    /// Requests a holder may send at once after an idle moment (GCRA burst), so timer
    /// lateness is won back. It never adds to a holder's requests per window, which its
    /// share caps; it only lets them bunch. Default 1 (evenly spaced).
    pub burst: u32,
    /// Spread of request latency (from admission to arrival at the server) that pacing
    /// allows for: a holder keeps to its share over any span of one window plus this.
    /// Default 100 ms.
    pub jitter: Duration,
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
            safety: 0.0,
            burst: 1,
            jitter: Duration::from_millis(100),
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
    /// The window shown by responses that opened one (ms), or adopted from the ledger.
    learned_window_ms: Option<u64>,
    /// `learned_window_ms` comes from this holder's own responses, not the ledger.
    own_window: bool,
    /// The longest `inin-ratelimit-reset` seen (ms): the window is at least about this long.
    longest_reset_ms: u64,
    holders: u32,
    /// More holders than `holders`, counted until the given time: after holders leave, the
    /// others keep the smaller share for one span so the leavers' requests age out first.
    departed: Option<(u32, Timestamp)>,
    factor: f64,
    blocked_until: Option<Timestamp>,
    next_renew: Option<Timestamp>,
    /// A holder joining a busy bucket starts after the others' next renewal.
    start_after: Option<Timestamp>,
    waited_ms: u64,
    /// This holder's admissions within the last span, oldest first.
    sent: VecDeque<Timestamp>,
    pacer: Pacer,
}

impl Local {
    /// The span over which a holder keeps to its share: the window plus the jitter margin.
    fn span(&self, config: &RateConfig) -> Duration {
        Duration::from_millis(self.limit.window_ms.max(1)) + config.jitter
    }

    /// Holders sharing the bucket as far as pacing is concerned (see `departed`).
    fn holders(&self, now: Timestamp) -> u32 {
        let departed = self.departed.filter(|(_, until)| *until > now);
        self.holders.max(departed.map_or(1, |(h, _)| h)).max(1)
    }

    /// This holder's share: requests it may send in any span (see [`RateControl::rate_per_sec`]).
    fn share(&self, config: &RateConfig, now: Timestamp) -> u32 {
        let budget = f64::from(self.limit.allowed)
            * (1.0 - config.safety.clamp(0.0, 1.0))
            * self.factor.max(config.min_factor);
        ((budget / f64::from(self.holders(now))).floor() as u32).max(1)
    }

    /// This holder's pace, requests per second: its share per span.
    fn rate_per_sec(&self, config: &RateConfig, now: Timestamp) -> f64 {
        f64::from(self.share(config, now)) / self.span(config).as_secs_f64()
    }

    /// The window the pacing assumes (ms): never shorter than any reset seen; the
    /// configured default until a response opened a window.
    fn window_ms(&self, config: &RateConfig) -> u64 {
        self.learned_window_ms
            .unwrap_or(config.default_limit.window_ms)
            .max(self.longest_reset_ms)
            .max(1)
    }

    /// How long until this holder's share allows another request (`None`: now).
    fn share_wait(&mut self, config: &RateConfig, now: Timestamp) -> Option<Duration> {
        let span = self.span(config);
        while self
            .sent
            .front()
            .is_some_and(|t| clock::add(*t, span) <= now)
        {
            self.sent.pop_front();
        }
        let share = self.share(config, now) as usize;
        if self.sent.len() < share {
            return None;
        }
        // The oldest request that must leave the span before another may be sent.
        let oldest = self.sent[self.sent.len() - share];
        Some(
            clock::add(oldest, span)
                .duration_since(now)
                .unsigned_abs()
                .max(Duration::from_micros(1)),
        )
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
            learned_window_ms: None,
            own_window: false,
            longest_reset_ms: 0,
            holders: 1,
            departed: None,
            factor: 1.0,
            blocked_until: None,
            next_renew: None,
            start_after: None,
            waited_ms: 0,
            sent: VecDeque::new(),
            pacer: Pacer::new(1.0, config.burst, Arc::clone(&clock), false),
        };
        local.pacer = Pacer::new(
            local.rate_per_sec(&config, clock.now()),
            config.burst,
            Arc::clone(&clock),
            false,
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
    ///
    /// The bound (DESIGN §5). The bucket allows `L` requests per fixed window of `W`
    /// seconds, counted at the server; a request admitted at `t` arrives within
    /// `[t + l, t + l + J]` (`J` = [`RateConfig::jitter`]); `Ŵ ≥ W` is the window estimate
    /// (see [`Self::observe`]), `H` the holders, `f` the AIMD factor, `s` the reserve.
    /// - Share: each holder may send `a = max(1, floor(L·(1−s)·f / H))` requests per span
    ///   `D = Ŵ + J`, so the shares add up to at most `L` (while `H ≤ L`).
    /// - Cap: a request is admitted at `t` only if fewer than `a` of this holder's requests
    ///   were admitted in `(t − D, t]`. Any span of length `D` then holds at most `a` of its
    ///   admissions: the last admission in the span was checked against all the others.
    /// - A server window holds only requests admitted within a span of `W + J ≤ D`, so it
    ///   sees at most `a` from each holder and at most `Σa ≤ L` in all.
    /// - Pace: between checks the holder spaces its requests evenly with GCRA at `a / D`
    ///   per second (burst [`RateConfig::burst`]); spacing never adds to the cap.
    ///
    /// So one holder reaches `floor(L·(1−s)) / (Ŵ + J)` per second: with the defaults, 10
    /// per 5 s → 10 / 5.1 s (98 %), 100 per 5 s → 98 %, 300 per 60 s → 99.8 %. The cap
    /// holds across changes: a smaller share (a 429, a holder joining) applies at once to
    /// the requests already in the span; a larger share because holders left waits one span
    /// `D`, so the leavers' requests have left every window first; a joining holder starts
    /// after the others' next renewal (which cuts their share) plus one span `D`; the AIMD
    /// factor only changes this holder's own share. One exception: the very first
    /// responses may show a limit lower than the one assumed, and what was sent under the
    /// assumption can exceed it once.
    pub fn rate_per_sec(&self) -> f64 {
        self.lock().rate_per_sec(&self.config, self.clock.now())
    }

    /// The limit currently assumed for the bucket.
    pub fn limit(&self) -> LearnedLimit {
        self.lock().limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the pacer when the pace changed; the new one starts with its burst spent.
    fn repace(&self, local: &mut Local) {
        let rate = local.rate_per_sec(&self.config, self.clock.now());
        if (rate - local.pacer.rate_per_sec()).abs() > f64::EPSILON * rate.max(1.0) {
            local.pacer = Pacer::new(rate, self.config.burst, Arc::clone(&self.clock), true);
        }
    }

    /// How often a holder pacing at `rate_per_sec` renews. Sharing the bucket: about once
    /// per 10 requests, between 250 ms and `renew_every`, so a deadline or a share change
    /// reaches every holder soon. Alone (the usual case: one export chain per org): every
    /// `renew_every`, which is all a joiner relies on (it waits `renew_every` and one span
    /// before its first request), so a lone holder spends few ledger operations per request.
    fn renew_interval(&self, rate_per_sec: f64, holders: u32) -> Duration {
        if holders <= 1 {
            return self.config.renew_every;
        }
        Duration::from_secs_f64(10.0 / rate_per_sec.max(1e-3)).clamp(
            Duration::from_millis(250).min(self.config.renew_every),
            self.config.renew_every,
        )
    }

    /// Renews the holder lease when due (see [`Self::renew_interval`]). On the first
    /// renewal, a holder that finds others already working waits for their next renewal
    /// (at most `renew_every` away) and one span more before its first request, so that
    /// they have cut their share and their requests under the old share have aged out.
    async fn renew_if_due(&self) -> Result<(), AdmissionError> {
        let now = self.clock.now();
        let (publish, first) = {
            let mut local = self.lock();
            if local.next_renew.is_some_and(|t| t > now) {
                return Ok(());
            }
            let first = local.next_renew.is_none();
            let holders = local.holders;
            let interval = self.renew_interval(local.rate_per_sec(&self.config, now), holders);
            local.next_renew = Some(clock::add(now, interval));
            (local.unpublished.take(), first)
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
        let holders = state.active_holders.max(1);
        let counted = local.holders(now);
        // Only a new departure (re)starts the span; renewals that see the same count do not.
        if holders < local.holders {
            let until = clock::add(now, local.span(&self.config));
            local.departed = Some((counted, until));
        }
        local.holders = holders;
        if let Some(limit) = state.limit
            && local.unpublished.is_none()
        {
            local.limit.allowed = limit.allowed;
            // Ledger limits come from responses that opened a window; this holder's own
            // such responses take precedence.
            if !local.own_window {
                local.learned_window_ms = Some(limit.window_ms.max(1));
            }
            local.limit.window_ms = local.window_ms(&self.config);
        }
        if first && local.holders > 1 {
            let wait = self.config.renew_every + local.span(&self.config);
            local.start_after = Some(clock::add(now, wait));
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
            let wait = {
                let mut local = self.lock();
                self.repace(&mut local);
                match local.share_wait(&self.config, now) {
                    Some(wait) => Some(wait),
                    None => {
                        let wait = local.pacer.try_acquire();
                        if wait.is_none() {
                            local.sent.push_back(now);
                        }
                        wait
                    }
                }
            };
            match wait {
                None => return Ok(()),
                Some(wait) => self.clock.sleep(wait).await,
            }
        }
    }

    /// Learns the limit from a response's headers.
    ///
    /// The window: a response with `inin-ratelimit-count` 1 was the request that opened
    /// its window, and windows start with a request, so its `inin-ratelimit-reset` (whole
    /// seconds, rounded up) is the window's length rounded up — never less than the window.
    /// Every reset is at most that, so the window taken is the longest reset seen since (a
    /// window that grows shows up at once). Until a response opens a window, the window is
    /// the configured default, or the longest reset if longer. Resets of 0, above
    /// 3,600 s, or without a count are no evidence. A window learned here is published
    /// to the ledger for the other holders.
    ///
    /// A response showing the window spent (count ≥ allowed) holds requests off until the
    /// reset, unless the window has been learned: then the pacing already keeps to the
    /// limit and a spent window is its steady state.
    fn observe(&self, headers: &RateHeaders) {
        let mut local = self.lock();
        let reset_secs = headers
            .reset_secs
            .filter(|r| (1..=MAX_WINDOW_SECS).contains(r));
        let mut limit = local.limit;
        if let (Some(reset), Some(count)) = (reset_secs, headers.count.filter(|c| *c > 0)) {
            let reset_ms = reset * 1000;
            local.longest_reset_ms = local.longest_reset_ms.max(reset_ms);
            if count == 1 {
                let learned = match local.learned_window_ms {
                    Some(w) if local.own_window => w.max(reset_ms),
                    _ => reset_ms,
                };
                local.learned_window_ms = Some(learned);
                local.own_window = true;
            }
            limit.window_ms = local.window_ms(&self.config);
        }
        if let Some(allowed) = headers.allowed.filter(|a| *a > 0) {
            limit.allowed = allowed;
            // The server says this window is spent: hold off until it resets.
            if let (Some(count), Some(reset)) = (headers.count, reset_secs)
                && count >= allowed
                && local.learned_window_ms.is_none()
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
        if limit != local.limit {
            local.limit = limit;
            if local.own_window {
                local.unpublished = Some(limit);
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
