//! Each fault the simulator offers: the export still equals ground truth (or fails cleanly,
//! committing nothing), and waits are the exact ones the API asked for.

use std::time::Duration;

use genesys_sim::{EndpointSel, FaultKind, FaultSpec, Scenario, TooManyBody};
use scorecards_shared::clock::Clock;
use scorecards_shared::engine::{ExportOutcome, NoProgress};
use scorecards_shared::ports::JobStatus;
use scorecards_shared::runner::{OrgStatus, OrgSummary, RunSettings, org_exporter, run_org};

use crate::harness::{Harness, assert_same, settings};

/// Exports org 0 of the test scenario with `faults`; returns the harness and the summary.
async fn export_with(faults: Vec<FaultSpec>) -> (Harness, OrgSummary) {
    export_with_settings(faults, &settings()).await
}

async fn export_with_settings(
    faults: Vec<FaultSpec>,
    settings: &RunSettings,
) -> (Harness, OrgSummary) {
    let mut scenario = Scenario::test();
    for f in faults {
        scenario = scenario.with_fault(0, f);
    }
    let h = Harness::start(scenario).await;
    let org = h.org(0);
    let exporter = org_exporter(&org, settings, &h.ports, "t").unwrap();
    let summary = run_org(&exporter, &h.jobs(&org), &NoProgress).await;
    (h, summary)
}

async fn assert_truth_despite(faults: Vec<FaultSpec>) -> Harness {
    assert_truth(export_with(faults).await).await
}

/// The export committed and equals ground truth, and a fault fired.
async fn assert_truth((h, summary): (Harness, OrgSummary)) -> Harness {
    assert_eq!(summary.status, OrgStatus::Committed, "{summary:?}");
    let org = h.org(0);
    let jobs = h.jobs(&org);
    assert_same(&h.exported(&jobs).await, &h.truth(&org, &jobs));
    let injected: u64 = h
        .sim
        .stats()
        .org(org.endpoint.org_id.as_str())
        .totals
        .faults_injected;
    assert!(injected > 0, "the fault fired");
    h
}

fn f(kind: FaultKind, endpoint: EndpointSel, at: &[u64]) -> FaultSpec {
    FaultSpec::new(kind, endpoint, at)
}

macro_rules! truth_despite {
    ($($name:ident: $faults:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            assert_truth_despite($faults).await;
        }
    )*};
}

truth_despite! {
    legacy_429_without_retry_after: vec![FaultSpec { body: TooManyBody::Legacy, ..f(FaultKind::TooManyRequests, EndpointSel::Query, &[2]) }];
    empty_429_body: vec![FaultSpec { body: TooManyBody::Empty, ..f(FaultKind::TooManyRequests, EndpointSel::Search, &[1]) }];
    bursts_of_502_503_504: vec![
        f(FaultKind::HttpError, EndpointSel::Search, &[1]).status(502).count(3),
        f(FaultKind::HttpError, EndpointSel::Query, &[3]).status(503).count(2),
        f(FaultKind::HttpError, EndpointSel::Get, &[1]).status(504),
    ];
    a_connection_reset: vec![f(FaultKind::ConnectionReset, EndpointSel::Query, &[1, 4])];
    a_truncated_json_body: vec![f(FaultKind::TruncatedBody, EndpointSel::Search, &[1]), f(FaultKind::TruncatedBody, EndpointSel::Query, &[2])];
    a_token_that_expires_early: vec![f(FaultKind::ExpireToken, EndpointSel::Query, &[3])];
    an_evaluation_inserted_between_pages: vec![f(FaultKind::InsertEvaluation, EndpointSel::Search, &[1])];
    an_evaluation_rescored_between_pages: vec![f(FaultKind::RescoreEvaluation, EndpointSel::Query, &[1])];
    the_same_entity_on_two_pages: vec![f(FaultKind::DuplicateAcrossPages, EndpointSel::Query, &[1]), f(FaultKind::DuplicateAcrossPages, EndpointSel::Search, &[1])];
    a_next_uri_that_repeats: vec![f(FaultKind::RepeatNextUri, EndpointSel::Query, &[1])];
    an_empty_page_with_a_next_uri: vec![f(FaultKind::EmptyPageWithNextUri, EndpointSel::Query, &[1])];
}

/// A query that hangs (30 s) is given up at the client's timeout, here a short one, and
/// retried. The hang outlasts the timeout by far, so only a client that does not time out
/// waits for its answer, and then it has no retry.
#[tokio::test]
async fn a_hang_past_the_client_timeout() {
    let mut short = settings();
    short.client.request_timeout = Duration::from_millis(800);
    let hang = f(FaultKind::Hang, EndpointSel::Query, &[2]);
    let (h, summary) = export_with_settings(vec![hang], &short).await;
    let retries = summary.stats.retries;
    assert_truth((h, summary)).await;
    assert!(retries > 0, "the hung request was retried");
}

#[tokio::test]
async fn the_paging_cap_splits_the_window() {
    let scenario = Scenario::test().map_orgs(|o| o.switches.search_paging_cap = 50);
    let h = Harness::start(scenario).await;
    let org = h.org(0);
    let jobs = h.jobs(&org);
    let summary = run_org(&h.exporter(&org, "t"), &jobs, &NoProgress).await;
    assert_eq!(summary.status, OrgStatus::Committed, "{summary:?}");
    assert_same(&h.exported(&jobs).await, &h.truth(&org, &jobs));
}

#[tokio::test]
async fn a_500_fails_the_org_and_commits_nothing() {
    let (h, summary) = export_with(vec![
        f(FaultKind::HttpError, EndpointSel::Query, &[1]).status(500),
    ])
    .await;
    let OrgStatus::Failed { reason } = &summary.status else {
        panic!("{summary:?}")
    };
    assert!(reason.contains("HTTP 500"), "{reason}");
    let org = h.org(0);
    let mut failed = 0;
    for job in h.jobs(&org) {
        let record = scorecards_shared::ports::JobStore::get(h.ports.jobs.as_ref(), &job)
            .await
            .unwrap();
        let Some(record) = record else { continue };
        assert!(record.lease.is_none(), "every lease is released");
        if matches!(record.status, JobStatus::Failed { .. }) {
            failed += 1;
            let manifest = h.sink.root().join(job.partition().manifest_key());
            assert!(!manifest.exists(), "nothing committed for a failed window");
        }
    }
    assert_eq!(failed, 1, "exactly the day that met the 500 failed");
}

#[tokio::test]
async fn a_second_401_after_refresh_stops_the_job_with_an_auth_error() {
    let scenario =
        Scenario::test().with_fault(0, f(FaultKind::ExpireToken, EndpointSel::Search, &[1, 2]));
    let h = Harness::start(scenario).await;
    let org = h.org(0);
    let job = &h.jobs(&org)[0];
    let err = h
        .exporter(&org, "t")
        .exporter
        .run(job, &NoProgress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let record = scorecards_shared::ports::JobStore::get(h.ports.jobs.as_ref(), job)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(record.status, JobStatus::Failed { .. }),
        "{:?}",
        record.status
    );
    // One token, one refresh after the first 401, then stop.
    let token = h
        .sim
        .stats()
        .org(org.endpoint.org_id.as_str())
        .endpoint("token")
        .requests;
    assert_eq!(token, 2);
}

/// The single 429 the fault injects, with `Retry-After: value`, is waited out exactly.
async fn waits_for(value: &str) -> Vec<Duration> {
    let fault = f(FaultKind::TooManyRequests, EndpointSel::Search, &[1]).retry_after(value);
    let h = assert_truth_despite(vec![fault]).await;
    h.long_sleeps()
}

#[tokio::test]
async fn retry_after_whole_seconds() {
    assert_eq!(waits_for("7").await, [Duration::from_secs(7)]);
}

#[tokio::test]
async fn retry_after_fractional_seconds() {
    assert_eq!(waits_for("1.5").await, [Duration::from_millis(1500)]);
}

#[tokio::test]
async fn retry_after_zero_negative_or_garbage_waits_the_floor() {
    for value in ["0", "-5", "abc"] {
        assert_eq!(
            waits_for(value).await,
            [Duration::from_secs(1)],
            "Retry-After: {value}"
        );
    }
}

#[tokio::test]
async fn retry_after_as_an_http_date() {
    let fault = FaultSpec {
        retry_after_http_date_s: Some(30),
        ..f(FaultKind::TooManyRequests, EndpointSel::Search, &[1])
    };
    let h = assert_truth_despite(vec![fault]).await;
    let sleeps = h.long_sleeps();
    assert_eq!(sleeps.len(), 1, "{sleeps:?}");
    // HTTP-dates have whole-second resolution. The date is the simulator's real time, the
    // wait is from the fake clock's, which lags behind by the run's real time so far: allow
    // a few seconds of it for a loaded machine.
    assert!(
        sleeps[0] > Duration::from_secs(28) && sleeps[0] <= Duration::from_secs(35),
        "{sleeps:?}"
    );
}

#[tokio::test]
async fn a_rate_limited_token_endpoint_is_waited_out() {
    let fault = f(FaultKind::TooManyRequests, EndpointSel::Token, &[1]).retry_after("3");
    let h = assert_truth_despite(vec![fault]).await;
    assert_eq!(h.long_sleeps(), [Duration::from_secs(3)]);
}

#[tokio::test]
async fn a_retry_after_of_an_hour_defers_with_a_checkpoint_and_resumes() {
    let fault = f(FaultKind::TooManyRequests, EndpointSel::Query, &[2]).retry_after("3600");
    let (h, summary) = export_with(vec![fault]).await;
    let OrgStatus::Deferred { until } = summary.status else {
        panic!("{summary:?}")
    };
    let wait = until.duration_since(h.clock.now()).as_secs_f64();
    assert!((3590.0..=3600.0).contains(&wait), "deferred for {wait} s");
    assert!(
        h.long_sleeps().is_empty(),
        "no in-process wait for an hour-long Retry-After"
    );
    // Run again before the deadline: still deferred (until then), not failed, and no request.
    let org = h.org(0);
    let jobs = h.jobs(&org);
    let before = h.sim.stats().total_requests();
    let early = run_org(&h.exporter(&org, "too-early"), &jobs, &NoProgress).await;
    assert_eq!(early.status, OrgStatus::Deferred { until }, "{early:?}");
    assert_eq!(
        h.sim.stats().total_requests(),
        before,
        "nothing sent before the deadline"
    );
    // An hour later the job resumes from its checkpoint and commits.
    h.clock.advance(Duration::from_secs(3601));
    let summary = run_org(&h.exporter(&org, "later"), &jobs, &NoProgress).await;
    assert_eq!(summary.status, OrgStatus::Committed, "{summary:?}");
    assert_same(&h.exported(&jobs).await, &h.truth(&org, &jobs));
    let report = h
        .exporter(&org, "again")
        .exporter
        .run(&jobs[0], &NoProgress)
        .await
        .unwrap();
    assert!(matches!(report.outcome, ExportOutcome::UpToDate { .. }));
}
