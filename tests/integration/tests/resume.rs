//! A run killed mid-export (its future dropped) resumes from the checkpoint: the parts it
//! wrote are kept as they are and their evaluations are not fetched again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use genesys_sim::Scenario;
use scorecards_shared::engine::{ExportObserver, ExportOutcome, NoProgress};
use scorecards_shared::ports::JobStatus;
use tokio::sync::Notify;

use crate::harness::{Harness, assert_same};

struct KillAfter {
    written: AtomicU64,
    at: u64,
    kill: Notify,
}

impl ExportObserver for KillAfter {
    fn written(&self, n: u64) {
        if self.written.fetch_add(n, Ordering::SeqCst) + n >= self.at {
            self.kill.notify_one();
        }
    }
}

#[tokio::test]
async fn a_killed_run_resumes_without_refetching_written_parts() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let jobs = h.jobs(&org);
    // The day with the most evaluations, so it spans several parts.
    let truth_per_job: Vec<usize> = jobs
        .iter()
        .map(|j| h.truth(&org, std::slice::from_ref(j)).len())
        .collect();
    let job = &jobs[truth_per_job
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .unwrap()
        .0];
    assert!(
        truth_per_job.iter().max().unwrap() > &crate::harness::settings().engine.part_records,
        "needs several parts: {truth_per_job:?}"
    );

    let observer = KillAfter {
        written: AtomicU64::new(0),
        at: 1,
        kill: Notify::new(),
    };
    let first = h.exporter(&org, "killed");
    tokio::select! {
        r = first.exporter.run(job, &observer) => panic!("the run finished before the kill: {r:?}"),
        () = observer.kill.notified() => {}
    }
    let checkpoint = h
        .ports
        .jobs
        .get(job)
        .await
        .unwrap()
        .unwrap()
        .checkpoint
        .expect("checkpoint saved");
    assert!(!checkpoint.parts.is_empty());
    let discovery = checkpoint
        .discovery
        .clone()
        .expect("discovery checkpointed");
    assert!(h.sink.root().join(&discovery.key).exists());
    assert!(!checkpoint.groups_done.is_empty());

    // The killed run's lease runs out; a new run takes over.
    h.clock.advance(Duration::from_secs(181));
    let gets_before = h.sim.stats().total_requests();
    let second = h.exporter(&org, "resumer");
    let report = second.exporter.run(job, &NoProgress).await.unwrap();
    let ExportOutcome::Committed(manifest) = report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert_eq!(
        manifest.run_id, checkpoint.run_id,
        "the same run is finished"
    );
    assert_eq!(
        manifest.parts[..checkpoint.parts.len()],
        checkpoint.parts[..],
        "written parts kept as they were"
    );
    assert!(
        !h.sink.root().join(&discovery.key).exists(),
        "the discovery object is deleted once the run commits"
    );
    assert_same(
        &h.exported(std::slice::from_ref(job)).await,
        &h.truth(&org, std::slice::from_ref(job)),
    );
    // No search again (discovery is in the checkpoint) and fewer fetches than a full run.
    let resumed_requests = h.sim.stats().total_requests() - gets_before;
    let fresh = Harness::start(Scenario::test()).await;
    let fresh_org = fresh.org(0);
    let full = fresh
        .exporter(&fresh_org, "full")
        .exporter
        .run(job, &NoProgress)
        .await
        .unwrap();
    assert!(
        resumed_requests < full.stats.requests + full.stats.token_requests,
        "resumed {resumed_requests} vs full {}",
        full.stats.requests + full.stats.token_requests
    );
}

/// Runs `job` again and again, each run with `budget` of (fake) time before its deadline,
/// as successive Lambda invocations would; returns the outcomes.
async fn hop_until_done(
    h: &Harness,
    org: &scorecards_shared::config::OrgSetup,
    job: &scorecards_shared::domain::JobSpec,
    budget: Duration,
    max_runs: usize,
) -> Vec<Result<ExportOutcome, String>> {
    use scorecards_shared::clock::{Clock, add};
    use scorecards_shared::runner::org_exporter;

    let mut outcomes = Vec::new();
    for hop in 0..max_runs {
        let mut settings = crate::harness::settings();
        settings.engine.deadline = Some(add(h.clock.now(), budget));
        let exporter = org_exporter(org, &settings, &h.ports, &format!("hop-{hop}")).unwrap();
        let result = exporter.exporter.run(job, &NoProgress).await;
        let done =
            !matches!(result, Ok(ref r) if matches!(r.outcome, ExportOutcome::Deferred { .. }));
        outcomes.push(result.map(|r| r.outcome).map_err(|e| e.to_string()));
        if done {
            break;
        }
    }
    outcomes
}

#[tokio::test]
async fn a_job_that_affords_few_requests_per_run_commits_after_enough_runs() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let job = &h.jobs(&org)[1];
    // The test scenario's limit paces one request per 6 ms of (fake) time: a few requests
    // per run.
    let outcomes = hop_until_done(&h, &org, job, Duration::from_millis(40), 200).await;
    let last = outcomes.last().unwrap();
    assert!(
        matches!(last, Ok(ExportOutcome::Committed(_))),
        "{last:?} after {} runs",
        outcomes.len()
    );
    assert!(
        outcomes.len() > 3,
        "it took several runs: {}",
        outcomes.len()
    );
    let record = h.ports.jobs.get(job).await.unwrap().unwrap();
    assert!(record.lease.is_none() && record.checkpoint.is_none());
    assert_same(
        &h.exported(std::slice::from_ref(job)).await,
        &h.truth(&org, std::slice::from_ref(job)),
    );
}

#[tokio::test]
async fn a_job_that_cannot_progress_fails_with_its_reason_after_five_runs() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let job = &h.jobs(&org)[1];
    let outcomes = hop_until_done(&h, &org, job, Duration::ZERO, 20).await;
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    assert!(
        outcomes[..4]
            .iter()
            .all(|o| matches!(o, Ok(ExportOutcome::Deferred { .. })))
    );
    let last = outcomes[4].as_ref().unwrap_err();
    assert!(last.contains("no progress in 5 runs"), "{last}");
    let record = h.ports.jobs.get(job).await.unwrap().unwrap();
    assert!(
        matches!(&record.status, JobStatus::Failed { reason } if reason.contains("no progress")),
        "{:?}",
        record.status
    );
}
