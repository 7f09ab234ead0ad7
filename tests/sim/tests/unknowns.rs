//! The twelve undocumented behaviours (reference §8): answer A by default, answer B when
//! the org's setting asks for it, each observed over HTTP.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use genesys_sim::{
    DateField, DeletedUserQuery, OrgSpec, RateLimitSpec, Scenario, SearchOverMax, SimHandle,
    SourceFilter, Switches, Unknown, start,
};
use serde_json::{Value, json};

const FROM: &str = "2026-01-07T00:00:00.000Z";
const TO: &str = "2026-01-10T00:00:00.000Z";
const SEARCH: &str = "/api/v2/quality/evaluations/search";

fn range(field: &str, from: &str, to: &str, page: u64, size: u64) -> Value {
    json!({"query":[{"type":"DATE_RANGE","field":field,"startValue":from,"endValue":to}],"pageSize":size,"pageNumber":page})
}

/// The fixed `test` scenario with `f` applied to every org.
fn scenario_with(f: impl Fn(OrgSpec) -> OrgSpec) -> Scenario {
    fixed_test().map_orgs(|o| *o = f(o.clone()))
}

/// Every unknown at answer B, with the `test` scenario's generous limit (so the U11
/// limit does not slow the test down).
fn pessimistic_generous(o: OrgSpec) -> OrgSpec {
    OrgSpec {
        limit: o.limit,
        ..o.clone().pessimistic()
    }
}

/// (default sim, sim whose orgs have answer B of `u`).
async fn a_and_b(u: Unknown) -> (SimHandle, SimHandle) {
    let a = start(fixed_test()).await.unwrap();
    let b = start(scenario_with(|o| o.with_unknown_b(u))).await.unwrap();
    (a, b)
}

fn ids_of(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every id of a search listing, pages of `size` (a page shorter than `size` ends it).
async fn search_all(c: &Client, mut body: Value, size: u64) -> Vec<String> {
    let mut out = Vec::new();
    for page in 1.. {
        body["pageNumber"] = json!(page);
        body["pageSize"] = json!(size);
        let r = c.post(SEARCH, &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let ids = ids_of(&r.json(), "results");
        let n = ids.len() as u64;
        out.extend(ids);
        if n < size {
            break;
        }
    }
    out
}

/// Every entity of a query listing, by pageNumber (not nextUri), pages of 25.
async fn query_all(c: &Client, params: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let r = c
            .get(&format!(
                "/api/v2/quality/evaluations/query?{params}&pageSize=25&pageNumber={page}"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        let ents = v["entities"].as_array().unwrap().clone();
        let n = ents.len();
        out.extend(ents);
        if n < 25 {
            break;
        }
    }
    out
}

/// An evaluator id seen in the org's human evaluations.
async fn some_evaluator(c: &Client) -> String {
    let r = c.post(SEARCH, &range("createdDate", FROM, TO, 1, 25)).await;
    r.json()["results"][0]["evaluator"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn u1_totals_only_answers_on_query() {
    let (a, b) = a_and_b(Unknown::U1).await;
    for (sim, full) in [(&a, true), (&b, false)] {
        let c = Client::login(sim, 0).await;
        let ev = some_evaluator(&c).await;
        let ents = query_all(
            &c,
            &format!("evaluatorUserId={ev}&expandAnswerTotalScores=true"),
        )
        .await;
        let with: Vec<&Value> = ents.iter().filter(|e| e.get("answers").is_some()).collect();
        assert!(!with.is_empty());
        for e in &with {
            let ans = &e["answers"];
            assert!(ans["totalScore"].is_number());
            assert!(ans["totalCriticalScore"].is_number());
            assert!(ans["totalNonCriticalScore"].is_number());
            assert!(ans["anyFailedKillQuestions"].is_boolean());
            assert_eq!(ans.get("questionGroupScores").is_some(), full, "{e}");
        }
        // The single GET keeps the full answers either way.
        let r = c.get(with[0]["selfUri"].as_str().unwrap()).await;
        assert_eq!(r.status, 200);
        assert!(r.json()["answers"]["questionGroupScores"].is_array());
    }
}

#[tokio::test]
async fn u2_next_uri_drops_parameters() {
    let (a, b) = a_and_b(Unknown::U2).await;
    let params = |ev: &str| {
        format!(
            "evaluatorUserId={ev}&pageSize=5&expandAnswerTotalScores=true&startTime=2026-01-07T00:00:00.000Z&endTime=2026-01-10T00:00:00.000Z"
        )
    };
    let c = Client::login(&a, 0).await;
    let ev = some_evaluator(&c).await;
    let r = c
        .get(&format!(
            "/api/v2/quality/evaluations/query?{}",
            params(&ev)
        ))
        .await;
    let next = r.json()["nextUri"].as_str().unwrap().to_string();
    for p in [
        "pageSize=5",
        "expandAnswerTotalScores=true",
        "startTime=",
        "endTime=",
    ] {
        assert!(next.contains(p), "{next} lacks {p}");
    }
    let c = Client::login(&b, 0).await;
    let r = c
        .get(&format!(
            "/api/v2/quality/evaluations/query?{}",
            params(&ev)
        ))
        .await;
    let v = r.json();
    let next = v["nextUri"].as_str().unwrap().to_string();
    assert_eq!(
        next,
        format!("/api/v2/quality/evaluations/query?evaluatorUserId={ev}&pageNumber=2")
    );
    // Other links keep every parameter.
    assert!(v["selfUri"].as_str().unwrap().contains("pageSize=5"));
    // Following it blindly: page 2 at the default size 25, without answers.
    let r = c.get(&next).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["pageSize"], 25);
    assert_eq!(v["pageNumber"], 2);
    let ents = v["entities"].as_array().unwrap();
    assert!(!ents.is_empty());
    assert!(ents.iter().all(|e| e.get("answers").is_none()));
}

#[tokio::test]
async fn u3_search_page_size_clamped() {
    let (a, b) = a_and_b(Unknown::U3).await;
    let c = Client::login(&a, 0).await;
    let r = c
        .post(SEARCH, &range("createdDate", FROM, TO, 1, 101))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["details"][0]["fieldName"], "pageSize");
    assert_eq!(
        c.post(SEARCH, &range("createdDate", FROM, TO, 1, 100))
            .await
            .status,
        200
    );

    let c = Client::login(&b, 0).await;
    let sw = b.switches(&c.org.org_id).unwrap();
    assert_eq!(
        (sw.search_over_max, sw.search_max_page_size),
        (SearchOverMax::ClampEchoRequested, 50)
    );
    let all = search_all(&c, range("createdDate", FROM, TO, 1, 10), 10).await;
    assert!(all.len() > 100, "{}", all.len());
    for page in [1u64, 2] {
        let r = c
            .post(SEARCH, &range("createdDate", FROM, TO, page, 100))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["pageSize"], 100, "the requested size is echoed");
        let lo = (page as usize - 1) * 50;
        assert_eq!(ids_of(&v, "results"), all[lo..lo + 50].to_vec());
    }
    // Clamp: the served size is echoed.
    let sc = scenario_with(|o| {
        let mut o = o.with_unknown_b(Unknown::U3);
        o.switches.search_over_max = SearchOverMax::Clamp;
        o
    });
    let sim = start(sc).await.unwrap();
    let c = Client::login(&sim, 0).await;
    let v = c
        .post(SEARCH, &range("createdDate", FROM, TO, 2, 100))
        .await
        .json();
    assert_eq!(v["pageSize"], 50);
    assert_eq!(ids_of(&v, "results"), all[50..100].to_vec());
}

#[tokio::test]
async fn u4_unstable_ties() {
    let (_, b) = a_and_b(Unknown::U4).await;
    // A: the same tied data under the stable switch.
    let stable = start(scenario_with(|o| OrgSpec {
        tied_fraction: 0.3,
        ..o
    }))
    .await
    .unwrap();
    let body = range("createdDate", FROM, TO, 1, 100);
    let c = Client::login(&stable, 0).await;
    let x = search_all(&c, body.clone(), 100).await;
    let y = search_all(&c, body.clone(), 100).await;
    assert_eq!(x, y);

    let c = Client::login(&b, 0).await;
    // The data has ties: clusters of equal createdDate, none larger than 10.
    let truth = b.ground_truth(
        &c.org.org_id,
        t(FROM),
        t(TO),
        DateField::CreatedDate,
        SourceFilter::Human,
    );
    let mut clusters: BTreeMap<String, usize> = BTreeMap::new();
    for r in &truth {
        let v: Value = serde_json::from_str(&r.json).unwrap();
        *clusters
            .entry(v["createdDate"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let tied: usize = clusters.values().filter(|&&n| n > 1).sum();
    assert!(tied >= 20, "{tied} tied evaluations");
    assert!(clusters.values().all(|&n| n <= 10));
    // One day fits on one page: two identical requests, same set, different order.
    let (s, e) = ("2026-01-08T00:00:00.000Z", "2026-01-09T00:00:00.000Z");
    let day = range("createdDate", s, e, 1, 100);
    let page = |v: Value| ids_of(&v, "results");
    let x = page(c.post(SEARCH, &day).await.json());
    let y = page(c.post(SEARCH, &day).await.json());
    assert!(x.len() > 20 && x.len() < 100, "{}", x.len());
    assert!(x != y, "tied results are reordered between requests");
    let (sx, sy): (BTreeSet<_>, BTreeSet<_>) = (x.iter().collect(), y.iter().collect());
    assert!(sx == sy, "same set");
    let want = b.ground_truth(
        &c.org.org_id,
        t(s),
        t(e),
        DateField::CreatedDate,
        SourceFilter::Human,
    );
    assert_eq!(sx.len(), want.len());
    // So page-number paging over the whole period skips and repeats.
    let paged = search_all(&c, body.clone(), 25).await;
    assert_eq!(paged.len(), truth.len());
    let distinct: BTreeSet<_> = paged.iter().collect();
    assert!(distinct.len() < truth.len(), "some skipped, some repeated");
}

#[tokio::test]
async fn u5_past_the_paging_cap() {
    let (a, b) = a_and_b(Unknown::U5).await;
    let body = range("createdDate", FROM, TO, 101, 100);
    let c = Client::login(&a, 0).await;
    let r = c.post(SEARCH, &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["details"][0]["fieldName"], "pageNumber");
    let c = Client::login(&b, 0).await;
    let r = c.post(SEARCH, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["results"], json!([]));
    // Within the cap: served as usual.
    let r = c
        .post(SEARCH, &range("createdDate", FROM, TO, 1, 100))
        .await;
    assert_eq!(r.json()["results"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn u6_time_filter_on_release_date() {
    let (a, b) = a_and_b(Unknown::U6).await;
    let (s, e) = ("2026-01-08T00:00:00.000Z", "2026-01-09T00:00:00.000Z");
    let in_day = |v: &Value, k: &str| v[k].as_str().is_some_and(|x| x >= s && x < e);
    let mut sets = Vec::new();
    for (sim, key) in [(&a, "createdDate"), (&b, "releaseDate")] {
        let c = Client::login(sim, 0).await;
        let ev = some_evaluator(&c).await;
        let ents = query_all(
            &c,
            &format!("evaluatorUserId={ev}&startTime={s}&endTime={e}"),
        )
        .await;
        assert!(!ents.is_empty());
        assert!(ents.iter().all(|x| in_day(x, key)), "{key}");
        // Every evaluation of the evaluator with that date in the window is there.
        let every = query_all(&c, &format!("evaluatorUserId={ev}")).await;
        let want: BTreeSet<&str> = every
            .iter()
            .filter(|x| in_day(x, key))
            .map(|x| x["id"].as_str().unwrap())
            .collect();
        let got: BTreeSet<&str> = ents.iter().map(|x| x["id"].as_str().unwrap()).collect();
        assert_eq!(got, want);
        sets.push(got.into_iter().map(str::to_string).collect::<BTreeSet<_>>());
    }
    assert_ne!(sets[0], sets[1]);
}

#[tokio::test]
async fn u7_deleted_users_on_query() {
    // A: the deleted users exist, their evaluations are returned.
    let returned = start(scenario_with(|o| OrgSpec {
        deleted_evaluators: 1,
        deleted_agents: 1,
        ..o
    }))
    .await
    .unwrap();
    let (_, b) = a_and_b(Unknown::U7).await;
    for sim in [&returned, &b] {
        let c = Client::login(sim, 0).await;
        let users = c.get("/api/v2/users?pageSize=500").await.json();
        let deleted: BTreeSet<String> = users["entities"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["state"] == "deleted")
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(deleted, sim.deleted_user_ids(&c.org.org_id));
        assert_eq!(deleted.len(), 2);
        let ents = users["entities"].as_array().unwrap();
        // Agents first (8 in `test`), then evaluators: the first of each is deleted.
        assert_eq!(ents[0]["state"], "deleted");
        assert_eq!(ents[8]["state"], "deleted");
        let rejected =
            sim.switches(&c.org.org_id).unwrap().deleted_user_query == DeletedUserQuery::Rejected;
        for (param, idx) in [
            ("evaluatorUserId", 8),
            ("agentUserId", 0),
            ("assigneeUserId", 8),
        ] {
            let id = ents[idx]["id"].as_str().unwrap();
            let r = c
                .get(&format!("/api/v2/quality/evaluations/query?{param}={id}"))
                .await;
            if rejected {
                assert_eq!(r.status, 400, "{}", r.body);
                let v = r.json();
                assert_eq!(v["code"], "quality.query.invalid.user");
                assert_eq!(v["details"][0]["fieldName"], param);
            } else {
                assert_eq!(r.status, 200);
                assert!(!r.json()["entities"].as_array().unwrap().is_empty());
            }
            let r = c
                .get(&format!(
                    "/api/v2/quality/evaluations/query?{param}={id}&includeDeletedUsers=true"
                ))
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(!r.json()["entities"].as_array().unwrap().is_empty());
        }
        // Active users are served either way.
        let id = ents[1]["id"].as_str().unwrap();
        let r = c
            .get(&format!(
                "/api/v2/quality/evaluations/query?agentUserId={id}"
            ))
            .await;
        assert_eq!(r.status, 200);
    }
    // Omitted: entities of deleted users are left out unless includeDeletedUsers=true.
    let omitted = start(scenario_with(|o| {
        let mut o = o.with_unknown_b(Unknown::U7);
        o.switches.deleted_user_query = DeletedUserQuery::Omitted;
        o
    }))
    .await
    .unwrap();
    let c = Client::login(&omitted, 0).await;
    let deleted = omitted.deleted_user_ids(&c.org.org_id);
    let users = c.users().await;
    let agent = &users[1];
    let has_deleted = |ents: &[Value]| {
        ents.iter().any(|e| {
            deleted.contains(e["evaluator"]["id"].as_str().unwrap_or(""))
                || deleted.contains(e["agent"]["id"].as_str().unwrap())
        })
    };
    let without = query_all(&c, &format!("agentUserId={agent}")).await;
    let with = query_all(&c, &format!("agentUserId={agent}&includeDeletedUsers=true")).await;
    assert!(!has_deleted(&without));
    assert!(has_deleted(&with));
    assert!(with.len() > without.len());
    let r = c
        .get(&format!(
            "/api/v2/quality/evaluations/query?agentUserId={}",
            users[0]
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["total"], 0);
}

#[tokio::test]
async fn users_state_filter_lists_deleted_users() {
    let (_, b) = a_and_b(Unknown::U7).await;
    let c = Client::login(&b, 0).await;
    let ids = |v: Value| -> BTreeSet<String> {
        v["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = ids(c.get("/api/v2/users?pageSize=500").await.json());
    let deleted = ids(c
        .get("/api/v2/users?state=deleted&pageSize=500")
        .await
        .json());
    let active = ids(c
        .get("/api/v2/users?state=active&pageSize=500")
        .await
        .json());
    assert_eq!(deleted, b.deleted_user_ids(&c.org.org_id));
    assert_eq!(deleted.len(), 2);
    assert!(active.is_disjoint(&deleted));
    assert_eq!(active.len() + deleted.len(), all.len());
    assert_eq!(
        ids(c.get("/api/v2/users?state=any&pageSize=500").await.json()),
        all
    );
    assert!(ids(c.get("/api/v2/users?state=inactive").await.json()).is_empty());
    let r = c.get("/api/v2/users?state=gone").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["details"][0]["fieldName"], "state");
}

#[tokio::test]
async fn u8_restricted_evaluations_forbidden() {
    let allowed = start(scenario_with(|o| OrgSpec {
        restricted_evaluations: 3,
        ..o
    }))
    .await
    .unwrap();
    let (_, b) = a_and_b(Unknown::U8).await;
    let org_id = b.orgs()[0].org_id.clone();
    assert!(allowed.restricted_ids(&org_id).is_empty());
    let restricted = b.restricted_ids(&org_id);
    assert_eq!(restricted.len(), 3);
    let truth = b.ground_truth(
        &org_id,
        t(FROM),
        t(TO),
        DateField::CreatedDate,
        SourceFilter::Both,
    );
    let ca = Client::login(&allowed, 0).await;
    let c = Client::login(&b, 0).await;
    let mut days = BTreeSet::new();
    for id in &restricted {
        let rec = truth.iter().find(|r| &r.id == id).expect("in ground truth");
        let v: Value = serde_json::from_str(&rec.json).unwrap();
        assert_eq!(v["status"], "FINISHED");
        assert!(v.get("evaluator").is_some(), "human");
        days.insert(v["createdDate"].as_str().unwrap()[..10].to_string());
        let self_uri = v["selfUri"].as_str().unwrap();
        // A: 200 with the same bytes; B: 403 not.authorized.
        let r = ca.get(self_uri).await;
        assert_eq!((r.status, r.body.as_str()), (200, rec.json.as_str()));
        let r = c.get(self_uri).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.json()["code"], "not.authorized");
        // Found by search.
        let mut body = range("createdDate", FROM, TO, 1, 25);
        body["query"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type":"EXACT","field":"evaluationId","value":id}));
        let found = ids_of(&c.post(SEARCH, &body).await.json(), "results");
        assert_eq!(found, std::slice::from_ref(id));
        // Left out of query pages (A: present).
        let ev = v["evaluator"]["id"].as_str().unwrap();
        let q = format!("evaluatorUserId={ev}");
        let has = |ents: Vec<Value>| ents.iter().any(|e| e["id"] == id.as_str());
        assert!(has(query_all(&ca, &q).await));
        assert!(!has(query_all(&c, &q).await));
    }
    assert!(days.len() >= 2, "spread over the period: {days:?}");
}

#[tokio::test]
async fn u9_system_submitted_selects_everything() {
    let (a, b) = a_and_b(Unknown::U9).await;
    for (sim, all) in [(&a, false), (&b, true)] {
        let c = Client::login(sim, 0).await;
        let org_id = &c.org.org_id;
        let gt = |s| sim.ground_truth(org_id, t(FROM), t(TO), DateField::CreatedDate, s);
        let mut body = range("createdDate", FROM, TO, 1, 100);
        body["systemSubmitted"] = json!(true);
        let got: BTreeSet<String> = search_all(&c, body.clone(), 100)
            .await
            .into_iter()
            .collect();
        let want: BTreeSet<String> = gt(if all {
            SourceFilter::Both
        } else {
            SourceFilter::Auto
        })
        .into_iter()
        .map(|r| r.id)
        .collect();
        assert_eq!(got, want);
        body["systemSubmitted"] = json!(false);
        let human: BTreeSet<String> = search_all(&c, body, 100).await.into_iter().collect();
        let want: BTreeSet<String> = gt(SourceFilter::Human).into_iter().map(|r| r.id).collect();
        assert_eq!(human, want);
    }
}

#[tokio::test]
async fn u10_inclusive_date_range_end() {
    let (_, b) = a_and_b(Unknown::U10).await;
    // A: the same midnight data under the exclusive switch.
    let a = start(scenario_with(|o| OrgSpec {
        midnight_fraction: 0.05,
        ..o
    }))
    .await
    .unwrap();
    for (sim, inclusive) in [(&a, false), (&b, true)] {
        let c = Client::login(sim, 0).await;
        let org_id = &c.org.org_id;
        let truth = sim.ground_truth(
            org_id,
            t(FROM),
            t(TO),
            DateField::CreatedDate,
            SourceFilter::Human,
        );
        let midnights: Vec<Value> = truth
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.json).unwrap())
            .filter(|v| {
                v["createdDate"]
                    .as_str()
                    .unwrap()
                    .ends_with("T00:00:00.000Z")
            })
            .collect();
        assert!(midnights.len() >= 5, "{}", midnights.len());
        for v in &midnights {
            for k in ["conversationDate", "createdDate", "changedDate"] {
                assert_eq!(v[k], v["createdDate"]);
            }
        }
        let e = midnights
            .iter()
            .find(|v| v["createdDate"].as_str().unwrap() > FROM)
            .unwrap();
        let id = e["id"].as_str().unwrap().to_string();
        let day = t(e["createdDate"].as_str().unwrap());
        let before = day - jiff::SignedDuration::from_hours(24);
        let after = day + jiff::SignedDuration::from_hours(24);
        let search_day = |from: jiff::Timestamp, to: jiff::Timestamp| {
            range("createdDate", &from.to_string(), &to.to_string(), 1, 100)
        };
        let prev = search_all(&c, search_day(before, day), 100).await;
        let next = search_all(&c, search_day(day, after), 100).await;
        assert!(next.contains(&id));
        assert_eq!(prev.contains(&id), inclusive);
        // Ground truth keeps [from, to): each evaluation in exactly one day.
        let per_day: usize = [
            t(FROM),
            t("2026-01-08T00:00:00Z"),
            t("2026-01-09T00:00:00Z"),
        ]
        .iter()
        .map(|&d| {
            sim.ground_truth(
                org_id,
                d,
                d + jiff::SignedDuration::from_hours(24),
                DateField::CreatedDate,
                SourceFilter::Human,
            )
            .len()
        })
        .sum();
        assert_eq!(per_day, truth.len());
    }
}

#[tokio::test]
async fn u11_rate_limit_headers_follow_the_org_limit() {
    let a = start(scenario_with(|o| OrgSpec {
        limit: RateLimitSpec::default(),
        ..o
    }))
    .await
    .unwrap();
    let b = start(scenario_with(|o| o.with_unknown_b(Unknown::U11)))
        .await
        .unwrap();
    assert_eq!(b.orgs()[0].token_limit, RateLimitSpec::new(10, 5_000));
    for (sim, allowed, window_s) in [(&a, 300u64, 60u64), (&b, 10, 5)] {
        let c = Client::login(sim, 0).await;
        for n in 1..=allowed.min(10) {
            let r = c.get("/api/v2/organizations/me").await;
            assert_eq!(r.status, 200);
            assert_eq!(
                r.header("inin-ratelimit-allowed").unwrap(),
                allowed.to_string()
            );
            assert_eq!(r.header("inin-ratelimit-count").unwrap(), n.to_string());
            let reset: u64 = r.header("inin-ratelimit-reset").unwrap().parse().unwrap();
            assert!((1..=window_s).contains(&reset), "reset {reset}");
        }
        let r = c.get("/api/v2/organizations/me").await;
        if allowed == 10 {
            assert_eq!(r.status, 429);
            let ra: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=5).contains(&ra));
        } else {
            assert_eq!(r.status, 200);
        }
    }
}

#[tokio::test]
async fn u12_query_page_size_maximum() {
    let (a, b) = a_and_b(Unknown::U12).await;
    for (sim, max) in [(&a, 100), (&b, 25)] {
        let c = Client::login(sim, 0).await;
        let ev = some_evaluator(&c).await;
        let q =
            |n: u64| format!("/api/v2/quality/evaluations/query?evaluatorUserId={ev}&pageSize={n}");
        let r = c.get(&q(max)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = c.get(&q(max + 1)).await;
        assert_eq!(r.status, 400);
        let v = r.json();
        assert_eq!(v["code"], "bad.request");
        assert_eq!(v["details"][0]["fieldName"], "pageSize");
        assert!(v["message"].as_str().unwrap().contains("pageSize"));
    }
}

#[tokio::test]
async fn search_count_aggregation_matches_the_listing() {
    let sims = [
        start(fixed_test()).await.unwrap(),
        start(scenario_with(pessimistic_generous)).await.unwrap(),
    ];
    for sim in &sims {
        let c = Client::login(sim, 0).await;
        for (from, to, system) in [
            (FROM, TO, None),
            ("2026-01-08T00:00:00.000Z", "2026-01-09T00:00:00.000Z", None),
            (FROM, TO, Some(true)),
        ] {
            let mut body = range("submittedDate", from, to, 1, 0);
            if let Some(s) = system {
                body["systemSubmitted"] = json!(s);
            }
            body["aggregations"] =
                json!([{"name": "n", "type": "COUNT", "field": "evaluationStatus"}]);
            let r = c.post(SEARCH, &body).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let v = r.json();
            let listing = search_all(&c, body.clone(), 50).await;
            assert!(!listing.is_empty());
            assert_eq!(
                r.body,
                format!(
                    r#"{{"pageSize":0,"pageNumber":1,"results":[],"aggregations":{{"n":{{"count":{}}}}}}}"#,
                    listing.len()
                )
            );
            assert_eq!(v["aggregations"]["n"]["count"], listing.len());
        }
        // Unsupported type / field → 400 naming them.
        for (agg, field) in [
            (
                json!({"name":"n","type":"TERM","field":"evaluationStatus"}),
                "aggregations[0].type",
            ),
            (
                json!({"name":"n","type":"COUNT","field":"agentId"}),
                "aggregations[0].field",
            ),
        ] {
            let mut body = range("submittedDate", FROM, TO, 1, 0);
            body["aggregations"] = json!([agg]);
            let r = c.post(SEARCH, &body).await;
            assert_eq!(r.status, 400);
            assert_eq!(r.json()["details"][0]["fieldName"], field);
        }
        // pageSize 0 without aggregations: empty results, no aggregations key.
        let r = c
            .post(SEARCH, &range("submittedDate", FROM, TO, 1, 0))
            .await;
        assert_eq!(r.body, r#"{"pageSize":0,"pageNumber":1,"results":[]}"#);
    }
}

#[tokio::test]
async fn pessimistic_settings_and_builtin() {
    assert_eq!(
        Switches::pessimistic(),
        Unknown::ALL
            .iter()
            .fold(Switches::default(), |s, &u| s.with_b(u))
    );
    let p = Switches::pessimistic();
    assert_eq!(p.search_max_page_size, 50);
    assert_eq!(p.query_max_page_size, 25);
    assert!(p.next_uri_drops_params);
    for u in Unknown::all() {
        let o = OrgSpec::default().with_unknown_b(u);
        assert_ne!(o, OrgSpec::default(), "{u} changes something");
        let sc = Scenario {
            orgs: vec![o],
            ..Scenario::default()
        };
        sc.validate().unwrap();
    }
    let sc = Scenario::builtin("pessimistic").unwrap();
    sc.validate().unwrap();
    assert_eq!(Scenario::load("pessimistic").unwrap(), sc);
    assert_eq!(sc.orgs.len(), 2);
    assert_ne!(sc.orgs[0].region, sc.orgs[1].region);
    for o in &sc.orgs {
        assert_eq!(o.switches, Switches::pessimistic());
        assert_eq!(o.limit, RateLimitSpec::new(100, 5_000));
        assert!((250..=350).contains(&o.evaluations));
        assert!(o.tied_fraction > 0.0 && o.midnight_fraction > 0.0);
        assert!(o.deleted_agents > 0 && o.deleted_evaluators > 0);
        assert!(o.restricted_evaluations > 0);
    }
    assert_eq!(sc.latency, Scenario::demo().latency);
    let err = Scenario::builtin("nope").unwrap_err().to_string();
    assert!(err.contains("pessimistic"), "{err}");
    let sim = start(sc).await.unwrap();
    let org = sim.orgs()[1].clone();
    assert_eq!(sim.switches(&org.org_id), Some(Switches::pessimistic()));
    assert_eq!(
        sim.restricted_ids(&org.org_id).len(),
        sim.scenario().orgs[1].restricted_evaluations
    );
    assert_eq!(sim.scenario().orgs[1].restricted_evaluations, 30);
    assert_eq!(sim.switches("nope"), None);
}

#[tokio::test]
async fn data_knobs_are_validated_by_name() {
    type Edit = Box<dyn Fn(&mut OrgSpec)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|o| o.tied_fraction = 1.5), "tied_fraction"),
        (
            Box::new(|o| o.midnight_fraction = -0.1),
            "midnight_fraction",
        ),
        (Box::new(|o| o.deleted_evaluators = 4), "deleted_evaluators"),
        (Box::new(|o| o.deleted_agents = 9), "deleted_agents"),
        (
            Box::new(|o| o.restricted_evaluations = 201),
            "restricted_evaluations",
        ),
        (
            Box::new(|o| o.switches.search_max_page_size = 0),
            "search_max_page_size",
        ),
        (
            Box::new(|o| o.switches.query_max_page_size = 0),
            "query_max_page_size",
        ),
    ];
    for (f, name) in cases {
        let mut sc = fixed_test();
        f(&mut sc.orgs[0]);
        let err = sc
            .validate()
            .expect_err(&format!("{name} is checked"))
            .to_string();
        assert!(err.contains(name), "{err}");
    }
    // The old switch name is gone.
    let err = toml::from_str::<Scenario>("[[orgs]]\n[orgs.switches]\nmax_page_size = 10")
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_page_size"), "{err}");
    let sc: Scenario = toml::from_str(
        "[[orgs]]\ntied_fraction = 0.2\n[orgs.switches]\nsearch_over_max = \"clamp_echo_requested\"\nquery_answers = \"totals_only\"\ndeleted_user_query = \"omitted\"",
    )
    .unwrap();
    assert_eq!(
        sc.orgs[0].switches.search_over_max,
        SearchOverMax::ClampEchoRequested
    );
    assert_eq!(
        sc.orgs[0].switches.deleted_user_query,
        DeletedUserQuery::Omitted
    );
}

#[tokio::test]
async fn ground_truth_holds_with_every_data_knob() {
    let sim = start(scenario_with(pessimistic_generous)).await.unwrap();
    for org in sim.orgs() {
        let all = sim.ground_truth(
            &org.org_id,
            t(FROM),
            t(TO),
            DateField::CreatedDate,
            SourceFilter::Both,
        );
        assert_eq!(all.len(), org.evaluation_count);
        // Byte-identical to the single GET for every evaluation that is not restricted.
        let c = Client::login(&sim, sim.orgs().iter().position(|o| o == &org).unwrap()).await;
        let restricted = sim.restricted_ids(&org.org_id);
        assert_eq!(restricted.len(), 3);
        for r in all.iter().step_by(7) {
            let v: Value = serde_json::from_str(&r.json).unwrap();
            let got = c.get(v["selfUri"].as_str().unwrap()).await;
            if restricted.contains(&r.id) {
                assert_eq!(got.status, 403);
            } else {
                assert_eq!((got.status, got.body.as_str()), (200, r.json.as_str()));
            }
        }
        // Dates stay ordered and inside the period.
        for r in &all {
            let v: Value = serde_json::from_str(&r.json).unwrap();
            let d = |k: &str| v[k].as_str().map(str::to_string);
            let created = d("createdDate").unwrap();
            assert!(d("conversationDate").unwrap() <= created);
            if let Some(s) = d("submittedDate") {
                assert!(created <= s);
                if let Some(rel) = d("releaseDate") {
                    assert!(s <= rel);
                }
            } else {
                assert!(d("releaseDate").is_none());
            }
            assert!(d("changedDate").unwrap().as_str() < TO);
        }
    }
}
