//! The Genesys Cloud Platform API client (DESIGN §4).
//!
//! [`GenesysClient`] talks to one org: OAuth client credentials (token cached, refreshed
//! with a margin, checked before every attempt, one refresh-and-replay on 401), every request
//! admitted by an [`crate::rate::Admission`], retries for 429/502/503/504, timeouts and
//! connection errors (not 500), `Retry-After` honoured, `inin-ratelimit-*` fed back.

mod client;
mod error;
pub mod models;
pub mod region;
pub mod retry_after;

pub use client::{ClientConfig, Counted, GenesysClient, OrgEndpoint, TokenCache};
pub use error::{ErrorBody, GenesysError};
