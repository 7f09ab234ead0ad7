//! Adapters: implementations of the ports in [`crate::ports`].
//!
//! - [`ledger::StoreLedger`]: the `RateLedger` and `JobStore` logic, written once over any
//!   [`crate::ports::ConditionalStore`].
//! - [`memory::MemoryStore`] and [`sqlite::SqliteStore`]: conditional stores.
//! - [`local_dir::LocalDirSink`]: an `ExportSink` in a local directory.

pub mod ledger;
pub mod local_dir;
pub mod memory;
pub mod sqlite;
