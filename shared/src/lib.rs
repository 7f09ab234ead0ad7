//! scorecards: export Genesys Cloud quality-management evaluations ("scorecards") for many
//! customer orgs, paced to each org's API quota, exactly once and resumable.
//!
//! Layout (dependency direction is one way, top to bottom):
//! - [`domain`]: org ids, windows, date fields, run ids, jobs — validated value types.
//! - [`config`]: the orgs file (`orgs.toml`) and the Genesys region table.
//! - [`ports`]: the small traits the engine talks to (`RateLedger`, `JobStore`, `ExportSink`,
//!   `ConditionalStore`) and [`clock::Clock`].
//! - [`genesys`]: the Genesys Cloud Platform API client (OAuth client credentials, retries,
//!   `Retry-After`, `inin-ratelimit-*`).
//! - [`rate`]: per-bucket pacing, AIMD and the shared `blocked_until` deadline.
//! - [`engine`]: discovery, bulk fetch, dedupe, parts, checkpoints and the manifest.
//! - [`probe`]: which answer an org gives to each undocumented API behaviour (read-only).
//! - [`adapters`]: in-memory, SQLite and local-directory implementations of the ports.
//! - `chaos` (feature `chaos`): a seeded fault campaign against the simulator.

pub mod adapters;
#[cfg(feature = "chaos")]
pub mod chaos;
pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod genesys;
pub mod handlers;
pub mod onboarding;
pub mod output;
pub mod ports;
pub mod probe;
pub mod rate;
pub mod runner;
