//! Behaviour of the simulator over HTTP, pinned against the reference.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use genesys_sim::{DateField, RateLimitSpec, Scenario, SourceFilter, start};
use serde_json::{Value, json};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(xs: &[&str]) -> BTreeSet<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn search_body(field: &str, from: &str, to: &str, page: u64, size: u64) -> Value {
    json!({"query":[{"type":"DATE_RANGE","field":field,"startValue":from,"endValue":to}],"pageSize":size,"pageNumber":page})
}

const FROM: &str = "2026-01-07T00:00:00.000Z";
const TO: &str = "2026-01-10T00:00:00.000Z";

#[tokio::test]
async fn token_and_error_shapes() {
    let sim = start(fixed_test()).await.unwrap();
    let http = reqwest::Client::new();
    let org = &sim.orgs()[0];
    let r = token_req(
        &http,
        &org.login_base_url,
        &org.client_id,
        &org.client_secret,
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(keys(&v), set(&["access_token", "token_type", "expires_in"]));
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 86400);
    for h in [
        "inin-ratelimit-allowed",
        "inin-ratelimit-count",
        "inin-ratelimit-reset",
        "inin-correlation-id",
    ] {
        assert!(r.header(h).is_some(), "missing {h}");
    }
    // Wrong secret → OAuth-shaped body.
    let r = token_req(&http, &org.login_base_url, &org.client_id, "nope").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        r#"{"error":"invalid_client","description":"authentication failed","error_description":"authentication failed"}"#
    );
    // Unsupported grant.
    let r = http
        .post(format!("{}/oauth/token", org.login_base_url))
        .basic_auth(&org.client_id, Some(&org.client_secret))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let r = into_resp(r).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    // No bearer → ErrorBody authentication.required with contextId == correlation id.
    let r = into_resp(
        http.get(format!("{}/api/v2/tokens/me", org.api_base_url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 401);
    let v = r.json();
    assert_eq!(
        keys(&v),
        set(&[
            "message",
            "code",
            "status",
            "contextId",
            "details",
            "errors"
        ])
    );
    assert_eq!(v["code"], "authentication.required");
    assert_eq!(
        v["contextId"].as_str().unwrap(),
        r.header("inin-correlation-id").unwrap()
    );
    // Unknown path → 404 not.found.
    let c = Client::login(&sim, 0).await;
    let r = c.get("/api/v2/quality/scorecards/x/results").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not.found");
    // tokens/me and organizations/me name the org.
    let me = c.get("/api/v2/tokens/me").await.json();
    assert_eq!(me["organization"]["id"], org.org_id.as_str());
    assert_eq!(me["OAuthClient"]["id"], org.client_id.as_str());
    let o = c.get("/api/v2/organizations/me").await.json();
    assert_eq!(o["id"], org.org_id.as_str());
}

#[tokio::test]
async fn wrong_region_credentials_and_tokens() {
    let sim = start(fixed_test()).await.unwrap();
    let http = reqwest::Client::new();
    let (a, b) = (sim.orgs()[0].clone(), sim.orgs()[1].clone());
    assert_ne!(a.region, b.region);
    // Org A's credentials on org B's login host.
    let r = token_req(&http, &b.login_base_url, &a.client_id, &a.client_secret).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    assert_eq!(r.json()["error_description"], "authentication failed");
    // Unprefixed login host accepts any region.
    let r = token_req(&http, &sim.base_url(), &a.client_id, &a.client_secret).await;
    assert_eq!(r.status, 200);
    // Org A's token on org B's API host → 401 ErrorBody.
    let c = Client::login(&sim, 0).await;
    let r = into_resp(
        http.get(format!("{}/api/v2/tokens/me", b.api_base_url))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.json()["code"].as_str().unwrap().contains('.'));
    // The token endpoint is not on the API host, and API paths are not on the login host.
    let r = token_req(&http, &a.api_base_url, &a.client_id, &a.client_secret).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn search_shapes_filters_and_validation() {
    let sim = start(fixed_test()).await.unwrap();
    let c = Client::login(&sim, 0).await;
    let org_id = c.org.org_id.clone();
    let (from, to) = (t(FROM), t(TO));
    for (system, source) in [
        (None, SourceFilter::Human),
        (Some(false), SourceFilter::Human),
        (Some(true), SourceFilter::Auto),
    ] {
        let truth = sim.ground_truth(&org_id, from, to, DateField::SubmittedDate, source);
        assert!(!truth.is_empty());
        let mut ids = Vec::new();
        for page in 1.. {
            let mut body = search_body("submittedDate", FROM, TO, page, 50);
            if let Some(s) = system {
                body["systemSubmitted"] = json!(s);
            }
            let r = c.post("/api/v2/quality/evaluations/search", &body).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let v = r.json();
            assert_eq!(keys(&v), set(&["pageSize", "pageNumber", "results"]));
            let results = v["results"].as_array().unwrap();
            for e in results {
                assert!(
                    e.get("answers").is_none(),
                    "search results carry no answers"
                );
                assert!(
                    e.get("id").is_some()
                        && e.get("conversation").is_some()
                        && e.get("evaluationForm").is_some()
                );
                ids.push(e["id"].as_str().unwrap().to_string());
            }
            if results.len() < 50 {
                break;
            }
        }
        let mut sorted = ids.clone();
        sorted.sort();
        let want: Vec<String> = truth.iter().map(|r| r.id.clone()).collect();
        assert_eq!(sorted, want, "systemSubmitted={system:?}");
    }
    // Date range end is exclusive, start inclusive: a range [x, x+1ms) around one evaluation.
    let truth = sim.ground_truth(
        &org_id,
        from,
        to,
        DateField::CreatedDate,
        SourceFilter::Human,
    );
    let one: Value = serde_json::from_str(&truth[0].json).unwrap();
    let created = one["createdDate"].as_str().unwrap();
    let plus = t(created)
        .checked_add(jiff::SignedDuration::from_millis(1))
        .unwrap();
    let plus = plus.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let exact = json!({"query":[
        {"type":"DATE_RANGE","field":"createdDate","startValue":created,"endValue":plus},
        {"type":"EXACT","field":"evaluationId","value":truth[0].id}],"pageSize":25,"pageNumber":1});
    let r = c
        .post("/api/v2/quality/evaluations/search", &exact)
        .await
        .json();
    assert_eq!(r["results"].as_array().unwrap().len(), 1);
    let mut excl = exact.clone();
    excl["query"][0]["endValue"] = json!(created);
    excl["query"][0]["startValue"] = json!("2026-01-01T00:00:00.000Z");
    let r = c
        .post("/api/v2/quality/evaluations/search", &excl)
        .await
        .json();
    assert_eq!(
        r["results"].as_array().unwrap().len(),
        0,
        "end is exclusive"
    );
    // Validation.
    let bad = [
        (
            search_body(
                "createdDate",
                "2026-01-01T00:00:00.000Z",
                "2026-04-02T00:00:00.000Z",
                1,
                25,
            ),
            "query[0].endValue",
        ),
        (search_body("createdDate", FROM, TO, 1, 101), "pageSize"),
        (json!({"query":[], "pageNumber":1}), "query"),
        (
            json!({"query":[{"type":"DATE_RANGE","field":"createdDate","startValue":"yesterday","endValue":TO}],"pageNumber":1}),
            "query[0].startValue",
        ),
        (
            json!({"query":[{"type":"DATE_RANGE","field":"changedDate","startValue":FROM,"endValue":TO}],"pageNumber":1}),
            "query[0].field",
        ),
        (
            json!({"query":[{"type":"DATE_RANGE","field":"createdDate","startValue":FROM,"endValue":TO}]}),
            "pageNumber",
        ),
        (search_body("createdDate", FROM, TO, 101, 100), "pageNumber"),
    ];
    for (body, field) in bad {
        let r = c.post("/api/v2/quality/evaluations/search", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let v = r.json();
        assert_eq!(v["details"][0]["fieldName"], field, "{}", r.body);
        assert!(v["message"].as_str().unwrap().contains(field), "{}", r.body);
    }
    let r = c
        .post(
            "/api/v2/quality/evaluations/search",
            &search_body("createdDate", FROM, TO, 100, 100),
        )
        .await;
    assert_eq!(r.status, 200, "exactly 10,000 is allowed");
}

#[tokio::test]
async fn query_rules_and_envelope() {
    let sim = start(fixed_test()).await.unwrap();
    let c = Client::login(&sim, 0).await;
    let r = c.get("/api/v2/quality/evaluations/query?pageSize=10").await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("agentUserId")
    );
    let truth = sim.ground_truth(
        &c.org.org_id,
        t(FROM),
        t(TO),
        DateField::CreatedDate,
        SourceFilter::Human,
    );
    let never: Vec<Value> = truth
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.json).unwrap())
        .filter(|v| v["neverRelease"] == true)
        .collect();
    assert!(!never.is_empty(), "test data has neverRelease evaluations");
    let e = &never[0];
    let agent = e["agent"]["id"].as_str().unwrap();
    let evaluator = e["evaluator"]["id"].as_str().unwrap();
    let id = e["id"].as_str().unwrap();
    let mut by_agent = BTreeMap::new();
    c.page_all(
        &format!("/api/v2/quality/evaluations/query?agentUserId={agent}&pageSize=5"),
        &mut by_agent,
    )
    .await;
    assert!(
        !by_agent.contains_key(id),
        "agent-only query omits neverRelease"
    );
    assert!(
        by_agent
            .values()
            .all(|j| j.contains(r#""neverRelease":false"#))
    );
    let mut by_eval = BTreeMap::new();
    c.page_all(
        &format!("/api/v2/quality/evaluations/query?evaluatorUserId={evaluator}&pageSize=5"),
        &mut by_eval,
    )
    .await;
    assert!(
        by_eval.contains_key(id),
        "evaluator query includes neverRelease"
    );
    // Envelope, nextUri iff more pages, no answers without expand.
    let r = c
        .get(&format!(
            "/api/v2/quality/evaluations/query?evaluatorUserId={evaluator}&pageSize=5"
        ))
        .await;
    let v = r.json();
    for k in [
        "entities",
        "pageSize",
        "pageNumber",
        "total",
        "pageCount",
        "firstUri",
        "selfUri",
        "nextUri",
        "lastUri",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert!(
        v["nextUri"]
            .as_str()
            .unwrap()
            .starts_with("/api/v2/quality/evaluations/query?")
    );
    assert!(v["entities"][0].get("answers").is_none());
    let last = v["lastUri"].as_str().unwrap().to_string();
    let lv = c.get(&last).await.json();
    assert!(lv.get("nextUri").is_none());
    // Sorted by assigned date for evaluator queries.
    let dates: Vec<String> = by_eval
        .values()
        .map(|j| {
            serde_json::from_str::<Value>(j).unwrap()["assignedDate"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(!dates.is_empty());
    let page = c
        .get(&format!(
            "/api/v2/quality/evaluations/query?evaluatorUserId={evaluator}&pageSize=100"
        ))
        .await
        .json();
    let got: Vec<&str> = page["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["assignedDate"].as_str().unwrap())
        .collect();
    let mut want = got.clone();
    want.sort();
    assert_eq!(got, want);
    // Validation of pageSize and dates.
    let r = c
        .get(&format!(
            "/api/v2/quality/evaluations/query?evaluatorUserId={evaluator}&pageSize=101"
        ))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["details"][0]["fieldName"], "pageSize");
    let r = c
        .get(&format!(
            "/api/v2/quality/evaluations/query?evaluatorUserId={evaluator}&startTime=monday"
        ))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "invalid.date");
    // Single GET: 404 for a conversation mismatch.
    let conv = e["conversation"]["id"].as_str().unwrap();
    let r = c
        .get(&format!(
            "/api/v2/quality/conversations/{conv}/evaluations/{id}"
        ))
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .get(&format!(
            "/api/v2/quality/conversations/{agent}/evaluations/{id}"
        ))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not.found");
}

/// Page through query (expandAnswerTotalScores) for every evaluator, and every agent for
/// automated evaluations; the union equals the ground truth byte for byte, and so do the
/// single GETs.
#[tokio::test]
async fn ground_truth_equals_endpoints() {
    let sim = start(fixed_test()).await.unwrap();
    for org_i in 0..2 {
        let c = Client::login(&sim, org_i).await;
        let truth = sim.ground_truth(
            &c.org.org_id,
            t("2000-01-01T00:00:00Z"),
            t("2100-01-01T00:00:00Z"),
            DateField::CreatedDate,
            SourceFilter::Both,
        );
        assert_eq!(truth.len(), c.org.evaluation_count);
        let mut got = BTreeMap::new();
        for u in c.users().await {
            c.page_all(&format!("/api/v2/quality/evaluations/query?evaluatorUserId={u}&pageSize=37&expandAnswerTotalScores=true"), &mut got).await;
            c.page_all(&format!("/api/v2/quality/evaluations/query?agentUserId={u}&pageSize=100&expandAnswerTotalScores=true"), &mut got).await;
        }
        let want: BTreeMap<String, String> = truth
            .iter()
            .map(|r| (r.id.clone(), r.json.clone()))
            .collect();
        assert_eq!(got, want);
        for r in truth.iter().take(20) {
            let v: Value = serde_json::from_str(&r.json).unwrap();
            let conv = v["conversation"]["id"].as_str().unwrap();
            let g = c
                .get(&format!(
                    "/api/v2/quality/conversations/{conv}/evaluations/{}",
                    r.id
                ))
                .await;
            assert_eq!(g.body, r.json);
        }
        // Forms: every version's bytes; the listing has no questionGroups.
        for f in sim.forms_truth(&c.org.org_id) {
            let g = c
                .get(&format!("/api/v2/quality/forms/evaluations/{}", f.id))
                .await;
            assert_eq!(g.body, f.json);
            assert!(f.json.contains("\"questionGroups\"") && f.json.contains("\"isKill\""));
        }
        let l = c.get("/api/v2/quality/forms/evaluations").await.json();
        assert!(l["entities"][0].get("questionGroups").is_none());
        assert!(!l["entities"].as_array().unwrap().is_empty());
    }
}

#[tokio::test]
async fn scores_follow_answers_and_weights() {
    let sim = start(fixed_test()).await.unwrap();
    let org = sim.orgs()[0].org_id.clone();
    let forms: BTreeMap<String, Value> = sim
        .forms_truth(&org)
        .into_iter()
        .map(|f| (f.id, serde_json::from_str(&f.json).unwrap()))
        .collect();
    let truth = sim.ground_truth(
        &org,
        t(FROM),
        t(TO),
        DateField::SubmittedDate,
        SourceFilter::Both,
    );
    let mut checked = 0;
    for r in truth {
        let e: Value = serde_json::from_str(&r.json).unwrap();
        let Some(a) = e.get("answers") else { continue };
        let form = &forms[e["evaluationForm"]["id"].as_str().unwrap()];
        let (mut wsum, mut wtot) = (0.0, 0.0);
        let mut kill = false;
        for (gs, g) in a["questionGroupScores"]
            .as_array()
            .unwrap()
            .iter()
            .zip(form["questionGroups"].as_array().unwrap())
        {
            assert_eq!(gs["questionGroupId"], g["id"]);
            let (mut earned, mut max) = (0i64, 0i64);
            for (qs, q) in gs["questionScores"]
                .as_array()
                .unwrap()
                .iter()
                .zip(g["questions"].as_array().unwrap())
            {
                if qs["markedNA"] == true {
                    continue;
                }
                let opt = q["answerOptions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["id"] == qs["answerId"])
                    .unwrap();
                assert_eq!(opt["value"], qs["score"]);
                earned += opt["value"].as_i64().unwrap();
                max += q["answerOptions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["value"].as_i64().unwrap())
                    .max()
                    .unwrap();
                kill |= qs["failedKillQuestion"] == true;
            }
            if max > 0 {
                wsum += g["weight"].as_f64().unwrap();
                wtot += g["weight"].as_f64().unwrap() * earned as f64 * 100.0 / max as f64;
            }
        }
        assert_eq!(a["anyFailedKillQuestions"] == true, kill);
        let want = if kill || wsum == 0.0 {
            0.0
        } else {
            wtot / wsum
        };
        assert!(
            (a["totalScore"].as_f64().unwrap() - want).abs() < 0.001,
            "{want} vs {}",
            a["totalScore"]
        );
        checked += 1;
    }
    assert!(checked > 50);
}

#[tokio::test]
async fn rate_limit_429_then_recovers() {
    let sc = fixed_test().map_orgs(|o| o.limit = RateLimitSpec::new(5, 1_500));
    let sim = start(sc).await.unwrap();
    let c = Client::login(&sim, 0).await;
    for i in 1..=5 {
        let r = c.get("/api/v2/organizations/me").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("inin-ratelimit-allowed").unwrap(), "5");
        assert_eq!(r.header("inin-ratelimit-count").unwrap(), i.to_string());
        let reset: u64 = r.header("inin-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=2).contains(&reset), "reset {reset}");
    }
    let r = c.get("/api/v2/organizations/me").await;
    assert_eq!(r.status, 429);
    let ra: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&ra));
    let v = r.json();
    assert_eq!(
        keys(&v),
        set(&[
            "message",
            "code",
            "status",
            "contextId",
            "details",
            "errors"
        ])
    );
    assert_eq!(v["code"], "too.many.requests.retry.after");
    assert_eq!(v["status"], 429);
    assert_eq!(
        v["message"],
        format!("Rate limit exceeded the maximum. Retry the request in [{ra}] seconds")
    );
    assert_eq!(
        v["contextId"].as_str().unwrap(),
        r.header("inin-correlation-id").unwrap()
    );
    assert_eq!(
        r.header("inin-ratelimit-count").unwrap(),
        "5",
        "rejected requests do not count by default"
    );
    tokio::time::sleep(std::time::Duration::from_secs(ra)).await;
    let r = c.get("/api/v2/organizations/me").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("inin-ratelimit-count").unwrap(), "1");
    let s = sim.stats().org(&c.org.org_id);
    let ep = s.endpoint("organizations_me");
    assert_eq!(ep.requests, 7);
    assert_eq!(ep.responses_429, 1);
    assert_eq!(ep.max_requests_in_any_window, 6);
    assert_eq!(s.token("token-1").responses_429, 1);
    assert_eq!(s.totals.quota_violations, 0);
    assert_eq!(ep.peak_concurrency, 1);
}

#[tokio::test]
async fn quota_violations_are_counted() {
    let sc = fixed_test().map_orgs(|o| o.limit = RateLimitSpec::new(2, 1_000));
    let sim = start(sc).await.unwrap();
    let c = Client::login(&sim, 0).await;
    for _ in 0..2 {
        assert_eq!(c.get("/api/v2/tokens/me").await.status, 200);
    }
    let r = c.get("/api/v2/tokens/me").await;
    assert_eq!(r.status, 429);
    // Ignore the 429 twice.
    c.get("/api/v2/tokens/me").await;
    c.get("/api/v2/tokens/me").await;
    assert_eq!(sim.stats().org(&c.org.org_id).totals.quota_violations, 2);
    // Waiting for Retry-After is not a violation.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(c.get("/api/v2/tokens/me").await.status, 200);
    let s = sim.stats().org(&c.org.org_id);
    assert_eq!(s.totals.quota_violations, 2);
    assert_eq!(s.token("token-1").quota_violations, 2);
    // Over HTTP too.
    let v: Value = reqwest::get(format!("{}/_sim/stats", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["orgs"][&c.org.org_id]["totals"]["quota_violations"], 2);
}

#[tokio::test]
async fn org_wide_limit_spans_tokens() {
    let sc = fixed_test().map_orgs(|o| o.org_limit = Some(RateLimitSpec::new(3, 60_000)));
    let sim = start(sc).await.unwrap();
    let a = Client::login(&sim, 0).await;
    let b = Client::login(&sim, 0).await;
    assert_eq!(a.get("/api/v2/tokens/me").await.status, 200);
    assert_eq!(b.get("/api/v2/tokens/me").await.status, 200);
    assert_eq!(a.get("/api/v2/tokens/me").await.status, 200);
    let r = b.get("/api/v2/tokens/me").await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.header("inin-ratelimit-count").unwrap(),
        "1",
        "token bucket still has headroom"
    );
}

/// A token unused for its idle timeout is refused; one used more often lives on past it.
/// Each step has most of a second to spare, as a loaded machine may hold any of them up.
#[tokio::test]
async fn token_idle_timeout() {
    let sc = fixed_test().map_orgs(|o| o.token_idle_timeout_ms = Some(1_000));
    let sim = start(sc).await.unwrap();
    let c = Client::login(&sim, 0).await;
    assert_eq!(c.get("/api/v2/tokens/me").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let r = c.get("/api/v2/tokens/me").await;
    assert_eq!(r.status, 401, "idle timeout");
    assert_eq!(r.json()["code"], "authentication.required");
    let c = Client::login(&sim, 0).await;
    // Used every 200 ms for 1.4 s in all.
    for _ in 0..7 {
        assert_eq!(c.get("/api/v2/tokens/me").await.status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(c.get("/api/v2/tokens/me").await.status, 200);
}

/// A token is refused once `expires_in` has passed (here with no idle timeout); it works
/// until then, with two seconds to spare.
#[tokio::test]
async fn token_expiry() {
    let sc = fixed_test().map_orgs(|o| o.expires_in = 2);
    let sim = start(sc).await.unwrap();
    let c = Client::login(&sim, 0).await;
    assert_eq!(c.get("/api/v2/tokens/me").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let r = c.get("/api/v2/tokens/me").await;
    assert_eq!(r.status, 401, "expires_in elapsed");
    assert_eq!(r.json()["code"], "authentication.required");
}

#[tokio::test]
async fn token_endpoint_limit() {
    let sc = fixed_test().map_orgs(|o| o.token_endpoint_limit = RateLimitSpec::new(2, 60_000));
    let sim = start(sc).await.unwrap();
    let http = reqwest::Client::new();
    let o = sim.orgs()[0].clone();
    assert_eq!(o.token_endpoint_limit, RateLimitSpec::new(2, 60_000));
    for _ in 0..2 {
        assert_eq!(
            token_req(&http, &o.login_base_url, &o.client_id, &o.client_secret)
                .await
                .status,
            200
        );
    }
    let r = token_req(&http, &o.login_base_url, &o.client_id, &o.client_secret).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(
        sim.stats().org(&o.org_id).endpoint("token").responses_429,
        1
    );
}

#[tokio::test]
async fn aggregates_and_users() {
    let sim = start(fixed_test()).await.unwrap();
    let c = Client::login(&sim, 0).await;
    let body = json!({"interval": format!("{FROM}/{TO}"), "groupBy": ["evaluatorId"], "metrics": ["nEvaluations", "oTotalScore"], "alternateTimeDimension": "evaluationCreatedDate"});
    let r = c
        .post("/api/v2/analytics/evaluations/aggregates/query", &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let total: u64 = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            g["data"][0]["metrics"][0]["stats"]["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    let truth = sim.ground_truth(
        &c.org.org_id,
        t(FROM),
        t(TO),
        DateField::CreatedDate,
        SourceFilter::Both,
    );
    assert_eq!(total as usize, truth.len());
    let r = c
        .post(
            "/api/v2/analytics/evaluations/aggregates/query",
            &json!({"metrics":["nEvaluations"]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["details"][0]["fieldName"], "interval");
    let u = c.get("/api/v2/users?pageSize=3").await.json();
    assert_eq!(u["entities"].as_array().unwrap().len(), 3);
    assert!(u["nextUri"].as_str().unwrap().contains("pageNumber=2"));
}

#[tokio::test]
async fn data_is_deterministic_per_seed() {
    let a = start(fixed_test()).await.unwrap();
    let b = start(fixed_test()).await.unwrap();
    let c = start(fixed_test().with_seed(8)).await.unwrap();
    let all = |s: &genesys_sim::SimHandle| {
        let o = s.orgs()[0].clone();
        (
            o.org_id.clone(),
            o.client_secret.clone(),
            s.ground_truth(
                &o.org_id,
                t(FROM),
                t(TO),
                DateField::CreatedDate,
                SourceFilter::Both,
            ),
            s.forms_truth(&o.org_id),
        )
    };
    assert_eq!(all(&a), all(&b));
    assert_ne!(all(&a).3, all(&c).3);
    assert_eq!(Scenario::builtin("demo").unwrap().orgs.len(), 3);
    assert!(Scenario::builtin("nope").is_err());
    assert!(
        genesys_sim::start_on(fixed_test(), "0.0.0.0:0".parse().unwrap())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn scenario_files_and_builtins_load() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let sc = Scenario::load(&format!("{dir}/scenarios/example.toml")).unwrap();
    assert_eq!(sc.orgs.len(), 2);
    assert_eq!(sc.orgs[0].faults.len(), 3);
    assert_eq!(sc.orgs[1].org_limit, Some(RateLimitSpec::new(200, 60_000)));
    // JSON round trip of the same scenario.
    let path = std::env::temp_dir().join(format!("genesys-sim-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_string(&sc).unwrap()).unwrap();
    assert_eq!(Scenario::load(path.to_str().unwrap()).unwrap(), sc);
    std::fs::remove_file(&path).unwrap();
    let sim = start(sc).await.unwrap();
    assert_eq!(sim.orgs()[0].evaluation_count, 500);
    assert_eq!(
        sim.period(),
        (t("2026-01-07T00:00:00Z"), t("2026-01-10T12:00:00Z"))
    );
    for name in ["demo", "bench", "test"] {
        Scenario::builtin(name).unwrap().validate().unwrap();
    }
    let demo = Scenario::builtin("demo").unwrap();
    assert_eq!(demo.orgs.len(), 3);
    assert!(demo.orgs.iter().any(|o| o.region == "apse1.pure.cloud"));
    let b = Scenario::bench(3, 10, 50, 500);
    assert_eq!(
        (b.orgs.len(), b.orgs[2].limit),
        (3, RateLimitSpec::new(50, 500))
    );
    // Bad values are named.
    let mut bad = fixed_test();
    bad.orgs[0].region = "example.com".into();
    assert!(bad.validate().unwrap_err().to_string().contains("region"));
    let err = toml::from_str::<Scenario>("[[orgs]]\nnmae = \"x\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("nmae"), "{err}");
}

#[tokio::test]
async fn latency_and_peak_concurrency() {
    let sc = fixed_test().with_latency(genesys_sim::LatencySpec::uniform(250, 250));
    let sim = start(sc).await.unwrap();
    let c = Client::login(&sim, 0).await;
    let t0 = std::time::Instant::now();
    let reqs = (0..5).map(|_| c.get("/api/v2/organizations/me"));
    let rs = futures::future::join_all(reqs).await;
    assert!(rs.iter().all(|r| r.status == 200));
    let el = t0.elapsed();
    // At least one latency; one after another they would take five: the bound between
    // leaves a loaded machine about a second.
    assert!(
        el >= std::time::Duration::from_millis(250) && el < std::time::Duration::from_millis(1_250),
        "{el:?}"
    );
    let s = sim.stats().org(&c.org.org_id);
    assert_eq!(s.endpoint("organizations_me").peak_concurrency, 5);
    assert_eq!(s.token("token-1").peak_concurrency, 5);
    assert_eq!(s.endpoint("token").peak_concurrency, 1);
}
