//! Errors of the Genesys client. None carries a token or a client secret.

use jiff::Timestamp;
use serde::Deserialize;

/// The platform's error body (`ErrorBody`, reference §2.5); unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Dotted code, e.g. `not.found`, `too.many.requests.retry.after`.
    #[serde(default)]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// Correlation id (also the `ININ-Correlation-Id` header).
    #[serde(default)]
    pub context_id: Option<String>,
}

/// The login service's error body (OAuth shape, reference §3).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct OAuthErrorBody {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A failed Genesys call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GenesysError {
    /// The login host refused the client credentials (`invalid_client` and the like): a
    /// configuration error for this org (wrong region, client id or secret). Not retried.
    #[error(
        "login refused (HTTP {status}, {error}: {description}); check the org's region, client_id and client secret"
    )]
    Login {
        /// HTTP status.
        status: u16,
        /// OAuth `error`, e.g. `invalid_client`.
        error: String,
        /// OAuth `error_description`.
        description: String,
    },
    /// A fresh token was refused with 401 twice in a row: the org stops with an auth error.
    #[error(
        "{path}: HTTP 401 {code} after refreshing the token (contextId {context_id}); check the OAuth client's roles"
    )]
    Unauthorized {
        /// Request path.
        path: String,
        /// ErrorBody `code`.
        code: String,
        /// ErrorBody `contextId`.
        context_id: String,
    },
    /// A non-retryable HTTP error (other 4xx, 500), with the ErrorBody fields.
    #[error("{path}: HTTP {status} {code}: {message} (contextId {context_id})")]
    Api {
        /// Request path (query string included, no secrets in it).
        path: String,
        /// HTTP status.
        status: u16,
        /// ErrorBody `code`.
        code: String,
        /// ErrorBody `message`.
        message: String,
        /// ErrorBody `contextId`.
        context_id: String,
    },
    /// Retries ran out (5xx, timeouts, connection errors, invalid bodies or 429s).
    #[error("{path}: gave up after {attempts} attempts; last: {last}")]
    Exhausted {
        /// Request path.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
        /// HTTP status of the last failed attempt, when it had one (a 5xx that outlived its
        /// retries, a 429); `None` for timeouts, connection errors and local failures.
        status: Option<u16>,
    },
    /// The rate ledger says to wait past this run's budget: checkpoint and resume later.
    #[error("rate-limited until {until}; deferring")]
    Deferred {
        /// Earliest time to resume, UTC.
        until: Timestamp,
    },
    /// A URL the API gave us points to another host; we never send the token there.
    #[error("refusing to follow {url:?}: not on the org's API host")]
    ForeignUrl {
        /// The URL.
        url: String,
    },
    /// The rate ledger failed.
    #[error("rate ledger: {0}")]
    Ledger(String),
}

impl From<crate::rate::AdmissionError> for GenesysError {
    fn from(e: crate::rate::AdmissionError) -> Self {
        match e {
            crate::rate::AdmissionError::Defer { until } => Self::Deferred { until },
            crate::rate::AdmissionError::Ledger(m) => Self::Ledger(m),
        }
    }
}
