//! Step 1 of DESIGN §6: the exact id set of a window, from
//! `POST /api/v2/quality/evaluations/search` with a `DATE_RANGE` on the job's date field.
//!
//! The search has no `total` or `nextUri`: a page shorter than `pageSize` ends the listing.
//! Windows that would page past the paging cap (pageNumber × pageSize > cap) are split in
//! halves and searched again.

use std::collections::BTreeMap;

use serde_json::json;

use crate::domain::{DateField, Window, genesys_time};
use crate::genesys::models::{EvaluationHead, SearchResponse};
use crate::genesys::{Counted, GenesysError};
use crate::ports::Discovered;

/// Search settings.
#[derive(Debug, Clone, Copy)]
pub struct SearchSettings {
    /// `pageSize` of search requests (Genesys max 100).
    pub page_size: u32,
    /// Largest `pageNumber × pageSize` the API serves (10,000).
    pub paging_cap: u32,
}

/// Finds every evaluation of `window` for one `systemSubmitted` value, keyed by id.
pub(crate) async fn discover(
    client: &Counted<'_>,
    window: Window,
    date_field: DateField,
    system_submitted: bool,
    settings: SearchSettings,
    out: &mut BTreeMap<String, Discovered>,
) -> Result<(), GenesysError> {
    let mut pending = vec![window];
    while let Some(w) = pending.pop() {
        match search_window(client, w, date_field, system_submitted, settings, out).await? {
            Paged::Complete => {}
            Paged::HitCap => match w.halves() {
                Some((a, b)) => {
                    tracing::info!(from = %w.from, to = %w.to, "search hit the paging cap; splitting the window");
                    pending.push(b);
                    pending.push(a);
                }
                None => {
                    return Err(GenesysError::Exhausted {
                        path: "/api/v2/quality/evaluations/search".into(),
                        attempts: 0,
                        last: format!(
                            "more than {} evaluations within 1 ms at {}",
                            settings.paging_cap, w.from
                        ),
                    });
                }
            },
        }
    }
    Ok(())
}

enum Paged {
    Complete,
    HitCap,
}

async fn search_window(
    client: &Counted<'_>,
    window: Window,
    date_field: DateField,
    system_submitted: bool,
    settings: SearchSettings,
    out: &mut BTreeMap<String, Discovered>,
) -> Result<Paged, GenesysError> {
    let page_size = settings.page_size.max(1);
    let mut page_number = 1u32;
    loop {
        if page_number.saturating_mul(page_size) > settings.paging_cap {
            return Ok(Paged::HitCap);
        }
        let body = json!({
            "pageSize": page_size,
            "pageNumber": page_number,
            "sortBy": date_field.wire_name(),
            "sortOrder": "ASC",
            "systemSubmitted": system_submitted,
            "query": [{
                "type": "DATE_RANGE",
                "field": date_field.wire_name(),
                "startValue": genesys_time(window.from),
                "endValue": genesys_time(window.to),
            }],
        });
        let page: SearchResponse = match client
            .post_json("/api/v2/quality/evaluations/search", &body)
            .await
        {
            Ok(page) => page,
            // A paging cap lower than configured shows up as a 400 past page 1.
            Err(GenesysError::Api { status: 400, .. }) if page_number > 1 => {
                return Ok(Paged::HitCap);
            }
            Err(e) => return Err(e),
        };
        let n = page.results.len();
        for raw in page.results {
            match serde_json::from_str::<EvaluationHead>(raw.get()) {
                Ok(head) => {
                    let d = Discovered {
                        conversation_id: head.conversation.and_then(|c| c.id).unwrap_or_default(),
                        evaluator_id: head.evaluator.and_then(|e| e.id),
                        agent_id: head.agent.and_then(|a| a.id),
                        created_date: head.created_date,
                        automated: system_submitted,
                        id: head.id,
                    };
                    out.insert(d.id.clone(), d);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "search result without an evaluation id; skipped")
                }
            }
        }
        if n < page_size as usize {
            return Ok(Paged::Complete);
        }
        page_number += 1;
    }
}
