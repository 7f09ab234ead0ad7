//! Building the functions' ports from their environment (the stack sets these variables):
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `TABLE_NAME` | dispatch, export | DynamoDB table (partition key `pk`) |
//! | `QUEUE_URL` | dispatch, export | SQS job queue |
//! | `BUCKET_NAME` | export, analytics | S3 bucket of the output |
//! | `OUTPUT_PREFIX` | export, analytics | key prefix in the bucket (default none) |
//! | `ORG_SECRET_PREFIX` | export | Secrets Manager name prefix (default `scorecards/orgs/`) |
//! | `SCORECARDS_ALLOWED_HOST_SUFFIXES` | export | host suffixes an org secret's base URLs may name besides Genesys Cloud hosts (default none; read by `genesys::OrgEndpoint::new`) |
//!
//! `SCORECARDS_ALLOW_LOOPBACK=true` (never set by the stack) lets an org secret name loopback
//! hosts inside a function, for tests against a local simulator; without it they are
//! refused there (`genesys::OrgEndpoint::new`).
//!
//! AWS clients honour `AWS_ENDPOINT_URL` (and per-service overrides), so the same binaries
//! run against a local emulator; S3 then uses path-style addressing.

use std::sync::Arc;

use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::ledger::StoreLedger;
use crate::adapters::s3::{self, S3Sink};
use crate::adapters::secrets::SecretsManagerCredentials;
use crate::adapters::sqs::SqsQueue;
use crate::clock::SystemClock;
use crate::handlers::dispatch::{DispatchEnv, DispatchLimits};
use crate::handlers::export::ExportEnv;
use crate::runner::RunSettings;

/// Every environment variable the functions read.
pub const VARIABLES: &[&str] = &[
    "TABLE_NAME",
    "QUEUE_URL",
    "BUCKET_NAME",
    "OUTPUT_PREFIX",
    "ORG_SECRET_PREFIX",
    "SCORECARDS_ALLOWED_HOST_SUFFIXES",
];

/// A missing required variable.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct MissingVariable(pub &'static str);

fn var(name: &'static str) -> Result<String, MissingVariable> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(MissingVariable(name))
}

/// The analytics function's sink (the output bucket).
pub async fn analytics_sink() -> Result<S3Sink, MissingVariable> {
    output_sink(&sdk_config().await)
}

fn output_sink(config: &aws_config::SdkConfig) -> Result<S3Sink, MissingVariable> {
    Ok(S3Sink::new(
        s3::client(config),
        var("BUCKET_NAME")?,
        &std::env::var("OUTPUT_PREFIX").unwrap_or_default(),
    ))
}

/// The dispatch function's ports.
pub async fn dispatch_env() -> Result<DispatchEnv<DynamoStore>, MissingVariable> {
    let config = sdk_config().await;
    Ok(DispatchEnv {
        ledger: StoreLedger::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            var("TABLE_NAME")?,
        )),
        queue: Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(&config),
            var("QUEUE_URL")?,
        )),
        clock: Arc::new(SystemClock),
        limits: DispatchLimits::default(),
    })
}

/// The export function's ports.
pub async fn export_env() -> Result<ExportEnv, MissingVariable> {
    let config = sdk_config().await;
    let store = Arc::new(StoreLedger::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        var("TABLE_NAME")?,
    )));
    Ok(ExportEnv {
        ledger: store.clone(),
        jobs: store,
        sink: Arc::new(output_sink(&config)?),
        queue: Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(&config),
            var("QUEUE_URL")?,
        )),
        credentials: Arc::new(SecretsManagerCredentials::new(
            aws_sdk_secretsmanager::Client::new(&config),
            std::env::var("ORG_SECRET_PREFIX").unwrap_or_else(|_| "scorecards/orgs/".into()),
        )),
        clock: Arc::new(SystemClock),
        settings: RunSettings::default(),
    })
}

/// The AWS SDK configuration every client of this product uses (functions and the CLI's
/// stack commands), with timeouts and retries chosen on purpose rather than the SDK's
/// defaults (which set no operation timeout: a stalled call would hold an invocation until
/// Lambda kills it):
/// - each attempt of a call (connect, send, read the answer) at most 5 s — DynamoDB, SQS,
///   Secrets Manager and S3 answer in milliseconds; parts are a few MB;
/// - a whole call, retries included, at most 20 s (under the export function's end margin);
/// - the SDK's standard retry mode (exponential backoff with jitter on throttling and
///   transient errors), 3 attempts.
///
/// Region, credentials and endpoint come from the environment as usual
/// (`AWS_REGION`, `AWS_ENDPOINT_URL`, …).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(AWS_ATTEMPT_TIMEOUT)
                .operation_timeout(AWS_OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

/// Longest single attempt of an AWS call.
pub const AWS_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest AWS call, retries included.
pub const AWS_OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
