//! Adapters: implementations of the ports in [`crate::ports`].
//!
//! - [`ledger::StoreLedger`]: the `RateLedger` and `JobStore` logic, written once over any
//!   [`crate::ports::ConditionalStore`].
//! - [`memory::MemoryStore`] and [`sqlite::SqliteStore`]: conditional stores.
//! - [`local_dir::LocalDirSink`]: an `ExportSink` in a local directory.
//! - [`dynamodb::DynamoStore`], [`s3::S3Sink`], [`sqs::SqsQueue`] and
//!   [`secrets::SecretsManagerCredentials`]: the ports on AWS.
//! - [`faulty::FaultyStore`], [`faulty::FaultySink`] and [`faulty::FaultyQueue`]: wrappers
//!   that fail seeded calls before or after they take effect (fault campaigns; not used in
//!   production).

pub mod dynamodb;
pub mod faulty;
pub mod ledger;
pub mod local_dir;
pub mod memory;
pub mod s3;
pub mod secrets;
pub mod sqlite;
pub mod sqs;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// An AWS service error as `code: message` (never the raw response).
pub fn aws_service_message(e: &impl ProvideErrorMetadata) -> String {
    format!(
        "{}: {}",
        e.code().unwrap_or("UnknownError"),
        e.message().unwrap_or("no message")
    )
}

/// An AWS SDK error in one line: the service's `code: message`, or the innermost cause of a
/// failure on the way (timeout, connection, credentials).
pub fn aws_message<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let Some(service) = e.as_service_error() {
        return aws_service_message(service);
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{e}: {cause}")
}
