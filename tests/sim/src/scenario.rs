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

/// U1: what `expandAnswerTotalScores=true` gives on the bulk query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueryAnswers {
    /// A: the full `answers`, with `questionGroupScores`.
    #[default]
    Full,
    /// B: `answers` holds the totals only (no `questionGroupScores` key).
    TotalsOnly,
}

/// U3: a search `pageSize` above `search_max_page_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SearchOverMax {
    /// A: 400 naming `pageSize`.
    #[default]
    Reject,
    /// B: pages of `search_max_page_size` results, offset = (pageNumber − 1) × that size;
    /// the response echoes the clamped `pageSize`.
    Clamp,
    /// B': as `Clamp`, but the response echoes the requested `pageSize`.
    ClampEchoRequested,
}

/// U4: search order among equal sort-field values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SearchTies {
    /// A: ties ordered by id, the same on every request.
    #[default]
    Stable,
    /// B: ties ordered by a fresh seeded draw on every request.
    Unstable,
}

/// U5: a search page past `search_paging_cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SearchPastCap {
    /// A: 400 naming `pageNumber`.
    #[default]
    Reject,
    /// B: 200 with `results: []`.
    Empty,
}

/// U6: which date the bulk query's `startTime`/`endTime` bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueryTimeFilter {
    /// A: `createdDate` (= `assignedDate`).
    #[default]
    Created,
    /// B: `releaseDate` (unreleased evaluations never match a time-bounded query).
    Release,
}

/// U7: evaluations of deleted users on the bulk query (without `includeDeletedUsers=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeletedUserQuery {
    /// A: returned like any other.
    #[default]
    Returned,
    /// B: a query naming a deleted user (`evaluatorUserId`, `agentUserId`,
    /// `assigneeUserId`) answers 400 `quality.query.invalid.user`.
    Rejected,
    /// B': entities whose evaluator or agent is deleted are left out of query pages.
    Omitted,
}

/// U8: evaluations outside the client's divisions (`OrgSpec::restricted_evaluations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutsideDivision {
    /// A: served like any other.
    #[default]
    Allowed,
    /// B: found by search, left out of query pages, single GET answers 403 `not.authorized`.
    Forbidden,
}

/// U9: what search `systemSubmitted: true` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SearchSystemSubmitted {
    /// A: automated evaluations only.
    #[default]
    OnlyAutomated,
    /// B: automated and human evaluations.
    All,
}

/// U10: the end of a search `DATE_RANGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DateRangeEnd {
    /// A: exclusive.
    #[default]
    Exclusive,
    /// B: inclusive (a value at exactly the end matches two adjacent days).
    Inclusive,
}

/// The twelve undocumented behaviours of the real API (reference §8), for loops over
/// "answer B of one unknown at a time".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Unknown {
    /// `expandAnswerTotalScores=true` on the bulk query: full answers or totals only.
    U1,
    /// Bulk query `nextUri`: keeps every parameter or drops some.
    U2,
    /// Search `pageSize` above the maximum: 400 or clamped.
    U3,
    /// Search order among equal sort values: stable or not.
    U4,
    /// Search past the paging cap: 400 or an empty page.
    U5,
    /// Bulk query `startTime`/`endTime`: created date or release date.
    U6,
    /// Deleted users on the bulk query: returned or 400.
    U7,
    /// Single GET outside the client's divisions: 200 or 403.
    U8,
    /// Search `systemSubmitted: true`: automated only or everything.
    U9,
    /// Search `DATE_RANGE` end: exclusive or inclusive.
    U10,
    /// Rate-limit window and allowance (`inin-ratelimit-*`): 300 per 60 s or another.
    U11,
    /// Bulk query `pageSize` 100: accepted or above the maximum.
    U12,
}

impl Unknown {
    /// All twelve, in order.
    pub const ALL: [Unknown; 12] = [
        Unknown::U1,
        Unknown::U2,
        Unknown::U3,
        Unknown::U4,
        Unknown::U5,
        Unknown::U6,
        Unknown::U7,
        Unknown::U8,
        Unknown::U9,
        Unknown::U10,
        Unknown::U11,
        Unknown::U12,
    ];

    /// All twelve, in order.
    pub fn all() -> [Unknown; 12] {
        Self::ALL
    }

    /// `"U1"` … `"U12"`.
    pub fn name(self) -> &'static str {
        match self {
            Unknown::U1 => "U1",
            Unknown::U2 => "U2",
            Unknown::U3 => "U3",
            Unknown::U4 => "U4",
            Unknown::U5 => "U5",
            Unknown::U6 => "U6",
            Unknown::U7 => "U7",
            Unknown::U8 => "U8",
            Unknown::U9 => "U9",
            Unknown::U10 => "U10",
            Unknown::U11 => "U11",
            Unknown::U12 => "U12",
        }
    }
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Scenario switches that change API behaviour (mostly where the reference is UNCONFIRMED).
/// The default of every switch is answer A of its unknown (reference §8); see
/// [`Switches::pessimistic`] and [`Switches::with_b`] for answer B.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switches {
    /// Search results carry `answers` (default false: they never do).
    pub search_includes_answers: bool,
    /// Query pages report wrong `total`/`pageCount` (total = entities on the page,
    /// pageCount = the page number), while `nextUri` stays correct. Default false.
    pub query_totals_wrong: bool,
    /// Search paging cap: `pageNumber × pageSize` above it → 400 (or, under
    /// `search_past_cap = empty`, an empty page). 0 = off. Default 10,000.
    pub search_paging_cap: u64,
    /// Query paging cap, same rule (always 400). 0 = off (default).
    pub query_paging_cap: u64,
    /// Whether requests rejected with 429 still count toward the fixed window
    /// (real behaviour unconfirmed). Default false.
    pub rejected_count_toward_window: bool,
    /// U1: answers of the bulk query with `expandAnswerTotalScores=true`. Default `full`.
    pub query_answers: QueryAnswers,
    /// U2: the bulk query's `nextUri` keeps only the user/conversation id parameters and
    /// `pageNumber`. Default false (every parameter kept).
    pub next_uri_drops_params: bool,
    /// U3: a search `pageSize` above `search_max_page_size`. Default `reject`.
    pub search_over_max: SearchOverMax,
    /// U3: largest search `pageSize` (served page size under clamping). Default 100.
    pub search_max_page_size: u32,
    /// U4: order among equal search sort values. Default `stable`.
    pub search_ties: SearchTies,
    /// U5: a search page past `search_paging_cap`. Default `reject`.
    pub search_past_cap: SearchPastCap,
    /// U6: the date bounded by the bulk query's `startTime`/`endTime`. Default `created`.
    pub query_time_filter: QueryTimeFilter,
    /// U7: deleted users on the bulk query. Default `returned`.
    pub deleted_user_query: DeletedUserQuery,
    /// U8: evaluations outside the client's divisions. Default `allowed`.
    pub get_outside_division: OutsideDivision,
    /// U9: what search `systemSubmitted: true` selects. Default `only_automated`.
    pub search_system_submitted: SearchSystemSubmitted,
    /// U10: the end of a search `DATE_RANGE`. Default `exclusive`.
    pub date_range_end: DateRangeEnd,
    /// U12: largest bulk query `pageSize` (above → 400 naming `pageSize`). Default 100.
    pub query_max_page_size: u32,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            search_includes_answers: false,
            query_totals_wrong: false,
            search_paging_cap: 10_000,
            query_paging_cap: 0,
            rejected_count_toward_window: false,
            query_answers: QueryAnswers::Full,
            next_uri_drops_params: false,
            search_over_max: SearchOverMax::Reject,
            search_max_page_size: 100,
            search_ties: SearchTies::Stable,
            search_past_cap: SearchPastCap::Reject,
            query_time_filter: QueryTimeFilter::Created,
            deleted_user_query: DeletedUserQuery::Returned,
            get_outside_division: OutsideDivision::Allowed,
            search_system_submitted: SearchSystemSubmitted::OnlyAutomated,
            date_range_end: DateRangeEnd::Exclusive,
            query_max_page_size: 100,
        }
    }
}

impl Switches {
    /// Every unknown at its B answer (the other switches at their defaults).
    pub fn pessimistic() -> Self {
        Unknown::ALL
            .iter()
            .fold(Self::default(), |s, &u| s.with_b(u))
    }

    /// Answer B of one unknown, the rest unchanged:
    /// U1 `query_answers = totals_only`; U2 `next_uri_drops_params = true`;
    /// U3 `search_over_max = clamp_echo_requested` and `search_max_page_size = 50`;
    /// U4 `search_ties = unstable`; U5 `search_past_cap = empty`;
    /// U6 `query_time_filter = release`; U7 `deleted_user_query = rejected`;
    /// U8 `get_outside_division = forbidden`; U9 `search_system_submitted = all`;
    /// U10 `date_range_end = inclusive`; U11 no switch (see [`OrgSpec::with_unknown_b`]);
    /// U12 `query_max_page_size = 25`.
    pub fn with_b(mut self, unknown: Unknown) -> Self {
        match unknown {
            Unknown::U1 => self.query_answers = QueryAnswers::TotalsOnly,
            Unknown::U2 => self.next_uri_drops_params = true,
            Unknown::U3 => {
                self.search_over_max = SearchOverMax::ClampEchoRequested;
                self.search_max_page_size = 50;
            }
            Unknown::U4 => self.search_ties = SearchTies::Unstable,
            Unknown::U5 => self.search_past_cap = SearchPastCap::Empty,
            Unknown::U6 => self.query_time_filter = QueryTimeFilter::Release,
            Unknown::U7 => self.deleted_user_query = DeletedUserQuery::Rejected,
            Unknown::U8 => self.get_outside_division = OutsideDivision::Forbidden,
            Unknown::U9 => self.search_system_submitted = SearchSystemSubmitted::All,
            Unknown::U10 => self.date_range_end = DateRangeEnd::Inclusive,
            Unknown::U11 => {}
            Unknown::U12 => self.query_max_page_size = 25,
        }
        self
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
    /// U4: fraction of evaluations that copy every date of an earlier evaluation of the
    /// same kind (automation, status, released or not), in clusters of 2–5 sharing exact
    /// timestamps. Default 0.
    pub tied_fraction: f64,
    /// U10: fraction of evaluations whose every date is exactly 00:00:00.000 UTC of a day
    /// inside the period (at least one when > 0 and the period holds a midnight). Default 0.
    pub midnight_fraction: f64,
    /// U7: the first N evaluators are deleted users (state `deleted`). Default 0.
    pub deleted_evaluators: usize,
    /// U7: the first N agents are deleted users (state `deleted`). Default 0.
    pub deleted_agents: usize,
    /// U8: N human FINISHED evaluations, spread over the period and chosen from the seed,
    /// lie outside the client's divisions (at most the number of such evaluations).
    /// Default 0.
    pub restricted_evaluations: usize,
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
            tied_fraction: 0.0,
            midnight_fraction: 0.0,
            deleted_evaluators: 0,
            deleted_agents: 0,
            restricted_evaluations: 0,
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

    /// Answer B of one unknown ([`Switches::with_b`]) plus the data that makes it
    /// observable: U4 `tied_fraction = 0.3`; U7 `deleted_evaluators = 1`,
    /// `deleted_agents = 1`; U8 `restricted_evaluations = 3`; U10
    /// `midnight_fraction = 0.05`; U11 `limit` = 10 requests per 5,000 ms (a window and
    /// allowance other than 300 per 60 s). Other unknowns change switches only.
    pub fn with_unknown_b(mut self, unknown: Unknown) -> Self {
        self.switches = self.switches.with_b(unknown);
        match unknown {
            Unknown::U4 => self.tied_fraction = 0.3,
            Unknown::U7 => {
                self.deleted_evaluators = 1;
                self.deleted_agents = 1;
            }
            Unknown::U8 => self.restricted_evaluations = 3,
            Unknown::U10 => self.midnight_fraction = 0.05,
            Unknown::U11 => self.limit = RateLimitSpec::new(10, 5_000),
            _ => {}
        }
        self
    }

    /// [`OrgSpec::with_unknown_b`] for all twelve unknowns.
    pub fn pessimistic(self) -> Self {
        Unknown::ALL.iter().fold(self, |o, &u| o.with_unknown_b(u))
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
    /// Names of the built-in scenarios.
    pub const BUILTINS: &'static [&'static str] = &["demo", "bench", "test", "pessimistic"];

    /// A built-in scenario: `"demo"`, `"bench"`, `"test"` or `"pessimistic"`.
    ///
    /// Errors: unknown name.
    pub fn builtin(name: &str) -> anyhow::Result<Scenario> {
        match name {
            "demo" => Ok(Self::demo()),
            "bench" => Ok(Self::bench(20, 2_000, 300, 2_000)),
            "test" => Ok(Self::test()),
            "pessimistic" => Ok(Self::pessimistic()),
            other => bail!(
                "unknown built-in scenario {other:?} (expected demo, bench, test or pessimistic)"
            ),
        }
    }

    /// A built-in name, or a path to a `.toml` or `.json` scenario file.
    ///
    /// Errors: unreadable file, parse errors (with the field), invalid values.
    pub fn load(name_or_path: &str) -> anyhow::Result<Scenario> {
        if Self::BUILTINS.contains(&name_or_path) {
            return Self::builtin(name_or_path);
        }
        let path = Path::new(name_or_path);
        let extension = path.extension().and_then(|e| e.to_str());
        if !matches!(extension, Some("toml" | "json")) {
            bail!(
                "{name_or_path:?} is neither a built-in scenario (demo, bench, test, pessimistic) nor a .toml/.json file"
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

    /// `pessimistic`: two orgs in two regions (mypurecloud.com, euw2.pure.cloud), about
    /// 300 evaluations each, every unknown at answer B ([`OrgSpec::pessimistic`]) except
    /// the U11 limit, which is 100 requests per 5,000 ms per token so a demo export
    /// finishes quickly; 10–40 ms latency like `demo`.
    pub fn pessimistic() -> Scenario {
        let org = |name: &str, region: &str, n: usize| OrgSpec {
            limit: RateLimitSpec::new(100, 5_000),
            agents: 20,
            evaluators: 5,
            // A division's worth of evaluations outside the client's reach (U8), so a
            // sample of the newest evaluations meets some.
            restricted_evaluations: 30,
            ..OrgSpec::new(name, region, n).pessimistic()
        };
        Scenario {
            name: "pessimistic".into(),
            seed: 4242,
            orgs: vec![
                org("Pessimist Insurance", "mypurecloud.com", 300),
                org("Murphy Logistics", "euw2.pure.cloud", 320),
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
                ("tied_fraction", o.tied_fraction),
                ("midnight_fraction", o.midnight_fraction),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    bail!("{at}.{f}: {v} is not within 0..=1");
                }
            }
            if o.agents == 0 || o.evaluators == 0 || o.forms == 0 || o.form_versions == 0 {
                bail!("{at}: agents, evaluators, forms and form_versions must be > 0");
            }
            for (f, v) in [
                ("search_max_page_size", o.switches.search_max_page_size),
                ("query_max_page_size", o.switches.query_max_page_size),
            ] {
                if v == 0 {
                    bail!("{at}.switches.{f} must be > 0");
                }
            }
            for (f, v, max, of) in [
                (
                    "deleted_evaluators",
                    o.deleted_evaluators,
                    o.evaluators,
                    "evaluators",
                ),
                ("deleted_agents", o.deleted_agents, o.agents, "agents"),
                (
                    "restricted_evaluations",
                    o.restricted_evaluations,
                    o.evaluations,
                    "evaluations",
                ),
            ] {
                if v > max {
                    bail!("{at}.{f}: {v} is more than {of} ({max})");
                }
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
