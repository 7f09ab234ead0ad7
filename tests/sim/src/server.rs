//! HTTP layer: host-prefix routing, authentication, rate limits, faults, latency,
//! statistics, and the connection-level plumbing for "connection reset" faults.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use base64::Engine;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Duration, Instant};

use crate::data::{OrgData, Period, rng_for, uuid};
use crate::endpoints::{self, ApiErr, Reply};
use crate::scenario::{
    EndpointSel, FaultKind, FaultSpec, LatencySpec, OrgSpec, REGION_DOMAINS, RateLimitSpec,
    Scenario, TooManyBody,
};
use crate::stats::{OrgStats, Stats, Tracker};

// ------------------------------------------------------------------ connection plumbing

/// The accepted TCP stream, which a handler can kill (RST, no response).
pub(crate) struct SimIo {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl SimIo {
    fn check(&mut self) -> io::Result<()> {
        if self.kill.load(AtomicOrdering::SeqCst) {
            // SO_LINGER 0 turns the close into a RST; with a zero timeout close does not block.
            #[allow(deprecated)]
            let _ = self.inner.set_linger(Some(std::time::Duration::ZERO));
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "sim: connection reset fault",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for SimIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub(crate) struct SimListener(pub TcpListener);

impl Listener for SimListener {
    type Io = SimIo;
    type Addr = std::net::SocketAddr;
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((s, a)) => {
                    let _ = s.set_nodelay(true);
                    return (
                        SimIo {
                            inner: s,
                            kill: Arc::new(AtomicBool::new(false)),
                        },
                        a,
                    );
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Per-connection handle given to handlers.
#[derive(Clone)]
pub(crate) struct ConnCtl(Arc<AtomicBool>);

impl Connected<IncomingStream<'_, SimListener>> for ConnCtl {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        ConnCtl(stream.io().kill.clone())
    }
}

// ------------------------------------------------------------------ runtime state

/// Fixed window limiter state.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Window {
    start: Option<Instant>,
    count: u32,
}

/// Outcome of a limiter check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowState {
    pub allowed: u32,
    pub count: u32,
    /// Whole seconds until the window ends, rounded up.
    pub reset_s: u64,
}

fn ceil_secs(d: Duration) -> u64 {
    let ms = d.as_millis() as u64;
    ms.div_ceil(1000)
}

impl Window {
    fn roll(&mut self, spec: RateLimitSpec, now: Instant) {
        let len = Duration::from_millis(spec.window_ms);
        match self.start {
            Some(s) if now < s + len => {}
            _ => {
                self.start = Some(now);
                self.count = 0;
            }
        }
    }
    fn end(&self, spec: RateLimitSpec, now: Instant) -> Instant {
        self.start.unwrap_or(now) + Duration::from_millis(spec.window_ms)
    }
    /// Current state without counting.
    pub fn peek(&self, spec: RateLimitSpec, now: Instant) -> WindowState {
        let mut w = *self;
        w.roll(spec, now);
        WindowState {
            allowed: spec.allowed,
            count: w.count,
            reset_s: ceil_secs(w.end(spec, now).saturating_duration_since(now)),
        }
    }
    fn would_allow(&mut self, spec: RateLimitSpec, now: Instant) -> bool {
        self.roll(spec, now);
        self.count < spec.allowed
    }
    fn state(&self, spec: RateLimitSpec, now: Instant) -> WindowState {
        WindowState {
            allowed: spec.allowed,
            count: self.count,
            reset_s: ceil_secs(self.end(spec, now).saturating_duration_since(now)),
        }
    }
}

pub(crate) struct TokenRt {
    label: String,
    expires_at: Instant,
    last_used: Instant,
    revoked: bool,
    window: Window,
    deadline: Option<Instant>,
}

pub(crate) struct FaultRt {
    pub spec: FaultSpec,
    seen: u64,
    triggers: u32,
    pub pending: u32,
    rng: ChaCha8Rng,
}

impl FaultRt {
    /// Count a matching request and maybe trigger.
    fn observe(&mut self) {
        self.seen += 1;
        let n = self.seen;
        let draw = self
            .spec
            .probability
            .map(|p| self.rng.random_bool(p))
            .unwrap_or(false);
        let hit = self.spec.at.contains(&n)
            || self.spec.every_nth.is_some_and(|k| n.is_multiple_of(k))
            || draw;
        if hit && self.spec.max_triggers.is_none_or(|m| self.triggers < m) {
            self.triggers += 1;
            self.pending += self.spec.count;
        }
    }
}

/// Endpoints of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ep {
    Token,
    TokensMe,
    OrgMe,
    Search,
    Query,
    Get,
    FormsList,
    FormGet,
    PublishedForms,
    Aggregates,
    Users,
    Unknown,
}

impl Ep {
    pub fn name(self) -> &'static str {
        match self {
            Ep::Token => "token",
            Ep::TokensMe => "tokens_me",
            Ep::OrgMe => "organizations_me",
            Ep::Search => "search",
            Ep::Query => "query",
            Ep::Get => "get",
            Ep::FormsList => "forms",
            Ep::FormGet => "form",
            Ep::PublishedForms => "publishedforms",
            Ep::Aggregates => "aggregates",
            Ep::Users => "users",
            Ep::Unknown => "unknown",
        }
    }
    pub fn matches(self, sel: EndpointSel) -> bool {
        match sel {
            EndpointSel::Any => self != Ep::Token,
            EndpointSel::Search => self == Ep::Search,
            EndpointSel::Query => self == Ep::Query,
            EndpointSel::Get => self == Ep::Get,
            EndpointSel::Forms => matches!(self, Ep::FormsList | Ep::FormGet | Ep::PublishedForms),
            EndpointSel::Token => self == Ep::Token,
            EndpointSel::Users => self == Ep::Users,
            EndpointSel::Analytics => self == Ep::Aggregates,
        }
    }
}

pub(crate) struct OrgRt {
    pub spec: OrgSpec,
    pub data: OrgData,
    latency: LatencySpec,
    latency_rng: ChaCha8Rng,
    pub mut_rng: ChaCha8Rng,
    /// Draws the per-request order of tied search results (U4).
    pub ties_rng: ChaCha8Rng,
    tokens: HashMap<String, TokenRt>,
    token_seq: u32,
    client_window: Window,
    client_deadline: Option<Instant>,
    org_window: Window,
    pub faults: Vec<FaultRt>,
    /// (listing key, page number) → evaluation ids served first on that page.
    pub injections: HashMap<(String, u64), Vec<String>>,
    totals: Tracker,
    by_token: BTreeMap<String, Tracker>,
    by_endpoint: BTreeMap<String, Tracker>,
}

impl OrgRt {
    fn window(&self) -> Duration {
        Duration::from_millis(self.spec.limit.window_ms)
    }
    fn arrive(&mut self, now: Instant, token: Option<&str>, ep: Ep) {
        let w = self.window();
        self.totals.arrive(now, w);
        self.by_endpoint
            .entry(ep.name().to_string())
            .or_default()
            .arrive(now, w);
        if let Some(t) = token {
            self.by_token
                .entry(t.to_string())
                .or_default()
                .arrive(now, w);
        }
    }
    fn done(&mut self, token: Option<&str>, ep: Ep, status: &str) {
        self.totals.done(status);
        self.by_endpoint
            .entry(ep.name().to_string())
            .or_default()
            .done(status);
        if let Some(t) = token {
            self.by_token.entry(t.to_string()).or_default().done(status);
        }
    }
    fn bump(&mut self, token: Option<&str>, ep: Ep, f: impl Fn(&mut crate::stats::Counters)) {
        f(&mut self.totals.c);
        f(&mut self.by_endpoint.entry(ep.name().to_string()).or_default().c);
        if let Some(t) = token {
            f(&mut self.by_token.entry(t.to_string()).or_default().c);
        }
    }
    pub(crate) fn bump_faults(&mut self, ep: Ep, n: u64) {
        self.totals.c.faults_injected += n;
        self.by_endpoint
            .entry(ep.name().to_string())
            .or_default()
            .c
            .faults_injected += n;
    }
    fn draw_latency(&mut self, ep: Ep) -> Duration {
        let r = self
            .latency
            .endpoints
            .get(ep.name())
            .copied()
            .unwrap_or(self.latency.default);
        if r.max_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.latency_rng.random_range(r.min_ms..=r.max_ms))
    }
    pub fn stats(&self) -> OrgStats {
        OrgStats {
            org_id: self.data.org_id.clone(),
            name: self.data.name.clone(),
            allowed: self.spec.limit.allowed,
            window_ms: self.spec.limit.window_ms,
            totals: self.totals.c.clone(),
            tokens: self
                .by_token
                .iter()
                .map(|(k, v)| (k.clone(), v.c.clone()))
                .collect(),
            endpoints: self
                .by_endpoint
                .iter()
                .map(|(k, v)| (k.clone(), v.c.clone()))
                .collect(),
        }
    }
    /// Count a matching request for every fault watching `ep`.
    fn observe_faults(&mut self, ep: Ep) {
        for f in self
            .faults
            .iter_mut()
            .filter(|f| ep.matches(f.spec.endpoint))
        {
            f.observe();
        }
    }
    /// Take the first pending request-level fault for `ep`.
    fn take_request_fault(&mut self, ep: Ep) -> Option<FaultSpec> {
        let f = self
            .faults
            .iter_mut()
            .find(|f| f.pending > 0 && !f.spec.kind.is_paging() && ep.matches(f.spec.endpoint))?;
        f.pending -= 1;
        Some(f.spec.clone())
    }
}

pub(crate) struct Inner {
    pub scenario: Scenario,
    pub period: Period,
    pub orgs: Vec<Mutex<OrgRt>>,
    pub infos: Vec<crate::OrgInfo>,
    tokens: Mutex<HashMap<String, usize>>,
    clients: HashMap<String, usize>,
    misc_rng: Mutex<ChaCha8Rng>,
    unattributed: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub fn new(scenario: Scenario, period: Period, base_url: &str) -> Inner {
        let mut orgs = Vec::new();
        let mut infos = Vec::new();
        let mut clients = HashMap::new();
        for (i, spec) in scenario.orgs.iter().enumerate() {
            let data = crate::data::generate_org(scenario.seed, i, spec, period);
            clients.insert(data.client_id.clone(), i);
            infos.push(crate::OrgInfo {
                org_id: data.org_id.clone(),
                name: data.name.clone(),
                region: spec.region.clone(),
                api_base_url: format!("{base_url}/api.{}", spec.region),
                login_base_url: format!("{base_url}/login.{}", spec.region),
                client_id: data.client_id.clone(),
                client_secret: data.client_secret.clone(),
                token_limit: spec.limit,
                org_limit: spec.org_limit,
                token_endpoint_limit: spec.token_endpoint_limit,
                evaluation_count: data.evals.len(),
            });
            let faults = spec
                .faults
                .iter()
                .enumerate()
                .map(|(j, f)| FaultRt {
                    spec: f.clone(),
                    seen: 0,
                    triggers: 0,
                    pending: 0,
                    rng: rng_for(scenario.seed, &[i as u64, 3, j as u64]),
                })
                .collect();
            orgs.push(Mutex::new(OrgRt {
                latency: spec
                    .latency
                    .clone()
                    .unwrap_or_else(|| scenario.latency.clone()),
                latency_rng: rng_for(scenario.seed, &[i as u64, 2]),
                mut_rng: rng_for(scenario.seed, &[i as u64, 4]),
                ties_rng: rng_for(scenario.seed, &[i as u64, 9]),
                spec: spec.clone(),
                data,
                tokens: HashMap::new(),
                token_seq: 0,
                client_window: Window::default(),
                client_deadline: None,
                org_window: Window::default(),
                faults,
                injections: HashMap::new(),
                totals: Tracker::default(),
                by_token: BTreeMap::new(),
                by_endpoint: BTreeMap::new(),
            }));
        }
        Inner {
            misc_rng: Mutex::new(rng_for(scenario.seed, &[u64::MAX, 5])),
            scenario,
            period,
            orgs,
            infos,
            tokens: Mutex::new(HashMap::new()),
            clients,
            unattributed: AtomicU64::new(0),
        }
    }

    fn corr_id(&self) -> String {
        uuid(&mut *lock(&self.misc_rng))
    }

    pub fn stats(&self) -> Stats {
        Stats {
            orgs: self
                .orgs
                .iter()
                .map(|o| {
                    let s = lock(o).stats();
                    (s.org_id.clone(), s)
                })
                .collect(),
            unattributed_requests: self.unattributed.load(AtomicOrdering::SeqCst),
        }
    }
}

// ------------------------------------------------------------------ responses

/// ErrorBody (reference §2.5).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    message: &'a str,
    code: &'a str,
    status: u16,
    context_id: &'a str,
    details: Vec<Detail<'a>>,
    errors: [(); 0],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Detail<'a> {
    error_code: &'a str,
    field_name: &'a str,
}

pub(crate) fn error_reply(err: &ApiErr, corr: &str) -> Reply {
    let details = err
        .field
        .as_deref()
        .map(|f| {
            vec![Detail {
                error_code: &err.code,
                field_name: f,
            }]
        })
        .unwrap_or_default();
    let body = serde_json::to_vec(&ErrorBody {
        message: &err.message,
        code: &err.code,
        status: err.status,
        context_id: corr,
        details,
        errors: [],
    })
    .unwrap_or_default();
    Reply::json(err.status, body)
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    #[derive(Serialize)]
    struct O<'a> {
        error: &'a str,
        description: &'a str,
        error_description: &'a str,
    }
    Reply::json(
        status,
        serde_json::to_vec(&O {
            error,
            description,
            error_description: description,
        })
        .unwrap_or_default(),
    )
}

fn too_many(corr: &str, retry_after_s: u64) -> Reply {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct T<'a> {
        message: String,
        code: &'a str,
        status: u16,
        context_id: &'a str,
        details: [(); 0],
        errors: [(); 0],
    }
    let body = serde_json::to_vec(&T {
        message: format!(
            "Rate limit exceeded the maximum. Retry the request in [{retry_after_s}] seconds"
        ),
        code: "too.many.requests.retry.after",
        status: 429,
        context_id: corr,
        details: [],
        errors: [],
    })
    .unwrap_or_default();
    let mut r = Reply::json(429, body);
    r.headers.push(("retry-after", retry_after_s.to_string()));
    r
}

/// A scripted 429; returns the reply and the Retry-After deadline it implies (if any).
fn scripted_429(f: &FaultSpec, corr: &str, now: Instant) -> (Reply, Option<Instant>) {
    let mut deadline = None;
    let mut header = None;
    if let Some(s) = f.retry_after_http_date_s {
        let when = std::time::SystemTime::now()
            .checked_add(std::time::Duration::from_secs(s.max(0) as u64))
            .and_then(|t| {
                if s < 0 {
                    t.checked_sub(std::time::Duration::from_secs(s.unsigned_abs()))
                } else {
                    Some(t)
                }
            })
            .unwrap_or_else(std::time::SystemTime::now);
        header = Some(httpdate::fmt_http_date(when));
        if s > 0 {
            deadline = Some(now + Duration::from_secs(s as u64));
        }
    } else if let Some(v) = &f.retry_after {
        header = Some(v.clone());
        if let Ok(x) = v.trim().parse::<f64>()
            && x.is_finite()
            && x > 0.0
        {
            deadline = Some(now + Duration::from_secs_f64(x.min(1e9)));
        }
    }
    let shown = header
        .as_deref()
        .and_then(|h| h.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        .max(0.0)
        .ceil() as u64;
    let mut r = match f.body {
        TooManyBody::Normalized => {
            let mut r = too_many(corr, shown);
            r.headers.retain(|(k, _)| *k != "retry-after");
            r
        }
        TooManyBody::Legacy => Reply::json(
            429,
            br#"{"code":"too.many.requests","status":429}"#.to_vec(),
        ),
        TooManyBody::Empty => Reply {
            status: 429,
            body: Vec::new(),
            headers: Vec::new(),
            content_type: None,
        },
    };
    if let Some(h) = header {
        r.headers.push(("retry-after", h));
    }
    (r, deadline)
}

fn rl_headers(r: &mut Reply, s: WindowState) {
    r.headers
        .push(("inin-ratelimit-allowed", s.allowed.to_string()));
    r.headers
        .push(("inin-ratelimit-count", s.count.to_string()));
    r.headers
        .push(("inin-ratelimit-reset", s.reset_s.to_string()));
}

fn default_rl() -> WindowState {
    let d = RateLimitSpec::default();
    WindowState {
        allowed: d.allowed,
        count: 0,
        reset_s: d.window_ms / 1000,
    }
}

fn finish(mut r: Reply, corr: &str) -> Response {
    if !r
        .headers
        .iter()
        .any(|(k, _)| k.starts_with("inin-ratelimit"))
    {
        rl_headers(&mut r, default_rl());
    }
    r.headers.push(("inin-correlation-id", corr.to_string()));
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    if let Some(ct) = r.content_type {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    for (k, v) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(k, v);
        }
    }
    resp
}

// ------------------------------------------------------------------ routing

/// Parsed host prefix: `/api.<domain>/…` or `/login.<domain>/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Any,
    Api(String),
    Login(String),
}

fn split_host(path: &str) -> Result<(Host, &str), String> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (first, rest_start) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], i + 1),
        None => (trimmed, trimmed.len() + 1),
    };
    let rest = if rest_start <= path.len() {
        &path[rest_start..]
    } else {
        ""
    };
    let mk = |d: &str| -> Result<String, String> {
        if REGION_DOMAINS.contains(&d) {
            Ok(d.to_string())
        } else {
            Err(format!("unknown host domain {d:?}"))
        }
    };
    if let Some(d) = first.strip_prefix("api.") {
        Ok((Host::Api(mk(d)?), rest))
    } else if let Some(d) = first.strip_prefix("login.") {
        Ok((Host::Login(mk(d)?), rest))
    } else {
        Ok((Host::Any, path))
    }
}

fn route(method: &Method, path: &str) -> (Ep, Vec<String>) {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let get = method == Method::GET;
    let post = method == Method::POST;
    let ep = match segs.as_slice() {
        ["oauth", "token"] if post => Ep::Token,
        ["api", "v2", "tokens", "me"] if get => Ep::TokensMe,
        ["api", "v2", "organizations", "me"] if get => Ep::OrgMe,
        ["api", "v2", "quality", "evaluations", "search"] if post => Ep::Search,
        ["api", "v2", "quality", "evaluations", "query"] if get => Ep::Query,
        ["api", "v2", "quality", "conversations", c, "evaluations", e] if get => {
            return (Ep::Get, vec![c.to_string(), e.to_string()]);
        }
        ["api", "v2", "quality", "forms", "evaluations"] if get => Ep::FormsList,
        ["api", "v2", "quality", "forms", "evaluations", id] if get => {
            return (Ep::FormGet, vec![id.to_string()]);
        }
        ["api", "v2", "quality", "publishedforms", "evaluations"] if get => Ep::PublishedForms,
        [
            "api",
            "v2",
            "analytics",
            "evaluations",
            "aggregates",
            "query",
        ] if post => Ep::Aggregates,
        ["api", "v2", "users"] if get => Ep::Users,
        _ => Ep::Unknown,
    };
    (ep, Vec::new())
}

/// The single axum handler (fallback) for every request.
pub(crate) async fn entry(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(conn): ConnectInfo<ConnCtl>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    if path == "/_sim/stats" || path == "/_sim/stats/" {
        return axum::Json(inner.stats()).into_response();
    }
    let corr = inner.corr_id();
    let (host, rest) = match split_host(&path) {
        Ok(x) => x,
        Err(msg) => {
            inner.unattributed.fetch_add(1, AtomicOrdering::SeqCst);
            return finish(
                error_reply(&ApiErr::new(404, "not.found", &msg), &corr),
                &corr,
            );
        }
    };
    let (ep, args) = route(&parts.method, rest);
    let body = match axum::body::to_bytes(body, 2 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return finish(
                error_reply(
                    &ApiErr::new(
                        413,
                        "request.entity.too.large",
                        "Request body exceeds 2 MiB",
                    ),
                    &corr,
                ),
                &corr,
            );
        }
    };
    let wrong_host = match (&host, ep) {
        (Host::Api(_), Ep::Token) => true,
        (Host::Login(_), e) => e != Ep::Token,
        _ => false,
    };
    if wrong_host {
        inner.unattributed.fetch_add(1, AtomicOrdering::SeqCst);
        let msg = format!("No such resource on this host: {} {}", parts.method, rest);
        return finish(
            error_reply(&ApiErr::new(404, "not.found", &msg), &corr),
            &corr,
        );
    }
    let domain = match &host {
        Host::Api(d) | Host::Login(d) => Some(d.clone()),
        Host::Any => None,
    };
    let ctx = Ctx {
        ep,
        args,
        query,
        headers: parts.headers,
        body,
        domain,
        corr,
    };
    if ep == Ep::Token {
        token_pipeline(inner, conn, ctx).await
    } else {
        api_pipeline(inner, conn, ctx).await
    }
}

pub(crate) struct Ctx {
    pub ep: Ep,
    pub args: Vec<String>,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    domain: Option<String>,
    pub corr: String,
}

/// What phase 1 (under the org lock) decided.
struct Prepared {
    reply: Reply,
    token: Option<String>,
    delay: Duration,
    reset: bool,
    truncate: bool,
}

/// Marks the request done in the stats even if the client goes away mid-wait.
struct DoneGuard {
    inner: Arc<Inner>,
    org: usize,
    token: Option<String>,
    ep: Ep,
    status: String,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        lock(&self.inner.orgs[self.org]).done(self.token.as_deref(), self.ep, &self.status);
    }
}

async fn deliver(
    inner: Arc<Inner>,
    conn: ConnCtl,
    org: usize,
    ep: Ep,
    corr: String,
    p: Prepared,
) -> Response {
    let mut guard = DoneGuard {
        inner,
        org,
        token: p.token.clone(),
        ep,
        status: "client_closed".into(),
    };
    if !p.delay.is_zero() {
        tokio::time::sleep(p.delay).await;
    }
    if p.reset {
        guard.status = "reset".into();
        conn.0.store(true, AtomicOrdering::SeqCst);
        return Response::new(Body::empty());
    }
    let mut reply = p.reply;
    if p.truncate {
        let cut = reply.body.len() / 2;
        reply.body.truncate(cut);
    }
    guard.status = reply.status.to_string();
    finish(reply, &corr)
}

fn bearer(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, tok) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| tok.trim().to_string())
        .filter(|t| !t.is_empty())
}

async fn api_pipeline(inner: Arc<Inner>, conn: ConnCtl, ctx: Ctx) -> Response {
    let corr = ctx.corr.clone();
    let Some(tok) = bearer(&ctx.headers) else {
        inner.unattributed.fetch_add(1, AtomicOrdering::SeqCst);
        let e = ApiErr::new(
            401,
            "authentication.required",
            "No authentication bearer token specified in authorization header.",
        );
        return finish(error_reply(&e, &corr), &corr);
    };
    let Some(org_idx) = lock(&inner.tokens).get(&tok).copied() else {
        inner.unattributed.fetch_add(1, AtomicOrdering::SeqCst);
        return finish(
            error_reply(
                &ApiErr::new(401, "bad.credentials", "Invalid login credentials."),
                &corr,
            ),
            &corr,
        );
    };
    let now = Instant::now();
    let prepared = {
        let mut org = lock(&inner.orgs[org_idx]);
        prepare_api(&mut org, &ctx, &tok, now)
    };
    deliver(inner, conn, org_idx, ctx.ep, corr, prepared).await
}

fn prepare_api(org: &mut OrgRt, ctx: &Ctx, tok: &str, now: Instant) -> Prepared {
    let ep = ctx.ep;
    let corr = ctx.corr.as_str();
    let spec_limit = org.spec.limit;
    let idle = org.spec.token_idle_timeout_ms.map(Duration::from_millis);
    let region = org.spec.region.clone();
    let t = org
        .tokens
        .get_mut(tok)
        .expect("token index and org tokens are kept in sync");
    let label = t.label.clone();
    let token = Some(label.clone());
    let dead = t.revoked || now >= t.expires_at || idle.is_some_and(|i| now >= t.last_used + i);
    let peek = t.window.peek(spec_limit, now);
    let violation = t.deadline.is_some_and(|d| now < d);
    org.arrive(now, Some(&label), ep);
    let delay = org.draw_latency(ep);
    let mk = |reply: Reply| Prepared {
        reply,
        token: Some(label.clone()),
        delay,
        reset: false,
        truncate: false,
    };
    if dead {
        let mut r = error_reply(
            &ApiErr::new(
                401,
                "authentication.required",
                "The access token has expired or is no longer valid.",
            ),
            corr,
        );
        rl_headers(&mut r, peek);
        return mk(r);
    }
    if ctx.domain.as_ref().is_some_and(|d| *d != region) {
        let mut r = error_reply(
            &ApiErr::new(401, "bad.credentials", "Invalid login credentials."),
            corr,
        );
        rl_headers(&mut r, peek);
        return mk(r);
    }
    if violation {
        org.bump(token.as_deref(), ep, |c| c.quota_violations += 1);
    }
    // Rate limits: the token's window, then the org-wide one.
    let counts_rejected = org.spec.switches.rejected_count_toward_window;
    let org_limit = org.spec.org_limit;
    let t = org.tokens.get_mut(tok).expect("token present");
    t.last_used = now;
    let tok_ok = t.window.would_allow(spec_limit, now);
    let org_ok = match org_limit {
        Some(l) => org.org_window.would_allow(l, now),
        None => true,
    };
    let t = org.tokens.get_mut(tok).expect("token present");
    if tok_ok && org_ok {
        t.window.count += 1;
        if let Some(_l) = org_limit {
            org.org_window.count += 1;
        }
    } else {
        if counts_rejected {
            t.window.count += 1;
        }
        let mut wait = t.window.end(spec_limit, now).saturating_duration_since(now);
        if !org_ok && let Some(l) = org_limit {
            wait = org.org_window.end(l, now).saturating_duration_since(now);
        }
        // When only the org bucket is exhausted, the token window headers still show headroom.
        let t = org.tokens.get_mut(tok).expect("token present");
        let ra = ceil_secs(wait).max(1);
        t.deadline = Some(now + Duration::from_secs(ra));
        let st = t.window.state(spec_limit, now);
        let mut r = too_many(corr, ra);
        rl_headers(&mut r, st);
        return mk(r);
    }
    let t = org.tokens.get_mut(tok).expect("token present");
    let st = t.window.state(spec_limit, now);
    // Faults.
    org.observe_faults(ep);
    let mut out = Prepared {
        reply: Reply::empty(),
        token,
        delay,
        reset: false,
        truncate: false,
    };
    if let Some(f) = org.take_request_fault(ep) {
        org.bump(out.token.as_deref(), ep, |c| c.faults_injected += 1);
        match f.kind {
            FaultKind::TooManyRequests => {
                let (mut r, deadline) = scripted_429(&f, corr, now);
                if let Some(d) = deadline {
                    let t = org.tokens.get_mut(tok).expect("token present");
                    t.deadline = Some(t.deadline.map_or(d, |x| x.max(d)));
                }
                rl_headers(&mut r, st);
                out.reply = r;
                return out;
            }
            FaultKind::HttpError => {
                let status = f.status.unwrap_or(503);
                let (code, msg) = match status {
                    500 => (
                        "internal.server.error",
                        "The server encountered an unexpected condition.",
                    ),
                    502 => (
                        "bad.gateway",
                        "The gateway received an invalid response from the upstream server.",
                    ),
                    503 => ("service.unavailable", "Service Unavailable"),
                    504 => (
                        "quality.backend.service.timeout",
                        "The request timed out waiting for the backend service.",
                    ),
                    _ => ("sim.scripted.error", "Scripted error"),
                };
                let mut r = error_reply(&ApiErr::new(status, code, msg), corr);
                rl_headers(&mut r, st);
                out.reply = r;
                return out;
            }
            FaultKind::ExpireToken => {
                org.tokens.get_mut(tok).expect("token present").revoked = true;
                let mut r = error_reply(
                    &ApiErr::new(
                        401,
                        "authentication.required",
                        "The access token has expired or is no longer valid.",
                    ),
                    corr,
                );
                rl_headers(&mut r, st);
                out.reply = r;
                return out;
            }
            FaultKind::Hang => out.delay += Duration::from_millis(f.hang_ms.unwrap_or(30_000)),
            FaultKind::ConnectionReset => out.reset = true,
            FaultKind::TruncatedBody => out.truncate = true,
            _ => {}
        }
    }
    let mut r = match endpoints::handle(org, ctx) {
        Ok(r) => r,
        Err(e) => error_reply(&e, corr),
    };
    rl_headers(&mut r, st);
    out.reply = r;
    out
}

fn parse_basic(h: &HeaderMap) -> Option<(String, String)> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn token_pipeline(inner: Arc<Inner>, conn: ConnCtl, ctx: Ctx) -> Response {
    let corr = ctx.corr.clone();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&ctx.body)
        .into_owned()
        .collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let creds =
        parse_basic(&ctx.headers).or_else(|| Some((field("client_id")?, field("client_secret")?)));
    let Some((id, secret)) = creds else {
        inner.unattributed.fetch_add(1, AtomicOrdering::SeqCst);
        return finish(
            oauth_error(401, "invalid_client", "client credentials are missing"),
            &corr,
        );
    };
    let Some(&org_idx) = inner.clients.get(&id) else {
        inner.unattributed.fetch_add(1, AtomicOrdering::SeqCst);
        return finish(
            oauth_error(401, "invalid_client", "authentication failed"),
            &corr,
        );
    };
    let now = Instant::now();
    let prepared = {
        let mut org = lock(&inner.orgs[org_idx]);
        let p = prepare_token(&mut org, &ctx, &secret, field("grant_type"), now, &inner);
        if let Some(tok) = &p.1 {
            lock(&inner.tokens).insert(tok.clone(), org_idx);
        }
        p.0
    };
    deliver(inner, conn, org_idx, Ep::Token, corr, prepared).await
}

fn prepare_token(
    org: &mut OrgRt,
    ctx: &Ctx,
    secret: &str,
    grant_type: Option<String>,
    now: Instant,
    inner: &Inner,
) -> (Prepared, Option<String>) {
    let ep = Ep::Token;
    let corr = ctx.corr.as_str();
    org.arrive(now, None, ep);
    let delay = org.draw_latency(ep);
    let limit = org.spec.token_endpoint_limit;
    let mk = |reply: Reply| Prepared {
        reply,
        token: None,
        delay,
        reset: false,
        truncate: false,
    };
    let wrong_region = ctx.domain.as_ref().is_some_and(|d| *d != org.spec.region);
    if secret != org.data.client_secret || wrong_region {
        let mut r = oauth_error(401, "invalid_client", "authentication failed");
        rl_headers(&mut r, org.client_window.peek(limit, now));
        return (mk(r), None);
    }
    if org.client_deadline.is_some_and(|d| now < d) {
        org.bump(None, ep, |c| c.quota_violations += 1);
    }
    if !org.client_window.would_allow(limit, now) {
        if org.spec.switches.rejected_count_toward_window {
            org.client_window.count += 1;
        }
        let ra = ceil_secs(
            org.client_window
                .end(limit, now)
                .saturating_duration_since(now),
        )
        .max(1);
        org.client_deadline = Some(now + Duration::from_secs(ra));
        let mut r = too_many(corr, ra);
        rl_headers(&mut r, org.client_window.state(limit, now));
        return (mk(r), None);
    }
    org.client_window.count += 1;
    let st = org.client_window.state(limit, now);
    org.observe_faults(ep);
    let mut out = mk(Reply::empty());
    if let Some(f) = org.take_request_fault(ep) {
        org.bump(None, ep, |c| c.faults_injected += 1);
        match f.kind {
            FaultKind::TooManyRequests => {
                let (mut r, deadline) = scripted_429(&f, corr, now);
                if let Some(d) = deadline {
                    org.client_deadline = Some(org.client_deadline.map_or(d, |x| x.max(d)));
                }
                rl_headers(&mut r, st);
                out.reply = r;
                return (out, None);
            }
            FaultKind::HttpError => {
                let status = f.status.unwrap_or(503);
                let mut r = oauth_error(status, "temporarily_unavailable", "scripted error");
                rl_headers(&mut r, st);
                out.reply = r;
                return (out, None);
            }
            FaultKind::Hang => out.delay += Duration::from_millis(f.hang_ms.unwrap_or(30_000)),
            FaultKind::ConnectionReset => out.reset = true,
            FaultKind::TruncatedBody => out.truncate = true,
            _ => {}
        }
    }
    if grant_type.as_deref() != Some("client_credentials") {
        let mut r = oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
        rl_headers(&mut r, st);
        out.reply = r;
        return (out, None);
    }
    let token = {
        let mut rng = lock(&inner.misc_rng);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rng.random::<[u8; 48]>())
    };
    org.token_seq += 1;
    let label = format!("token-{}", org.token_seq);
    org.tokens.insert(
        token.clone(),
        TokenRt {
            label,
            expires_at: now + Duration::from_secs(org.spec.expires_in),
            last_used: now,
            revoked: false,
            window: Window::default(),
            deadline: None,
        },
    );
    #[derive(Serialize)]
    struct T<'a> {
        access_token: &'a str,
        token_type: &'a str,
        expires_in: u64,
    }
    let mut r = Reply::json(
        200,
        serde_json::to_vec(&T {
            access_token: &token,
            token_type: "bearer",
            expires_in: org.spec.expires_in,
        })
        .unwrap_or_default(),
    );
    rl_headers(&mut r, st);
    out.reply = r;
    (out, Some(token))
}

/// Build the shared state and serve on `listener` until `stop` flips.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> io::Result<()> {
    let app = axum::Router::new().fallback(entry).with_state(inner);
    axum::serve(
        SimListener(listener),
        app.into_make_service_with_connect_info::<ConnCtl>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|v| *v).await;
    })
    .await
}

/// Resolve the data period of a scenario now.
pub(crate) fn resolve_period(sc: &Scenario) -> Period {
    let now = jiff::Timestamp::now();
    let anchor = sc.anchor.unwrap_or_else(|| {
        now.to_zoned(jiff::tz::TimeZone::UTC)
            .start_of_day()
            .map(|z| z.timestamp())
            .unwrap_or(now)
    });
    let day = jiff::SignedDuration::from_hours(24);
    let start = anchor
        .checked_sub(day * i32::try_from(sc.days_before).unwrap_or(3))
        .unwrap_or(anchor);
    // By default the data ends at the anchor (the start of the current UTC day), so every
    // start of the simulator on one day serves the same data.
    let end = sc.period_end.unwrap_or(anchor);
    Period {
        start,
        end: end.max(start),
    }
}
