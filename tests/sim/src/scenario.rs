//! Scenarios: which orgs exist, how much data they hold, their rate limits, latency and
//! scripted faults. Loaded from TOML/JSON files or built in code (see `README.md`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context, bail};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Region domains of the real API (reference §4). `api.<domain>` / `login.<domain>`.
pub const REGION_DOMAINS: &[&str] = &[
    "mypurecloud.com",
    "use2.us-gov-pure.cloud",
    "usw2.pure.cloud",
    "cac1.pure.cloud",
    "sae1.pure.cloud",
    "mxc1.pure.cloud",
    "mypurecloud.ie",
    "euw2.pure.cloud",
    "mypurecloud.de",
    "euc2.pure.cloud",
    "mec1.pure.cloud",
    "aps1.pure.cloud",
    "mypurecloud.jp",
    "apne2.pure.cloud",
    "apne3.pure.cloud",
    "mypurecloud.com.au",
    "apse1.pure.cloud",
    "edee1.eusc-pure.cloud",
];

/// A fixed-window rate limit: at most `allowed` requests per window of `window_ms`
/// milliseconds. A window starts with the first request after the previous window ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Requests allowed per window.
    pub allowed: u32,
    /// Window length in milliseconds.
    pub window_ms: u64,
}

impl RateLimitSpec {
    /// `allowed` requests per `window_ms` milliseconds.
    pub fn new(allowed: u32, window_ms: u64) -> Self {
        Self { allowed, window_ms }
    }
}

impl Default for RateLimitSpec {
    /// The documented 300 requests per minute per token.
    fn default() -> Self {
        Self::new(300, 60_000)
    }
}

/// A uniform latency range in milliseconds (`min_ms..=max_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyRange {
    /// Minimum added latency, milliseconds.
    pub min_ms: u64,
    /// Maximum added latency, milliseconds (inclusive).
    pub max_ms: u64,
}

/// Per-request latency: a uniform draw (seeded) from `default`, or from `endpoints[name]`
/// where `name` is an endpoint name as in [`crate::Stats`] (`search`, `query`, `get`,
/// `token`, `forms`, `form`, `publishedforms`, `aggregates`, `users`, `tokens_me`,
/// `organizations_me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencySpec {
    /// Range used for endpoints without their own entry.
    pub default: LatencyRange,
    /// Per-endpoint overrides.
    pub endpoints: BTreeMap<String, LatencyRange>,
}

impl LatencySpec {
    /// No added latency at all.
    pub fn zero() -> Self {
        Self::uniform(0, 0)
    }
    /// The same uniform range for every endpoint.
    pub fn uniform(min_ms: u64, max_ms: u64) -> Self {
        Self {
            default: LatencyRange { min_ms, max_ms },
            endpoints: BTreeMap::new(),
        }
    }
}

impl Default for LatencySpec {
    /// 10–40 ms everywhere.
    fn default() -> Self {
        Self::uniform(10, 40)
    }
}

/// Scenario switches that change API behaviour (mostly where the reference is UNCONFIRMED).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switches {
    /// Search results carry `answers` (default false: they never do).
    pub search_includes_answers: bool,
    /// Query pages report wrong `total`/`pageCount` (total = entities on the page,
    /// pageCount = the page number), while `nextUri` stays correct. Default false.
    pub query_totals_wrong: bool,
    /// Search paging cap: `pageNumber × pageSize` above it → 400. 0 = off. Default 10,000.
    pub search_paging_cap: u64,
    /// Query paging cap, same rule. 0 = off (default).
    pub query_paging_cap: u64,
    /// Largest `pageSize` accepted by search and query (above → 400). Default 100.
    pub max_page_size: u32,
    /// Whether requests rejected with 429 still count toward the fixed window
    /// (real behaviour unconfirmed). Default false.
    pub rejected_count_toward_window: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            search_includes_answers: false,
            query_totals_wrong: false,
            search_paging_cap: 10_000,
            query_paging_cap: 0,
            max_page_size: 100,
            rejected_count_toward_window: false,
        }
    }
}

/// Which endpoint(s) a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EndpointSel {
    /// `POST /api/v2/quality/evaluations/search`
    Search,
    /// `GET /api/v2/quality/evaluations/query`
    Query,
    /// `GET /api/v2/quality/conversations/{c}/evaluations/{e}`
    Get,
    /// Every forms endpoint (forms list, single form, published forms).
    Forms,
    /// `POST /oauth/token` (login host).
    Token,
    /// `GET /api/v2/users`
    Users,
    /// `POST /api/v2/analytics/evaluations/aggregates/query`
    Analytics,
    /// Every API-host endpoint (not the token endpoint).
    #[default]
    Any,
}

/// What a fault does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A 429. Header `Retry-After` = `retry_after` verbatim (e.g. "0", "-5", "1.5",
    /// "3600", "abc"), or an HTTP-date `retry_after_http_date_s` seconds from now, or absent.
    /// Body per `body` (normalized (default) | legacy | empty).
    TooManyRequests,
    /// An ErrorBody response with `status` (e.g. 500, 502, 503, 504).
    HttpError,
    /// Wait `hang_ms` milliseconds (default 30,000), then answer normally.
    Hang,
    /// Close the TCP connection (RST) without any response.
    ConnectionReset,
    /// Status 200 with the JSON body cut in half (Content-Length matches the cut body).
    TruncatedBody,
    /// The token used for the request stops working (401 `authentication.required`
    /// from this request on).
    ExpireToken,
    /// Paging (search, query): after this page, a new evaluation is inserted that sorts
    /// between this page's last entity and the next page's first, so it is served on the
    /// next page. Eligible only when there is a next page.
    InsertEvaluation,
    /// Paging (search, query): after serving this page, one FINISHED evaluation on it is
    /// rescored (new answers, `changedDate` + 60 s, `rescore: true`) and served again,
    /// first, on the next page. Eligible only when there is a next page.
    RescoreEvaluation,
    /// Paging (search, query): this page's last entity is served again, first, on the
    /// next page. Eligible only when there is a next page.
    DuplicateAcrossPages,
    /// Paging (query): this page's `nextUri` points at this same page. Eligible only when
    /// there is a next page. Re-fetching gives the correct `nextUri`.
    RepeatNextUri,
    /// Paging (query): the last page (and every empty page after it while the fault has
    /// pending firings) carries a `nextUri` to the next page number, which is empty.
    EmptyPageWithNextUri,
}

impl FaultKind {
    pub(crate) fn is_paging(self) -> bool {
        matches!(
            self,
            FaultKind::InsertEvaluation
                | FaultKind::RescoreEvaluation
                | FaultKind::DuplicateAcrossPages
                | FaultKind::RepeatNextUri
                | FaultKind::EmptyPageWithNextUri
        )
    }
}

/// Body of a scripted 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TooManyBody {
    /// `{"message":"Rate limit exceeded the maximum. Retry the request in [N] seconds","code":"too.many.requests.retry.after",...}`
    #[default]
    Normalized,
    /// `{"code":"too.many.requests","status":429}` (pre-2021 shape).
    Legacy,
    /// Empty body.
    Empty,
}

/// A scripted fault for one org.
///
/// Triggering: every request to a matching endpoint (after authentication and rate
/// limiting let it through) gets a per-fault number n = 1, 2, …. The fault *triggers* on
/// request n if n is in `at`, or n is a multiple of `every_nth`, or a seeded draw is below
/// `probability`. Each trigger adds `count` pending firings (at most `max_triggers`
/// triggers in all). A pending firing is spent on the first matching, eligible request
/// (the triggering one itself if eligible): so `count = 3` gives a burst of three.
/// Request-level kinds are always eligible; paging kinds only as documented on
/// [`FaultKind`]. At most one request-level fault fires per request (first in list order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSpec {
    /// What happens.
    pub kind: FaultKind,
    /// Which endpoint(s) the fault watches.
    pub endpoint: EndpointSel,
    /// 1-based request numbers (per fault) that trigger it.
    pub at: Vec<u64>,
    /// Trigger on every n-th matching request.
    pub every_nth: Option<u64>,
    /// Trigger with this probability per matching request (seeded, reproducible).
    pub probability: Option<f64>,
    /// Firings per trigger (burst length). Default 1.
    pub count: u32,
    /// Cap on the number of triggers.
    pub max_triggers: Option<u32>,
    /// `http_error`: the status code.
    pub status: Option<u16>,
    /// `too_many_requests`: raw `Retry-After` header value.
    pub retry_after: Option<String>,
    /// `too_many_requests`: send `Retry-After` as an HTTP-date this many seconds from now.
    pub retry_after_http_date_s: Option<i64>,
    /// `too_many_requests`: body shape.
    pub body: TooManyBody,
    /// `hang`: milliseconds to wait before answering.
    pub hang_ms: Option<u64>,
}

impl Default for FaultSpec {
    fn default() -> Self {
        Self {
            kind: FaultKind::HttpError,
            endpoint: EndpointSel::Any,
            at: Vec::new(),
            every_nth: None,
            probability: None,
            count: 1,
            max_triggers: None,
            status: None,
            retry_after: None,
            retry_after_http_date_s: None,
            body: TooManyBody::Normalized,
            hang_ms: None,
        }
    }
}

impl FaultSpec {
    /// A fault of `kind` on `endpoint`, triggering at the given request numbers.
    pub fn new(kind: FaultKind, endpoint: EndpointSel, at: &[u64]) -> Self {
        Self {
            kind,
            endpoint,
            at: at.to_vec(),
            ..Self::default()
        }
    }
    /// Set the burst length (`count`).
    pub fn count(mut self, n: u32) -> Self {
        self.count = n;
        self
    }
    /// Set `status` (for `http_error`).
    pub fn status(mut self, s: u16) -> Self {
        self.status = Some(s);
        self
    }
    /// Set the raw `Retry-After` value (for `too_many_requests`).
    pub fn retry_after(mut self, v: &str) -> Self {
        self.retry_after = Some(v.to_string());
        self
    }
}

/// One simulated customer org.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrgSpec {
    /// Display name.
    pub name: String,
    /// Region domain from [`REGION_DOMAINS`], e.g. `apse1.pure.cloud`.
    pub region: String,
    /// Fixed org id (default: a UUID from the seed).
    pub org_id: Option<String>,
    /// Fixed OAuth client id (default: a UUID from the seed).
    pub client_id: Option<String>,
    /// Fixed OAuth client secret (default: derived from the seed).
    pub client_secret: Option<String>,
    /// Number of evaluations generated.
    pub evaluations: usize,
    /// Number of agent users.
    pub agents: usize,
    /// Number of evaluator users.
    pub evaluators: usize,
    /// Number of forms (form contexts).
    pub forms: usize,
    /// Versions per form (each version is its own form id).
    pub form_versions: usize,
    /// Fraction of automated (systemSubmitted) evaluations.
    pub automated_fraction: f64,
    /// Fraction of calibration evaluations (human only).
    pub calibration_fraction: f64,
    /// Fraction of human evaluations with `neverRelease: true`.
    pub never_release_fraction: f64,
    /// Fraction of evaluations served with `redacted: true` (no scores).
    pub redacted_fraction: f64,
    /// Fraction of human evaluations not yet submitted (PENDING or INPROGRESS).
    pub unsubmitted_fraction: f64,
    /// Per-token API limit.
    pub limit: RateLimitSpec,
    /// Optional org-wide limit across all of the org's tokens.
    pub org_limit: Option<RateLimitSpec>,
    /// Limit on the token endpoint, per client id.
    pub token_endpoint_limit: RateLimitSpec,
    /// `expires_in` of issued tokens, seconds. Tokens really expire then.
    pub expires_in: u64,
    /// Optional idle timeout of tokens, milliseconds (401 after that long unused).
    pub token_idle_timeout_ms: Option<u64>,
    /// Latency for this org (default: the scenario's).
    pub latency: Option<LatencySpec>,
    /// Behaviour switches.
    pub switches: Switches,
    /// Scripted faults.
    pub faults: Vec<FaultSpec>,
}

impl Default for OrgSpec {
    fn default() -> Self {
        Self {
            name: "Org".into(),
            region: "mypurecloud.com".into(),
            org_id: None,
            client_id: None,
            client_secret: None,
            evaluations: 200,
            agents: 20,
            evaluators: 4,
            forms: 3,
            form_versions: 2,
            automated_fraction: 0.1,
            calibration_fraction: 0.03,
            never_release_fraction: 0.05,
            redacted_fraction: 0.02,
            unsubmitted_fraction: 0.08,
            limit: RateLimitSpec::default(),
            org_limit: None,
            token_endpoint_limit: RateLimitSpec::new(60, 60_000),
            expires_in: 86_400,
            token_idle_timeout_ms: None,
            latency: None,
            switches: Switches::default(),
            faults: Vec::new(),
        }
    }
}

impl OrgSpec {
    /// An org with `name` in `region` holding `evaluations` evaluations; other fields default.
    pub fn new(name: &str, region: &str, evaluations: usize) -> Self {
        Self {
            name: name.into(),
            region: region.into(),
            evaluations,
            ..Self::default()
        }
    }
}

/// A whole simulated world. All times are UTC.
///
/// Data period: evaluations are created in `[period_start, period_end)` where
/// `period_start = anchor − days_before days` and `period_end` is the explicit field or,
/// by default, the anchor. `anchor` defaults to the start of the current UTC day, so the
/// data is the same for every start on one day. Set `anchor` (in the past) or `period_end`
/// for data that never moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Name (for display).
    pub name: String,
    /// Seed of every random choice (data, latency, probabilistic faults, tokens, ids).
    pub seed: u64,
    /// Period anchor (RFC 3339); default start of the current UTC day.
    pub anchor: Option<Timestamp>,
    /// Days of data before the anchor. Default 3.
    pub days_before: u32,
    /// Explicit end of the data period (exclusive).
    pub period_end: Option<Timestamp>,
    /// Default latency of every org.
    pub latency: LatencySpec,
    /// The orgs.
    pub orgs: Vec<OrgSpec>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "custom".into(),
            seed: 1,
            anchor: None,
            days_before: 3,
            period_end: None,
            latency: LatencySpec::default(),
            orgs: Vec::new(),
        }
    }
}

impl Scenario {
    /// A built-in scenario: `"demo"`, `"bench"` or `"test"`.
    ///
    /// Errors: unknown name.
    pub fn builtin(name: &str) -> anyhow::Result<Scenario> {
        match name {
            "demo" => Ok(Self::demo()),
            "bench" => Ok(Self::bench(20, 2_000, 300, 2_000)),
            "test" => Ok(Self::test()),
            other => bail!("unknown built-in scenario {other:?} (expected demo, bench or test)"),
        }
    }

    /// A built-in name, or a path to a `.toml` or `.json` scenario file.
    ///
    /// Errors: unreadable file, parse errors (with the field), invalid values.
    pub fn load(name_or_path: &str) -> anyhow::Result<Scenario> {
        if matches!(name_or_path, "demo" | "bench" | "test") {
            return Self::builtin(name_or_path);
        }
        let path = Path::new(name_or_path);
        let extension = path.extension().and_then(|e| e.to_str());
        if !matches!(extension, Some("toml" | "json")) {
            bail!(
                "{name_or_path:?} is neither a built-in scenario (demo, bench, test) nor a .toml/.json file"
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario file {}", path.display()))?;
        let sc: Scenario = if extension == Some("toml") {
            toml::from_str(&text)
                .with_context(|| format!("parsing TOML scenario {}", path.display()))?
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("parsing JSON scenario {}", path.display()))?
        };
        sc.validate()?;
        Ok(sc)
    }

    /// `test`: two small orgs (200 and 120 evaluations), zero latency, generous limits
    /// (10,000 requests per 60 s per token; 1,000 token requests per 60 s).
    pub fn test() -> Scenario {
        let generous = |o: OrgSpec| OrgSpec {
            limit: RateLimitSpec::new(10_000, 60_000),
            token_endpoint_limit: RateLimitSpec::new(1_000, 60_000),
            agents: 8,
            evaluators: 3,
            ..o
        };
        Scenario {
            name: "test".into(),
            seed: 7,
            latency: LatencySpec::zero(),
            orgs: vec![
                generous(OrgSpec::new("Test Org A", "mypurecloud.com", 200)),
                generous(OrgSpec::new("Test Org B", "apse1.pure.cloud", 120)),
            ],
            ..Scenario::default()
        }
    }

    /// `demo`: three orgs in three regions, 3,700 evaluations in all, 10–40 ms latency.
    /// "Kiwi Telecom" (apse1) has a tight 120 requests/min limit; "Albion Energy" (euw2)
    /// answers its 2nd search once with a 429 and `Retry-After: 30`.
    pub fn demo() -> Scenario {
        let mut albion = OrgSpec::new("Albion Energy", "euw2.pure.cloud", 1_200);
        albion.faults.push(
            FaultSpec::new(FaultKind::TooManyRequests, EndpointSel::Search, &[2]).retry_after("30"),
        );
        Scenario {
            name: "demo".into(),
            seed: 2026,
            orgs: vec![
                OrgSpec {
                    agents: 40,
                    evaluators: 8,
                    ..OrgSpec::new("Northwind Support", "mypurecloud.com", 1_500)
                },
                OrgSpec {
                    limit: RateLimitSpec::new(120, 60_000),
                    agents: 25,
                    evaluators: 5,
                    ..OrgSpec::new("Kiwi Telecom", "apse1.pure.cloud", 1_000)
                },
                OrgSpec {
                    agents: 30,
                    evaluators: 6,
                    ..albion
                },
            ],
            ..Scenario::default()
        }
    }

    /// `bench`: `orgs` orgs (regions cycled through [`REGION_DOMAINS`]) with
    /// `evaluations_per_org` each, `allowed` requests per `window_ms` per token, token
    /// endpoint 60 per `window_ms`, 10–40 ms latency. Built-in "bench" = (20, 2000, 300, 2000).
    pub fn bench(
        orgs: usize,
        evaluations_per_org: usize,
        allowed: u32,
        window_ms: u64,
    ) -> Scenario {
        let orgs = (0..orgs)
            .map(|i| OrgSpec {
                limit: RateLimitSpec::new(allowed, window_ms),
                token_endpoint_limit: RateLimitSpec::new(60, window_ms),
                agents: 50,
                evaluators: 10,
                ..OrgSpec::new(
                    &format!("Bench Org {:02}", i + 1),
                    REGION_DOMAINS[i % REGION_DOMAINS.len()],
                    evaluations_per_org,
                )
            })
            .collect();
        Scenario {
            name: "bench".into(),
            seed: 99,
            orgs,
            ..Scenario::default()
        }
    }

    /// Set the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Set the anchor (period = the `days_before` days before it).
    pub fn with_anchor(mut self, anchor: Timestamp) -> Self {
        self.anchor = Some(anchor);
        self
    }
    /// Set an explicit period `[start, end)`: anchor = start + `days_before` days.
    pub fn with_period(mut self, start: Timestamp, end: Timestamp) -> Self {
        let days = jiff::SignedDuration::from_hours(24 * i64::from(self.days_before));
        self.anchor = start.checked_add(days).ok();
        self.period_end = Some(end);
        self
    }
    /// Set the latency of the scenario and of every org.
    pub fn with_latency(mut self, latency: LatencySpec) -> Self {
        self.latency = latency.clone();
        for o in &mut self.orgs {
            o.latency = None;
        }
        self
    }
    /// Apply `f` to every org (e.g. to change limits).
    pub fn map_orgs(mut self, f: impl Fn(&mut OrgSpec)) -> Self {
        self.orgs.iter_mut().for_each(f);
        self
    }
    /// Add a fault to org number `org` (0-based).
    pub fn with_fault(mut self, org: usize, fault: FaultSpec) -> Self {
        if let Some(o) = self.orgs.get_mut(org) {
            o.faults.push(fault);
        }
        self
    }

    /// Check every value; the error names the offending org and field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.orgs.is_empty() {
            bail!("scenario {:?} has no orgs", self.name);
        }
        let mut client_ids = HashSet::new();
        let mut org_ids = HashSet::new();
        for (i, o) in self.orgs.iter().enumerate() {
            let at = format!("orgs[{i}] ({:?})", o.name);
            if !REGION_DOMAINS.contains(&o.region.as_str()) {
                bail!("{at}.region: {:?} is not a known region domain", o.region);
            }
            for (f, l) in [
                ("limit", Some(o.limit)),
                ("token_endpoint_limit", Some(o.token_endpoint_limit)),
                ("org_limit", o.org_limit),
            ] {
                if let Some(l) = l
                    && (l.allowed == 0 || l.window_ms == 0)
                {
                    bail!("{at}.{f}: allowed and window_ms must be > 0");
                }
            }
            for (f, v) in [
                ("automated_fraction", o.automated_fraction),
                ("calibration_fraction", o.calibration_fraction),
                ("never_release_fraction", o.never_release_fraction),
                ("redacted_fraction", o.redacted_fraction),
                ("unsubmitted_fraction", o.unsubmitted_fraction),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    bail!("{at}.{f}: {v} is not within 0..=1");
                }
            }
            if o.agents == 0 || o.evaluators == 0 || o.forms == 0 || o.form_versions == 0 {
                bail!("{at}: agents, evaluators, forms and form_versions must be > 0");
            }
            if o.switches.max_page_size == 0 {
                bail!("{at}.switches.max_page_size must be > 0");
            }
            if let Some(c) = &o.client_id
                && !client_ids.insert(c.clone())
            {
                bail!("{at}.client_id: {c:?} is used twice");
            }
            if let Some(c) = &o.org_id
                && !org_ids.insert(c.clone())
            {
                bail!("{at}.org_id: {c:?} is used twice");
            }
            for l in std::iter::once(&self.latency).chain(o.latency.as_ref()) {
                for r in std::iter::once(&l.default).chain(l.endpoints.values()) {
                    if r.min_ms > r.max_ms {
                        bail!("{at}: latency min_ms {} > max_ms {}", r.min_ms, r.max_ms);
                    }
                }
            }
            for (j, f) in o.faults.iter().enumerate() {
                let fat = format!("{at}.faults[{j}]");
                if f.count == 0 {
                    bail!("{fat}.count must be > 0");
                }
                if f.every_nth == Some(0) {
                    bail!("{fat}.every_nth must be > 0");
                }
                if let Some(p) = f.probability
                    && !(0.0..=1.0).contains(&p)
                {
                    bail!("{fat}.probability {p} is not within 0..=1");
                }
                if f.at.is_empty() && f.every_nth.is_none() && f.probability.is_none() {
                    bail!("{fat}: needs at least one of at, every_nth, probability");
                }
                if f.kind == FaultKind::HttpError && !matches!(f.status, Some(400..=599)) {
                    bail!("{fat}.status: http_error needs a status in 400..=599");
                }
                if f.kind.is_paging() && matches!(f.endpoint, EndpointSel::Token) {
                    bail!("{fat}: paging faults cannot apply to the token endpoint");
                }
            }
        }
        Ok(())
    }
}
