//! Scripted faults: each one observable, reproducible from the seed, and survivable by a
//! correct client (which then ends with exactly the ground truth).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use genesys_sim::{
    DateField, EndpointSel, FaultKind, FaultSpec, Scenario, SourceFilter, Switches, TooManyBody,
    start,
};
use serde_json::{Value, json};

const FROM: &str = "2026-01-07T00:00:00.000Z";
const TO: &str = "2026-01-10T00:00:00.000Z";

fn with_faults(faults: Vec<FaultSpec>) -> Scenario {
    let mut sc = fixed_test();
    sc.orgs[0].faults = faults;
    sc
}

fn tmr(at: u64) -> FaultSpec {
    FaultSpec::new(FaultKind::TooManyRequests, EndpointSel::Any, &[at])
}

#[tokio::test]
async fn too_many_requests_variants() {
    let faults = vec![
        FaultSpec {
            body: TooManyBody::Legacy,
            ..tmr(1)
        },
        FaultSpec {
            body: TooManyBody::Empty,
            ..tmr(2)
        },
        tmr(3).retry_after("0"),
        tmr(4).retry_after("-5"),
        tmr(5).retry_after("1.5"),
        FaultSpec {
            retry_after_http_date_s: Some(7),
            ..tmr(6)
        },
        tmr(7).retry_after("3600"),
    ];
    let sim = start(with_faults(faults)).await.unwrap();
    let c = Client::login(&sim, 0).await;
    let p = "/api/v2/organizations/me";
    let r = c.get(p).await;
    assert_eq!(
        (r.status, r.body.as_str(), r.header("retry-after")),
        (429, r#"{"code":"too.many.requests","status":429}"#, None)
    );
    let r = c.get(p).await;
    assert_eq!(
        (r.status, r.body.as_str(), r.header("retry-after")),
        (429, "", None)
    );
    for want in ["0", "-5", "1.5"] {
        let r = c.get(p).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after").as_deref(), Some(want));
        assert_eq!(r.json()["code"], "too.many.requests.retry.after");
    }
    let r = c.get(p).await;
    let date = httpdate::parse_http_date(&r.header("retry-after").unwrap()).unwrap();
    let ahead = date
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        ahead > Duration::from_secs(4) && ahead <= Duration::from_secs(8),
        "{ahead:?}"
    );
    // The HTTP-date deadline is still ahead: this request violates it.
    let r = c.get(p).await;
    assert_eq!(r.header("retry-after").as_deref(), Some("3600"));
    assert_eq!(
        r.json()["message"],
        "Rate limit exceeded the maximum. Retry the request in [3600] seconds"
    );
    assert_eq!(c.get(p).await.status, 200, "faults are spent");
    let s = sim.stats().org(&c.org.org_id);
    assert_eq!(s.totals.faults_injected, 7);
    assert_eq!(s.totals.responses_429, 7);
    // Requests 5 (1.5 s), 6 (http-date), 7, 8 came before a deadline given to the token.
    assert_eq!(s.totals.quota_violations, 3);
}

#[tokio::test]
async fn error_bursts_reset_truncation_expiry_hang() {
    let faults = vec![
        FaultSpec::new(FaultKind::HttpError, EndpointSel::Query, &[1])
            .status(503)
            .count(3),
        FaultSpec::new(FaultKind::HttpError, EndpointSel::Get, &[1]).status(500),
        FaultSpec::new(FaultKind::ConnectionReset, EndpointSel::Users, &[1]),
        FaultSpec::new(FaultKind::TruncatedBody, EndpointSel::Forms, &[1]),
        // Hangs 30 s (the default): far past the client's 200 ms timeout below.
        FaultSpec::new(FaultKind::Hang, EndpointSel::Analytics, &[1]),
        FaultSpec::new(FaultKind::ExpireToken, EndpointSel::Search, &[1]),
    ];
    let sim = start(with_faults(faults)).await.unwrap();
    let c = Client::login(&sim, 0).await;
    let users = users_after_reset(&c).await;
    let q = format!(
        "/api/v2/quality/evaluations/query?evaluatorUserId={}",
        users.last().unwrap()
    );
    let codes: Vec<u16> = futures_seq(&c, &q, 4).await;
    assert_eq!(codes, vec![503, 503, 503, 200]);
    let r = c.get(&q).await;
    let e = &r.json()["entities"][0];
    let get = format!(
        "/api/v2/quality/conversations/{}/evaluations/{}",
        e["conversation"]["id"].as_str().unwrap(),
        e["id"].as_str().unwrap()
    );
    let r = c.get(&get).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (500, Some("internal.server.error"))
    );
    assert_eq!(c.get(&get).await.status, 200);
    // Truncated: 200, Content-Length of the cut body, not parseable.
    let r = c.get("/api/v2/quality/forms/evaluations").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    assert!(serde_json::from_str::<Value>(&r.body).is_err());
    assert!(
        serde_json::from_str::<Value>(&c.get("/api/v2/quality/forms/evaluations").await.body)
            .is_ok()
    );
    // Hang beyond a client timeout, then normal.
    let body = json!({"interval": format!("{FROM}/{TO}"), "metrics": ["nEvaluations"]});
    let url = format!(
        "{}/api/v2/analytics/evaluations/aggregates/query",
        c.org.api_base_url
    );
    let slow = c
        .http
        .post(&url)
        .bearer_auth(&c.token)
        .json(&body)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(slow.unwrap_err().is_timeout());
    assert_eq!(
        c.post("/api/v2/analytics/evaluations/aggregates/query", &body)
            .await
            .status,
        200
    );
    // Expired token: 401 now and later; a new token works.
    let sb = json!({"query":[{"type":"DATE_RANGE","field":"createdDate","startValue":FROM,"endValue":TO}],"pageNumber":1});
    let r = c.post("/api/v2/quality/evaluations/search", &sb).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (401, Some("authentication.required"))
    );
    assert_eq!(c.get("/api/v2/tokens/me").await.status, 401);
    let c2 = Client::login(&sim, 0).await;
    assert_eq!(
        c2.post("/api/v2/quality/evaluations/search", &sb)
            .await
            .status,
        200
    );
    let s = sim.stats().org(&c.org.org_id);
    assert_eq!(
        s.endpoint("users").responses_by_status.get("reset"),
        Some(&1)
    );
    assert_eq!(s.totals.faults_injected, 8);
}

async fn futures_seq(c: &Client, path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.get(path).await.status);
    }
    out
}

/// The first users call is reset by the scenario: a connection error, no HTTP status.
async fn users_after_reset(c: &Client) -> Vec<String> {
    let e = c.try_get("/api/v2/users?pageSize=500").await.unwrap_err();
    assert!(!e.is_timeout() && e.status().is_none(), "{e:?}");
    c.users().await
}

/// Paging faults plus transport faults on query; a careful client still ends with exactly
/// the ground truth (current state: the inserted and rescored evaluations included).
#[tokio::test]
async fn paging_faults_still_converge_to_ground_truth() {
    let q = EndpointSel::Query;
    let faults = vec![
        FaultSpec::new(FaultKind::InsertEvaluation, q, &[2]).count(2),
        FaultSpec::new(FaultKind::RescoreEvaluation, q, &[3]).count(2),
        FaultSpec::new(FaultKind::DuplicateAcrossPages, q, &[4]),
        FaultSpec::new(FaultKind::RepeatNextUri, q, &[5]),
        FaultSpec::new(FaultKind::EmptyPageWithNextUri, q, &[1]).count(2),
        FaultSpec {
            every_nth: Some(11),
            ..FaultSpec::new(FaultKind::HttpError, q, &[]).status(502)
        },
        FaultSpec {
            probability: Some(0.05),
            ..FaultSpec::new(FaultKind::ConnectionReset, q, &[])
        },
        FaultSpec {
            probability: Some(0.05),
            ..FaultSpec::new(FaultKind::TruncatedBody, q, &[])
        },
    ];
    let sim = start(with_faults(faults)).await.unwrap();
    let c = Client::login(&sim, 0).await;
    let before = c.org.evaluation_count;
    let mut got = BTreeMap::new();
    for u in c.users().await {
        c.page_all(&format!("/api/v2/quality/evaluations/query?evaluatorUserId={u}&pageSize=10&expandAnswerTotalScores=true"), &mut got).await;
        c.page_all(&format!("/api/v2/quality/evaluations/query?agentUserId={u}&pageSize=10&expandAnswerTotalScores=true"), &mut got).await;
    }
    let truth = sim.ground_truth(
        &c.org.org_id,
        t("2000-01-01T00:00:00Z"),
        t("2100-01-01T00:00:00Z"),
        DateField::CreatedDate,
        SourceFilter::Both,
    );
    assert_eq!(truth.len(), before + 2, "two evaluations were inserted");
    assert!(
        truth
            .iter()
            .filter(|r| r.json.contains(r#""rescore":true"#))
            .count()
            == 2
    );
    let want: BTreeMap<String, String> = truth.into_iter().map(|r| (r.id, r.json)).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "client result differs from ground truth");
    let s = sim.stats().org(&c.org.org_id).endpoint("query");
    assert!(s.faults_injected >= 8, "{s:?}");
    assert!(s.responses_by_status.contains_key("502"));
}

#[tokio::test]
async fn repeat_and_empty_next_uri_shapes() {
    let q = EndpointSel::Query;
    let sim = start(with_faults(vec![
        FaultSpec::new(FaultKind::RepeatNextUri, q, &[1]),
        FaultSpec::new(FaultKind::EmptyPageWithNextUri, q, &[1]).count(2),
    ]))
    .await
    .unwrap();
    let c = Client::login(&sim, 0).await;
    let u = c.users().await.last().unwrap().clone();
    let first = format!("/api/v2/quality/evaluations/query?evaluatorUserId={u}&pageSize=25");
    let p1 = c.get(&first).await.json();
    assert_eq!(
        p1["nextUri"], p1["selfUri"],
        "nextUri repeats the page just read"
    );
    let p1b = c.get(p1["nextUri"].as_str().unwrap()).await.json();
    assert_eq!(p1b["entities"], p1["entities"]);
    assert_ne!(p1b["nextUri"], p1b["selfUri"]);
    let last = c.get(p1["lastUri"].as_str().unwrap()).await.json();
    let n = last["nextUri"]
        .as_str()
        .expect("last page has a nextUri under the fault")
        .to_string();
    let empty = c.get(&n).await.json();
    assert!(empty["entities"].as_array().unwrap().is_empty());
    assert!(
        empty.get("nextUri").is_some(),
        "empty page still has a nextUri"
    );
    let empty2 = c.get(empty["nextUri"].as_str().unwrap()).await.json();
    assert!(empty2["entities"].as_array().unwrap().is_empty());
    assert!(empty2.get("nextUri").is_none(), "fault spent");
}

#[tokio::test]
async fn search_paging_faults_and_cap() {
    let s = EndpointSel::Search;
    let mut sc = with_faults(vec![
        FaultSpec::new(FaultKind::InsertEvaluation, s, &[1]),
        FaultSpec::new(FaultKind::DuplicateAcrossPages, s, &[2]),
        FaultSpec::new(FaultKind::RescoreEvaluation, s, &[3]),
    ]);
    sc.orgs[0].switches = Switches {
        search_paging_cap: 1_000,
        ..Switches::default()
    };
    let sim = start(sc).await.unwrap();
    let c = Client::login(&sim, 0).await;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut rows = 0;
    for page in 1.. {
        let body = json!({"query":[{"type":"DATE_RANGE","field":"createdDate","startValue":FROM,"endValue":TO}],"pageSize":20,"pageNumber":page,"sortBy":"createdDate","sortOrder":"DESC"});
        let r = c.post("/api/v2/quality/evaluations/search", &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let raws = raw_entities(&r.body, "results");
        rows += raws.len();
        for raw in &raws {
            let e: Value = serde_json::from_str(raw).unwrap();
            keep_newest(&mut seen, e["id"].as_str().unwrap(), raw.clone(), &e);
        }
        if raws.len() < 20 {
            break;
        }
    }
    let truth = sim.ground_truth(
        &c.org.org_id,
        t(FROM),
        t(TO),
        DateField::CreatedDate,
        SourceFilter::Human,
    );
    let want: BTreeSet<String> = truth.iter().map(|r| r.id.clone()).collect();
    let got: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(got, want);
    assert_eq!(
        rows,
        want.len() + 2,
        "one duplicate and one rescored evaluation served twice"
    );
    assert_eq!(
        want.len(),
        sim.ground_truth(
            &c.org.org_id,
            t(FROM),
            t(TO),
            DateField::CreatedDate,
            SourceFilter::Human
        )
        .len()
    );
    // Every entity's final bytes match the truth once answers are stripped from the truth.
    for r in &truth {
        let mut v: Value = serde_json::from_str(&r.json).unwrap();
        v.as_object_mut().unwrap().remove("answers");
        let g: Value = serde_json::from_str(&seen[&r.id]).unwrap();
        assert_eq!(g, v);
    }
    let body = json!({"query":[{"type":"DATE_RANGE","field":"createdDate","startValue":FROM,"endValue":TO}],"pageSize":100,"pageNumber":11});
    let r = c.post("/api/v2/quality/evaluations/search", &body).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("1000"));
}

#[tokio::test]
async fn wrong_totals_switch() {
    let mut sc = fixed_test();
    sc.orgs[0].switches.query_totals_wrong = true;
    sc.orgs[0].switches.query_paging_cap = 50;
    let sim = start(sc).await.unwrap();
    let c = Client::login(&sim, 0).await;
    let u = c.users().await.last().unwrap().clone();
    let v = c
        .get(&format!(
            "/api/v2/quality/evaluations/query?evaluatorUserId={u}&pageSize=10"
        ))
        .await
        .json();
    assert_eq!(v["total"], 10);
    assert_eq!(v["pageCount"], 1);
    assert!(v.get("nextUri").is_some());
    let r = c
        .get(&format!(
            "/api/v2/quality/evaluations/query?evaluatorUserId={u}&pageSize=10&pageNumber=6"
        ))
        .await;
    assert_eq!(r.status, 400);
}

/// The same scenario and request script give byte-identical responses (bodies, statuses,
/// Retry-After, correlation ids); another seed does not.
#[tokio::test]
async fn faults_are_reproducible_from_the_seed() {
    let mk = |seed| {
        let mut sc = fixed_test().with_seed(seed);
        let any = EndpointSel::Any;
        sc.orgs[0].faults = vec![
            FaultSpec {
                probability: Some(0.15),
                ..FaultSpec::new(FaultKind::HttpError, any, &[]).status(503)
            },
            FaultSpec {
                probability: Some(0.1),
                ..FaultSpec::new(FaultKind::TooManyRequests, any, &[]).retry_after("2")
            },
            FaultSpec {
                probability: Some(0.1),
                ..FaultSpec::new(FaultKind::TruncatedBody, any, &[])
            },
            FaultSpec {
                probability: Some(0.2),
                ..FaultSpec::new(FaultKind::InsertEvaluation, EndpointSel::Query, &[])
            },
            FaultSpec {
                probability: Some(0.2),
                ..FaultSpec::new(FaultKind::RescoreEvaluation, EndpointSel::Query, &[])
            },
        ];
        sc
    };
    async fn script(sc: Scenario) -> Vec<(u16, Option<String>, Option<String>, String)> {
        let sim = start(sc).await.unwrap();
        let c = Client::login(&sim, 0).await;
        let users = loop {
            let r = c.get("/api/v2/users?pageSize=500").await;
            if r.status == 200 && serde_json::from_str::<Value>(&r.body).is_ok() {
                break r.json()["entities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u["id"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>();
            }
        };
        let mut out = Vec::new();
        for u in users.iter().rev().take(3) {
            for p in 1..=4 {
                let r = c.get(&format!("/api/v2/quality/evaluations/query?evaluatorUserId={u}&pageSize=10&pageNumber={p}&expandAnswerTotalScores=true")).await;
                out.push((
                    r.status,
                    r.header("retry-after"),
                    r.header("inin-correlation-id"),
                    r.body,
                ));
            }
        }
        out
    }
    let a = script(mk(5)).await;
    let b = script(mk(5)).await;
    assert_eq!(a, b);
    assert!(a.iter().any(|x| x.0 != 200), "some faults fired");
    let c = script(mk(6)).await;
    assert_ne!(a, c);
}
