//! Adapters: implementations of the ports in [`crate::ports`].
//!
//! - [`ledger::StoreLedger`]: the `RateLedger` and `JobStore` logic, written once over any
//!   [`crate::ports::ConditionalStore`].
//! - [`memory::MemoryStore`] and [`sqlite::SqliteStore`]: conditional stores.
//! - [`local_dir::LocalDirSink`]: an `ExportSink` in a local directory.
//! - [`dynamodb::DynamoStore`], [`s3::S3Sink`], [`sqs::SqsQueue`] and
//!   [`secrets::SecretsManagerCredentials`]: the ports on AWS.

pub mod dynamodb;
pub mod ledger;
pub mod local_dir;
pub mod memory;
pub mod s3;
pub mod secrets;
pub mod sqlite;
pub mod sqs;
