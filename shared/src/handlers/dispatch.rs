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
//! Response: `{"job_id", "orgs", "days"}`. The idempotency key is claimed before anything
//! is written: the same key with the same request again returns the first response and
//! enqueues nothing once the first finished (if it stopped part-way, the repeat finishes it
//! under the same job id); with another request it is refused (`Conflict`) with nothing
//! written, even when both arrive at once. A window, lookback included, covers at most 92
//! UTC days.

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

/// What an idempotency key remembers: the response, the request it answered, and whether
/// everything was enqueued. The key is claimed (`complete: false`) before anything is
/// written, so a request that loses the claim to a different request writes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Remembered {
    /// SHA-256 of the request as received (canonical JSON).
    request: String,
    response: DispatchResponse,
    /// Every pending set written and every message sent. Absent in records written before
    /// claims existed, which were written only once complete.
    #[serde(default = "complete_by_default")]
    complete: bool,
}

fn complete_by_default() -> bool {
    true
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
            let window = Window::new(from, window.to)?;
            let days = window.utc_days(now).len();
            if days > env.limits.max_span_days as usize {
                return Err(bad(
                    "schedule.window",
                    format!(
                        "with lookback_days it covers {days} UTC days; at most {}: shorten the window or the lookback",
                        env.limits.max_span_days
                    ),
                ));
            }
            (registered.clone(), window, None)
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
    let days = window.utc_days(now);
    let mut response = DispatchResponse {
        job_id: uuid::Uuid::new_v4().to_string(),
        orgs: orgs.clone(),
        days: days.len(),
    };
    // The key is claimed before anything is written (a conditional create): a different
    // request under a claimed key is refused with nothing written, even when both arrive at
    // once.
    if let Some(key) = &key {
        let claim = Remembered {
            request: fingerprint.to_owned(),
            response: response.clone(),
            complete: false,
        };
        if let Some(earlier) = env.ledger.remember(key, &claim).await? {
            if earlier.request != fingerprint {
                return Err(DispatchError::Conflict(key.clone()));
            }
            if earlier.complete {
                return Ok(earlier.response);
            }
            // The same request, still in flight or stopped part-way (a timeout, a failed
            // send): finish it under its job id. Pending days are a set and an org's chain
            // is one, so doing it twice adds nothing.
            response.job_id = earlier.response.job_id;
        }
    }
    let job_id = response.job_id.clone();
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
    // Complete only once everything is enqueued, so a dispatch that failed part-way is
    // finished by a retry with the same key.
    if let Some(key) = key {
        env.ledger
            .replace(
                &key,
                &Remembered {
                    request: fingerprint.to_owned(),
                    response: response.clone(),
                    complete: true,
                },
            )
            .await?;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::adapters::memory::MemoryStore;
    use crate::clock::FakeClock;

    /// Records what is sent (each send yields to other tasks first); fails every send while
    /// `down`.
    #[derive(Default)]
    struct Queue {
        sent: Mutex<Vec<JobMessage>>,
        down: AtomicBool,
    }

    #[async_trait]
    impl JobQueue for Queue {
        async fn send(&self, message: &JobMessage, _delay: Duration) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::new("sqs", "unavailable"));
            }
            // A send takes a while: another request runs meanwhile.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            self.sent.lock().unwrap().push(message.clone());
            Ok(())
        }
    }

    const ORGS: [&str; 2] = ["org-a", "org-b"];

    async fn env() -> (DispatchEnv<MemoryStore>, Arc<Queue>) {
        let ledger = StoreLedger::new(MemoryStore::new());
        let ids: Vec<OrgId> = ORGS.iter().map(|o| o.parse().unwrap()).collect();
        ledger.register_orgs(&ids).await.unwrap();
        let queue = Arc::new(Queue::default());
        let env = DispatchEnv {
            ledger,
            queue: queue.clone(),
            clock: Arc::new(FakeClock::new("2026-11-29T12:00:00Z".parse().unwrap())),
            limits: DispatchLimits {
                stagger: Duration::ZERO,
                ..DispatchLimits::default()
            },
        };
        (env, queue)
    }

    fn request(org: &str, to: &str) -> serde_json::Value {
        json!({"orgs": [org], "from": "2026-11-01", "to": to, "idempotency_key": "k-1"})
    }

    async fn pending_days(env: &DispatchEnv<MemoryStore>, org: &str) -> usize {
        env.ledger
            .pending(&org.parse().unwrap())
            .await
            .unwrap()
            .len()
    }

    #[tokio::test]
    async fn a_different_request_racing_for_a_key_is_refused_and_writes_nothing() {
        let (env, queue) = env().await;
        let (a, b) = tokio::join!(
            dispatch_json(&env, request(ORGS[0], "2026-11-03")),
            dispatch_json(&env, request(ORGS[1], "2026-11-05")),
        );
        let (won, lost, loser) = match (a, b) {
            (Ok(r), Err(DispatchError::Conflict(_))) => (r, ORGS[0], ORGS[1]),
            (Err(DispatchError::Conflict(_)), Ok(r)) => (r, ORGS[1], ORGS[0]),
            other => panic!("one answer and one conflict expected: {other:?}"),
        };
        assert_eq!(won.orgs[0].as_str(), lost);
        assert_eq!(
            pending_days(&env, loser).await,
            0,
            "the loser wrote no days"
        );
        let sent = queue.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].org_id.as_str(), lost);
    }

    #[tokio::test]
    async fn a_dispatch_stopped_part_way_is_finished_by_a_retry_with_its_key() {
        let (env, queue) = env().await;
        queue.down.store(true, Ordering::SeqCst);
        assert!(matches!(
            dispatch_json(&env, request(ORGS[0], "2026-11-03")).await,
            Err(DispatchError::Store(_))
        ));
        assert!(queue.sent.lock().unwrap().is_empty());
        queue.down.store(false, Ordering::SeqCst);
        let first = dispatch_json(&env, request(ORGS[0], "2026-11-03"))
            .await
            .unwrap();
        assert_eq!(first.days, 2);
        assert_eq!(pending_days(&env, ORGS[0]).await, 2);
        assert_eq!(queue.sent.lock().unwrap().len(), 1, "the retry sent it");
        // Complete now: the same request again is answered from the record.
        let again = dispatch_json(&env, request(ORGS[0], "2026-11-03"))
            .await
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(queue.sent.lock().unwrap().len(), 1, "nothing sent twice");
        // The job id of the part-way attempt is the one answered (its status record).
        assert!(
            env.ledger
                .recall::<DispatchRecord>(&format!("dispatch#{}", first.job_id))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_schedule_is_held_to_the_longest_window() {
        let (env, queue) = env().await;
        for (window, lookback) in [("last-92d", 1), ("last-366d", 31)] {
            match dispatch_json(
                &env,
                json!({"schedule": {"window": window, "lookback_days": lookback}}),
            )
            .await
            {
                Err(DispatchError::BadRequest(e)) => {
                    assert_eq!(e.field, "schedule.window", "{e}");
                }
                other => panic!("{window} + {lookback} accepted: {other:?}"),
            }
        }
        let ok = dispatch_json(
            &env,
            json!({"schedule": {"window": "last-89d", "lookback_days": 2}}),
        )
        .await
        .unwrap();
        assert_eq!(ok.days, 92, "{ok:?}");
        assert_eq!(queue.sent.lock().unwrap().len(), 2);
    }
}
