//! Step 2 of DESIGN §6: full evaluations (with `answers`) for a group of discovered ids.
//!
//! A group is the discovered evaluations of one evaluator: one bulk
//! `GET /api/v2/quality/evaluations/query?evaluatorUserId=…&expandAnswerTotalScores=true`
//! (evaluator queries include never-release evaluations, agent-only queries would not),
//! bounded by the group's `createdDate` range and paged by `nextUri`. Evaluations without
//! an evaluator (automated ones) are grouped by agent (`agentUserId=…`); whatever an
//! agent-only query leaves out (never-release evaluations) is fetched one by one. Paging stops at the
//! end, on a repeated `nextUri` or on an empty page. Ids the bulk query did not return are
//! fetched one by one with
//! `GET /api/v2/quality/conversations/{conversationId}/evaluations/{evaluationId}`.
//! An id seen twice keeps the copy with the newest `changedDate`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use serde_json::value::RawValue;

use crate::domain::genesys_time;
use crate::genesys::models::{EntityListing, EvaluationHead};
use crate::genesys::{Counted, GenesysError};
use crate::ports::Discovered;

/// Group key of evaluations without an evaluator: fetched one by one.
pub(crate) const SINGLE_GROUP: &str = "single";

/// One fetched evaluation.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub id: String,
    pub changed: Option<Timestamp>,
    pub form_id: Option<String>,
    pub calibration: bool,
    pub automated: bool,
    pub raw: Box<RawValue>,
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
        form_id: head.evaluation_form.and_then(|f| f.id),
        calibration: head.calibration.is_some_and(|c| !c.is_null()),
        automated,
        id: head.id,
        raw,
    })
}

/// Fetches every evaluation of `members` (all of one group), keyed by id.
pub(crate) async fn fetch_group(
    client: &Counted<'_>,
    group: &str,
    members: &[Discovered],
    page_size: u32,
    in_flight: usize,
) -> Result<BTreeMap<String, Fetched>, GenesysError> {
    let wanted: BTreeMap<&str, &Discovered> = members.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut out = BTreeMap::new();
    let by = group
        .strip_prefix("evaluator:")
        .map(|id| ("evaluatorUserId", id))
        .or_else(|| group.strip_prefix("agent:").map(|id| ("agentUserId", id)));
    if let Some((param, user)) = by {
        let created = members.iter().filter_map(|d| d.created_date);
        let (from, to) = (created.clone().min(), created.max());
        if let (Some(from), Some(to)) = (from, to) {
            let to = to + Duration::from_millis(1);
            let mut next = Some(format!(
                "/api/v2/quality/evaluations/query?{param}={}&startTime={}&endTime={}&expandAnswerTotalScores=true&pageSize={page_size}&pageNumber=1",
                url_encode(user),
                url_encode(&genesys_time(from)),
                url_encode(&genesys_time(to)),
            ));
            let mut seen_uris = HashSet::new();
            while let Some(uri) = next.take() {
                if !seen_uris.insert(uri.clone()) {
                    tracing::warn!(%uri, "nextUri repeats a page already read; stopping");
                    break;
                }
                let page: EntityListing = client.get_json(&uri).await?;
                if page.entities.is_empty() {
                    break;
                }
                for raw in page.entities {
                    if let Some(f) = fetched(raw, false)
                        && let Some(d) = wanted.get(f.id.as_str())
                    {
                        let f = Fetched {
                            automated: d.automated,
                            ..f
                        };
                        keep_newest(&mut out, f);
                    }
                }
                next = page.next_uri.filter(|u| !u.trim().is_empty());
            }
        }
    }
    let missing: Vec<Discovered> = members
        .iter()
        .filter(|d| !out.contains_key(&d.id))
        .cloned()
        .collect();
    let mut singles = futures::stream::iter(missing)
        .map(|d| fetch_one(client, d))
        .buffer_unordered(in_flight.max(1));
    while let Some(result) = singles.next().await {
        if let Some(f) = result? {
            keep_newest(&mut out, f);
        }
    }
    Ok(out)
}

/// One evaluation by id; `None` when it no longer exists (404).
async fn fetch_one(client: &Counted<'_>, d: Discovered) -> Result<Option<Fetched>, GenesysError> {
    if d.conversation_id.is_empty() {
        tracing::warn!(evaluation_id = %d.id, "search gave no conversation id; cannot fetch it alone");
        return Ok(None);
    }
    let path = format!(
        "/api/v2/quality/conversations/{}/evaluations/{}",
        url_encode(&d.conversation_id),
        url_encode(&d.id)
    );
    match client.get_json::<Box<RawValue>>(&path).await {
        Ok(raw) => Ok(fetched(raw, d.automated).filter(|f| f.id == d.id)),
        Err(GenesysError::Api { status: 404, .. }) => {
            tracing::info!(evaluation_id = %d.id, "evaluation deleted since discovery; skipped");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Percent-encodes a query or path value.
fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
