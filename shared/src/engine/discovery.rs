//! Step 1 of DESIGN §6: the exact id set of a window, from
//! `POST /api/v2/quality/evaluations/search` with a `DATE_RANGE` on the job's date field.
//!
//! The search has no `total` or `nextUri`, and where its documentation is silent it may
//! answer either way (reference §8). A listing is trusted only when it holds whatever the
//! answer is:
//! - it ends on an **empty** page, never on a short one (a page size above the service's
//!   maximum may be clamped silently, U3); a smaller page size, echoed or observed on the
//!   first page, is followed, and a 400 on the first page steps the page size down;
//! - an id served twice within one listing means page-number paging skipped as many as it
//!   repeated (ties among equal sort values ordered differently per request, U4): the
//!   window is split and each half listed again, down to windows that fit in one page;
//! - a paging cap answered by 400 or by an empty page (U5) splits the window: when the
//!   empty page follows a full one, the first page in descending order must hold only ids
//!   already listed, else the listing was cut short;
//! - a `COUNT` aggregation (`pageSize` 0) over the whole window is recorded beside the
//!   listing as an independent count; a listing that reaches exactly that count stops
//!   there (the two agree), which spares the empty last page.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde_json::json;

use crate::clock::Clock;
use crate::domain::{DateField, Window, genesys_time};
use crate::genesys::models::{EvaluationHead, SearchResponse};
use crate::genesys::{Counted, GenesysError};
use crate::ports::{Discovered, SearchCount};

const SEARCH_PATH: &str = "/api/v2/quality/evaluations/search";

/// Search settings.
#[derive(Debug, Clone, Copy)]
pub struct SearchSettings {
    /// `pageSize` asked for (default 100, the documented common maximum; a smaller size the
    /// service serves is followed).
    pub page_size: u32,
    /// Largest `pageNumber × pageSize` the API serves (10,000). A lower cap is found
    /// anyway (a 400 or an empty page past it); this one only avoids asking past it.
    pub paging_cap: u32,
}

/// Smallest search page size the exporter steps down to after 400s on page 1.
const MIN_PAGE_SIZE: u32 = 10;

/// One search listing: a window, a `systemSubmitted` value, the job's date field.
pub(crate) struct Search<'a> {
    pub client: &'a Counted<'a>,
    pub date_field: DateField,
    pub system_submitted: bool,
    pub settings: SearchSettings,
    /// Stop listing at this time (the invocation's deadline).
    pub deadline: Option<Timestamp>,
    pub clock: &'a dyn Clock,
}

/// How one window's listing ended.
enum Listed {
    /// Every evaluation of the window, by id.
    Complete(BTreeMap<String, EvaluationHead>),
    /// The listing could not be trusted (cap reached, ids repeated, cut short): split.
    Split(&'static str),
    /// The deadline came first.
    OutOfTime,
}

impl Search<'_> {
    /// Finds every evaluation of `window` for this search, keyed by id, and counts them
    /// independently. Evaluations are returned as the search described them; `None` when
    /// the deadline came first.
    pub(crate) async fn discover(
        &self,
        window: Window,
    ) -> Result<Option<(BTreeMap<String, EvaluationHead>, SearchCount)>, GenesysError> {
        let mut page_size = self.settings.page_size.max(1);
        let counted = self.count(window).await?;
        let mut found = BTreeMap::new();
        // The whole window's listing may stop as soon as it agrees with the count; the
        // halves of a split window have no count of their own.
        let mut pending = vec![(window, counted)];
        while let Some((w, expected)) = pending.pop() {
            match self.list(w, expected, &mut page_size).await? {
                Listed::Complete(heads) => found.extend(heads),
                Listed::OutOfTime => return Ok(None),
                Listed::Split(why) => match w.halves() {
                    Some((a, b)) => {
                        tracing::info!(from = %w.from, to = %w.to, why, "search listing not exact; splitting the window");
                        pending.push((b, None));
                        pending.push((a, None));
                    }
                    None => {
                        return Err(GenesysError::Exhausted {
                            path: SEARCH_PATH.into(),
                            attempts: 0,
                            last: format!(
                                "cannot list the evaluations at {} exactly ({why}); more than one page of them within 1 ms",
                                w.from
                            ),
                            status: None,
                        });
                    }
                },
            }
        }
        let count = SearchCount {
            system_submitted: self.system_submitted,
            listed: found.len() as u64,
            counted,
        };
        if count.mismatch() {
            tracing::warn!(
                system_submitted = self.system_submitted,
                listed = count.listed,
                counted = ?count.counted,
                "the search's independent count differs from its listing"
            );
        }
        Ok(Some((found, count)))
    }

    fn body(&self, window: Window, page_number: u32, page_size: u32) -> serde_json::Value {
        json!({
            "pageSize": page_size,
            "pageNumber": page_number,
            "sortBy": self.date_field.wire_name(),
            "sortOrder": "ASC",
            "systemSubmitted": self.system_submitted,
            "query": [{
                "type": "DATE_RANGE",
                "field": self.date_field.wire_name(),
                "startValue": genesys_time(window.from),
                "endValue": genesys_time(window.to),
            }],
        })
    }

    async fn page(
        &self,
        window: Window,
        page_number: u32,
        page_size: u32,
    ) -> Result<SearchResponse, GenesysError> {
        self.client
            .post_json(SEARCH_PATH, &self.body(window, page_number, page_size))
            .await
    }

    /// Lists one window page by page; `page_size` is the size the service serves, learned
    /// on the way and kept for the next windows. When the listing holds exactly `expected`
    /// distinct evaluations (the independent count), it is complete: two independent ways
    /// of asking agree, so the empty last page and the tail check are not needed.
    async fn list(
        &self,
        window: Window,
        expected: Option<u64>,
        page_size: &mut u32,
    ) -> Result<Listed, GenesysError> {
        let mut size = *page_size;
        let mut page_number = 1u32;
        let mut served = 0usize;
        let mut last_page_full = false;
        let mut found: BTreeMap<String, EvaluationHead> = BTreeMap::new();
        loop {
            if self.deadline.is_some_and(|d| self.clock.now() >= d) {
                return Ok(Listed::OutOfTime);
            }
            if page_number.saturating_mul(size) > self.settings.paging_cap {
                return Ok(Listed::Split("paging cap reached"));
            }
            let asked = size;
            let page = match self.page(window, page_number, size).await {
                Ok(page) => page,
                // A paging cap lower than configured shows up as a 400 past page 1.
                Err(GenesysError::Api { status: 400, .. }) if page_number > 1 => {
                    return Ok(Listed::Split("400 past page 1 (paging cap)"));
                }
                // A page size above the service's maximum may be refused.
                Err(GenesysError::Api { status: 400, .. }) if size > MIN_PAGE_SIZE => {
                    size = (size / 2).max(MIN_PAGE_SIZE);
                    tracing::info!(
                        page_size = size,
                        "search refused its page size; asking for smaller pages"
                    );
                    *page_size = size;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let n = page.results.len();
            if n == 0 {
                break;
            }
            if page_number == 1 {
                // A clamped page size: echoed smaller, or silently shorter pages. A short
                // first page may also be the whole listing; the next (empty) page tells.
                let served_size = page.page_size.filter(|s| *s > 0).unwrap_or(size);
                let effective = size.min(served_size).min(n as u32).max(1);
                if effective < size {
                    if served_size < size {
                        tracing::info!(
                            asked = size,
                            served = served_size,
                            "search serves smaller pages than asked; following them"
                        );
                        *page_size = served_size;
                    }
                    size = effective;
                }
            } else if page_number == 2 && size < *page_size {
                // Page 1 was short and page 2 is not empty: the service clamps silently.
                tracing::info!(
                    asked = *page_size,
                    served = size,
                    "search serves fewer results per page than asked; following it"
                );
                *page_size = size;
            }
            served += n;
            last_page_full = n >= asked as usize;
            for raw in page.results {
                match serde_json::from_str::<EvaluationHead>(raw.get()) {
                    Ok(head) => {
                        found.insert(head.id.clone(), head);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "search result without an evaluation id; skipped")
                    }
                }
            }
            if expected == Some(found.len() as u64) {
                return Ok(Listed::Complete(found));
            }
            page_number += 1;
        }
        if served > found.len() {
            // Under page-number paging a repeat means something else was skipped.
            return Ok(Listed::Split("ids repeated across pages"));
        }
        // An empty page right after a full one may be a paging cap rather than the end.
        if last_page_full {
            let mut tail = self.body(window, 1, size);
            tail["sortOrder"] = json!("DESC");
            let last: SearchResponse = self.client.post_json(SEARCH_PATH, &tail).await?;
            let known: BTreeSet<&str> = found.keys().map(String::as_str).collect();
            let unseen = last.results.iter().any(|raw| {
                serde_json::from_str::<EvaluationHead>(raw.get())
                    .is_ok_and(|h| !known.contains(h.id.as_str()))
            });
            if unseen {
                return Ok(Listed::Split(
                    "the listing ended before the window's last evaluations (paging cap)",
                ));
            }
        }
        Ok(Listed::Complete(found))
    }

    /// The window's evaluations counted by a `COUNT` aggregation (`pageSize` 0); `None` when
    /// the service refuses it (4xx) or answers without a count.
    async fn count(&self, window: Window) -> Result<Option<u64>, GenesysError> {
        let mut body = self.body(window, 1, 0);
        body["aggregations"] = json!([{
            "name": "evaluations",
            "type": "COUNT",
            "field": "evaluationStatus",
        }]);
        if let Some(object) = body.as_object_mut() {
            object.remove("sortBy");
            object.remove("sortOrder");
        }
        match self
            .client
            .post_json::<SearchResponse, _>(SEARCH_PATH, &body)
            .await
        {
            Ok(page) => Ok(page
                .aggregations
                .as_ref()
                .and_then(|a| a.get("evaluations"))
                .and_then(|a| a.count.or(a.value))
                .filter(|c| c.is_finite() && *c >= 0.0)
                .map(|c| c as u64)),
            Err(GenesysError::Api { status, code, .. }) if (400..500).contains(&status) => {
                tracing::info!(status, %code, "search aggregation refused; no independent count");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// What the search told us about one evaluation, enough to fetch it.
pub(crate) fn discovered(head: &EvaluationHead, automated: bool) -> Discovered {
    Discovered {
        id: head.id.clone(),
        conversation_id: head
            .conversation
            .as_ref()
            .and_then(|c| c.id.clone())
            .unwrap_or_default(),
        evaluator_id: head.evaluator.as_ref().and_then(|e| e.id.clone()),
        agent_id: head.agent.as_ref().and_then(|a| a.id.clone()),
        created_date: head.created_date,
        changed_date: head.changed_date,
        automated,
    }
}
