//! The export stays exact whatever the undocumented API behaviours turn out to be
//! (reference §8, U1–U12): for each unknown, the simulator answers the other way (B) and
//! the committed output must still equal its ground truth — or, for evaluations the API
//! refuses (U8), the truth minus exactly the refused ids, which the manifest lists.
//! U11 (the limit's window) is the rate control's: see `shared/src/rate/tests.rs`.

use std::collections::{BTreeMap, BTreeSet};

use genesys_sim::{OrgSpec, Scenario, SourceFilter, Unknown};
use scorecards_shared::domain::{JobSpec, Source};
use scorecards_shared::engine::NoProgress;
use scorecards_shared::output::read_committed;
use scorecards_shared::ports::{CommitStatus, ExportSink};
use scorecards_shared::runner::{OrgStatus, RunSettings, org_exporter, run_org};

use crate::harness::{Harness, assert_same};

/// One org big enough for several search pages a day, the unknowns' B answers applied.
fn scenario(unknowns: &[Unknown]) -> Scenario {
    Scenario::test().map_orgs(|o| {
        o.evaluations = 500;
        for &u in unknowns {
            *o = o.clone().with_unknown_b(u);
        }
        // A paging cap a day's listing reaches (400 under A, an empty page under U5 B).
        o.switches.search_paging_cap = 100;
        // The window-length unknown is paced by the rate control (real clock); here the
        // exporter runs on a fake clock, so keep the test scenario's generous limit.
        o.limit = Scenario::test().orgs[0].limit;
    })
}

/// The product's default page sizes (100 for search and query), so that clamps and
/// lower maxima are met; small parts so checkpoints are exercised.
fn settings() -> RunSettings {
    let mut s = crate::harness::settings();
    s.engine.search.page_size = 100;
    s.engine.query_page_size = 100;
    s
}

/// Exports with search pages of `search_page_size` (many page boundaries for ties).
fn with_search_pages(search_page_size: u32) -> RunSettings {
    let mut s = settings();
    s.engine.search.page_size = search_page_size;
    s
}

fn jobs(h: &Harness, org: &scorecards_shared::config::OrgSetup, source: Source) -> Vec<JobSpec> {
    h.jobs(org)
        .into_iter()
        .map(|j| JobSpec { source, ..j })
        .collect()
}

fn truth(h: &Harness, jobs: &[JobSpec], source: SourceFilter) -> BTreeMap<String, String> {
    let from = jobs.first().unwrap().window.from;
    let to = jobs.last().unwrap().window.to;
    h.sim
        .ground_truth(
            jobs[0].org_id.as_str(),
            from,
            to,
            genesys_sim::DateField::SubmittedDate,
            source,
        )
        .into_iter()
        .map(|t| (t.id, t.json))
        .collect()
}

/// Exports every day of org 0 with `source` and checks the output against the truth:
/// refused ids are exactly the simulator's restricted ids in the window, listed in the
/// manifests; every line's `source` matches the simulator's automated flag.
async fn export_equals_truth(unknowns: &[Unknown], source: Source, settings: RunSettings) {
    let h = Harness::start(scenario(unknowns)).await;
    let org = h.org(0);
    let jobs = jobs(&h, &org, source);
    let exporter = org_exporter(&org, &settings, &h.ports, "t").unwrap();
    let summary = run_org(&exporter, &jobs, &NoProgress).await;

    let filter = match source {
        Source::Human => SourceFilter::Human,
        Source::Auto => SourceFilter::Auto,
        Source::Both => SourceFilter::Both,
    };
    let mut want = truth(&h, &jobs, filter);
    let restricted: BTreeSet<String> = h
        .sim
        .restricted_ids(org.endpoint.org_id.as_str())
        .into_iter()
        .filter(|id| want.contains_key(id))
        .collect();
    want.retain(|id, _| !restricted.contains(id));

    let region = h.sim.orgs()[0].region.clone();
    let mut got = BTreeMap::new();
    let mut listed_unavailable = BTreeSet::new();
    let automated: BTreeSet<String> = truth(&h, &jobs, SourceFilter::Auto).into_keys().collect();
    for job in &jobs {
        let committed = read_committed(h.sink.as_ref() as &dyn ExportSink, &job.partition())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} is committed ({:?})", job.day, summary.status));
        let m = &committed.manifest;
        assert_eq!(
            m.total_records + m.unavailable.len() as u64 + m.outside_window,
            m.discovered,
            "{}: written + unavailable + outside the window = discovered",
            job.day
        );
        for count in &m.search_counts {
            assert_eq!(
                count.counted,
                Some(count.listed),
                "{}: independent count",
                job.day
            );
        }
        assert_eq!(
            m.status,
            if m.unavailable.is_empty() {
                CommitStatus::Committed
            } else {
                CommitStatus::CommittedWithGaps
            }
        );
        for gap in &m.unavailable {
            assert_eq!((gap.status, gap.code.as_str()), (403, "not.authorized"));
            listed_unavailable.insert(gap.id.clone());
        }
        for e in committed.evaluations {
            let want_source = if automated.contains(&e.id) {
                "auto"
            } else {
                "human"
            };
            assert_eq!(e.source, want_source, "source of {}", e.id);
            let truth: serde_json::Value = serde_json::from_str(&e.evaluation).unwrap();
            assert_eq!(
                e.is_calibration,
                truth["calibration"].is_object(),
                "is_calibration of {}",
                e.id
            );
            let envelope = &e.envelope;
            assert_eq!(
                (
                    &envelope.org_id,
                    envelope.region.as_str(),
                    &envelope.run_id,
                    envelope.window.from,
                    envelope.window.to,
                    envelope.window.date_field
                ),
                (
                    &job.org_id,
                    region.as_str(),
                    &m.run_id,
                    job.window.from,
                    job.window.to,
                    job.date_field
                ),
                "envelope of {}",
                e.id
            );
            assert!(
                got.insert(e.id.clone(), e.evaluation).is_none(),
                "{} exported twice",
                e.id
            );
        }
    }
    assert_same(&got, &want);
    assert_eq!(listed_unavailable, restricted, "refused ids listed exactly");
    let want_status = if restricted.is_empty() {
        OrgStatus::Committed
    } else {
        OrgStatus::CommittedWithGaps {
            unavailable: restricted.len() as u64,
        }
    };
    assert_eq!(summary.status, want_status);
}

macro_rules! exact_under_b {
    ($($name:ident: $u:expr,)*) => {$(
        #[tokio::test]
        async fn $name() {
            export_equals_truth(&[$u], Source::Both, settings()).await;
        }
    )*};
}

exact_under_b! {
    u1_bulk_query_serves_totals_only: Unknown::U1,
    u2_next_uri_drops_parameters: Unknown::U2,
    u3_search_clamps_page_size_silently: Unknown::U3,
    u5_search_past_cap_answers_an_empty_page: Unknown::U5,
    u6_bulk_query_filters_by_release_date: Unknown::U6,
    u7_deleted_users_are_refused_without_include_deleted: Unknown::U7,
    u8_evaluations_outside_divisions_are_refused: Unknown::U8,
    u9_system_submitted_search_returns_human_too: Unknown::U9,
    u10_date_range_end_is_inclusive: Unknown::U10,
    u12_bulk_query_page_size_max_is_lower: Unknown::U12,
}

/// Search pages of 10: many page boundaries fall inside clusters of tied dates.
#[tokio::test]
async fn u4_search_orders_ties_differently_per_request() {
    export_equals_truth(&[Unknown::U4], Source::Both, with_search_pages(10)).await;
}

/// Every unknown but U11 (the limit's window is the rate control's, on a real clock).
fn all_but_u11() -> Vec<Unknown> {
    Unknown::ALL
        .into_iter()
        .filter(|u| *u != Unknown::U11)
        .collect()
}

#[tokio::test]
async fn every_unknown_b_at_once() {
    export_equals_truth(&all_but_u11(), Source::Both, settings()).await;
}

#[tokio::test]
async fn automated_only_under_every_unknown_b() {
    export_equals_truth(&all_but_u11(), Source::Auto, with_search_pages(20)).await;
}

#[tokio::test]
async fn human_only_under_every_unknown_b() {
    export_equals_truth(&all_but_u11(), Source::Human, with_search_pages(20)).await;
}

/// The B answers are really met in the exported days (so the tests above test something).
#[tokio::test]
async fn the_b_data_lies_in_the_exported_days() {
    let h = Harness::start(scenario(&all_but_u11())).await;
    let org = h.org(0);
    let org_id = org.endpoint.org_id.as_str().to_owned();
    let jobs = jobs(&h, &org, Source::Both);
    let all = truth(&h, &jobs, SourceFilter::Both);
    assert!(
        h.sim
            .restricted_ids(&org_id)
            .iter()
            .any(|id| all.contains_key(id)),
        "U8: a restricted evaluation in the window"
    );
    let midnight = all
        .values()
        .filter(|json| json.contains("\"submittedDate\":\"") && json.contains("T00:00:00.000Z\""))
        .count();
    assert!(
        midnight > 0,
        "U10: an evaluation submitted at exactly midnight"
    );
    let submitted: Vec<String> = all
        .values()
        .filter_map(|json| {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            v["submittedDate"].as_str().map(str::to_owned)
        })
        .collect();
    let distinct: BTreeSet<&String> = submitted.iter().collect();
    assert!(
        distinct.len() < submitted.len(),
        "U4: ties on submittedDate"
    );
    let deleted = h.sim.deleted_user_ids(&org_id);
    assert!(
        all.values()
            .any(|json| deleted.iter().any(|u| json.contains(u.as_str()))),
        "U7: an evaluation of a deleted user"
    );
    assert!(
        settings().engine.search.page_size
            > OrgSpec::default()
                .pessimistic()
                .switches
                .search_max_page_size
    );
}
