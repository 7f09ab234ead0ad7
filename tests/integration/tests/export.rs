//! The main job against a clean simulator.

use genesys_sim::Scenario;
use jiff::ToSpan;
use scorecards_shared::domain::{JobSpec, Window};
use scorecards_shared::engine::{ExportOutcome, NoProgress};
use scorecards_shared::runner::{OrgStatus, run_org};

use crate::harness::{Harness, assert_same};

#[tokio::test]
async fn every_org_equals_ground_truth_with_its_forms() {
    let h = Harness::start(Scenario::test()).await;
    for index in 0..h.sim.orgs().len() {
        let org = h.org(index);
        let jobs = h.jobs(&org);
        let summary = run_org(&h.exporter(&org, &format!("t{index}")), &jobs, &NoProgress).await;
        assert_eq!(summary.status, OrgStatus::Committed);
        assert_same(&h.exported(&jobs).await, &h.truth(&org, &jobs));
        // Every referenced form version is exported byte for byte.
        let forms = h.sim.forms_truth(org.endpoint.org_id.as_str());
        let mut referenced = 0;
        for job in &jobs {
            let manifest = h.sink.root().join(format!(
                "evaluations/org_id={}/date_field=submittedDate/source=both/date={}/_manifest.json",
                org.endpoint.org_id, job.day
            ));
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
            for id in manifest["form_ids"].as_array().unwrap() {
                let id = id.as_str().unwrap();
                let path = h
                    .sink
                    .root()
                    .join(format!("forms/org_id={}/{id}.json", org.endpoint.org_id));
                let want = &forms.iter().find(|f| f.id == id).expect("form exists").json;
                assert_eq!(&std::fs::read_to_string(path).unwrap(), want);
                referenced += 1;
            }
        }
        assert!(referenced > 0);
    }
}

#[tokio::test]
async fn a_window_without_evaluations_commits_an_empty_manifest() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let (from, _) = h.sim.period();
    let day_before = from.checked_sub(48.hours()).unwrap();
    let (day, window) = Window::new(day_before, day_before.checked_add(24.hours()).unwrap())
        .unwrap()
        .utc_days(from)[0];
    let job = JobSpec {
        day,
        window,
        ..h.jobs(&org)[0].clone()
    };
    let report = h
        .exporter(&org, "t")
        .exporter
        .run(&job, &NoProgress)
        .await
        .unwrap();
    let ExportOutcome::Committed(manifest) = report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert_eq!(manifest.total_records, 0);
    assert!(manifest.parts.is_empty());
    assert!(h.exported(&[job]).await.is_empty());
}

#[tokio::test]
async fn a_committed_day_is_not_exported_again() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let jobs = h.jobs(&org);
    run_org(&h.exporter(&org, "first"), &jobs, &NoProgress).await;
    let before = h.sim.stats().total_requests();
    let again = run_org(&h.exporter(&org, "second"), &jobs, &NoProgress).await;
    assert_eq!(again.up_to_date, jobs.len());
    assert_eq!(again.status, OrgStatus::UpToDate);
    assert_eq!(
        h.sim.stats().total_requests(),
        before,
        "no request for up-to-date days"
    );
}

#[tokio::test]
async fn two_exporters_on_one_job_one_commits_and_nothing_is_duplicated() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let jobs = h.jobs(&org);
    let (a, b) = (h.exporter(&org, "a"), h.exporter(&org, "b"));
    let (ra, rb) = tokio::join!(
        a.exporter.run(&jobs[0], &NoProgress),
        b.exporter.run(&jobs[0], &NoProgress)
    );
    let outcomes = [ra.unwrap().outcome, rb.unwrap().outcome];
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, ExportOutcome::Committed(_)))
        .count();
    let running = outcomes
        .iter()
        .filter(|o| matches!(o, ExportOutcome::AlreadyRunning(_)))
        .count();
    assert_eq!((committed, running), (1, 1), "{outcomes:?}");
    assert_same(&h.exported(&jobs[..1]).await, &h.truth(&org, &jobs[..1]));
}

#[tokio::test]
async fn each_manifest_counts_only_its_own_requests() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let jobs = h.jobs(&org);
    assert!(jobs.len() > 1, "several days share one client");
    let summary = run_org(&h.exporter(&org, "t"), &jobs, &NoProgress).await;
    let mut requests = 0;
    for job in &jobs {
        let manifest =
            scorecards_shared::ports::ExportSink::manifest(h.sink.as_ref(), &job.partition())
                .await
                .unwrap()
                .unwrap();
        assert!(manifest.stats.requests > 0);
        requests += manifest.stats.requests + manifest.stats.token_requests;
    }
    assert_eq!(
        requests,
        summary.stats.requests + summary.stats.token_requests
    );
}

#[tokio::test]
async fn days_running_at_once_fetch_each_form_once() {
    let mut latency = genesys_sim::LatencySpec::zero();
    latency.endpoints.insert(
        "form".into(),
        genesys_sim::LatencyRange {
            min_ms: 150,
            max_ms: 150,
        },
    );
    let h = Harness::start(Scenario::test().with_latency(latency)).await;
    let org = h.org(0);
    let jobs = h.jobs(&org);
    let summary = run_org(&h.exporter(&org, "t"), &jobs, &NoProgress).await;
    assert_eq!(summary.status, OrgStatus::Committed);
    let mut referenced = std::collections::BTreeSet::new();
    for job in &jobs {
        let manifest =
            scorecards_shared::ports::ExportSink::manifest(h.sink.as_ref(), &job.partition())
                .await
                .unwrap()
                .unwrap();
        referenced.extend(manifest.form_ids);
    }
    let fetched = h
        .sim
        .stats()
        .org(org.endpoint.org_id.as_str())
        .endpoint("form")
        .requests;
    assert_eq!(
        fetched as usize,
        referenced.len(),
        "one GET per referenced form version"
    );
}
