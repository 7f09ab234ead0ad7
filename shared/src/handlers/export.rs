//! The `export` function: an SQS event (batch size 1) of org messages → each org's pending
//! days exported under the org's lease (one chain per org: a message for an org whose chain
//! is active leaves at once). When days remain (a long `Retry-After`, the invocation's end,
//! a retry's backoff), one continuation for the org is sent, delayed until they are due
//! (≤ 900 s per hop). A day that fails for good (refused credentials, a 4xx, no progress,
//! or 5 failed runs) is recorded as failed and taken off the pending set; the message is
//! done. Only store and queue failures are reported as partial batch failures, so SQS
//! redelivers those (and, past `maxReceiveCount`, moves them to the dead-letter queue).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use jiff::Timestamp;

use crate::adapters::sqs::MAX_DELAY;
use crate::clock::{self, Clock};
use crate::domain::{JobSpec, OrgId};
use crate::engine::{ExportError, ExportOutcome, NoProgress};
use crate::genesys::GenesysError;
use crate::ports::{
    CredentialError, CredentialSource, ExportSink, JobMessage, JobQueue, JobStatus, JobStore,
    JobStoreError, LeaseOutcome, PendingDay, RateLedger, Settled, StoreError,
};
use crate::runner::{Ports, RunSettings, org_exporter};

/// Time kept back at the end of an invocation to checkpoint and send the continuation.
pub const END_MARGIN: Duration = Duration::from_secs(20);

/// Everything the export function needs, built once per Lambda instance.
pub struct ExportEnv {
    /// Rate ledger (DynamoDB).
    pub ledger: Arc<dyn RateLedger>,
    /// Job leases and checkpoints (DynamoDB).
    pub jobs: Arc<dyn JobStore>,
    /// Output (S3).
    pub sink: Arc<dyn ExportSink>,
    /// Continuations (SQS).
    pub queue: Arc<dyn JobQueue>,
    /// Org credentials (Secrets Manager).
    pub credentials: Arc<dyn CredentialSource>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Engine, client and rate settings.
    pub settings: RunSettings,
}

/// What one message led to.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// The org's chain ran this invocation.
    Worked {
        /// Days committed (or verified up to date) now.
        committed: usize,
        /// Days that failed for good now (their job records say why).
        failed: usize,
        /// When the chain goes on (a continuation was sent), if days remain pending.
        continued: Option<Duration>,
        /// The CloudWatch embedded-metric lines printed, one per job run ([`metrics_line`]).
        metrics: Vec<serde_json::Value>,
    },
    /// Another invocation holds the org's lease: nothing was done (its chain sees the
    /// pending days).
    AlreadyRunning,
    /// The body is not an org message: logged and dropped, never redelivered.
    Rejected(String),
}

/// A failure that may pass (a store, queue or secret store error): SQS redelivers the
/// message. Permanent failures never get here: they are recorded on the days and the
/// message is done.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The job store or secret store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The org's lease was lost mid-way (another invocation took over after expiry).
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    /// The continuation could not be sent.
    #[error("sending the continuation: {0}")]
    Queue(StoreError),
}

/// Failed runs of a day before it fails for good.
const MAX_ATTEMPTS: u32 = 5;

/// Backoff before retrying a day after its `attempts`-th failure: 1, 2, 4, 8 … minutes,
/// at most 1 hour.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(60 << attempts.saturating_sub(1).min(6)).min(Duration::from_secs(3600))
}

/// Whether a failed run will fail the same way however often it is retried: refused
/// credentials, a 4xx other than 408/429, a URL off the org's host, a job that cannot
/// progress.
fn permanent(e: &ExportError) -> bool {
    match e {
        ExportError::Genesys(
            GenesysError::Login { .. }
            | GenesysError::Unauthorized { .. }
            | GenesysError::ForeignUrl { .. },
        ) => true,
        ExportError::Genesys(GenesysError::Api { status, .. }) => {
            (400..500).contains(status) && !matches!(status, 408 | 429)
        }
        ExportError::NoProgress { .. } | ExportError::WrongOrg { .. } => true,
        _ => false,
    }
}

/// Whether a failure is the org's credentials being refused (every day would fail alike).
fn auth_refused(e: &ExportError) -> bool {
    matches!(
        e,
        ExportError::Genesys(GenesysError::Login { .. } | GenesysError::Unauthorized { .. })
    )
}

/// Runs one org message: takes the org's lease, exports its due pending days (oldest
/// first, a few at once under the org's one pacer), settles each, and releases the lease;
/// when days remain pending, sends one continuation for the org, delayed until the
/// earliest of them is due (at most 900 s; a longer wait hops again). `holder` names this
/// invocation (its request id); `deadline` is when the invocation ends (UTC).
pub async fn handle_message(
    env: &ExportEnv,
    body: &str,
    holder: &str,
    deadline: Timestamp,
) -> Result<Handled, HandlerError> {
    let message: JobMessage = match serde_json::from_str(body) {
        Ok(message) => message,
        Err(e) => {
            tracing::error!(error = %e, "message body is not an org message; dropped");
            return Ok(Handled::Rejected(e.to_string()));
        }
    };
    let org_id = &message.org_id;
    let now = env.clock.now();
    let Some(pending) = env.jobs.take_org(org_id, holder, deadline, now).await? else {
        return Ok(Handled::AlreadyRunning);
    };
    let stop_at = deadline
        .checked_sub(jiff::SignedDuration::try_from(END_MARGIN).unwrap_or_default())
        .unwrap_or(now)
        .max(now);
    let mut metrics = Vec::new();
    let worked = work_org(env, org_id, holder, stop_at, pending, &mut metrics).await;
    // Released whatever happened, so the next message or redelivery can take the org.
    let next = env
        .jobs
        .release_org(org_id, holder, env.clock.now())
        .await?;
    let (committed, failed) = worked?;
    let continued = match next {
        None => None,
        Some(at) => {
            let now = env.clock.now();
            // A little jitter so continuations of many orgs do not land at once.
            let jitter = Duration::from_millis(u64::from(rand::random::<u16>() % 2000));
            let delay = (at.duration_since(now).unsigned_abs() + jitter).min(MAX_DELAY);
            let next = JobMessage {
                hop: message.hop + 1,
                ..message.clone()
            };
            env.queue
                .send(&next, delay)
                .await
                .map_err(HandlerError::Queue)?;
            Some(delay)
        }
    };
    Ok(Handled::Worked {
        committed,
        failed,
        continued,
        metrics,
    })
}

/// Exports the org's due pending days until none is due, the time is up or a deferral;
/// returns (days committed, days failed for good).
async fn work_org(
    env: &ExportEnv,
    org_id: &OrgId,
    holder: &str,
    stop_at: Timestamp,
    mut pending: Vec<PendingDay>,
    metrics: &mut Vec<serde_json::Value>,
) -> Result<(usize, usize), HandlerError> {
    let (mut committed, mut failed) = (0, 0);
    let mut org = match env.credentials.org(org_id).await {
        Ok(org) => org,
        Err(CredentialError::Store(e)) => return Err(e.into()),
        Err(e) => {
            failed += fail_days(env, org_id, holder, &pending, &e.to_string()).await?;
            return Ok((committed, failed));
        }
    };
    let mut settings = env.settings;
    settings.engine.deadline = Some(stop_at);
    // Never sit through a wait the invocation cannot afford.
    let affordable = stop_at.duration_since(env.clock.now()).unsigned_abs();
    settings.rate.max_wait = settings.rate.max_wait.min(affordable);
    let ports = Ports {
        ledger: Arc::clone(&env.ledger),
        jobs: Arc::clone(&env.jobs),
        sink: Arc::clone(&env.sink),
        clock: Arc::clone(&env.clock),
    };
    let mut reread_credentials = true;
    loop {
        let now = env.clock.now();
        let due: Vec<PendingDay> = pending
            .into_iter()
            .filter(|d| d.not_before.is_none_or(|t| t <= now))
            .take(settings.engine.days_in_flight.max(1))
            .collect();
        if due.is_empty() || now >= stop_at {
            break;
        }
        let exporter = match org_exporter(&org, &settings, &ports, holder) {
            Ok(exporter) => exporter,
            Err(e) => {
                failed += fail_days(env, org_id, holder, &due, &e.to_string()).await?;
                pending = env.jobs.pending(org_id).await?;
                continue;
            }
        };
        let runs = due
            .iter()
            .map(|day| exporter.exporter.run(&day.spec, &NoProgress));
        let results = futures::future::join_all(runs).await;
        exporter.client.release().await;
        let mut stop = false;
        let mut auth = None;
        for (day, result) in due.iter().zip(results) {
            if let Ok(report) = &result {
                let line = metrics_line(&day.spec, report, env.clock.now());
                println!("{line}");
                metrics.push(line);
            }
            let settled = match result {
                Ok(report) => match report.outcome {
                    ExportOutcome::Committed(_) | ExportOutcome::UpToDate { .. } => {
                        committed += 1;
                        Some(Settled::Done)
                    }
                    // A long `Retry-After` or the invocation's end: due again at `until`.
                    ExportOutcome::Deferred { until } => {
                        stop = true;
                        Some(Settled::Retry {
                            not_before: until,
                            attempts: day.attempts,
                        })
                    }
                    // Another process (a local run) holds the day: try again later.
                    ExportOutcome::AlreadyRunning(lease) => Some(Settled::Retry {
                        not_before: lease.until.max(env.clock.now()),
                        attempts: day.attempts,
                    }),
                },
                Err(e) if auth_refused(&e) && reread_credentials => {
                    auth = Some(e.to_string());
                    None
                }
                Err(e) if permanent(&e) || day.attempts + 1 >= MAX_ATTEMPTS => {
                    // Recorded on the day's job record (the engine may have failed before
                    // taking the day's lease), and off the pending set.
                    failed += fail_days(
                        env,
                        org_id,
                        holder,
                        std::slice::from_ref(day),
                        &e.to_string(),
                    )
                    .await?;
                    None
                }
                Err(e) => {
                    let attempts = day.attempts + 1;
                    tracing::warn!(org_id = %org_id, day = %day.spec.day, attempts, error = %e, "day failed; retried later");
                    Some(Settled::Retry {
                        not_before: clock::add(env.clock.now(), backoff(attempts)),
                        attempts,
                    })
                }
            };
            if let Some(settled) = settled {
                env.jobs.settle(org_id, holder, day, settled).await?;
            }
        }
        if let Some(reason) = auth {
            // The secret may have been rotated since it was read: read it once more.
            reread_credentials = false;
            env.credentials.forget(org_id).await;
            match env.credentials.org(org_id).await {
                Ok(fresh) => org = fresh,
                Err(CredentialError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    let all = env.jobs.pending(org_id).await?;
                    failed += fail_days(env, org_id, holder, &all, &e.to_string()).await?;
                    return Ok((committed, failed));
                }
            }
            tracing::warn!(org_id = %org_id, %reason, "credentials refused; read the org's secret again");
        }
        if stop {
            break;
        }
        pending = env.jobs.pending(org_id).await?;
    }
    if !reread_credentials {
        // Refused once this invocation: the next one reads the secret again.
        env.credentials.forget(org_id).await;
    }
    Ok((committed, failed))
}

/// Records `reason` as the failure of each day (its job record, as `scorecards status`
/// shows it) and takes it off the pending set; returns how many.
async fn fail_days(
    env: &ExportEnv,
    org_id: &OrgId,
    holder: &str,
    days: &[PendingDay],
    reason: &str,
) -> Result<usize, HandlerError> {
    let now = env.clock.now();
    for day in days {
        tracing::error!(org_id = %org_id, day = %day.spec.day, %reason, "day failed for good");
        let until = clock::add(now, Duration::from_secs(60));
        if let LeaseOutcome::Acquired { .. } =
            env.jobs.acquire(&day.spec, holder, until, now).await?
        {
            env.jobs
                .finish(
                    &day.spec,
                    holder,
                    JobStatus::Failed {
                        reason: reason.to_owned(),
                    },
                    now,
                )
                .await?;
        }
        env.jobs.settle(org_id, holder, day, Settled::Done).await?;
    }
    Ok(days.len())
}

/// One CloudWatch embedded-metric-format line for one run of a job — this invocation's
/// requests, not the job's total over its runs — (namespace `scorecards`,
/// dimension `OrgId`): `Requests`, `TokenRequests`, `Responses429`, `Retries`, `WaitedMs`
/// (milliseconds), `Evaluations`, `Unavailable` (evaluations the API refused, listed in the
/// manifest), `CommittedWithGaps` (1 when the day committed with unavailable evaluations)
/// and `Deferred` (1 when the job was continued later).
/// Lambda sends stdout to CloudWatch Logs, which turns the line into metrics.
pub fn metrics_line(
    spec: &JobSpec,
    report: &crate::engine::ExportReport,
    now: Timestamp,
) -> serde_json::Value {
    let s = report.run_stats;
    let names = [
        ("Requests", "Count"),
        ("TokenRequests", "Count"),
        ("Responses429", "Count"),
        ("Retries", "Count"),
        ("WaitedMs", "Milliseconds"),
        ("Evaluations", "Count"),
        ("Unavailable", "Count"),
        ("CommittedWithGaps", "Count"),
        ("Deferred", "Count"),
    ];
    let unavailable = match &report.outcome {
        ExportOutcome::Committed(manifest) => manifest.unavailable.len(),
        _ => 0,
    };
    serde_json::json!({
        "_aws": {
            "Timestamp": now.as_millisecond(),
            "CloudWatchMetrics": [{
                "Namespace": "scorecards",
                "Dimensions": [["OrgId"]],
                "Metrics": names.iter().map(|(n, u)| serde_json::json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        },
        "OrgId": spec.org_id,
        "Day": spec.day,
        "Requests": s.requests,
        "TokenRequests": s.token_requests,
        "Responses429": s.responses_429,
        "Retries": s.retries,
        "WaitedMs": s.waited_ms,
        "Evaluations": report.evaluations,
        "Unavailable": unavailable,
        "CommittedWithGaps": u8::from(unavailable > 0),
        "Deferred": u8::from(matches!(report.outcome, ExportOutcome::Deferred { .. })),
    })
}

/// Handles an SQS event: every record in turn; failures become partial batch failures.
pub async fn handle_sqs_event(
    env: &ExportEnv,
    event: SqsEvent,
    holder: &str,
    deadline: Timestamp,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        match handle_message(env, body, holder, deadline).await {
            Ok(handled) => tracing::info!(message_id = %id, ?handled, "message handled"),
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "message failed; SQS will redeliver it");
                response.batch_item_failures.push(BatchItemFailure {
                    item_identifier: id,
                });
            }
        }
    }
    response
}

/// The invocation deadline from Lambda's `deadline` (the Runtime API's
/// `Lambda-Runtime-Deadline-Ms`: milliseconds since the Unix epoch, UTC). A deadline that is
/// not after now (a runtime emulator that sends a duration instead) would stop every run
/// before its first request and hop forever: it is taken as 60 s from now, with a warning.
pub fn deadline_from_millis(deadline_ms: u64, clock: &dyn Clock) -> Timestamp {
    let now = clock.now();
    match Timestamp::from_millisecond(deadline_ms as i64) {
        Ok(deadline) if deadline > now => deadline,
        _ => {
            tracing::warn!(
                deadline_ms,
                "the invocation deadline is not in the future; working for 60 s"
            );
            clock::add(now, Duration::from_secs(60))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DateField, Source, Window};
    use crate::engine::ExportReport;
    use crate::ports::RequestStats;

    #[test]
    fn a_deadline_in_the_past_is_taken_as_a_minute_from_now() {
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        let clock = crate::clock::FakeClock::new(now);
        let later = now.as_millisecond() as u64 + 900_000;
        assert_eq!(
            deadline_from_millis(later, &clock).as_millisecond() as u64,
            later
        );
        // A duration (600 s) where a time was due, and now itself.
        for wrong in [600_000, now.as_millisecond() as u64] {
            assert_eq!(
                deadline_from_millis(wrong, &clock),
                clock::add(now, Duration::from_secs(60))
            );
        }
    }

    #[test]
    fn metrics_follow_the_embedded_metric_format() {
        let from: Timestamp = "2026-11-28T00:00:00Z".parse().unwrap();
        let spec = JobSpec {
            org_id: "org-1".parse().unwrap(),
            day: "2026-11-28".parse().unwrap(),
            window: Window::new(from, clock::add(from, Duration::from_secs(86_400))).unwrap(),
            date_field: DateField::SubmittedDate,
            source: Source::Both,
        };
        let this_run = RequestStats {
            requests: 40,
            token_requests: 1,
            responses_429: 2,
            retries: 3,
            waited_ms: 1500,
        };
        // Earlier runs of the job are not this invocation's metrics.
        let mut all_runs = this_run;
        all_runs.add(&this_run);
        let report = ExportReport {
            outcome: ExportOutcome::Deferred { until: from },
            stats: all_runs,
            run_stats: this_run,
            evaluations: 120,
        };
        let line = metrics_line(&spec, &report, from);
        assert_eq!(line["_aws"]["Timestamp"], 1_795_824_000_000_i64);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["OrgId"]])
        );
        let metrics = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        // Every declared metric has a value at the top level.
        for m in metrics {
            let name = m["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name}");
        }
        assert_eq!(
            (
                line["OrgId"].as_str(),
                line["Requests"].as_u64(),
                line["Responses429"].as_u64(),
                line["WaitedMs"].as_u64(),
                line["Evaluations"].as_u64(),
                line["Deferred"].as_u64()
            ),
            (
                Some("org-1"),
                Some(40),
                Some(2),
                Some(1500),
                Some(120),
                Some(1)
            )
        );
    }
}
