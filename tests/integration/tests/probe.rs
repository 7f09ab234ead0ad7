//! `scorecards probe` tells an org's answer to each undocumented behaviour (reference §8):
//! against an org with one unknown at answer B it reports B for that unknown and A for the
//! others; against an org at answer A everywhere it reports A everywhere (with the data that
//! makes each answer observable: ties, deleted users, restricted evaluations); it stays
//! within its request budget; and the pessimistic scenario reads B for every unknown.

use std::sync::Arc;

use genesys_sim::{OrgSpec, RateLimitSpec, Scenario, Unknown};
use scorecards_shared::clock::{Clock, SystemClock};
use scorecards_shared::probe::{Answer, ProbeReport, ProbeSettings, probe_org};
use scorecards_shared::runner::RunSettings;

use crate::harness::Harness;

/// The data every answer needs to be observable, at answer A: tied submitted dates (U4),
/// a deleted evaluator and agent (U7), restricted evaluations (U8), the documented limit
/// (U11).
fn observable(o: &mut OrgSpec) {
    o.evaluations = 300;
    o.tied_fraction = 0.3;
    o.deleted_evaluators = 1;
    o.deleted_agents = 1;
    o.restricted_evaluations = 30;
    o.limit = RateLimitSpec::new(300, 60_000);
}

/// Probes org 0 of `scenario`; returns the report and the requests the simulator saw.
async fn probe(scenario: Scenario, settings: ProbeSettings) -> (ProbeReport, u64) {
    let h = Harness::start(scenario).await;
    let org = h.org(0);
    let report = probe_org(
        &org,
        &RunSettings::default(),
        &h.ports.ledger,
        &h.ports.clock,
        "probe-test",
        settings,
    )
    .await;
    let seen = h
        .sim
        .stats()
        .org(org.endpoint.org_id.as_str())
        .totals
        .requests;
    (report, seen)
}

fn answers(report: &ProbeReport) -> Vec<(String, Answer)> {
    report
        .findings
        .iter()
        .map(|f| (f.unknown.to_owned(), f.answer))
        .collect()
}

fn name(u: Unknown) -> String {
    format!("{u:?}")
}

#[tokio::test]
async fn an_org_at_answer_a_reads_a_for_every_unknown() {
    let (report, seen) = probe(
        Scenario::test().map_orgs(observable),
        ProbeSettings::default(),
    )
    .await;
    assert_eq!(report.error, None);
    let want: Vec<(String, Answer)> = Unknown::ALL.iter().map(|u| (name(*u), Answer::A)).collect();
    assert_eq!(answers(&report), want, "{report:#?}");
    assert!(seen <= 60, "{seen} requests");
    assert_eq!(report.requests, seen, "the report counts what the org saw");
}

#[tokio::test]
async fn each_unknown_at_answer_b_reads_b_and_the_others_a() {
    for u in Unknown::ALL.into_iter().filter(|u| *u != Unknown::U11) {
        let scenario = Scenario::test().map_orgs(|o| {
            observable(o);
            *o = o.clone().with_unknown_b(u);
        });
        let (report, seen) = probe(scenario, ProbeSettings::default()).await;
        assert_eq!(report.error, None, "{u:?}");
        for f in &report.findings {
            let want = if f.unknown == name(u) {
                Answer::B
            } else {
                Answer::A
            };
            assert_eq!(f.answer, want, "{u:?} at B: {f:#?}");
        }
        assert!(seen <= 60, "{u:?} at B: {seen} requests");
    }
}

#[tokio::test]
async fn another_limit_reads_b_for_u11_within_a_small_budget() {
    // 10 requests per 5,000 ms: the probe stops at its budget before the limit, and reads
    // the limit from the first response.
    let scenario = Scenario::test().map_orgs(|o| {
        observable(o);
        *o = o.clone().with_unknown_b(Unknown::U11);
    });
    assert_eq!(scenario.orgs[0].limit, RateLimitSpec::new(10, 5_000));
    let settings = ProbeSettings {
        max_requests: 8,
        ..ProbeSettings::default()
    };
    let (report, seen) = probe(scenario, settings).await;
    let u11 = report.findings.iter().find(|f| f.unknown == "U11").unwrap();
    assert_eq!(u11.answer, Answer::B, "{u11:#?}");
    assert_eq!(u11.observed, "10 requests per 5 s");
    assert!(u11.setting.contains("rate_limit = 10"), "{}", u11.setting);
    assert!(seen <= 8, "{seen} requests for a budget of 8");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.answer == Answer::NotObserved && f.observed.contains("budget")),
        "the budget stopped some checks: {report:#?}"
    );
}

#[tokio::test]
async fn the_pessimistic_scenario_reads_b_for_every_unknown() {
    // As `scorecards probe --simulate --scenario pessimistic --json` does: every org of the
    // scenario, the system clock, reports as JSON.
    let sim = genesys_sim::start(Scenario::pessimistic()).await.unwrap();
    let h = Harness::start(Scenario::test()).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    for (i, info) in sim.orgs().iter().enumerate() {
        let org = crate::harness::org_setup(info);
        let report = probe_org(
            &org,
            &RunSettings::default(),
            &h.ports.ledger,
            &clock,
            &format!("probe-{i}"),
            ProbeSettings::default(),
        )
        .await;
        let json = serde_json::to_value(&report).unwrap();
        for f in json["findings"].as_array().unwrap() {
            assert_eq!(f["answer"], "B", "{}: {f:#}", info.name);
            assert!(!f["evidence"]["request"].as_str().unwrap().is_empty());
            assert!(f["evidence"]["excerpt"].as_str().unwrap().chars().count() <= 200);
        }
        assert_eq!(json["findings"].as_array().unwrap().len(), 12);
        let seen = sim.stats().org(&info.org_id).totals.requests;
        assert!(seen <= 60, "{}: {seen} requests", info.name);
        let text = json.to_string();
        assert!(
            !text.contains(&info.client_secret),
            "no secret in the report"
        );
    }
}

#[tokio::test]
async fn credentials_of_another_org_are_refused_by_the_probe() {
    let h = Harness::start(Scenario::test()).await;
    let other = h.org(1);
    let mixed = h.org_with_credentials_of(0, 1);
    let report = probe_org(
        &mixed,
        &RunSettings::default(),
        &h.ports.ledger,
        &h.ports.clock,
        "probe-mixed",
        ProbeSettings::default(),
    )
    .await;
    let error = report.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&format!("act in org {}", other.endpoint.org_id)),
        "{error:?}"
    );
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.answer == Answer::NotObserved),
        "no answer is reported for the wrong org"
    );
    let searched = h
        .sim
        .stats()
        .org(other.endpoint.org_id.as_str())
        .endpoint("search")
        .requests;
    assert_eq!(
        searched, 0,
        "nothing asked with the wrong org's credentials"
    );
}
