//! The seeded fault campaign (`scorecards::chaos`): over 200 fixed seeds, two exporters per
//! org at once, each behind a job store, rate ledger and sink that fail seeded calls before
//! or after they take effect, against a simulator with seeded API faults. Every day must be
//! committed exactly once, byte-equal to the ground truth, within the attempt bound.

use std::time::Instant;

use scorecards_shared::adapters::faulty::FaultKind;
use scorecards_shared::chaos::{CampaignConfig, run_campaign};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_seeds_of_faults_commit_every_day_exactly_once() {
    let config = CampaignConfig {
        first_seed: 1,
        seeds: 200,
        parallel: 4,
        max_attempts: 60,
    };
    let started = Instant::now();
    let report = run_campaign(&config).await;
    let faults: Vec<String> = report
        .faults
        .iter()
        .map(|(kind, n)| format!("{kind}={n}"))
        .collect();
    eprintln!(
        "chaos: {} seeds, {} jobs, {} runs, {} restarts (at most {} runs per org), {} commits, {} conflicts, {} API faults, faults {}, outcomes {:?}, {:.1?}",
        report.seeds,
        report.jobs,
        report.runs,
        report.restarts,
        report.max_runs_per_org,
        report.commits,
        report.commit_conflicts,
        report.api_faults,
        faults.join(" "),
        report.outcomes,
        started.elapsed()
    );
    let listed: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert!(listed.is_empty(), "violations:\n{}", listed.join("\n"));
    assert_eq!(report.seeds, 200);
    // The campaign exercised what it claims to.
    for kind in [
        FaultKind::StoreReadFailed,
        FaultKind::StoreWriteFailed,
        FaultKind::StoreWriteAnswerLost,
        FaultKind::SinkReadFailed,
        FaultKind::PutFailed,
        FaultKind::PutAnswerLost,
        FaultKind::CommitFailed,
        FaultKind::CommitAnswerLost,
    ] {
        assert!(report.faults.get(kind) > 0, "no {kind} fault was injected");
    }
    assert!(report.api_faults > 0 && report.restarts > 0);
    assert!(
        report.outcomes.contains_key("failed: lease lost"),
        "stale holders: {:?}",
        report.outcomes
    );
    assert!(report.commits >= report.jobs);
}
