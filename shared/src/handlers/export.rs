//! The `export` function: an SQS event (batch size 1) → run each job with the AWS ports;
//! a deferred job (long `Retry-After`, or the invocation running out of time) is continued
//! by a new message delayed until the deadline (≤ 900 s per hop). Failed messages are
//! reported as partial batch failures so SQS redelivers them (and, past `maxReceiveCount`,
//! moves them to the dead-letter queue).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use jiff::Timestamp;

use crate::adapters::sqs::MAX_DELAY;
use crate::clock::{self, Clock};
use crate::engine::{ExportError, ExportOutcome, NoProgress};
use crate::genesys::GenesysError;
use crate::ports::{
    CredentialError, CredentialSource, ExportSink, JobMessage, JobQueue, JobStore, RateLedger,
    StoreError,
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
    /// The day is committed (now or before).
    Done {
        /// Evaluations in the day's manifest.
        evaluations: u64,
    },
    /// Another invocation holds the job's lease: nothing was done (its own message or
    /// continuation carries the job on).
    AlreadyRunning,
    /// Deferred: a continuation was sent, visible after `delay`.
    Continued {
        /// When the job can go on, UTC.
        until: Timestamp,
        /// The continuation's SQS delay.
        delay: Duration,
    },
}

/// Why a message failed; SQS redelivers it.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The body is not a job message.
    #[error("message body is not a job: {0}")]
    BadMessage(String),
    /// Credentials missing, invalid or unreadable.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The export failed (nothing committed; the checkpoint is kept).
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The client could not be built.
    #[error(transparent)]
    Genesys(#[from] GenesysError),
    /// The continuation could not be sent.
    #[error("sending the continuation: {0}")]
    Queue(StoreError),
}

/// Runs one job message. `holder` names this invocation in leases (its request id);
/// `deadline` is when the invocation ends (UTC).
pub async fn handle_message(
    env: &ExportEnv,
    body: &str,
    holder: &str,
    deadline: Timestamp,
) -> Result<Handled, HandlerError> {
    let message: JobMessage =
        serde_json::from_str(body).map_err(|e| HandlerError::BadMessage(e.to_string()))?;
    let org = env.credentials.org(&message.job.org_id).await?;
    let now = env.clock.now();
    let stop_at = deadline
        .checked_sub(jiff::SignedDuration::try_from(END_MARGIN).unwrap_or_default())
        .unwrap_or(now)
        .max(now);
    let mut settings = env.settings;
    settings.engine.deadline = Some(stop_at);
    // Never sit through a wait the invocation cannot afford.
    let affordable = stop_at.duration_since(now).unsigned_abs();
    settings.rate.max_wait = settings.rate.max_wait.min(affordable);
    let ports = Ports {
        ledger: Arc::clone(&env.ledger),
        jobs: Arc::clone(&env.jobs),
        sink: Arc::clone(&env.sink),
        clock: Arc::clone(&env.clock),
    };
    let org_export = org_exporter(&org, &settings, &ports, holder)?;
    let report = org_export.exporter.run(&message.job, &NoProgress).await;
    org_export.client.release().await;
    let report = report?;
    println!("{}", metrics_line(&message, &report, env.clock.now()));
    tracing::info!(org_id = %message.job.org_id, day = %message.job.day, outcome = ?report.outcome, requests = report.stats.requests, "export job handled");
    match report.outcome {
        ExportOutcome::Committed(manifest) => Ok(Handled::Done {
            evaluations: manifest.total_records,
        }),
        ExportOutcome::UpToDate { evaluations, .. } => Ok(Handled::Done { evaluations }),
        ExportOutcome::AlreadyRunning(_) => Ok(Handled::AlreadyRunning),
        ExportOutcome::Deferred { until } => {
            let now = env.clock.now();
            // A little jitter so continuations of many orgs do not land at once.
            let jitter = Duration::from_millis(u64::from(rand::random::<u16>() % 2000));
            let wait = until.duration_since(now).unsigned_abs();
            let delay = (wait + jitter).min(MAX_DELAY);
            let next = JobMessage {
                hop: message.hop + 1,
                ..message
            };
            env.queue
                .send(&next, delay)
                .await
                .map_err(HandlerError::Queue)?;
            Ok(Handled::Continued { until, delay })
        }
    }
}

/// One CloudWatch embedded-metric-format line for a job run (namespace `scorecards`,
/// dimension `OrgId`): `Requests`, `TokenRequests`, `Responses429`, `Retries`, `WaitedMs`
/// (milliseconds), `Evaluations`, `Unavailable` (evaluations the API refused, listed in the
/// manifest), `CommittedWithGaps` (1 when the day committed with unavailable evaluations)
/// and `Deferred` (1 when the job was continued later).
/// Lambda sends stdout to CloudWatch Logs, which turns the line into metrics.
pub fn metrics_line(
    message: &JobMessage,
    report: &crate::engine::ExportReport,
    now: Timestamp,
) -> serde_json::Value {
    let s = report.stats;
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
        "OrgId": message.job.org_id,
        "Day": message.job.day,
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

/// The invocation deadline from Lambda's `deadline` (milliseconds since the Unix epoch).
pub fn deadline_from_millis(deadline_ms: u64, clock: &dyn Clock) -> Timestamp {
    Timestamp::from_millisecond(deadline_ms as i64)
        .unwrap_or_else(|_| clock::add(clock.now(), Duration::from_secs(60)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DateField, JobSpec, Source, Window};
    use crate::engine::ExportReport;
    use crate::ports::RequestStats;

    #[test]
    fn metrics_follow_the_embedded_metric_format() {
        let from: Timestamp = "2026-11-28T00:00:00Z".parse().unwrap();
        let message = JobMessage {
            job: JobSpec {
                org_id: "org-1".parse().unwrap(),
                day: "2026-11-28".parse().unwrap(),
                window: Window::new(from, clock::add(from, Duration::from_secs(86_400))).unwrap(),
                date_field: DateField::SubmittedDate,
                source: Source::Both,
            },
            request_id: "r".into(),
            hop: 0,
        };
        let report = ExportReport {
            outcome: ExportOutcome::Deferred { until: from },
            stats: RequestStats {
                requests: 40,
                token_requests: 1,
                responses_429: 2,
                retries: 3,
                waited_ms: 1500,
            },
            evaluations: 120,
        };
        let line = metrics_line(&message, &report, from);
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
