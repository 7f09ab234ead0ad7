//! `scorecards probe`: which answer one org gives to each undocumented API behaviour
//! (reference §8, U1–U12), from a few read-only requests (GETs and the search, which
//! reads), within a request budget.
//!
//! Every answer comes from a response: the request and an excerpt of what it answered are
//! kept as evidence. An answer the org's data cannot show (no ties to reorder, no deleted
//! user) is `NotObserved`, never assumed. The export adapts to every B answer at run time;
//! the probe tells what that costs and which setting, if any, avoids it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::OrgSetup;
use crate::domain::genesys_time;
use crate::genesys::models::EvaluationHead;
use crate::genesys::{Counted, GenesysClient, GenesysError};
use crate::ports::RateLedger;
use crate::rate::RateHeaders;
use crate::runner::{RunSettings, org_client};

const SEARCH: &str = "/api/v2/quality/evaluations/search";
const QUERY: &str = "/api/v2/quality/evaluations/query";
const NO_SETTING: &str = "none: detected at run time";

/// The answer an org gave to one unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Answer {
    /// The answer assumed so far (reference §8, column A).
    A,
    /// The other answer, which the export also survives.
    B,
    /// The org's responses could not tell (no data to show it, or the budget ran out).
    NotObserved,
}

/// The request an answer was read from, and what it answered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// Method and path (query string included; never a token).
    pub request: String,
    /// At most 200 characters of the response (or of its relevant part).
    pub excerpt: String,
}

/// One unknown, answered.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `U1` … `U12`.
    pub unknown: &'static str,
    /// The question, in a few words.
    pub question: &'static str,
    /// The answer observed.
    pub answer: Answer,
    /// What was observed, e.g. "totals only".
    pub observed: String,
    /// Where it was observed.
    pub evidence: Evidence,
    /// What the export does about it, and what that costs.
    pub consequence: String,
    /// The setting to use, or "none: detected at run time".
    pub setting: String,
}

/// What the probe found for one org.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The org.
    pub org_id: String,
    /// Its region domain.
    pub region: String,
    /// Requests sent (API and token requests).
    pub requests: u64,
    /// Why the probe stopped early (login refused, retries exhausted), if it did.
    pub error: Option<String>,
    /// U1 … U12, in that order.
    pub findings: Vec<Finding>,
}

/// Probe settings.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    /// No request is sent once this many were (token requests included). Default 60.
    pub max_requests: u64,
    /// Days before now searched for a sample of evaluations (then 89 days if empty). Default 7.
    pub lookback_days: i64,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            max_requests: 60,
            lookback_days: 7,
        }
    }
}

/// Probes `org` through the org's own rate control (`ledger`, shared with any export of the
/// org that uses it); `holder` must be unique per process.
pub async fn probe_org(
    org: &OrgSetup,
    run: &RunSettings,
    ledger: &Arc<dyn RateLedger>,
    clock: &Arc<dyn Clock>,
    holder: &str,
    settings: ProbeSettings,
) -> ProbeReport {
    match org_client(org, run, ledger, clock, holder) {
        Ok(client) => {
            let report = probe(&client, settings, clock.now()).await;
            client.release().await;
            report
        }
        Err(e) => ProbeReport {
            org_id: org.endpoint.org_id.to_string(),
            region: org.endpoint.region.clone(),
            requests: 0,
            error: Some(e.to_string()),
            findings: (1..=12)
                .map(|u| not_observed(u, "not checked: the probe could not start".into()))
                .collect(),
        },
    }
}

/// Probes the org `client` calls; `now` ends the sample window.
pub async fn probe(client: &GenesysClient, settings: ProbeSettings, now: Timestamp) -> ProbeReport {
    let id = (
        client.endpoint().org_id.to_string(),
        client.endpoint().region.clone(),
    );
    let mut p = Probe::new(id, settings, now);
    let counted = client.counted();
    let mut findings = BTreeMap::new();
    let mut stopped = match p.check_org(&counted).await {
        Ok(()) => p.sample(&counted).await.err(),
        Err(stop) => Some(stop),
    };
    for u in ORDER {
        let result = match &stopped {
            Some(stop) => Err(stop.clone()),
            None => p.check(&counted, u).await,
        };
        let finding = match result {
            Ok(f) => f,
            Err(Stop::Budget) => not_observed(
                u,
                format!(
                    "not checked: the request budget ({}) was reached",
                    settings.max_requests
                ),
            ),
            Err(Stop::Failed(e)) => {
                p.error.get_or_insert(e.clone());
                stopped = Some(Stop::Failed(e));
                not_observed(u, "not checked: the probe stopped on an error".into())
            }
        };
        findings.insert(u, finding);
    }
    p.requests = counted.stats().requests + counted.stats().token_requests;
    p.report(findings.into_values().collect())
}

/// The order checks run in: searches first, then the bulk query, single GETs, users; U11
/// reads the headers the earlier responses carried.
const ORDER: [u8; 12] = [3, 5, 4, 9, 10, 12, 1, 2, 8, 6, 7, 11];

#[derive(Debug, Clone)]
enum Stop {
    /// The request budget is spent.
    Budget,
    /// A failure that is not an answer (login refused, retries exhausted).
    Failed(String),
}

/// A response: the JSON body, or an HTTP error's status, code and message.
struct Reply {
    request: String,
    result: Result<Value, (u16, String, String)>,
}

impl Reply {
    fn evidence(&self) -> Evidence {
        let excerpt = match &self.result {
            Ok(v) => clip(&v.to_string()),
            Err((status, code, message)) => clip(&format!("HTTP {status} {code}: {message}")),
        };
        self.evidence_with(excerpt)
    }

    fn evidence_with(&self, excerpt: String) -> Evidence {
        Evidence {
            request: self.request.clone(),
            excerpt: clip(&excerpt),
        }
    }

    fn status(&self) -> u16 {
        match &self.result {
            Ok(_) => 200,
            Err((s, ..)) => *s,
        }
    }
}

/// One evaluation of the sample, as the search listed it.
#[derive(Debug, Clone)]
struct Item {
    id: String,
    conversation: String,
    evaluator: Option<String>,
    agent: Option<String>,
    created: Option<Timestamp>,
    submitted: Option<Timestamp>,
}

impl Item {
    fn from_value(v: &Value) -> Option<Self> {
        let h: EvaluationHead = serde_json::from_value(v.clone()).ok()?;
        let id_of = |r: Option<crate::genesys::models::EntityRef>| r.and_then(|r| r.id);
        Some(Self {
            conversation: id_of(h.conversation.clone()).unwrap_or_default(),
            evaluator: id_of(h.evaluator.clone()).filter(|s| !s.is_empty()),
            agent: id_of(h.agent.clone()).filter(|s| !s.is_empty()),
            created: h.created_date,
            submitted: h.submitted_date,
            id: h.id,
        })
    }
}

struct Probe {
    org: (String, String),
    settings: ProbeSettings,
    now: Timestamp,
    requests: u64,
    error: Option<String>,
    /// Search window of the sample.
    window: (Timestamp, Timestamp),
    /// The sample search's body and page size; its results, newest first.
    sample_body: Value,
    sample: Vec<Item>,
    /// The `COUNT` aggregation over the sample's search.
    count: Option<u64>,
    /// Single GETs that answered 200 (U8), reused for their dates (U6).
    fetched: Vec<Value>,
    /// Query `pageSize` the org accepts (100, or 25 after a 400 for 100).
    query_page_size: u32,
    /// Rate headers of a response that opened a window, and of the last response.
    opening: Option<(String, RateHeaders)>,
    last_rate: Option<(String, RateHeaders)>,
}

impl Probe {
    fn new(org: (String, String), settings: ProbeSettings, now: Timestamp) -> Self {
        Self {
            org,
            settings,
            now,
            requests: 0,
            error: None,
            window: (now, now),
            sample_body: Value::Null,
            sample: Vec::new(),
            count: None,
            fetched: Vec::new(),
            query_page_size: 25,
            opening: None,
            last_rate: None,
        }
    }

    fn report(self, findings: Vec<Finding>) -> ProbeReport {
        ProbeReport {
            org_id: self.org.0,
            region: self.org.1,
            requests: self.requests,
            error: self.error,
            findings,
        }
    }

    /// One request, within the budget; HTTP errors are replies, other failures stop.
    async fn call(
        &mut self,
        c: &Counted<'_>,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, Stop> {
        let stats = c.stats();
        if stats.requests + stats.token_requests >= self.settings.max_requests {
            return Err(Stop::Budget);
        }
        let (request, result) = match body {
            None => (format!("GET {path}"), c.get_json::<Value>(path).await),
            Some(b) => (
                format!("POST {path} {}", describe_search(b)),
                c.post_json::<Value, _>(path, b).await,
            ),
        };
        if let Some(h) = c.client().last_rate_headers() {
            if h.count == Some(1) && self.opening.is_none() {
                self.opening = Some((request.clone(), h));
            }
            self.last_rate = Some((request.clone(), h));
        }
        let result = match result {
            Ok(v) => Ok(v),
            Err(GenesysError::Api {
                status,
                code,
                message,
                ..
            }) => Err((status, code, message)),
            Err(e) => return Err(Stop::Failed(e.to_string())),
        };
        Ok(Reply { request, result })
    }

    fn search_body(&self, page_size: u32, page_number: u32, system_submitted: bool) -> Value {
        let (from, to) = self.window;
        json!({
            "pageSize": page_size,
            "pageNumber": page_number,
            "sortBy": "submittedDate",
            "sortOrder": "DESC",
            "systemSubmitted": system_submitted,
            "query": [date_range(from, to)],
        })
    }

    /// The sample: the newest human evaluations submitted in the last days, and their
    /// `COUNT` aggregation.
    /// The credentials must act in the org being probed (`GET /api/v2/organizations/me`),
    /// else the report would describe another org.
    async fn check_org(&mut self, c: &Counted<'_>) -> Result<(), Stop> {
        let reply = self.call(c, "/api/v2/organizations/me", None).await?;
        let configured = c.client().endpoint().org_id.as_str();
        match reply.result {
            Ok(v) if v["id"].as_str() == Some(configured) => Ok(()),
            Ok(v) => Err(Stop::Failed(format!(
                "the credentials configured for org {configured} act in org {}: fix the org id or the client credentials",
                v["id"].as_str().unwrap_or("(unknown)")
            ))),
            Err((status, code, message)) => Err(Stop::Failed(format!(
                "GET /api/v2/organizations/me: HTTP {status} {code}: {message}"
            ))),
        }
    }

    async fn sample(&mut self, c: &Counted<'_>) -> Result<(), Stop> {
        for days in [self.settings.lookback_days, 89] {
            self.window = (
                self.now - jiff::SignedDuration::from_hours(24 * days),
                self.now,
            );
            for size in [100, 25] {
                let mut body = self.search_body(size, 1, false);
                body["aggregations"] =
                    json!([{"name": "evaluations", "type": "COUNT", "field": "evaluationStatus"}]);
                let reply = self.call(c, SEARCH, Some(&body)).await?;
                let Ok(v) = reply.result else { continue };
                self.count = v["aggregations"]["evaluations"]["count"]
                    .as_f64()
                    .or(v["aggregations"]["evaluations"]["value"].as_f64())
                    .map(|n| n as u64);
                self.sample = results(&v).iter().filter_map(Item::from_value).collect();
                if let Some(o) = body.as_object_mut() {
                    o.remove("aggregations");
                }
                self.sample_body = body;
                break;
            }
            if !self.sample.is_empty() {
                break;
            }
        }
        Ok(())
    }

    async fn check(&mut self, c: &Counted<'_>, u: u8) -> Result<Finding, Stop> {
        if self.sample.is_empty() && u != 11 {
            return Ok(not_observed(
                u,
                "no human evaluation submitted in the last 89 days to probe with".into(),
            ));
        }
        match u {
            1 => self.u1(c).await,
            2 => self.u2(c).await,
            3 => self.u3(c).await,
            4 => self.u4(c).await,
            5 => self.u5(c).await,
            6 => self.u6(c).await,
            7 => self.u7(c).await,
            8 => self.u8(c).await,
            9 => self.u9(c).await,
            10 => self.u10(c).await,
            11 => Ok(self.u11()),
            _ => self.u12(c).await,
        }
    }

    /// Evaluators of the sample, most evaluations first.
    fn evaluators(&self) -> Vec<String> {
        let mut n: BTreeMap<&str, usize> = BTreeMap::new();
        for e in self.sample.iter().filter_map(|i| i.evaluator.as_deref()) {
            *n.entry(e).or_default() += 1;
        }
        let mut v: Vec<(&str, usize)> = n.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.into_iter().map(|(e, _)| e.to_owned()).collect()
    }

    /// U1: a finished, unredacted evaluation from the bulk query, with or without
    /// `answers.questionGroupScores`.
    async fn u1(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        for e in self.evaluators().into_iter().take(3) {
            let path = format!(
                "{QUERY}?evaluatorUserId={e}&expandAnswerTotalScores=true&includeDeletedUsers=true&pageSize=25&sortOrder=desc"
            );
            let reply = self.call(c, &path, None).await?;
            let Ok(v) = &reply.result else { continue };
            let finished = entities(v)
                .iter()
                .find(|x| x["status"] == "FINISHED" && x["redacted"].as_bool() != Some(true));
            if let Some(x) = finished {
                let answers = &x["answers"];
                let excerpt = format!("{} answers: {}", x["id"], abridged(answers));
                let full = answers.get("questionGroupScores").is_some();
                let (answer, observed) = if full {
                    (Answer::A, "question-group scores included")
                } else {
                    (Answer::B, "totals only (no questionGroupScores)")
                };
                return Ok(finding(
                    1,
                    answer,
                    observed.into(),
                    reply.evidence_with(excerpt),
                ));
            }
        }
        Ok(not_observed(
            1,
            "no finished, unredacted evaluation in the bulk query of the sample's evaluators"
                .into(),
        ))
    }

    /// U2: whether the bulk query's `nextUri` keeps the request's parameters.
    async fn u2(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        let (from, to) = self.window;
        for e in self.evaluators().into_iter().take(2) {
            let params = [
                ("evaluatorUserId", e.clone()),
                ("startTime", genesys_time(from)),
                ("endTime", genesys_time(to)),
                ("expandAnswerTotalScores", "true".into()),
                ("includeDeletedUsers", "true".into()),
                ("pageSize", "1".into()),
            ];
            let path = format!("{QUERY}?{}", encode(&params));
            let reply = self.call(c, &path, None).await?;
            let Ok(v) = &reply.result else { continue };
            let Some(next) = v["nextUri"].as_str().filter(|s| !s.is_empty()) else {
                continue;
            };
            let Ok(url) = url::Url::parse("http://next.invalid").and_then(|b| b.join(next)) else {
                continue;
            };
            let given: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
            let lost: Vec<&str> = params
                .iter()
                .filter(|(k, v)| given.get(*k) != Some(v))
                .map(|(k, _)| *k)
                .collect();
            let evidence = reply.evidence_with(format!("nextUri: {next}"));
            return Ok(if lost.is_empty() {
                finding(
                    2,
                    Answer::A,
                    "nextUri keeps every parameter".into(),
                    evidence,
                )
            } else {
                finding(
                    2,
                    Answer::B,
                    format!("nextUri lost {}", lost.join(", ")),
                    evidence,
                )
            });
        }
        Ok(not_observed(
            2,
            "no evaluator with two evaluations in the window: no nextUri to read".into(),
        ))
    }

    /// U3: a search page size above the maximum (1,000): refused, or served smaller.
    async fn u3(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        let mut body = self.sample_body.clone();
        body["pageSize"] = json!(1000);
        let reply = self.call(c, SEARCH, Some(&body)).await?;
        let evidence = reply.evidence();
        let v = match &reply.result {
            Err((400, ..)) => {
                return Ok(finding(
                    3,
                    Answer::A,
                    "400 for pageSize 1000".into(),
                    evidence,
                ));
            }
            Err((status, code, _)) => {
                return Ok(not_observed(
                    3,
                    format!("HTTP {status} {code} for pageSize 1000"),
                ));
            }
            Ok(v) => v,
        };
        let n = results(v).len() as u64;
        let echoed = v["pageSize"].as_u64();
        let excerpt = reply.evidence_with(format!(
            "pageSize: {}, results: {n}, COUNT aggregation: {}",
            echoed.map_or("absent".into(), |e| e.to_string()),
            self.count.map_or("absent".into(), |n| n.to_string())
        ));
        Ok(match (echoed, self.count) {
            (Some(e), _) if e < 1000 => finding(
                3,
                Answer::B,
                format!("clamped: pages of {e} served"),
                excerpt,
            ),
            (_, Some(total)) if n < total.min(1000) => finding(
                3,
                Answer::B,
                format!("clamped silently: {n} of {total} results, pageSize echoed as asked"),
                excerpt,
            ),
            (_, Some(total)) => not_observed(
                3,
                format!("200 with all {n} of {total} results: no maximum below 1000 seen"),
            ),
            (_, None) => not_observed(
                3,
                format!("200 with {n} results and no COUNT aggregation to compare"),
            ),
        })
    }

    /// U4: the order of evaluations with equal `submittedDate` in repeated identical
    /// requests.
    async fn u4(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        let groups = ties(&self.sample);
        if groups.is_empty() {
            return Ok(not_observed(
                4,
                format!(
                    "no two of the {} sampled evaluations share a submittedDate",
                    self.sample.len()
                ),
            ));
        }
        let body = self.sample_body.clone();
        for _ in 0..2 {
            let reply = self.call(c, SEARCH, Some(&body)).await?;
            let Ok(v) = &reply.result else { continue };
            let again: Vec<Item> = results(v).iter().filter_map(Item::from_value).collect();
            let position: BTreeMap<&str, usize> = again
                .iter()
                .enumerate()
                .map(|(i, x)| (x.id.as_str(), i))
                .collect();
            for group in &groups {
                let before: Vec<&str> = group
                    .iter()
                    .map(String::as_str)
                    .filter(|id| position.contains_key(id))
                    .collect();
                let mut after = before.clone();
                after.sort_by_key(|id| position[id]);
                if before != after {
                    let excerpt = format!(
                        "same submittedDate, first request: {}; this one: {}",
                        short_ids(&before),
                        short_ids(&after)
                    );
                    return Ok(finding(
                        4,
                        Answer::B,
                        "unstable: tied evaluations reordered between identical requests".into(),
                        reply.evidence_with(excerpt),
                    ));
                }
            }
        }
        let first = groups[0].iter().map(String::as_str).collect::<Vec<_>>();
        let evidence = Evidence {
            request: format!("POST {SEARCH} {} (3 times)", describe_search(&body)),
            excerpt: clip(&format!(
                "same submittedDate, each time: {}",
                short_ids(&first)
            )),
        };
        Ok(finding(
            4,
            Answer::A,
            format!(
                "stable: {} groups of tied evaluations in the same order in 3 identical requests",
                groups.len()
            ),
            evidence,
        ))
    }

    /// U5: a search page past 10,000 results.
    async fn u5(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        let mut body = self.sample_body.clone();
        body["pageSize"] = json!(25);
        body["pageNumber"] = json!(401);
        let reply = self.call(c, SEARCH, Some(&body)).await?;
        let evidence = reply.evidence();
        Ok(match &reply.result {
            Err((400, ..)) => finding(5, Answer::A, "400 past 10,000 results".into(), evidence),
            Ok(v) if results(v).is_empty() => finding(
                5,
                Answer::B,
                "200 with an empty page past 10,000 results".into(),
                evidence,
            ),
            Ok(v) => not_observed(
                5,
                format!(
                    "200 with {} results past 10,000: no cap there",
                    results(v).len()
                ),
            ),
            Err((status, code, _)) => not_observed(5, format!("HTTP {status} {code}")),
        })
    }

    /// U6: which date the bulk query's `startTime`/`endTime` bound, from one released
    /// evaluation queried over 1 ms at its created date and at its release date.
    async fn u6(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        let mut candidates: Vec<Value> = self.fetched.clone();
        let mut extra = self
            .sample
            .iter()
            .filter(|i| i.evaluator.is_some() && !i.conversation.is_empty())
            .filter(|i| !candidates.iter().any(|v| v["id"] == i.id.as_str()))
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .into_iter();
        loop {
            let pick = candidates.iter().find_map(|v| {
                let h: EvaluationHead = serde_json::from_value(v.clone()).ok()?;
                let (created, released) = (h.created_date?, h.release_date?);
                let evaluator = h.evaluator.and_then(|e| e.id)?;
                (created != released).then_some((h.id, evaluator, created, released))
            });
            if let Some((id, evaluator, created, released)) = pick {
                return self.u6_bounds(c, &id, &evaluator, created, released).await;
            }
            let Some(item) = extra.next() else {
                return Ok(not_observed(
                    6,
                    "no released evaluation among the evaluations read".into(),
                ));
            };
            let reply = self.call(c, &single_path(&item), None).await?;
            if let Ok(v) = reply.result {
                candidates.push(v);
            }
        }
    }

    async fn u6_bounds(
        &mut self,
        c: &Counted<'_>,
        id: &str,
        evaluator: &str,
        created: Timestamp,
        released: Timestamp,
    ) -> Result<Finding, Stop> {
        let mut found = Vec::new();
        let mut last = None;
        for at in [created, released] {
            let params = [
                ("evaluatorUserId", evaluator.to_owned()),
                ("startTime", genesys_time(at)),
                ("endTime", genesys_time(at + Duration::from_millis(1))),
                ("includeDeletedUsers", "true".into()),
                ("pageSize", "25".into()),
            ];
            let reply = self
                .call(c, &format!("{QUERY}?{}", encode(&params)), None)
                .await?;
            let hit = reply
                .result
                .as_ref()
                .is_ok_and(|v| entities(v).iter().any(|x| x["id"] == id));
            found.push(hit);
            last = Some(reply);
        }
        let reply = last.expect("two queries were made");
        let excerpt = format!(
            "evaluation {} (created {}, released {}): 1 ms at created date → {}; at release date → {}",
            short(id),
            genesys_time(created),
            genesys_time(released),
            if found[0] { "found" } else { "not found" },
            if found[1] { "found" } else { "not found" },
        );
        let evidence = reply.evidence_with(excerpt);
        Ok(match (found[0], found[1]) {
            (true, false) => finding(6, Answer::A, "created date".into(), evidence),
            (false, true) => finding(6, Answer::B, "release date".into(), evidence),
            (false, false) => finding(
                6,
                Answer::B,
                "neither the created nor the release date".into(),
                evidence,
            ),
            (true, true) => not_observed(6, "found at both dates".into()),
        })
    }

    /// U7: a query by a deleted user without `includeDeletedUsers`.
    async fn u7(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        let mut reply = self
            .call(c, "/api/v2/users?state=deleted&pageSize=100", None)
            .await?;
        if reply.status() == 400 {
            reply = self.call(c, "/api/v2/users?pageSize=500", None).await?;
        }
        let Ok(v) = &reply.result else {
            let (status, code, _) = reply.result.err().unwrap_or_default();
            return Ok(not_observed(7, format!("users list: HTTP {status} {code}")));
        };
        let deleted: Vec<String> = entities(v)
            .iter()
            .filter(|u| u["state"] == "deleted")
            .filter_map(|u| u["id"].as_str().map(str::to_owned))
            .collect();
        if deleted.is_empty() {
            return Ok(not_observed(7, "no deleted user in the org".into()));
        }
        for user in deleted.iter().take(3) {
            let Some((param, listed)) = self.evaluations_of(c, user).await? else {
                continue;
            };
            let path = format!("{QUERY}?{param}={user}&pageSize=25");
            let reply = self.call(c, &path, None).await?;
            let evidence = reply.evidence();
            return Ok(match &reply.result {
                Err((400, code, _)) if code == "quality.query.invalid.user" => finding(
                    7,
                    Answer::B,
                    "rejected: 400 quality.query.invalid.user".into(),
                    evidence,
                ),
                Ok(v) if !entities(v).is_empty() => {
                    finding(7, Answer::A, "returned".into(), evidence)
                }
                Ok(_) => finding(
                    7,
                    Answer::B,
                    format!("omitted: 200 without the {listed}+ evaluations the search lists"),
                    evidence,
                ),
                Err((status, code, _)) => not_observed(7, format!("HTTP {status} {code}")),
            });
        }
        Ok(not_observed(
            7,
            format!(
                "{} deleted user(s), none with evaluations in the window",
                deleted.len()
            ),
        ))
    }

    /// How to query `user`'s evaluations (`evaluatorUserId` or `agentUserId`) and how many
    /// the search lists for them in the window; `None` when it lists none.
    async fn evaluations_of(
        &mut self,
        c: &Counted<'_>,
        user: &str,
    ) -> Result<Option<(&'static str, usize)>, Stop> {
        let as_evaluator = self
            .sample
            .iter()
            .filter(|i| i.evaluator.as_deref() == Some(user))
            .count();
        if as_evaluator > 0 {
            return Ok(Some(("evaluatorUserId", as_evaluator)));
        }
        let as_agent = self
            .sample
            .iter()
            .filter(|i| i.agent.as_deref() == Some(user))
            .count();
        if as_agent > 0 {
            return Ok(Some(("agentUserId", as_agent)));
        }
        for (field, param) in [
            ("evaluatorId", "evaluatorUserId"),
            ("agentId", "agentUserId"),
        ] {
            let mut body = self.sample_body.clone();
            body["pageSize"] = json!(25);
            body["query"] = json!([
                date_range(self.window.0, self.window.1),
                {"type": "EXACT", "field": field, "value": user},
            ]);
            let reply = self.call(c, SEARCH, Some(&body)).await?;
            if let Ok(v) = &reply.result
                && !results(v).is_empty()
            {
                return Ok(Some((param, results(v).len())));
            }
        }
        Ok(None)
    }

    /// U8: single GETs of sampled evaluations, first those the search lists but a bulk
    /// query of their evaluator did not return.
    async fn u8(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        let mut missing: Vec<Item> = Vec::new();
        for e in self.evaluators().into_iter().take(5) {
            let mut wanted: BTreeMap<String, Item> = self
                .sample
                .iter()
                .filter(|i| i.evaluator.as_deref() == Some(e.as_str()))
                .map(|i| (i.id.clone(), i.clone()))
                .collect();
            let size = self.query_page_size;
            let mut oldest_seen: Option<Timestamp> = None;
            let mut ended = false;
            for page in 1..=2 {
                let path = format!(
                    "{QUERY}?evaluatorUserId={e}&includeDeletedUsers=true&sortOrder=desc&pageSize={size}&pageNumber={page}"
                );
                let reply = self.call(c, &path, None).await?;
                let Ok(v) = &reply.result else { break };
                let page_entities = entities(v);
                for x in page_entities {
                    if let Some(id) = x["id"].as_str() {
                        wanted.remove(id);
                    }
                    let created: Option<Timestamp> =
                        x["createdDate"].as_str().and_then(|s| s.parse().ok());
                    oldest_seen = match (oldest_seen, created) {
                        (Some(o), Some(t)) => Some(o.min(t)),
                        (o, t) => o.or(t),
                    };
                }
                if page_entities.len() < size as usize {
                    ended = true;
                    break;
                }
                if wanted.is_empty() {
                    break;
                }
            }
            // Not returned although the listing went past them.
            missing.extend(wanted.into_values().filter(|i| {
                ended || matches!((i.created, oldest_seen), (Some(t), Some(o)) if t > o)
            }));
        }
        let not_in_bulk = missing.len();
        let missing_ids: BTreeSet<String> = missing.iter().map(|i| i.id.clone()).collect();
        let others = self
            .sample
            .iter()
            .filter(|i| !missing_ids.contains(&i.id))
            .cloned();
        let candidates: Vec<Item> = missing
            .into_iter()
            .chain(others)
            .filter(|i| !i.conversation.is_empty())
            .take(5)
            .collect();
        let mut last = None;
        for item in &candidates {
            let reply = self.call(c, &single_path(item), None).await?;
            match &reply.result {
                Err((403, ..)) => {
                    return Ok(finding(
                        8,
                        Answer::B,
                        "403 not.authorized for an evaluation the search lists".into(),
                        reply.evidence(),
                    ));
                }
                Ok(v) => self.fetched.push(v.clone()),
                Err(_) => {}
            }
            last = Some(reply);
        }
        let Some(reply) = last else {
            return Ok(not_observed(8, "no evaluation to read".into()));
        };
        let observed = format!(
            "no 403 in {} GETs ({} of them listed by the search but not returned by the bulk query)",
            candidates.len(),
            not_in_bulk.min(candidates.len())
        );
        let excerpt = format!("HTTP {} {}", reply.status(), reply.evidence().excerpt);
        Ok(finding(
            8,
            Answer::A,
            observed,
            reply.evidence_with(excerpt),
        ))
    }

    /// U9: human evaluations (from a `systemSubmitted: false` page) searched again with
    /// `systemSubmitted: true`.
    async fn u9(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        let ids: Vec<&str> = self.sample.iter().take(25).map(|i| i.id.as_str()).collect();
        let mut body = self.search_body(25, 1, true);
        body["query"] = json!([
            date_range(self.window.0, self.window.1),
            {"type": "EXACT", "field": "evaluationId", "values": ids},
        ]);
        let n = ids.len();
        let reply = self.call(c, SEARCH, Some(&body)).await?;
        let evidence = listed(&reply);
        Ok(match &reply.result {
            Ok(v) if results(v).is_empty() => finding(
                9,
                Answer::A,
                format!("only automated: none of {n} human evaluations listed"),
                evidence,
            ),
            Ok(v) => finding(
                9,
                Answer::B,
                format!(
                    "automated and human: {} of {n} human evaluations listed",
                    results(v).len()
                ),
                evidence,
            ),
            Err((status, code, _)) => not_observed(9, format!("HTTP {status} {code}")),
        })
    }

    /// U10: one evaluation searched with a `DATE_RANGE` that ends exactly at its
    /// `submittedDate`.
    async fn u10(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        let Some((id, t)) = self
            .sample
            .iter()
            .find_map(|i| Some((i.id.clone(), i.submitted?)))
        else {
            return Ok(not_observed(10, "no submittedDate in the sample".into()));
        };
        let mut body = self.search_body(25, 1, false);
        body["query"] = json!([
            date_range(t - Duration::from_secs(86_400), t),
            {"type": "EXACT", "field": "evaluationId", "value": id},
        ]);
        let reply = self.call(c, SEARCH, Some(&body)).await?;
        let evidence = listed(&reply);
        Ok(match &reply.result {
            Ok(v) if results(v).is_empty() => finding(
                10,
                Answer::A,
                "exclusive: an evaluation at the end value is not listed".into(),
                evidence,
            ),
            Ok(_) => finding(
                10,
                Answer::B,
                "inclusive: an evaluation at exactly the end value is listed".into(),
                evidence,
            ),
            Err((status, code, _)) => not_observed(10, format!("HTTP {status} {code}")),
        })
    }

    /// U11: the limit's allowance and window, from a response that opened its window.
    fn u11(&self) -> Finding {
        let header = |h: &RateHeaders| {
            let n = |x: Option<u64>| x.map_or("absent".into(), |x| x.to_string());
            format!(
                "inin-ratelimit-allowed: {}, -count: {}, -reset: {}",
                n(h.allowed.map(u64::from)),
                n(h.count.map(u64::from)),
                n(h.reset_secs)
            )
        };
        let evidence = |(request, h): &(String, RateHeaders)| Evidence {
            request: request.clone(),
            excerpt: header(h),
        };
        let mut f = match (&self.opening, &self.last_rate) {
            (Some(seen @ (_, h)), _) if h.allowed.is_some() && h.reset_secs.is_some() => {
                let (allowed, reset) = (h.allowed.unwrap_or(0), h.reset_secs.unwrap_or(0));
                let answer = if allowed == 300 && (59..=60).contains(&reset) {
                    Answer::A
                } else {
                    Answer::B
                };
                let mut f = finding(
                    11,
                    answer,
                    format!("{allowed} requests per {reset} s"),
                    evidence(seen),
                );
                if answer == Answer::B {
                    f.setting = format!(
                        "rate_limit = {allowed}, rate_window_secs = {reset} in the orgs file"
                    );
                }
                f
            }
            (_, Some(seen @ (_, h))) if h.allowed.is_some_and(|a| a != 300) => {
                let allowed = h.allowed.unwrap_or(0);
                let mut f = finding(
                    11,
                    Answer::B,
                    format!("{allowed} requests per window (no response opened a window)"),
                    evidence(seen),
                );
                f.setting = format!("rate_limit = {allowed} in the orgs file");
                f
            }
            (_, Some(seen)) => {
                let mut f = not_observed(
                    11,
                    "no response opened a window (count 1): its length was not seen".into(),
                );
                f.evidence = evidence(seen);
                f
            }
            _ => not_observed(11, "no inin-ratelimit headers received".into()),
        };
        if f.answer == Answer::NotObserved {
            f.setting = "rate_limit / rate_window_secs in the orgs file".into();
        }
        f
    }

    /// U12: a bulk query with `pageSize` 100.
    async fn u12(&mut self, c: &Counted<'_>) -> Result<Finding, Stop> {
        let e = self.evaluators().into_iter().next();
        let Some(e) = e else {
            return Ok(not_observed(12, "no evaluator in the sample".into()));
        };
        let path = format!("{QUERY}?evaluatorUserId={e}&includeDeletedUsers=true&pageSize=100");
        let reply = self.call(c, &path, None).await?;
        let evidence = reply.evidence();
        Ok(match &reply.result {
            Ok(v) => {
                self.query_page_size = 100;
                let excerpt = format!(
                    "pageSize: {}, entities: {}",
                    v["pageSize"],
                    entities(v).len()
                );
                finding(
                    12,
                    Answer::A,
                    "pageSize 100 accepted".into(),
                    reply.evidence_with(excerpt),
                )
            }
            Err((400, ..)) => finding(12, Answer::B, "400 for pageSize 100".into(), evidence),
            Err((status, code, _)) => not_observed(12, format!("HTTP {status} {code}")),
        })
    }
}

/// A search reply's evidence: how many results, and their ids and submitted dates.
fn listed(reply: &Reply) -> Evidence {
    match &reply.result {
        Ok(v) => {
            let items: Vec<String> = results(v)
                .iter()
                .map(|x| {
                    format!(
                        "{} {}",
                        short(x["id"].as_str().unwrap_or("?")),
                        x["submittedDate"].as_str().unwrap_or("")
                    )
                })
                .collect();
            reply.evidence_with(format!("results: {} [{}]", items.len(), items.join(", ")))
        }
        Err(_) => reply.evidence(),
    }
}

/// Groups of sampled ids that share a `submittedDate`, in sample order.
fn ties(sample: &[Item]) -> Vec<Vec<String>> {
    let mut by_date: BTreeMap<Timestamp, Vec<String>> = BTreeMap::new();
    for i in sample {
        if let Some(t) = i.submitted {
            by_date.entry(t).or_default().push(i.id.clone());
        }
    }
    by_date.into_values().filter(|g| g.len() > 1).collect()
}

fn date_range(from: Timestamp, to: Timestamp) -> Value {
    json!({
        "type": "DATE_RANGE",
        "field": "submittedDate",
        "startValue": genesys_time(from),
        "endValue": genesys_time(to),
    })
}

fn single_path(i: &Item) -> String {
    format!(
        "/api/v2/quality/conversations/{}/evaluations/{}",
        i.conversation, i.id
    )
}

fn results(v: &Value) -> &[Value] {
    v["results"].as_array().map_or(&[], Vec::as_slice)
}

fn entities(v: &Value) -> &[Value] {
    v["entities"].as_array().map_or(&[], Vec::as_slice)
}

fn encode(pairs: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}

/// A search body in one line: paging, `systemSubmitted` and the criteria.
fn describe_search(body: &Value) -> String {
    let criteria: Vec<String> = body["query"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|q| match q["type"].as_str() {
            Some("DATE_RANGE") => format!(
                "{} in [{}, {})",
                q["field"].as_str().unwrap_or("?"),
                q["startValue"].as_str().unwrap_or("?"),
                q["endValue"].as_str().unwrap_or("?")
            ),
            _ => match q["values"].as_array() {
                Some(v) => format!("{} in {} ids", q["field"].as_str().unwrap_or("?"), v.len()),
                None => format!(
                    "{} = {}",
                    q["field"].as_str().unwrap_or("?"),
                    short(q["value"].as_str().unwrap_or("?"))
                ),
            },
        })
        .collect();
    format!(
        "pageSize={} pageNumber={} systemSubmitted={} {}",
        body["pageSize"],
        body["pageNumber"],
        body["systemSubmitted"],
        criteria.join(", ")
    )
}

/// `answers` with its arrays shown as their length.
fn abridged(answers: &Value) -> String {
    match answers.as_object() {
        Some(o) => {
            let fields: Vec<String> = o
                .iter()
                .map(|(k, v)| match v.as_array() {
                    Some(a) => format!("\"{k}\":[…{}]", a.len()),
                    None => format!("\"{k}\":{v}"),
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        None => answers.to_string(),
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn short_ids(ids: &[&str]) -> String {
    let v: Vec<&str> = ids.iter().map(|id| short(id)).collect();
    format!("[{}]", v.join(", "))
}

/// At most 200 characters.
fn clip(s: &str) -> String {
    if s.chars().count() <= 200 {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(199).collect();
    out.push('…');
    out
}

fn not_observed(u: u8, observed: String) -> Finding {
    finding(u, Answer::NotObserved, observed, Evidence::default())
}

/// A finding with the question, consequence and setting of `u`.
fn finding(u: u8, answer: Answer, observed: String, evidence: Evidence) -> Finding {
    let (unknown, question, if_a, if_b) = about(u);
    let consequence = match answer {
        Answer::A => if_a.to_owned(),
        Answer::B => if_b.to_owned(),
        Answer::NotObserved => format!("if B: {if_b}"),
    };
    Finding {
        unknown,
        question,
        answer,
        observed,
        evidence,
        consequence,
        setting: NO_SETTING.into(),
    }
}

/// Name, question, and what the export does under answer A and answer B.
fn about(u: u8) -> (&'static str, &'static str, &'static str, &'static str) {
    match u {
        1 => (
            "U1",
            "Does the bulk query with expandAnswerTotalScores give question-group scores?",
            "none: finished evaluations come in bulk with their scores",
            "every finished evaluation is fetched alone: about 1,000 requests per 1,000 evaluations instead of about 100",
        ),
        2 => (
            "U2",
            "Does the bulk query's nextUri keep every parameter?",
            "none: nextUri is followed as given",
            "the lost parameters are put back on every nextUri: no extra requests",
        ),
        3 => (
            "U3",
            "Search pageSize above the maximum: refused or clamped?",
            "none: a refused page size is stepped down once",
            "the smaller page size is followed and every listing ends on an empty page: more search requests per day (twice as many at 50 per page)",
        ),
        4 => (
            "U4",
            "Is the search order among equal submittedDate values stable?",
            "none: listings are exact in one pass",
            "a listing with repeated ids is split into smaller windows and listed again: a few extra search requests on days with ties",
        ),
        5 => (
            "U5",
            "Search past 10,000 results: 400 or an empty page?",
            "none: windows past the cap are split",
            "a listing that ends on a full page is checked from its other end: 1 extra search request per such listing",
        ),
        6 => (
            "U6",
            "Which date do the bulk query's startTime/endTime bound?",
            "none: bulk queries are bounded by created date",
            "evaluations a bounded bulk query misses are fetched alone: one request each (unreleased ones always)",
        ),
        7 => (
            "U7",
            "Does the bulk query return evaluations of deleted users?",
            "none: bulk queries also ask includeDeletedUsers=true",
            "bulk queries ask includeDeletedUsers=true; a refused bulk query falls back to one request per evaluation of that user",
        ),
        8 => (
            "U8",
            "Does a single GET outside the client's divisions answer 403?",
            "none: every listed evaluation can be read",
            "refused evaluations are listed in the day's manifest as unavailable and the day commits with gaps (retried by the next lookback); give the OAuth client's role every division to export them",
        ),
        9 => (
            "U9",
            "Does search systemSubmitted: true list only automated evaluations?",
            "none: the two searches list disjoint sets",
            "an id the human search lists is kept as human: no extra requests, no duplicates",
        ),
        10 => (
            "U10",
            "Is the search DATE_RANGE end exclusive?",
            "none: days do not overlap",
            "evaluations at exactly midnight are listed by two days and exported by the day they belong to (counted as outside_window by the other): no extra requests",
        ),
        11 => (
            "U11",
            "Is the rate limit 300 requests per 60 s window?",
            "none: the export paces to 300 per 60 s",
            "the rate control learns the allowance and window from the headers at run time; until then it paces to the configured limit",
        ),
        _ => (
            "U12",
            "Does the bulk query accept pageSize 100?",
            "none: 100 evaluations per bulk request",
            "the bulk query page size is stepped down (100, 50, 25) and kept: up to 4 times as many bulk requests",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_clipped_to_200_characters() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(300);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), 200);
        assert!(clipped.ends_with('…'));
    }

    #[test]
    fn ties_group_equal_submitted_dates() {
        let item = |id: &str, t: &str| Item {
            id: id.into(),
            conversation: "c".into(),
            evaluator: None,
            agent: None,
            created: None,
            submitted: Some(t.parse().unwrap()),
        };
        let sample = [
            item("a", "2026-11-28T10:00:00.000Z"),
            item("b", "2026-11-28T10:00:00.000Z"),
            item("c", "2026-11-28T11:00:00.000Z"),
        ];
        assert_eq!(ties(&sample), vec![vec!["a".to_string(), "b".into()]]);
    }

    #[test]
    fn search_bodies_are_described_in_one_line() {
        let body = json!({"pageSize": 25, "pageNumber": 1, "systemSubmitted": true, "query": [
            date_range("2026-11-28T00:00:00Z".parse().unwrap(), "2026-11-29T00:00:00Z".parse().unwrap()),
            {"type": "EXACT", "field": "evaluationId", "values": ["a", "b"]},
        ]});
        assert_eq!(
            describe_search(&body),
            "pageSize=25 pageNumber=1 systemSubmitted=true submittedDate in [2026-11-28T00:00:00.000Z, 2026-11-29T00:00:00.000Z), evaluationId in 2 ids"
        );
    }

    #[test]
    fn abridged_answers_show_array_lengths() {
        let a = json!({"totalScore": 80.0, "questionGroupScores": [1, 2, 3]});
        assert_eq!(
            abridged(&a),
            r#"{"questionGroupScores":[…3],"totalScore":80.0}"#
        );
    }
}
