//! The `dispatch` function: a schedule or an on-demand request → the requested UTC days
//! added to each org's pending set (one conditional write per org) and one queue message
//! per org (`SendMessageBatch`, staggered). It never calls Genesys.
//!
//! Input (JSON), either
//! - from EventBridge Scheduler: `{"schedule": {"window": "yesterday", "lookback_days": 2}}`
//!   (all registered orgs; `window` as `scorecards export --window`; the days before it are
//!   exported again so rescored evaluations are picked up), or
//! - on demand: `{"orgs": ["<org id>", …], "from": "2026-11-01", "to": "2026-11-08",
//!   "idempotency_key": "…"}`.
//!
//! Both accept `date_field` (default `submittedDate`) and `source` (default `both`).
//! Response: `{"job_id", "orgs", "days"}`; the same idempotency key with the same request
//! again returns the first response and enqueues nothing; with another request it is
//! refused (`Conflict`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::ToSpan;
use serde::{Deserialize, Serialize};

use crate::adapters::ledger::StoreLedger;
use crate::clock::Clock;
use crate::domain::{
    DateField, InvalidValue, JobSpec, OrgId, Source, Window, named_window, parse_instant,
};
use crate::ports::{ConditionalStore, JobMessage, JobQueue, JobStore, PendingDay, StoreError};

/// A dispatch request (see the module docs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchRequest {
    /// Scheduled run: window and lookback.
    #[serde(default)]
    pub schedule: Option<ScheduleSpec>,
    /// On demand: the orgs.
    #[serde(default)]
    pub orgs: Option<Vec<String>>,
    /// On demand: window start, UTC (RFC 3339 or a date).
    #[serde(default)]
    pub from: Option<String>,
    /// On demand: window end, UTC, exclusive.
    #[serde(default)]
    pub to: Option<String>,
    /// On demand: required, 1–128 characters.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Date field (default `submittedDate`).
    #[serde(default)]
    pub date_field: Option<String>,
    /// `human`, `auto` or `both` (default).
    #[serde(default)]
    pub source: Option<String>,
}

/// The scheduled part of a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// `yesterday`, `today`, `last-24h` or `last-<N>d`.
    pub window: String,
    /// Days before the window exported again (0–31). Default 0.
    #[serde(default)]
    pub lookback_days: u32,
}

/// The dispatch response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchResponse {
    /// Identifies this dispatch (in every message's `request_id`; `scorecards status`).
    pub job_id: String,
    /// Orgs covered (one message each).
    pub orgs: Vec<OrgId>,
    /// UTC days added to each org's pending set.
    pub days: usize,
}

/// What a dispatch asked for, kept under `dispatch#<job_id>` for `scorecards status`: its
/// size does not grow with the days (at most `max_orgs` org ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchRecord {
    /// The orgs.
    pub orgs: Vec<OrgId>,
    /// The window, cut into UTC days as of `created_at`.
    pub window: Window,
    /// When the dispatch ran, UTC.
    pub created_at: jiff::Timestamp,
    /// Date field.
    pub date_field: DateField,
    /// Source selection.
    pub source: Source,
}

impl DispatchRecord {
    /// Every job of the dispatch: each org × each UTC day of the window.
    pub fn jobs(&self) -> Vec<JobSpec> {
        let days = self.window.utc_days(self.created_at);
        self.orgs
            .iter()
            .flat_map(|org_id| {
                days.iter().map(move |(day, window)| JobSpec {
                    org_id: org_id.clone(),
                    day: *day,
                    window: *window,
                    date_field: self.date_field,
                    source: self.source,
                })
            })
            .collect()
    }
}

/// What an idempotency key remembers: the response, and the request it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Remembered {
    /// SHA-256 of the request as received (canonical JSON).
    request: String,
    response: DispatchResponse,
}

/// Limits on requests.
#[derive(Debug, Clone, Copy)]
pub struct DispatchLimits {
    /// Most orgs in one on-demand request. Default 1,000.
    pub max_orgs: usize,
    /// Longest on-demand window, days. Default 92 (the search's 3-month range).
    pub max_span_days: i64,
    /// Delay added per message so orgs do not all start at once. Default 200 ms (a
    /// message is delayed at most 900 s).
    pub stagger: Duration,
}

impl Default for DispatchLimits {
    fn default() -> Self {
        Self {
            max_orgs: 1_000,
            max_span_days: 92,
            stagger: Duration::from_millis(200),
        }
    }
}

/// A rejected request (nothing enqueued) or a failure of the stores.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The request is invalid: the field and the fix.
    #[error("bad request: {0}")]
    BadRequest(#[from] InvalidValue),
    /// The idempotency key was used for another request (HTTP 409 in spirit): nothing
    /// enqueued.
    #[error(
        "conflict: idempotency_key {0:?} was already used for a different request; use a new key"
    )]
    Conflict(String),
    /// The registry, idempotency records or the queue failed (retryable).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What dispatch needs.
pub struct DispatchEnv<S> {
    /// Orgs registry and idempotency records (DynamoDB).
    pub ledger: StoreLedger<S>,
    /// The job queue (SQS).
    pub queue: Arc<dyn JobQueue>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Limits.
    pub limits: DispatchLimits,
}

fn bad(field: &str, problem: impl Into<String>) -> DispatchError {
    DispatchError::BadRequest(InvalidValue::new(field, problem))
}

/// [`dispatch`] for a raw JSON payload (the Lambda event).
pub async fn dispatch_json<S: ConditionalStore>(
    env: &DispatchEnv<S>,
    payload: serde_json::Value,
) -> Result<DispatchResponse, DispatchError> {
    let fingerprint = {
        use sha2::{Digest, Sha256};
        let mut canonical = payload.clone();
        if let Some(o) = canonical.as_object_mut() {
            o.remove("idempotency_key");
        }
        hex::encode(Sha256::digest(canonical.to_string()))
    };
    let request: DispatchRequest = serde_json::from_value(payload).map_err(|e| {
        bad(
            "request",
            format!("{e}; expected schedule, or orgs/from/to/idempotency_key"),
        )
    })?;
    dispatch(env, request, &fingerprint).await
}

/// Idempotency keys: 1–128 characters of `A-Z a-z 0-9 . _ : -`.
fn valid_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// Validates a request, adds its days to each org's pending set, sends one message per org
/// and returns the response. `fingerprint` identifies the request's content for its
/// idempotency key.
pub async fn dispatch<S: ConditionalStore>(
    env: &DispatchEnv<S>,
    request: DispatchRequest,
    fingerprint: &str,
) -> Result<DispatchResponse, DispatchError> {
    let now = env.clock.now();
    let date_field: DateField = request
        .date_field
        .as_deref()
        .unwrap_or("submittedDate")
        .parse()?;
    let source: Source = request.source.as_deref().unwrap_or("both").parse()?;
    let registered = env.ledger.orgs().await?;
    let (orgs, window, key) = match (&request.schedule, &request.orgs) {
        (Some(_), Some(_)) => {
            return Err(bad("schedule", "give either schedule or orgs, not both"));
        }
        (None, None) => return Err(bad("orgs", "missing: list org ids, or give a schedule")),
        (Some(schedule), None) => {
            if schedule.lookback_days > 31 {
                return Err(bad("schedule.lookback_days", "must be 0 to 31"));
            }
            let window = named_window(&schedule.window, now)
                .map_err(|e| bad("schedule.window", e.problem))?;
            let from = window
                .from
                .checked_sub((24 * i64::from(schedule.lookback_days)).hours())
                .map_err(|_| bad("schedule.lookback_days", "too far back"))?;
            (registered.clone(), Window::new(from, window.to)?, None)
        }
        (None, Some(orgs)) => {
            let key = request
                .idempotency_key
                .clone()
                .filter(|k| valid_key(k))
                .ok_or_else(|| {
                    bad(
                        "idempotency_key",
                        "required for on-demand requests: 1-128 characters of A-Z a-z 0-9 . _ : -",
                    )
                })?;
            if orgs.is_empty() || orgs.len() > env.limits.max_orgs {
                return Err(bad(
                    "orgs",
                    format!("list 1 to {} org ids", env.limits.max_orgs),
                ));
            }
            let mut ids = Vec::new();
            for org in orgs {
                let id: OrgId = org.parse()?;
                if registered.binary_search(&id).is_err() {
                    return Err(bad(
                        "orgs",
                        format!("{id} is not a registered org: onboard it first"),
                    ));
                }
                ids.push(id);
            }
            let from = parse_instant(
                "from",
                request
                    .from
                    .as_deref()
                    .ok_or_else(|| bad("from", "missing"))?,
            )?;
            let to = parse_instant(
                "to",
                request.to.as_deref().ok_or_else(|| bad("to", "missing"))?,
            )?;
            let window = Window::new(from, to.min(now)).map_err(|e| bad("from", e.problem))?;
            if window.to.duration_since(window.from).as_hours() > 24 * env.limits.max_span_days {
                return Err(bad(
                    "to",
                    format!(
                        "the window spans more than {} days: split the request",
                        env.limits.max_span_days
                    ),
                ));
            }
            (ids, window, Some(key))
        }
    };
    let job_id = uuid::Uuid::new_v4().to_string();
    let days = window.utc_days(now);
    let response = DispatchResponse {
        job_id: job_id.clone(),
        orgs: orgs.clone(),
        days: days.len(),
    };
    if let Some(key) = &key
        && let Some(earlier) = env.ledger.recall::<Remembered>(key).await?
    {
        return if earlier.request == fingerprint {
            Ok(earlier.response)
        } else {
            Err(DispatchError::Conflict(key.clone()))
        };
    }
    env.ledger
        .remember(
            &format!("dispatch#{job_id}"),
            &DispatchRecord {
                orgs: orgs.clone(),
                window,
                created_at: now,
                date_field,
                source,
            },
        )
        .await?;
    // One conditional write per org, whatever the number of days; 16 orgs at once.
    let writes = orgs.iter().map(|org_id| {
        let pending: Vec<PendingDay> = days
            .iter()
            .map(|(day, w)| PendingDay {
                spec: JobSpec {
                    org_id: org_id.clone(),
                    day: *day,
                    window: *w,
                    date_field,
                    source,
                },
                request_id: job_id.clone(),
                attempts: 0,
                not_before: None,
            })
            .collect();
        async move { env.ledger.add_pending(org_id, &pending).await }
    });
    let mut writes = futures::stream::iter(writes).buffer_unordered(16);
    while let Some(written) = writes.next().await {
        written?;
    }
    let messages: Vec<(JobMessage, Duration)> = orgs
        .iter()
        .enumerate()
        .map(|(n, org_id)| {
            (
                JobMessage {
                    org_id: org_id.clone(),
                    request_id: job_id.clone(),
                    hop: 0,
                },
                env.limits.stagger * n as u32,
            )
        })
        .collect();
    env.queue.send_batch(&messages).await?;
    // Recorded only once everything is enqueued, so a failed dispatch can be retried with
    // the same key. Two identical requests at once both enqueue; pending days are a set and
    // an org's chain is one, so the duplicates do nothing.
    if let Some(key) = key
        && let Some(earlier) = env
            .ledger
            .remember(
                &key,
                &Remembered {
                    request: fingerprint.to_owned(),
                    response: response.clone(),
                },
            )
            .await?
    {
        return if earlier.request == fingerprint {
            Ok(earlier.response)
        } else {
            Err(DispatchError::Conflict(key))
        };
    }
    Ok(response)
}
