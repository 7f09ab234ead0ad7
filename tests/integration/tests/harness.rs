//! Shared setup: a simulator, in-memory ledger and job store, a temporary output
//! directory, a fake clock (waits are instant and recorded), and ground-truth comparison.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use genesys_sim::{Scenario, SimHandle, SourceFilter};
use jiff::Timestamp;
use scorecards_shared::adapters::{
    ledger::StoreLedger, local_dir::LocalDirSink, memory::MemoryStore,
};
use scorecards_shared::clock::{Clock, FakeClock};
use scorecards_shared::config::OrgSetup;
use scorecards_shared::domain::{DateField, JobSpec, OrgId, Source, Window};
use scorecards_shared::genesys::OrgEndpoint;
use scorecards_shared::output::committed_by_id;
use scorecards_shared::ports::{ExportSink, LearnedLimit};
use scorecards_shared::runner::{OrgExporter, Ports, RunSettings, org_exporter};
use secrecy::SecretString;

pub struct Harness {
    pub sim: SimHandle,
    pub clock: FakeClock,
    pub ports: Ports,
    pub sink: Arc<LocalDirSink>,
    _out: tempfile::TempDir,
}

impl Harness {
    pub async fn start(scenario: Scenario) -> Self {
        let sim = genesys_sim::start(scenario)
            .await
            .expect("simulator starts");
        let clock = FakeClock::new(Timestamp::now());
        let out = tempfile::tempdir().expect("temp dir");
        let sink = Arc::new(LocalDirSink::new(out.path()));
        let ledger = Arc::new(StoreLedger::new(MemoryStore::new()));
        let ports = Ports {
            ledger: ledger.clone(),
            jobs: ledger,
            sink: sink.clone(),
            clock: Arc::new(clock.clone()) as Arc<dyn Clock>,
        };
        Self {
            sim,
            clock,
            ports,
            sink,
            _out: out,
        }
    }

    pub fn org(&self, index: usize) -> OrgSetup {
        org_setup(&self.sim.orgs()[index])
    }

    /// Org `index`'s id with org `other`'s hosts and client credentials: a copy-paste
    /// mistake in an orgs file or a secret.
    pub fn org_with_credentials_of(&self, index: usize, other: usize) -> OrgSetup {
        let (this, other) = (self.org(index), self.org(other));
        OrgSetup {
            endpoint: OrgEndpoint::new(
                this.endpoint.org_id.clone(),
                other.endpoint.region.clone(),
                other.endpoint.api_base_url.as_str(),
                other.endpoint.login_base_url.as_str(),
                other.endpoint.client_id.clone(),
                other.endpoint.client_secret.clone(),
            )
            .unwrap(),
            ..other
        }
    }

    /// One job per UTC day of the simulator's whole data period.
    pub fn jobs(&self, org: &OrgSetup) -> Vec<JobSpec> {
        let (from, to) = self.sim.period();
        let now = Timestamp::now();
        Window::new(from, to.min(now))
            .unwrap()
            .utc_days(now)
            .into_iter()
            .map(|(day, window)| JobSpec {
                org_id: org.endpoint.org_id.clone(),
                day,
                window,
                date_field: DateField::SubmittedDate,
                source: Source::Both,
            })
            .collect()
    }

    pub fn exporter(&self, org: &OrgSetup, holder: &str) -> OrgExporter {
        org_exporter(org, &settings(), &self.ports, holder).unwrap()
    }

    /// Committed output of `jobs`, id → evaluation bytes; panics on a duplicate id or a
    /// missing manifest.
    pub async fn exported(&self, jobs: &[JobSpec]) -> BTreeMap<String, String> {
        committed_by_id(self.sink.as_ref() as &dyn ExportSink, jobs)
            .await
            .unwrap_or_else(|e| panic!("committed output: {e}"))
    }

    pub fn truth(&self, org: &OrgSetup, jobs: &[JobSpec]) -> BTreeMap<String, String> {
        let from = jobs.first().unwrap().window.from;
        let to = jobs.last().unwrap().window.to;
        self.sim
            .ground_truth(
                org.endpoint.org_id.as_str(),
                from,
                to,
                genesys_sim::DateField::SubmittedDate,
                SourceFilter::Both,
            )
            .into_iter()
            .map(|t| (t.id, t.json))
            .collect()
    }

    /// Sleeps of at least 100 ms the code asked the clock for (pacing sleeps are shorter).
    pub fn long_sleeps(&self) -> Vec<Duration> {
        self.clock
            .sleeps()
            .into_iter()
            .filter(|d| *d >= Duration::from_millis(100))
            .collect()
    }
}

/// A simulator org as an exportable org (its limit as the simulator enforces it).
pub fn org_setup(o: &genesys_sim::OrgInfo) -> OrgSetup {
    OrgSetup {
        endpoint: OrgEndpoint::new(
            o.org_id.parse::<OrgId>().unwrap(),
            o.region.clone(),
            &o.api_base_url,
            &o.login_base_url,
            o.client_id.clone(),
            SecretString::from(o.client_secret.clone()),
        )
        .unwrap(),
        limit: LearnedLimit {
            allowed: o.token_limit.allowed,
            window_ms: o.token_limit.window_ms,
        },
        tokens: Default::default(),
    }
}

/// Settings for tests: small pages and parts so paging and checkpoints are exercised. The
/// client keeps its 30 s timeout: a shorter one turns a slow answer on a loaded machine into
/// a retry, which adds requests and backoff waits that tests count.
pub fn settings() -> RunSettings {
    let mut s = RunSettings::default();
    s.engine.search.page_size = 25;
    s.engine.query_page_size = 10;
    s.engine.part_records = 40;
    s
}

/// Asserts two maps are equal, reporting only the differences.
pub fn assert_same(exported: &BTreeMap<String, String>, truth: &BTreeMap<String, String>) {
    let missing: Vec<_> = truth
        .keys()
        .filter(|k| !exported.contains_key(*k))
        .collect();
    let extra: Vec<_> = exported
        .keys()
        .filter(|k| !truth.contains_key(*k))
        .collect();
    let differ: Vec<_> = truth
        .iter()
        .filter(|(k, v)| exported.get(*k).is_some_and(|e| e != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "missing {missing:?}, extra {extra:?}, different bytes {differ:?}"
    );
    assert!(
        !truth.is_empty(),
        "the scenario has evaluations in the window"
    );
}
