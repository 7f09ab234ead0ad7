//! The main job against a clean simulator.

use std::collections::BTreeMap;

use genesys_sim::Scenario;
use jiff::ToSpan;
use scorecards_shared::domain::{JobSpec, Window};
use scorecards_shared::engine::{ExportOutcome, NoProgress};
use scorecards_shared::output::read_committed;
use scorecards_shared::ports::{ExportSink, JobStatus, Manifest};
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

/// Requests per endpoint the simulator saw for `org`.
fn requests(h: &Harness, org: &str) -> BTreeMap<&'static str, u64> {
    let stats = h.sim.stats();
    let o = stats.org(org);
    ["search", "query", "get", "form", "token"]
        .into_iter()
        .map(|e| (e, o.endpoint(e).requests))
        .collect()
}

fn since(
    after: &BTreeMap<&'static str, u64>,
    before: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    after.iter().map(|(k, v)| (*k, v - before[k])).collect()
}

#[tokio::test]
async fn a_committed_day_is_verified_for_the_cost_of_its_searches_only() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let org_id = org.endpoint.org_id.as_str().to_owned();
    let jobs = h.jobs(&org);
    run_org(&h.exporter(&org, "first"), &jobs, &NoProgress).await;
    let manifests_before = manifests(&h, &jobs).await;
    let before = requests(&h, &org_id);
    let again = run_org(&h.exporter(&org, "second"), &jobs, &NoProgress).await;
    assert_eq!(again.up_to_date, jobs.len());
    assert_eq!(again.status, OrgStatus::UpToDate);
    let spent = since(&requests(&h, &org_id), &before);
    assert_eq!(
        (spent["query"], spent["get"], spent["form"]),
        (0, 0, 0),
        "only searches: {spent:?}"
    );
    assert!(spent["search"] > 0);
    assert_eq!(
        manifests(&h, &jobs).await,
        manifests_before,
        "nothing committed again"
    );
    for job in &jobs {
        let record = h.ports.jobs.get(job).await.unwrap().unwrap();
        assert!(matches!(record.status, JobStatus::Committed { .. }));
        assert!(record.lease.is_none() && record.checkpoint.is_none());
    }
}

async fn manifests(h: &Harness, jobs: &[JobSpec]) -> Vec<Option<Manifest>> {
    let mut out = Vec::new();
    for job in jobs {
        out.push(h.sink.manifest(&job.partition()).await.unwrap());
    }
    out
}

/// The envelope fields a carried line keeps, by evaluation id: `source` and `is_calibration`.
async fn kept_fields(h: &Harness, job: &JobSpec) -> BTreeMap<String, (String, bool)> {
    read_committed(h.sink.as_ref() as &dyn ExportSink, &job.partition())
        .await
        .unwrap()
        .unwrap()
        .evaluations
        .into_iter()
        .map(|e| (e.id, (e.source, e.is_calibration)))
        .collect()
}

#[tokio::test]
async fn a_rescored_evaluation_is_refetched_alone_and_the_rest_carried_over() {
    // Enough automated and calibration evaluations that the day carries some of each.
    let scenario = Scenario::test().map_orgs(|o| {
        o.automated_fraction = 0.3;
        o.calibration_fraction = 0.2;
    });
    let h = Harness::start(scenario).await;
    let org = h.org(0);
    let org_id = org.endpoint.org_id.as_str().to_owned();
    let jobs = h.jobs(&org);
    let job = jobs[1].clone();
    run_org(
        &h.exporter(&org, "first"),
        std::slice::from_ref(&job),
        &NoProgress,
    )
    .await;
    let first = h.sink.manifest(&job.partition()).await.unwrap().unwrap();
    let first_fields = kept_fields(&h, &job).await;
    let old_truth = h.truth(&org, std::slice::from_ref(&job));
    let rescored = old_truth
        .iter()
        .filter(|(_, json)| json.contains("\"questionGroupScores\""))
        .map(|(id, _)| id.clone())
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(rescored.len(), 2);
    for id in &rescored {
        assert!(h.sim.rescore(&org_id, id));
    }
    let new_truth = h.truth(&org, std::slice::from_ref(&job));
    assert_ne!(old_truth, new_truth);

    let before = requests(&h, &org_id);
    let report = h
        .exporter(&org, "second")
        .exporter
        .run(&job, &NoProgress)
        .await
        .unwrap();
    let ExportOutcome::Committed(second) = report.outcome else {
        panic!("{:?}", report.outcome)
    };
    let spent = since(&requests(&h, &org_id), &before);
    assert_ne!(second.run_id, first.run_id);
    assert_eq!(second.total_records, first.total_records);
    // Only the rescored evaluations are fetched: by their groups' bulk queries or alone.
    assert!(
        spent["query"] + spent["get"] <= 2 * rescored.len() as u64,
        "fetches for {} rescored: {spent:?}",
        rescored.len()
    );
    assert_same(&h.exported(std::slice::from_ref(&job)).await, &new_truth);
    // Every line carries the new run id; a carried line keeps its source and calibration
    // flag.
    let committed = read_committed(h.sink.as_ref() as &dyn ExportSink, &job.partition())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(committed.evaluations.len() as u64, second.total_records);
    for part in &second.parts {
        assert!(part.key.contains(&format!("run={}", second.run_id)));
    }
    for e in &committed.evaluations {
        assert_eq!(e.envelope.run_id, second.run_id, "run id of {}", e.id);
    }
    let carried: Vec<_> = kept_fields(&h, &job)
        .await
        .into_iter()
        .filter(|(id, _)| !rescored.contains(id))
        .collect();
    for (id, fields) in &carried {
        assert_eq!(Some(fields), first_fields.get(id), "carried line {id}");
    }
    assert!(
        carried.iter().any(|(_, (source, _))| source == "auto")
            && carried.iter().any(|(_, (_, calibration))| *calibration),
        "the day carries automated and calibration evaluations"
    );
}

#[tokio::test]
async fn a_day_whose_output_was_deleted_is_exported_again() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let jobs = h.jobs(&org);
    run_org(&h.exporter(&org, "first"), &jobs, &NoProgress).await;
    std::fs::remove_dir_all(h.sink.root().join("evaluations")).unwrap();
    let again = run_org(&h.exporter(&org, "second"), &jobs, &NoProgress).await;
    assert_eq!(again.committed, jobs.len());
    assert_eq!(again.status, OrgStatus::Committed);
    assert_same(&h.exported(&jobs).await, &h.truth(&org, &jobs));
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
    let (mut requests, mut tokens) = (0, 0);
    for job in &jobs {
        let manifest =
            scorecards_shared::ports::ExportSink::manifest(h.sink.as_ref(), &job.partition())
                .await
                .unwrap()
                .unwrap();
        assert!(manifest.stats.requests > 0);
        requests += manifest.stats.requests;
        tokens += manifest.stats.token_requests;
    }
    // Besides the days: the one check of the org the credentials act in
    // (`GET /api/v2/organizations/me`) and the token it fetched first.
    assert_eq!(
        (requests + 1, tokens + 1),
        (summary.stats.requests, summary.stats.token_requests)
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

#[tokio::test]
async fn credentials_of_another_org_are_refused_before_anything_is_written() {
    let h = Harness::start(Scenario::test()).await;
    let (this, other) = (h.org(0), h.org(1));
    // Org 0's id with org 1's hosts and client credentials: a copy-paste mistake.
    let mixed = h.org_with_credentials_of(0, 1);
    let jobs = h.jobs(&this);
    let summary = run_org(&h.exporter(&mixed, "mixed"), &jobs, &NoProgress).await;
    let OrgStatus::Failed { reason } = &summary.status else {
        panic!("{:?}", summary.status)
    };
    assert!(
        reason.contains(&format!("act in org {}", other.endpoint.org_id)),
        "{reason}"
    );
    assert!(
        !h.sink.root().join("evaluations").exists(),
        "nothing written"
    );
    let stats = h.sim.stats();
    assert_eq!(
        stats
            .org(other.endpoint.org_id.as_str())
            .endpoint("search")
            .requests,
        0,
        "no search with the wrong org's credentials"
    );
}
