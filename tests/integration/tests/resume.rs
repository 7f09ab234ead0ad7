//! A run killed mid-export (its future dropped) resumes from the checkpoint: the parts it
//! wrote are kept as they are and their evaluations are not fetched again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use genesys_sim::Scenario;
use scorecards_shared::engine::{ExportObserver, ExportOutcome, NoProgress};
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
    assert!(!checkpoint.done_groups.is_empty());

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

#[tokio::test]
async fn a_run_that_reaches_its_deadline_defers_to_now_and_resumes() {
    use scorecards_shared::clock::Clock;
    use scorecards_shared::runner::org_exporter;

    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let job = &h.jobs(&org)[1];
    let mut settings = crate::harness::settings();
    settings.engine.deadline = Some(h.clock.now());
    let out_of_time = org_exporter(&org, &settings, &h.ports, "short").unwrap();
    let report = out_of_time.exporter.run(job, &NoProgress).await.unwrap();
    assert_eq!(
        report.outcome,
        ExportOutcome::Deferred {
            until: h.clock.now()
        }
    );
    let record = h.ports.jobs.get(job).await.unwrap().unwrap();
    assert!(record.lease.is_none(), "the lease is released");
    let checkpoint = record.checkpoint.expect("checkpoint kept");
    assert!(checkpoint.discovery.is_some());

    let report = h
        .exporter(&org, "next")
        .exporter
        .run(job, &NoProgress)
        .await
        .unwrap();
    assert!(
        matches!(report.outcome, ExportOutcome::Committed(_)),
        "{:?}",
        report.outcome
    );
    assert_same(
        &h.exported(std::slice::from_ref(job)).await,
        &h.truth(&org, std::slice::from_ref(job)),
    );
}
