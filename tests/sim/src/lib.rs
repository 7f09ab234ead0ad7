//! `genesys-sim`: a local twin of the Genesys Cloud quality-management API.
//!
//! One HTTP server plays the login host and the API host of many orgs in many regions.
//! Hosts are path prefixes: `http://127.0.0.1:PORT/login.<domain>/oauth/token` and
//! `http://127.0.0.1:PORT/api.<domain>/api/v2/...` ([`OrgInfo::login_base_url`],
//! [`OrgInfo::api_base_url`]); unprefixed `/oauth/token` and `/api/v2/...` work for any
//! region. Data is generated deterministically from the [`Scenario`] seed. See
//! `tests/sim/README.md` for the endpoints, the scenario format and every simulator choice.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = genesys_sim::start(genesys_sim::Scenario::builtin("test")?).await?;
//! let org = &sim.orgs()[0];
//! println!("{} {} {}", org.api_base_url, org.client_id, org.client_secret);
//! # Ok(()) }
//! ```

mod data;
mod endpoints;
pub mod scenario;
mod server;
pub mod stats;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use data::DateField;
pub use scenario::{
    DateRangeEnd, DeletedUserQuery, EndpointSel, FaultKind, FaultSpec, LatencyRange, LatencySpec,
    OrgSpec, OutsideDivision, QueryAnswers, QueryTimeFilter, REGION_DOMAINS, RateLimitSpec,
    Scenario, SearchOverMax, SearchPastCap, SearchSystemSubmitted, SearchTies, Switches,
    TooManyBody, Unknown,
};
pub use stats::{Counters, OrgStats, Stats};

use server::{Inner, lock};

/// Public facts about one simulated org (credentials are fake).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgInfo {
    /// Org id (UUID).
    pub org_id: String,
    /// Org name.
    pub name: String,
    /// Region domain, e.g. `apse1.pure.cloud`.
    pub region: String,
    /// `http://127.0.0.1:PORT/api.<region>`; append `/api/v2/...` (and `nextUri` values).
    pub api_base_url: String,
    /// `http://127.0.0.1:PORT/login.<region>`; append `/oauth/token`.
    pub login_base_url: String,
    /// OAuth client id (client credentials).
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// The per-token API limit (`allowed` requests per `window_ms`).
    pub token_limit: RateLimitSpec,
    /// Optional org-wide limit across all the org's tokens.
    pub org_limit: Option<RateLimitSpec>,
    /// Limit of the token endpoint, per client id.
    pub token_endpoint_limit: RateLimitSpec,
    /// Evaluations generated at start (inserted ones are not counted).
    pub evaluation_count: usize,
}

/// One entity and its exact wire bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRecord {
    /// Entity id (evaluation id or form version id).
    pub id: String,
    /// Exact JSON bytes the API serves for it: for evaluations, the
    /// `GET /api/v2/quality/conversations/{c}/evaluations/{e}` body (== the query entity with
    /// `expandAnswerTotalScores=true` under U1 answer A; restricted evaluations under U8
    /// answer B are included although their GET answers 403); for forms,
    /// `GET /api/v2/quality/forms/evaluations/{id}`.
    pub json: String,
}

/// Which evaluations: human, automated (`systemSubmitted`), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceFilter {
    /// Human evaluations (search with `systemSubmitted` absent/false).
    Human,
    /// Automated evaluations (search with `systemSubmitted: true`).
    Auto,
    /// Both.
    Both,
}

/// Handle to a running simulator. Cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Arc<Mutex<tokio::sync::watch::Sender<bool>>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Start the simulator on `127.0.0.1:0` (a free port).
///
/// Errors: invalid scenario, bind failure.
pub async fn start(scenario: Scenario) -> anyhow::Result<SimHandle> {
    start_on(scenario, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Start the simulator on `addr`, which must be a loopback address.
///
/// Errors: non-loopback address, invalid scenario, bind failure.
pub async fn start_on(scenario: Scenario, addr: SocketAddr) -> anyhow::Result<SimHandle> {
    if !addr.ip().is_loopback() {
        bail!("genesys-sim only binds loopback addresses, not {addr}");
    }
    scenario.validate()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    let period = server::resolve_period(&scenario);
    let inner = Arc::new(Inner::new(scenario, period, &format!("http://{addr}")));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let srv = inner.clone();
    tokio::spawn(async move {
        if let Err(e) = server::serve(srv, listener, rx).await {
            tracing::error!("genesys-sim server stopped: {e}");
        }
    });
    Ok(SimHandle {
        inner,
        addr,
        stop: Arc::new(Mutex::new(tx)),
    })
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The orgs, in scenario order.
    pub fn orgs(&self) -> Vec<OrgInfo> {
        self.inner.infos.clone()
    }

    /// The scenario the simulator runs.
    pub fn scenario(&self) -> &Scenario {
        &self.inner.scenario
    }

    /// The data period `[start, end)` (UTC) evaluations were created in.
    pub fn period(&self) -> (Timestamp, Timestamp) {
        (self.inner.period.start, self.inner.period.end)
    }

    /// Current statistics (same JSON as `GET /_sim/stats`).
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Evaluations of `org_id` in their *current* state (rescored/inserted ones included)
    /// with `from <= date_field < to` (evaluations without that date are excluded),
    /// filtered by source, sorted by id. Unknown org → empty.
    pub fn ground_truth(
        &self,
        org_id: &str,
        from: Timestamp,
        to: Timestamp,
        date_field: DateField,
        source: SourceFilter,
    ) -> Vec<TruthRecord> {
        let Some(org) = self.org_rt(org_id) else {
            return Vec::new();
        };
        let org = lock(org);
        let mut out: Vec<TruthRecord> = org
            .data
            .evals
            .iter()
            .filter(|e| match source {
                SourceFilter::Human => !e.automated,
                SourceFilter::Auto => e.automated,
                SourceFilter::Both => true,
            })
            .filter(|e| e.date(date_field).is_some_and(|t| t >= from && t < to))
            .map(|e| TruthRecord {
                id: e.id.clone(),
                json: org.data.render_eval(e, true),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Every form version of `org_id` with the exact bytes of
    /// `GET /api/v2/quality/forms/evaluations/{formId}`, sorted by id.
    pub fn forms_truth(&self, org_id: &str) -> Vec<TruthRecord> {
        let Some(org) = self.org_rt(org_id) else {
            return Vec::new();
        };
        let org = lock(org);
        let mut out: Vec<TruthRecord> = org
            .data
            .forms
            .iter()
            .map(|f| TruthRecord {
                id: f.id.clone(),
                json: org.data.render_form(f, true, true),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The switches of `org_id` (None for an unknown org).
    pub fn switches(&self, org_id: &str) -> Option<Switches> {
        self.org_rt(org_id).map(|o| lock(o).spec.switches.clone())
    }

    /// Ids of the evaluations of `org_id` outside the client's divisions (U8): their single
    /// GET answers 403 and query pages leave them out. Empty unless the org's
    /// `get_outside_division` is `forbidden`. They are still in [`SimHandle::ground_truth`].
    pub fn restricted_ids(&self, org_id: &str) -> BTreeSet<String> {
        let Some(org) = self.org_rt(org_id) else {
            return BTreeSet::new();
        };
        let org = lock(org);
        if org.spec.switches.get_outside_division != OutsideDivision::Forbidden {
            return BTreeSet::new();
        }
        org.data
            .evals
            .iter()
            .filter(|e| e.restricted)
            .map(|e| e.id.clone())
            .collect()
    }

    /// Ids of the deleted users of `org_id` (U7; state `deleted` in `/api/v2/users`).
    pub fn deleted_user_ids(&self, org_id: &str) -> BTreeSet<String> {
        let Some(org) = self.org_rt(org_id) else {
            return BTreeSet::new();
        };
        let org = lock(org);
        org.data
            .users
            .iter()
            .filter(|u| u.deleted)
            .map(|u| u.id.clone())
            .collect()
    }

    /// Rescores evaluation `evaluation_id` of `org_id` now, as an evaluator editing it would:
    /// new answers, `changedDate` + 60 s, `rescore: true` (its other dates stay). Returns
    /// false for an unknown org or id, or an evaluation without answers.
    pub fn rescore(&self, org_id: &str, evaluation_id: &str) -> bool {
        let Some(org) = self.org_rt(org_id) else {
            return false;
        };
        let mut org = lock(org);
        let org = &mut *org;
        match org.data.by_id.get(evaluation_id).copied() {
            Some(i) if org.data.evals[i].answers.is_some() => {
                org.data.rescore(i, &mut org.mut_rng);
                true
            }
            _ => false,
        }
    }

    /// Stop accepting connections; in-flight requests finish. Idempotent.
    pub fn shutdown(&self) {
        let _ = lock(&self.stop).send(true);
    }

    fn org_rt(&self, org_id: &str) -> Option<&Mutex<server::OrgRt>> {
        let i = self.inner.infos.iter().position(|o| o.org_id == org_id)?;
        self.inner.orgs.get(i)
    }
}
