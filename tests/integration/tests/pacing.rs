//! Pacing against a real clock: the simulator enforces a tight quota in real time and
//! counts every window; the exporters run on the system clock, as users run them. The same
//! checks on an exporter with pacing switched off fail, which is what makes them mean
//! something.

use std::sync::Arc;

use genesys_sim::{RateLimitSpec, Scenario, SimHandle};
use scorecards_shared::adapters::{
    ledger::StoreLedger, local_dir::LocalDirSink, memory::MemoryStore,
};
use scorecards_shared::clock::{Clock, SystemClock};
use scorecards_shared::config::OrgSetup;
use scorecards_shared::domain::JobSpec;
use scorecards_shared::engine::NoProgress;
use scorecards_shared::output::committed_by_id;
use scorecards_shared::ports::ExportSink;
use scorecards_shared::runner::{OrgSummary, Ports, RunSettings, Strategy, org_exporter, run_org};

use crate::harness::{Harness, assert_same};

/// 20 requests per 2 s per token and org-wide, 10–30 ms latency: one org, 400 evaluations
/// over the simulator's period (several windows of requests).
fn tight() -> Scenario {
    Scenario::test()
        .with_latency(genesys_sim::LatencySpec::uniform(10, 30))
        .map_orgs(|o| {
            o.evaluations = 400;
            o.limit = RateLimitSpec::new(20, 2_000);
            o.org_limit = Some(RateLimitSpec::new(20, 2_000));
        })
}

/// What the simulator saw of the org: the most API requests of one token in any window,
/// 429s (the org-wide limit answers 429 to any combined excess), and requests before a
/// `Retry-After` deadline.
struct Seen {
    max_in_window: u64,
    responses_429: u64,
    violations: u64,
}

fn seen(sim: &SimHandle, org: &OrgSetup) -> Seen {
    let stats = sim.stats();
    let o = stats.org(org.endpoint.org_id.as_str());
    Seen {
        max_in_window: o
            .tokens
            .values()
            .map(|c| c.max_requests_in_any_window)
            .max()
            .unwrap_or(0),
        responses_429: o.totals.responses_429,
        violations: o.totals.quota_violations,
    }
}

/// Exports `jobs` split over `exporters` processes (each its own token and holder) sharing
/// one ledger, on the system clock; returns the summaries.
async fn export(
    org: &OrgSetup,
    jobs: &[JobSpec],
    exporters: usize,
    strategy: Strategy,
) -> (Arc<LocalDirSink>, Vec<OrgSummary>, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let sink = Arc::new(LocalDirSink::new(out.path()));
    let ledger = Arc::new(StoreLedger::new(MemoryStore::new()));
    let ports = Ports {
        ledger: ledger.clone(),
        jobs: ledger,
        sink: sink.clone(),
        clock: Arc::new(SystemClock) as Arc<dyn Clock>,
    };
    let mut settings = RunSettings {
        strategy,
        ..RunSettings::default()
    };
    settings.engine.in_flight = 4;
    let mut runs = Vec::new();
    for n in 0..exporters {
        let mine: Vec<JobSpec> = jobs.iter().skip(n).step_by(exporters).cloned().collect();
        // Each process has its own token; the limit is told (20 per 2 s), so a second
        // exporter joins after one renewal and one window instead of a minute.
        let org = OrgSetup {
            tokens: Default::default(),
            ..org.clone()
        };
        let exporter = org_exporter(&org, &settings, &ports, &format!("pacing-{n}")).unwrap();
        runs.push(async move { run_org(&exporter, &mine, &NoProgress).await });
    }
    let summaries = futures::future::join_all(runs).await;
    (sink, summaries, out)
}

async fn paced_exporters_stay_within_the_quota(exporters: usize) {
    let h = Harness::start(tight()).await;
    let org = h.org(0);
    let jobs = h.jobs(&org);
    let (sink, summaries, _out) = export(&org, &jobs, exporters, Strategy::Engine).await;
    let s = seen(&h.sim, &org);
    assert_eq!(s.violations, 0, "no request before a Retry-After deadline");
    assert_eq!(s.responses_429, 0, "no 429");
    assert!(
        s.max_in_window <= 20,
        "most requests in any window: {} of 20",
        s.max_in_window
    );
    assert!(
        summaries.iter().map(|s| s.stats.requests).sum::<u64>() > 40,
        "several windows' worth"
    );
    let exported = committed_by_id(sink.as_ref() as &dyn ExportSink, &jobs)
        .await
        .unwrap();
    assert_same(&exported, &h.truth(&org, &jobs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_exporter_on_a_real_clock_stays_within_a_tight_quota() {
    paced_exporters_stay_within_the_quota(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_exporters_sharing_a_ledger_stay_within_a_tight_quota() {
    paced_exporters_stay_within_the_quota(2).await;
}

/// The same checks fail without pacing: they can tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pacing_the_same_checks_fail() {
    let h = Harness::start(tight()).await;
    let org = h.org(0);
    let jobs = h.jobs(&org);
    let (_sink, _summaries, _out) = export(&org, &jobs, 1, Strategy::Unpaced).await;
    let s = seen(&h.sim, &org);
    assert!(
        s.responses_429 > 0 || s.max_in_window > 20,
        "an unpaced exporter meets the limit: {} 429s, {} in a window",
        s.responses_429,
        s.max_in_window
    );
}
