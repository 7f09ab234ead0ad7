//! Step 2 of DESIGN §6: full evaluations (with `answers`) for a group of discovered ids.
//!
//! A group is the discovered evaluations of one evaluator: one bulk
//! `GET /api/v2/quality/evaluations/query?evaluatorUserId=…&expandAnswerTotalScores=true&includeDeletedUsers=true`
//! (evaluator queries include never-release evaluations, agent-only queries would not),
//! bounded by the group's `createdDate` range and paged by `nextUri`. Evaluations without
//! an evaluator (automated ones) are grouped by agent (`agentUserId=…`). Paging stops at
//! the end, on a repeated `nextUri` or on an empty page; a `nextUri` that lost some of the
//! request's parameters (reference §8 U2) gets them back.
//!
//! What the bulk query did not return, or returned without question-group scores although
//! the evaluation should have them (U1), is fetched one by one with
//! `GET /api/v2/quality/conversations/{conversationId}/evaluations/{evaluationId}`. A bulk
//! query refused with a 4xx (a deleted user, U7; a page size above the maximum, U12, after
//! stepping the page size down) falls back to single GETs for its group. An evaluation the
//! single GET refuses (403, 404, a 5xx that outlived its retries) is reported
//! [`Unavailable`], never dropped silently. An id seen twice keeps the copy with the newest
//! `changedDate`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use serde_json::value::RawValue;

use crate::domain::genesys_time;
use crate::genesys::models::{EntityListing, EvaluationHead};
use crate::genesys::{Counted, GenesysError};
use crate::ports::{Discovered, Unavailable};

/// Group key of evaluations without an evaluator: fetched one by one.
pub(crate) const SINGLE_GROUP: &str = "single";

/// Smallest bulk query page size the exporter steps down to after 400s.
const MIN_QUERY_PAGE_SIZE: u32 = 25;

/// One fetched evaluation.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub id: String,
    pub changed: Option<Timestamp>,
    pub form_id: Option<String>,
    pub calibration: bool,
    pub automated: bool,
    /// The evaluation as read (dates, status, whether scores are present).
    pub head: EvaluationHead,
    pub raw: Box<RawValue>,
}

/// What one group gave: its evaluations, and those the API refused.
#[derive(Debug, Default)]
pub(crate) struct GroupResult {
    pub fetched: BTreeMap<String, Fetched>,
    pub unavailable: Vec<Unavailable>,
}

/// What the bulk query turned out to do for this org, learned on the way and shared by
/// every group and day the exporter works on.
#[derive(Debug)]
pub(crate) struct QueryLearning {
    /// `pageSize` the bulk query accepts.
    page_size: AtomicU32,
    /// Finished, unredacted evaluations the bulk query served with / without
    /// question-group scores.
    with_scores: AtomicU64,
    without_scores: AtomicU64,
    /// Set once the bulk query is seen to serve totals only: later groups go straight to
    /// single GETs (the bulk pages would be requests spent for nothing).
    totals_only: AtomicBool,
    /// A `nextUri` lost parameters (logged once).
    repaired_logged: AtomicBool,
}

impl QueryLearning {
    /// Starts from the configured page size.
    pub(crate) fn new(page_size: u32) -> Self {
        Self {
            page_size: AtomicU32::new(page_size.max(1)),
            with_scores: AtomicU64::new(0),
            without_scores: AtomicU64::new(0),
            totals_only: AtomicBool::new(false),
            repaired_logged: AtomicBool::new(false),
        }
    }

    fn note_scores(&self, lacking: bool) {
        let counter = if lacking {
            &self.without_scores
        } else {
            &self.with_scores
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if lacking
            && self.with_scores.load(Ordering::Relaxed) == 0
            && self.without_scores.load(Ordering::Relaxed) >= 5
            && !self.totals_only.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "the bulk query serves total scores without question-group scores; fetching evaluations one by one"
            );
        }
    }
}

/// The group key of a discovered evaluation.
pub(crate) fn group_of(d: &Discovered) -> String {
    if d.created_date.is_none() {
        return SINGLE_GROUP.to_owned();
    }
    match (&d.evaluator_id, &d.agent_id) {
        (Some(e), _) if !e.is_empty() => format!("evaluator:{e}"),
        (_, Some(a)) if !a.is_empty() => format!("agent:{a}"),
        _ => SINGLE_GROUP.to_owned(),
    }
}

fn keep_newest(out: &mut BTreeMap<String, Fetched>, f: Fetched) {
    match out.get(&f.id) {
        Some(old) if old.changed >= f.changed => {}
        _ => {
            out.insert(f.id.clone(), f);
        }
    }
}

fn fetched(raw: Box<RawValue>, automated: bool) -> Option<Fetched> {
    let head: EvaluationHead = serde_json::from_str(raw.get()).ok()?;
    Some(Fetched {
        changed: head.changed_date,
        form_id: head.evaluation_form.as_ref().and_then(|f| f.id.clone()),
        calibration: head.calibration.as_ref().is_some_and(|c| !c.is_null()),
        automated,
        id: head.id.clone(),
        head,
        raw,
    })
}

/// Fetches every evaluation of `members` (all of one group).
pub(crate) async fn fetch_group(
    client: &Counted<'_>,
    group: &str,
    members: &[Discovered],
    learning: &QueryLearning,
    in_flight: usize,
) -> Result<GroupResult, GenesysError> {
    let wanted: BTreeMap<&str, &Discovered> = members.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut out = BTreeMap::new();
    let by = group
        .strip_prefix("evaluator:")
        .map(|id| ("evaluatorUserId", id))
        .or_else(|| group.strip_prefix("agent:").map(|id| ("agentUserId", id)));
    if let Some((param, user)) = by
        && !learning.totals_only.load(Ordering::Relaxed)
    {
        let created = members.iter().filter_map(|d| d.created_date);
        if let (Some(from), Some(to)) = (created.clone().min(), created.max()) {
            let bulk = Bulk {
                client,
                param,
                user,
                from,
                to: to + Duration::from_millis(1),
                learning,
            };
            match bulk.fetch(&wanted).await {
                Ok(found) => out = found,
                Err(GenesysError::Api {
                    status,
                    code,
                    context_id,
                    ..
                }) if (400..500).contains(&status) => {
                    tracing::warn!(%group, status, %code, %context_id, "bulk query refused; fetching the group's evaluations one by one");
                }
                Err(e) => return Err(e),
            }
        }
    }
    // Served without question-group scores it should have: fetch it alone.
    out.retain(|_, f| !f.head.lacks_question_scores());
    let missing: Vec<Discovered> = members
        .iter()
        .filter(|d| !out.contains_key(&d.id))
        .cloned()
        .collect();
    let mut result = GroupResult {
        fetched: out,
        unavailable: Vec::new(),
    };
    let mut singles = futures::stream::iter(missing)
        .map(|d| fetch_one(client, d))
        .buffer_unordered(in_flight.max(1));
    while let Some(single) = singles.next().await {
        match single? {
            Ok(f) => keep_newest(&mut result.fetched, f),
            Err(gap) => result.unavailable.push(gap),
        }
    }
    result.unavailable.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(result)
}

/// One bulk query of a group.
struct Bulk<'a> {
    client: &'a Counted<'a>,
    param: &'static str,
    user: &'a str,
    from: Timestamp,
    to: Timestamp,
    learning: &'a QueryLearning,
}

impl Bulk<'_> {
    /// The query's parameters; `pageNumber` last.
    fn params(&self, page_size: u32) -> Vec<(&'static str, String)> {
        vec![
            (self.param, self.user.to_owned()),
            ("startTime", genesys_time(self.from)),
            ("endTime", genesys_time(self.to)),
            ("expandAnswerTotalScores", "true".into()),
            ("includeDeletedUsers", "true".into()),
            ("pageSize", page_size.to_string()),
            ("pageNumber", "1".into()),
        ]
    }

    /// Pages through the query; a 400 steps the page size down (100 → 50 → 25) and starts
    /// again, and the size that worked is kept for later groups.
    async fn fetch(
        &self,
        wanted: &BTreeMap<&str, &Discovered>,
    ) -> Result<BTreeMap<String, Fetched>, GenesysError> {
        let mut page_size = self.learning.page_size.load(Ordering::Relaxed);
        loop {
            match self.pages(page_size, wanted).await {
                Ok(found) => {
                    if self
                        .learning
                        .page_size
                        .fetch_min(page_size, Ordering::Relaxed)
                        > page_size
                    {
                        tracing::info!(page_size, "bulk query page size lowered");
                    }
                    return Ok(found);
                }
                Err(GenesysError::Api {
                    status: 400, code, ..
                }) if code != "quality.query.invalid.user" && page_size > MIN_QUERY_PAGE_SIZE => {
                    page_size = (page_size / 2).max(MIN_QUERY_PAGE_SIZE);
                    tracing::info!(page_size, %code, "bulk query refused (400); trying smaller pages");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn pages(
        &self,
        page_size: u32,
        wanted: &BTreeMap<&str, &Discovered>,
    ) -> Result<BTreeMap<String, Fetched>, GenesysError> {
        let params = self.params(page_size);
        let mut out = BTreeMap::new();
        let mut next = Some(format!(
            "/api/v2/quality/evaluations/query?{}",
            encode_query(&params)
        ));
        let mut seen_uris = HashSet::new();
        while let Some(uri) = next.take() {
            if !seen_uris.insert(uri.clone()) {
                tracing::warn!(%uri, "nextUri repeats a page already read; stopping");
                break;
            }
            let page: EntityListing = self.client.get_json(&uri).await?;
            if page.entities.is_empty() {
                break;
            }
            for raw in page.entities {
                if let Some(f) = fetched(raw, false)
                    && let Some(d) = wanted.get(f.id.as_str())
                {
                    let lacking = f.head.lacks_question_scores();
                    if f.head.status.as_deref() == Some("FINISHED") {
                        self.learning.note_scores(lacking);
                    }
                    keep_newest(
                        &mut out,
                        Fetched {
                            automated: d.automated,
                            ..f
                        },
                    );
                }
            }
            next = page.next_uri.filter(|u| !u.trim().is_empty()).map(|u| {
                let (uri, lost) = repair_next_uri(&params, u);
                if !lost.is_empty() && !self.learning.repaired_logged.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        ?lost,
                        "the bulk query's nextUri lost parameters; putting them back"
                    );
                }
                uri
            });
        }
        Ok(out)
    }
}

/// `next` with every parameter of `params` that it lost or changed put back (its own
/// `pageNumber` and any parameter it added are kept), and the names of those parameters.
fn repair_next_uri(params: &[(&'static str, String)], next: String) -> (String, Vec<&'static str>) {
    let Ok(url) = url::Url::parse("http://next.invalid").and_then(|b| b.join(&next)) else {
        return (next, Vec::new());
    };
    let given: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let lost: Vec<&'static str> = params
        .iter()
        .filter(|(k, v)| *k != "pageNumber" && given.get(*k) != Some(v))
        .map(|(k, _)| *k)
        .collect();
    if lost.is_empty() {
        return (next, lost);
    }
    let mut merged: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| *k != "pageNumber")
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    merged.extend(
        given
            .into_iter()
            .filter(|(k, _)| k == "pageNumber" || !params.iter().any(|(p, _)| p == k)),
    );
    let query = encode_query(&merged);
    let repaired = if next.starts_with('/') {
        format!("{}?{query}", url.path())
    } else {
        let mut absolute = url;
        absolute.set_query(Some(&query));
        absolute.to_string()
    };
    (repaired, lost)
}

/// One evaluation by id, or why the API would not serve it.
async fn fetch_one(
    client: &Counted<'_>,
    d: Discovered,
) -> Result<Result<Fetched, Unavailable>, GenesysError> {
    let gap = |status: u16, code: &str| Unavailable {
        id: d.id.clone(),
        conversation_id: d.conversation_id.clone(),
        status,
        code: code.to_owned(),
    };
    if d.conversation_id.is_empty() {
        tracing::warn!(evaluation_id = %d.id, "search gave no conversation id; cannot fetch it alone");
        return Ok(Err(gap(0, "no.conversation.id")));
    }
    let path = format!(
        "/api/v2/quality/conversations/{}/evaluations/{}",
        url_encode(&d.conversation_id),
        url_encode(&d.id)
    );
    match client.get_json::<Box<RawValue>>(&path).await {
        Ok(raw) => Ok(match fetched(raw, d.automated) {
            Some(f) if f.id == d.id => Ok(f),
            _ => Err(gap(200, "unexpected.body")),
        }),
        Err(GenesysError::Api {
            status,
            code,
            context_id,
            ..
        }) if status != 401 => {
            tracing::warn!(evaluation_id = %d.id, status, %code, %context_id, "evaluation refused; listed as unavailable");
            Ok(Err(gap(status, &code)))
        }
        Err(GenesysError::Exhausted {
            status: Some(status),
            last,
            ..
        }) if status >= 500 => {
            tracing::warn!(evaluation_id = %d.id, status, %last, "evaluation kept failing; listed as unavailable");
            Ok(Err(gap(status, "retries.exhausted")))
        }
        Err(e) => Err(e),
    }
}

/// Percent-encodes a query or path value.
fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `k=v&…`, percent-encoded.
fn encode_query<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<(&'static str, String)> {
        vec![
            ("evaluatorUserId", "u-1".into()),
            ("startTime", "2026-11-28T00:00:00.000Z".into()),
            ("endTime", "2026-11-29T00:00:00.000Z".into()),
            ("expandAnswerTotalScores", "true".into()),
            ("includeDeletedUsers", "true".into()),
            ("pageSize", "100".into()),
            ("pageNumber", "1".into()),
        ]
    }

    #[test]
    fn a_next_uri_that_lost_parameters_gets_them_back() {
        let (repaired, lost) = repair_next_uri(
            &params(),
            "/api/v2/quality/evaluations/query?evaluatorUserId=u-1&pageNumber=2".into(),
        );
        assert_eq!(
            lost,
            [
                "startTime",
                "endTime",
                "expandAnswerTotalScores",
                "includeDeletedUsers",
                "pageSize"
            ]
        );
        let url = url::Url::parse("http://h")
            .unwrap()
            .join(&repaired)
            .unwrap();
        let got: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(url.path(), "/api/v2/quality/evaluations/query");
        let mut want: BTreeMap<String, String> = params()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        want.insert("pageNumber".into(), "2".into());
        assert_eq!(got, want);
    }

    #[test]
    fn a_complete_next_uri_is_followed_as_given() {
        let mut full = params();
        full.last_mut().unwrap().1 = "2".into();
        let next = format!(
            "/api/v2/quality/evaluations/query?{}&cursor=abc",
            encode_query(&full)
        );
        assert_eq!(repair_next_uri(&params(), next.clone()), (next, vec![]));
    }

    #[test]
    fn an_absolute_next_uri_keeps_its_host() {
        let (repaired, lost) = repair_next_uri(
            &params(),
            "https://api.mypurecloud.com/api/v2/quality/evaluations/query?evaluatorUserId=u-1&pageNumber=3&pageSize=25".into(),
        );
        assert!(lost.contains(&"pageSize"));
        assert!(
            repaired.starts_with("https://api.mypurecloud.com/api/v2/quality/evaluations/query?")
        );
        assert!(repaired.contains("pageSize=100") && repaired.contains("pageNumber=3"));
    }
}
