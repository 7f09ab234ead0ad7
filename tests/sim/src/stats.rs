//! Request statistics, per org, per token and per endpoint (also `GET /_sim/stats`).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

/// Counters for one scope (an org, a token, or an endpoint of an org).
///
/// `requests` counts every request attributed to the scope, including rejected ones
/// (401, 429, faults). Window maxima count every *arriving* request (so a value above
/// the limit's `allowed` means the client sent more than its quota in that window).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Requests received.
    pub requests: u64,
    /// Responses with status 429 (rate limit or scripted).
    pub responses_429: u64,
    /// Responses by status code ("200", "429", …; "reset" = connection dropped).
    pub responses_by_status: BTreeMap<String, u64>,
    /// Most requests in one fixed window (window length = the org's token limit
    /// `window_ms`; windows start at the first request after the previous one ended).
    pub max_requests_in_any_window: u64,
    /// Most requests in any sliding interval of `window_ms`.
    pub max_requests_in_sliding_window: u64,
    /// Most requests in flight at once (arrival to response, latency included).
    pub peak_concurrency: u64,
    /// Requests that arrived on a token before the Retry-After deadline the server had
    /// given that token (the client ignored a 429).
    pub quota_violations: u64,
    /// Scripted faults that fired.
    pub faults_injected: u64,
}

/// Statistics of one org.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgStats {
    /// Org id.
    pub org_id: String,
    /// Org name.
    pub name: String,
    /// The per-token limit (`allowed` per `window_ms`).
    pub allowed: u32,
    /// Window length in milliseconds.
    pub window_ms: u64,
    /// All requests of the org (token endpoint included).
    pub totals: Counters,
    /// Per issued token, keyed `token-1`, `token-2`, … in issue order.
    pub tokens: BTreeMap<String, Counters>,
    /// Per endpoint: `token`, `tokens_me`, `organizations_me`, `search`, `query`, `get`,
    /// `forms`, `form`, `publishedforms`, `aggregates`, `users`, `unknown`.
    pub endpoints: BTreeMap<String, Counters>,
}

impl OrgStats {
    /// Counters of one endpoint (zero if never called).
    pub fn endpoint(&self, name: &str) -> Counters {
        self.endpoints.get(name).cloned().unwrap_or_default()
    }
    /// Counters of one token label (zero if unknown).
    pub fn token(&self, label: &str) -> Counters {
        self.tokens.get(label).cloned().unwrap_or_default()
    }
    /// Sum of quota violations over tokens.
    pub fn quota_violations(&self) -> u64 {
        self.totals.quota_violations
    }
}

/// Statistics of the whole simulator, keyed by org id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Per org id.
    pub orgs: BTreeMap<String, OrgStats>,
    /// Requests that could not be attributed to any org (unknown token/client, bad host).
    pub unattributed_requests: u64,
}

impl Stats {
    /// One org's statistics (empty if the id is unknown).
    pub fn org(&self, org_id: &str) -> OrgStats {
        self.orgs.get(org_id).cloned().unwrap_or_default()
    }
    /// Requests over all orgs.
    pub fn total_requests(&self) -> u64 {
        self.orgs.values().map(|o| o.totals.requests).sum()
    }
    /// 429 responses over all orgs.
    pub fn total_429(&self) -> u64 {
        self.orgs.values().map(|o| o.totals.responses_429).sum()
    }
    /// Quota violations over all orgs.
    pub fn total_quota_violations(&self) -> u64 {
        self.orgs.values().map(|o| o.totals.quota_violations).sum()
    }
}

/// Live tracker behind one [`Counters`].
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pub c: Counters,
    fixed_start: Option<Instant>,
    fixed_count: u64,
    sliding: VecDeque<Instant>,
    in_flight: u64,
}

impl Tracker {
    pub fn arrive(&mut self, now: Instant, window: Duration) {
        self.c.requests += 1;
        match self.fixed_start {
            Some(s) if now < s + window => self.fixed_count += 1,
            _ => {
                self.fixed_start = Some(now);
                self.fixed_count = 1;
            }
        }
        self.c.max_requests_in_any_window = self.c.max_requests_in_any_window.max(self.fixed_count);
        while let Some(f) = self.sliding.front() {
            if *f + window <= now {
                self.sliding.pop_front();
            } else {
                break;
            }
        }
        self.sliding.push_back(now);
        self.c.max_requests_in_sliding_window = self
            .c
            .max_requests_in_sliding_window
            .max(self.sliding.len() as u64);
        self.in_flight += 1;
        self.c.peak_concurrency = self.c.peak_concurrency.max(self.in_flight);
    }

    pub fn done(&mut self, status: &str) {
        self.in_flight = self.in_flight.saturating_sub(1);
        *self
            .c
            .responses_by_status
            .entry(status.to_string())
            .or_default() += 1;
        if status == "429" {
            self.c.responses_429 += 1;
        }
    }
}
