use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use jiff::Timestamp;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::error::{ErrorBody, GenesysError, OAuthErrorBody};
use super::models::TokenResponse;
use super::retry_after::{RetryAfter, RetryAfterPolicy, parse_retry_after};
use crate::clock::{self, Clock};
use crate::domain::{InvalidValue, OrgId};
use crate::ports::RequestStats;
use crate::rate::{Admission, RateHeaders};

/// Where and as whom to call one org.
#[derive(Debug, Clone)]
pub struct OrgEndpoint {
    /// The org.
    pub org_id: OrgId,
    /// Region domain, e.g. `mypurecloud.com` (for the output envelope and logs).
    pub region: String,
    /// API base, e.g. `https://api.mypurecloud.com` (may carry a path prefix).
    pub api_base_url: Url,
    /// Login base, e.g. `https://login.mypurecloud.com`.
    pub login_base_url: Url,
    /// OAuth client id (client credentials grant).
    pub client_id: String,
    /// OAuth client secret. Never logged.
    pub client_secret: SecretString,
}

impl OrgEndpoint {
    /// Validates the base URLs: `https` (plain `http` only for loopback hosts), no
    /// credentials in them, and a host that only Genesys can be — a Genesys Cloud region's
    /// domain or a subdomain of it (reference §4), in the org's region when `region` is
    /// one, the API and login hosts in one region otherwise — or a loopback host, or a host
    /// ending in one of the suffixes an operator allows in `SCORECARDS_ALLOWED_HOST_SUFFIXES`
    /// (comma-separated, e.g. `.private.example.com`, for private endpoints). So whoever can
    /// write an org's settings cannot send its client secret to a host of their choosing.
    ///
    /// Errors name the field (`api_base_url`, `login_base_url`, `client_id`) and show the
    /// host only, never the whole value.
    pub fn new(
        org_id: OrgId,
        region: impl Into<String>,
        api_base_url: &str,
        login_base_url: &str,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Result<Self, InvalidValue> {
        let client_id = client_id.into();
        if client_id.trim().is_empty() {
            return Err(InvalidValue::new(
                "client_id",
                "is empty: set the OAuth client id",
            ));
        }
        let region = region.into();
        let api = base_url("api_base_url", api_base_url)?;
        let login = base_url("login_base_url", login_base_url)?;
        let home = crate::genesys::region::region_domain(&region);
        let mut domains = Vec::new();
        for (field, url) in [("api_base_url", &api), ("login_base_url", &login)] {
            if let Some(domain) = host_domain(field, url)? {
                if let Some(home) = home
                    && domain != home
                {
                    return Err(InvalidValue::new(
                        field,
                        format!(
                            "host {} is not in the org's region ({home}): use the region's hosts",
                            url.host_str().unwrap_or_default()
                        ),
                    ));
                }
                domains.push(domain);
            }
        }
        if let [a, l] = domains[..]
            && a != l
        {
            return Err(InvalidValue::new(
                "login_base_url",
                format!("host is in region {l} but api_base_url is in {a}: use one region's hosts"),
            ));
        }
        Ok(Self {
            api_base_url: api,
            login_base_url: login,
            org_id,
            region,
            client_id,
            client_secret,
        })
    }
}

/// Host suffixes an operator allows besides the Genesys domains
/// (`SCORECARDS_ALLOWED_HOST_SUFFIXES`, comma-separated; read once).
fn allowed_suffixes() -> &'static [String] {
    static SUFFIXES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SUFFIXES.get_or_init(|| {
        std::env::var("SCORECARDS_ALLOWED_HOST_SUFFIXES")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| s.len() > 1)
            .map(|s| {
                if s.starts_with('.') {
                    s
                } else {
                    format!(".{s}")
                }
            })
            .collect()
    })
}

/// Whether loopback hosts may be named: outside Lambda yes (the simulator, tests); inside a
/// Lambda function (`AWS_LAMBDA_RUNTIME_API` set) only with `SCORECARDS_ALLOW_LOOPBACK=true`,
/// which the stack never sets — there a loopback host could only be the sandbox's own
/// services (the Runtime API, extensions). Read once.
fn loopback_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| {
        loopback_policy(
            std::env::var("AWS_LAMBDA_RUNTIME_API").ok().as_deref(),
            std::env::var("SCORECARDS_ALLOW_LOOPBACK").ok().as_deref(),
        )
    })
}

/// [`loopback_allowed`] for the values of `AWS_LAMBDA_RUNTIME_API` and
/// `SCORECARDS_ALLOW_LOOPBACK`.
fn loopback_policy(runtime_api: Option<&str>, allow: Option<&str>) -> bool {
    match allow.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
        Some(_) => false,
        None => runtime_api.is_none_or(str::is_empty),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// The Genesys region domain of a base URL's host; `None` for loopback hosts and hosts
/// under an allowed suffix (their region is not checked); an error for any other host.
fn host_domain(field: &str, url: &Url) -> Result<Option<&'static str>, InvalidValue> {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if is_loopback(url) {
        if !loopback_allowed() {
            return Err(InvalidValue::new(
                field,
                format!(
                    "host {host} is a loopback host, refused inside a Lambda function: name the org's Genesys Cloud hosts (SCORECARDS_ALLOW_LOOPBACK=true allows loopback, for tests against a local simulator only)"
                ),
            ));
        }
        return Ok(None);
    }
    if let Some((_, domain)) = crate::genesys::region::REGIONS
        .iter()
        .find(|(_, d)| host == *d || host.ends_with(&format!(".{d}")))
    {
        return Ok(Some(domain));
    }
    if allowed_suffixes()
        .iter()
        .any(|s| host.ends_with(s.as_str()))
    {
        return Ok(None);
    }
    Err(InvalidValue::new(
        field,
        format!(
            "host {host} is not a Genesys Cloud host: use the org's region, or list a private endpoint's suffix in SCORECARDS_ALLOWED_HOST_SUFFIXES"
        ),
    ))
}

fn base_url(field: &str, raw: &str) -> Result<Url, InvalidValue> {
    let url = Url::parse(raw.trim_end_matches('/'))
        .map_err(|e| InvalidValue::new(field, format!("is not a URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InvalidValue::new(
            field,
            "must not hold credentials (user:password@): give only the scheme and host",
        ));
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(InvalidValue::new(
            field,
            format!("http://{host}: plain http is allowed only for loopback hosts; use https"),
        )),
        _ => Err(InvalidValue::new(field, "use an https URL")),
    }
}

/// Retry and timeout settings of the client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientConfig {
    /// Timeout of one HTTP attempt. Default 30 s.
    pub request_timeout: Duration,
    /// Attempts per call for 5xx, timeouts, connection errors and invalid bodies. Default 8.
    pub max_attempts: u32,
    /// 429s tolerated per call before giving up. Default 50.
    pub max_429: u32,
    /// First backoff (exponential, full jitter). Default 500 ms.
    pub backoff_min: Duration,
    /// Largest backoff. Default 30 s.
    pub backoff_max: Duration,
    /// Floor and cap for `Retry-After`.
    pub retry_after: RetryAfterPolicy,
    /// Retry HTTP 500 too. Default false (Genesys: only 429, 502, 503, 504 are retryable).
    pub retry_500: bool,
    /// Refresh a token this long before `expires_in` runs out (at most a tenth of its
    /// lifetime). Default 60 s.
    pub token_margin: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_attempts: 8,
            max_429: 50,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            retry_after: RetryAfterPolicy::default(),
            retry_500: false,
            token_margin: Duration::from_secs(60),
        }
    }
}

/// An org's access token, shareable between clients of the same org (e.g. the messages one
/// warm Lambda instance handles one after another), so each does not fetch its own.
/// Never shows the token in `Debug`.
#[derive(Default)]
pub struct TokenCache(tokio::sync::Mutex<Option<CachedToken>>);

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache")
    }
}

#[derive(Clone)]
struct CachedToken {
    value: SecretString,
    refresh_at: Timestamp,
    generation: u64,
}

/// A client for one org. Cheap to share (`Arc`); calls may run concurrently.
pub struct GenesysClient {
    http: reqwest::Client,
    endpoint: OrgEndpoint,
    config: ClientConfig,
    admission: Arc<dyn Admission>,
    clock: Arc<dyn Clock>,
    token: Arc<TokenCache>,
    stats: Mutex<RequestStats>,
    last_rate: Mutex<Option<RateHeaders>>,
}

impl std::fmt::Debug for GenesysClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenesysClient")
            .field("org_id", &self.endpoint.org_id)
            .field("api_base_url", &self.endpoint.api_base_url.as_str())
            .finish_non_exhaustive()
    }
}

/// A [`GenesysClient`] that also counts the calls made through it on their own. Clones
/// share the counters.
#[derive(Clone)]
pub struct Counted<'a> {
    client: &'a GenesysClient,
    stats: Arc<Mutex<RequestStats>>,
}

impl Counted<'_> {
    /// The client.
    pub fn client(&self) -> &GenesysClient {
        self.client
    }

    /// Requests, token requests, 429s and retries of calls made through this view
    /// (`waited_ms` is not attributed per view and stays 0).
    pub fn stats(&self) -> RequestStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `GET` a path (`/api/v2/...`, query included) or a `nextUri`, parsing the JSON body.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, GenesysError> {
        let url = self.client.api_url(path)?;
        self.client
            .execute(Method::GET, url, None, &self.stats)
            .await
    }

    /// `POST` a JSON body to a path, parsing the JSON response.
    pub async fn post_json<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, GenesysError> {
        let url = self.client.api_url(path)?;
        let body = GenesysClient::encode(path, body)?;
        self.client
            .execute(Method::POST, url, Some(body), &self.stats)
            .await
    }
}

/// Retry bookkeeping of one logical call: attempts sent, 429s seen, the backoff sequence.
struct Budget<'a> {
    path: String,
    /// The counters of the calling view, besides the client's own.
    extra: &'a Mutex<RequestStats>,
    attempts: u32,
    throttled: u32,
    /// HTTP status of the last failed attempt, if it had one.
    last_status: Option<u16>,
    backoff: backon::ExponentialBackoff,
}

impl Budget<'_> {
    fn exhausted(&self, last: &str) -> GenesysError {
        GenesysError::Exhausted {
            path: self.path.clone(),
            attempts: self.attempts,
            last: last.to_owned(),
            status: self.last_status,
        }
    }
}

/// What went wrong with one attempt that may be retried.
enum Retry {
    /// 5xx, timeout, connection error or a body that did not parse: back off.
    Backoff(String),
    /// 429: wait until the deadline.
    RateLimited(Timestamp, String),
}

impl GenesysClient {
    /// A client for `endpoint` whose requests are admitted by `admission`.
    pub fn new(
        endpoint: OrgEndpoint,
        config: ClientConfig,
        admission: Arc<dyn Admission>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, GenesysError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("scorecards/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| GenesysError::Exhausted {
                path: String::new(),
                attempts: 0,
                last: format!("cannot build the HTTP client: {e}"),
                status: None,
            })?;
        Ok(Self {
            http,
            endpoint,
            config,
            admission,
            clock,
            token: Arc::default(),
            stats: Mutex::new(RequestStats::default()),
            last_rate: Mutex::new(None),
        })
    }

    /// Shares `cache` for this client's token (use one cache per org and client id).
    pub fn with_token_cache(mut self, cache: Arc<TokenCache>) -> Self {
        self.token = cache;
        self
    }

    /// The org this client calls.
    pub fn endpoint(&self) -> &OrgEndpoint {
        &self.endpoint
    }

    /// Requests, 429s, retries and waits so far.
    pub fn stats(&self) -> RequestStats {
        let mut stats = *self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.waited_ms = self.admission.waited_ms();
        stats
    }

    /// The `inin-ratelimit-*` headers of the last API response, if any was received.
    pub fn last_rate_headers(&self) -> Option<RateHeaders> {
        *self.last_rate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leaves the rate ledger (call once the export stops).
    pub async fn release(&self) {
        self.admission.release().await;
    }

    /// A view of this client to make calls through; it counts its own calls besides the
    /// client's totals (one export run, when several runs share the client).
    pub fn counted(&self) -> Counted<'_> {
        Counted {
            client: self,
            stats: Arc::new(Mutex::new(RequestStats::default())),
        }
    }

    fn encode(path: &str, body: &impl Serialize) -> Result<serde_json::Value, GenesysError> {
        serde_json::to_value(body).map_err(|e| GenesysError::Exhausted {
            path: path.to_owned(),
            attempts: 0,
            last: format!("cannot encode the request body: {e}"),
            status: None,
        })
    }

    /// Joins a relative path or `nextUri` onto the API base (keeping a base path prefix).
    /// An absolute URL is accepted only on the API host itself.
    fn api_url(&self, path: &str) -> Result<Url, GenesysError> {
        let base = &self.endpoint.api_base_url;
        if path.starts_with('/') {
            let joined = format!("{}{}", base.as_str().trim_end_matches('/'), path);
            return Url::parse(&joined).map_err(|_| GenesysError::ForeignUrl { url: path.into() });
        }
        let url = Url::parse(path).map_err(|_| GenesysError::ForeignUrl { url: path.into() })?;
        if url.origin() == base.origin()
            && url.path().starts_with(base.path().trim_end_matches('/'))
        {
            Ok(url)
        } else {
            Err(GenesysError::ForeignUrl { url: path.into() })
        }
    }

    /// Applies `f` to the client's counters and to the calling view's.
    fn count(&self, extra: &Mutex<RequestStats>, f: impl Fn(&mut RequestStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
        f(&mut extra.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn budget<'a>(&self, path: String, extra: &'a Mutex<RequestStats>) -> Budget<'a> {
        Budget {
            path,
            extra,
            attempts: 0,
            throttled: 0,
            last_status: None,
            backoff: ExponentialBuilder::default()
                .with_min_delay(self.config.backoff_min)
                .with_max_delay(self.config.backoff_max)
                .with_jitter()
                .without_max_times()
                .build(),
        }
    }

    /// Counts a 429; gives up once more than `max_429` were seen in this call.
    fn note_429(&self, budget: &mut Budget<'_>, last: &str) -> Result<(), GenesysError> {
        budget.throttled += 1;
        self.count(budget.extra, |s| s.responses_429 += 1);
        if budget.throttled > self.config.max_429 {
            return Err(budget.exhausted(last));
        }
        Ok(())
    }

    /// Counts a retryable failure and sleeps the next backoff; gives up once
    /// `max_attempts` non-429 attempts failed.
    async fn back_off(&self, budget: &mut Budget<'_>, last: &str) -> Result<(), GenesysError> {
        self.count(budget.extra, |s| s.retries += 1);
        if budget.attempts.saturating_sub(budget.throttled) >= self.config.max_attempts {
            return Err(budget.exhausted(last));
        }
        let wait = budget.backoff.next().unwrap_or(self.config.backoff_max);
        tracing::warn!(org_id = %self.endpoint.org_id, path = %budget.path, error = %last, attempt = budget.attempts, wait_ms = wait.as_millis() as u64, "retrying");
        self.clock.sleep(wait).await;
        Ok(())
    }

    fn deadline(
        &self,
        headers: &HeaderMap,
        backoff: &mut impl Iterator<Item = Duration>,
    ) -> Timestamp {
        let now = self.clock.now();
        let wait = match headers
            .get(reqwest::header::RETRY_AFTER)
            .map(|v| v.to_str())
        {
            Some(Ok(value)) => {
                let parsed = parse_retry_after(value, now, &self.config.retry_after);
                if let RetryAfter::Capped(cap) = parsed {
                    tracing::warn!(org_id = %self.endpoint.org_id, value, cap_s = cap.as_secs(), "Retry-After capped");
                }
                parsed.wait()
            }
            // No (readable) header: capped exponential backoff with jitter, never below the floor.
            _ => backoff
                .next()
                .unwrap_or(self.config.backoff_max)
                .max(self.config.retry_after.floor),
        };
        clock::add(now, wait)
    }

    async fn admit(&self) -> Result<(), GenesysError> {
        Ok(self.admission.admit().await?)
    }

    /// One logical call: admitted, authenticated, retried.
    async fn execute<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
        extra: &Mutex<RequestStats>,
    ) -> Result<T, GenesysError> {
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut budget = self.budget(path, extra);
        let mut refreshed = false;
        loop {
            self.admit().await?;
            let (token, generation) = self.token(extra).await?;
            budget.attempts += 1;
            self.count(budget.extra, |s| s.requests += 1);
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose_secret())
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(self.config.request_timeout);
            if let Some(body) = &body {
                request = request.json(body);
            }
            tracing::trace!(path = %budget.path, "sending");
            let mut attempt_status = None;
            let outcome = match request.send().await {
                Err(e) => Retry::Backoff(transport_error(&e)),
                Ok(response) => {
                    let status = response.status();
                    attempt_status = (!status.is_success()).then_some(status.as_u16());
                    let headers = rate_headers(response.headers());
                    self.admission.observe(&headers);
                    *self.last_rate.lock().unwrap_or_else(|p| p.into_inner()) = Some(headers);
                    match status {
                        s if s.is_success() => match response.bytes().await {
                            Ok(bytes) => match serde_json::from_slice::<T>(&bytes) {
                                Ok(value) => return Ok(value),
                                Err(e) => Retry::Backoff(format!(
                                    "HTTP {s} with an invalid JSON body: {e}"
                                )),
                            },
                            Err(e) => Retry::Backoff(transport_error(&e)),
                        },
                        StatusCode::UNAUTHORIZED => {
                            let err = error_body(response).await;
                            if refreshed {
                                return Err(GenesysError::Unauthorized {
                                    path: budget.path.clone(),
                                    code: err.code.unwrap_or_default(),
                                    context_id: err.context_id.unwrap_or_default(),
                                });
                            }
                            refreshed = true;
                            self.invalidate(generation).await;
                            continue;
                        }
                        StatusCode::TOO_MANY_REQUESTS => {
                            let until = self.deadline(response.headers(), &mut budget.backoff);
                            let err = error_body(response).await;
                            Retry::RateLimited(
                                until,
                                format!("HTTP 429 {}", err.code.unwrap_or_default()),
                            )
                        }
                        StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT => {
                            let err = error_body(response).await;
                            Retry::Backoff(format!(
                                "HTTP {status} {}",
                                err.code.unwrap_or_default()
                            ))
                        }
                        StatusCode::INTERNAL_SERVER_ERROR if self.config.retry_500 => {
                            let err = error_body(response).await;
                            Retry::Backoff(format!(
                                "HTTP {status} {}",
                                err.code.unwrap_or_default()
                            ))
                        }
                        _ => {
                            let err = error_body(response).await;
                            return Err(GenesysError::Api {
                                path: budget.path.clone(),
                                status: status.as_u16(),
                                code: err.code.unwrap_or_default(),
                                message: err.message.unwrap_or_default(),
                                context_id: err.context_id.unwrap_or_default(),
                            });
                        }
                    }
                }
            };
            budget.last_status = attempt_status;
            match outcome {
                Retry::RateLimited(until, last) => {
                    self.note_429(&mut budget, &last)?;
                    tracing::debug!(org_id = %self.endpoint.org_id, %until, "429: waiting for Retry-After");
                    self.admission.on_429(until).await?;
                }
                Retry::Backoff(last) => self.back_off(&mut budget, &last).await?,
            }
        }
    }

    /// Drops the cached token if it is still the one that got a 401.
    async fn invalidate(&self, generation: u64) {
        let mut cached = self.token.0.lock().await;
        if cached.as_ref().is_some_and(|t| t.generation == generation) {
            *cached = None;
        }
    }

    /// The cached token, fetched or refreshed when missing or within the margin of expiry.
    async fn token(
        &self,
        extra: &Mutex<RequestStats>,
    ) -> Result<(SecretString, u64), GenesysError> {
        let mut cached = self.token.0.lock().await;
        let now = self.clock.now();
        if let Some(t) = cached.as_ref()
            && t.refresh_at > now
        {
            return Ok((t.value.clone(), t.generation));
        }
        let generation = cached.as_ref().map_or(1, |t| t.generation + 1);
        let (value, expires_in) = self.fetch_token(extra).await?;
        let lifetime = Duration::from_secs(expires_in.max(1));
        let margin = self.config.token_margin.min(lifetime / 10);
        let fresh = CachedToken {
            value,
            refresh_at: clock::add(self.clock.now(), lifetime - margin),
            generation,
        };
        *cached = Some(fresh.clone());
        Ok((fresh.value, fresh.generation))
    }

    /// `POST <login>/oauth/token` with HTTP Basic client credentials (reference §3).
    async fn fetch_token(
        &self,
        extra: &Mutex<RequestStats>,
    ) -> Result<(SecretString, u64), GenesysError> {
        let url = format!(
            "{}/oauth/token",
            self.endpoint.login_base_url.as_str().trim_end_matches('/')
        );
        let mut budget = self.budget("/oauth/token".to_owned(), extra);
        loop {
            self.admit().await?;
            budget.attempts += 1;
            self.count(budget.extra, |s| s.token_requests += 1);
            let sent = self
                .http
                .post(&url)
                .basic_auth(
                    &self.endpoint.client_id,
                    Some(self.endpoint.client_secret.expose_secret()),
                )
                .form(&[("grant_type", "client_credentials")])
                .timeout(self.config.request_timeout)
                .send()
                .await;
            let last = match sent {
                Err(e) => transport_error(&e),
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        match response.json::<TokenResponse>().await {
                            Ok(t) => {
                                return Ok((
                                    SecretString::from(t.access_token),
                                    t.expires_in.unwrap_or(86_400),
                                ));
                            }
                            Err(e) => format!("token response did not parse: {}", e.without_url()),
                        }
                    } else if status == StatusCode::TOO_MANY_REQUESTS {
                        self.note_429(&mut budget, "HTTP 429")?;
                        // The token endpoint has its own limit: wait here, not in the
                        // API bucket's shared deadline.
                        let until = self.deadline(response.headers(), &mut budget.backoff);
                        self.clock.sleep_until(until).await;
                        continue;
                    } else if status.is_server_error() {
                        format!("HTTP {status}")
                    } else {
                        let body: OAuthErrorBody = response.json().await.unwrap_or_default();
                        return Err(GenesysError::Login {
                            status: status.as_u16(),
                            error: body.error.unwrap_or_else(|| "unknown".into()),
                            description: body
                                .error_description
                                .or(body.description)
                                .unwrap_or_default(),
                        });
                    }
                }
            };
            self.back_off(&mut budget, &last).await?;
        }
    }
}

/// A transport failure, described without the URL (which is safe) or anything secret.
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body interrupted"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

async fn error_body(response: reqwest::Response) -> ErrorBody {
    let header_context = response
        .headers()
        .get("inin-correlation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body: ErrorBody = response.json().await.unwrap_or_default();
    if body.context_id.is_none() {
        body.context_id = header_context;
    }
    body
}

/// Reads `inin-ratelimit-allowed`, `-count` and `-reset` (names are case-insensitive).
pub(crate) fn rate_headers(headers: &HeaderMap) -> RateHeaders {
    fn num<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
        headers.get(name)?.to_str().ok()?.trim().parse().ok()
    }
    RateHeaders {
        allowed: num(headers, "inin-ratelimit-allowed"),
        count: num(headers, "inin-ratelimit-count"),
        reset_secs: num(headers, "inin-ratelimit-reset"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_refused_inside_lambda_unless_allowed() {
        assert!(loopback_policy(None, None), "outside Lambda: the simulator");
        assert!(!loopback_policy(Some("127.0.0.1:9001"), None));
        assert!(loopback_policy(Some("127.0.0.1:9001"), Some("true")));
        assert!(loopback_policy(Some("127.0.0.1:9001"), Some("1")));
        assert!(!loopback_policy(None, Some("false")));
        assert!(!loopback_policy(Some("127.0.0.1:9001"), Some("yes please")));
    }

    #[test]
    fn base_urls_allow_http_only_on_loopback() {
        assert!(base_url("api_base_url", "https://api.mypurecloud.com").is_ok());
        assert!(base_url("api_base_url", "http://127.0.0.1:8080/api.mypurecloud.com").is_ok());
        assert!(base_url("api_base_url", "http://localhost:1").is_ok());
        let e = base_url("api_base_url", "http://api.mypurecloud.com").unwrap_err();
        assert_eq!(e.field, "api_base_url");
        assert!(e.problem.contains("loopback"));
        assert!(base_url("login_base_url", "ftp://x").is_err());
        assert!(base_url("login_base_url", "not a url").is_err());
    }

    fn endpoint(region: &str, api: &str, login: &str) -> Result<OrgEndpoint, InvalidValue> {
        OrgEndpoint::new(
            "org".parse().unwrap(),
            region,
            api,
            login,
            "client",
            SecretString::from("s3cr3t-value"),
        )
    }

    #[test]
    fn base_urls_name_only_genesys_or_loopback_hosts_of_the_orgs_region() {
        // The region's hosts and their subdomains; loopback (the simulator).
        assert!(
            endpoint(
                "mypurecloud.com",
                "https://api.mypurecloud.com",
                "https://login.mypurecloud.com"
            )
            .is_ok()
        );
        assert!(
            endpoint(
                "custom",
                "https://api.euw2.pure.cloud",
                "https://login.euw2.pure.cloud"
            )
            .is_ok()
        );
        assert!(
            endpoint(
                "mypurecloud.com",
                "http://127.0.0.1:9/api.x",
                "http://127.0.0.1:9/login.x"
            )
            .is_ok()
        );
        // Any other host is refused, naming the field and the host only.
        let e = endpoint(
            "mypurecloud.com",
            "https://api.mypurecloud.com",
            "https://login.attacker.example/collect?k=s3cr3t-value",
        )
        .unwrap_err();
        assert_eq!(e.field, "login_base_url");
        assert!(
            e.problem.contains("login.attacker.example") && !e.problem.contains("s3cr3t"),
            "{}",
            e.problem
        );
        // A look-alike is not a subdomain.
        assert!(
            endpoint(
                "custom",
                "https://api.mypurecloud.com.evil.example",
                "https://login.mypurecloud.com"
            )
            .is_err()
        );
        // Credentials go only to the org's own region: another region's login host is refused.
        let e = endpoint(
            "mypurecloud.com",
            "https://api.mypurecloud.com",
            "https://login.usw2.pure.cloud",
        )
        .unwrap_err();
        assert_eq!(e.field, "login_base_url");
        assert!(e.problem.contains("region"), "{}", e.problem);
        let e = endpoint(
            "custom",
            "https://api.mypurecloud.com",
            "https://login.usw2.pure.cloud",
        )
        .unwrap_err();
        assert_eq!(e.field, "login_base_url");
        // No credentials inside a URL, and none echoed.
        let e = endpoint(
            "custom",
            "https://user:s3cr3t-value@api.mypurecloud.com",
            "https://login.mypurecloud.com",
        )
        .unwrap_err();
        assert_eq!(e.field, "api_base_url");
        assert!(!e.problem.contains("s3cr3t"));
    }
}
