//! The logic of the Lambda functions (DESIGN §2); each `functions/*/src/main.rs` only builds
//! clients from its environment and calls in here.
//!
//! - [`dispatch`]: schedule or on-demand request → the days added to each org's pending set,
//!   one queue message per org.
//! - [`export`]: one org message → the org's pending days exported under its lease, continued
//!   by one message when days remain.
//! - analytics (a committed manifest → Parquet tables) lives in the `scorecards-tables`
//!   crate, which keeps the Arrow and Parquet dependencies out of the other functions.
//! - [`aws_env`]: their ports, built from environment variables.

pub mod aws_env;
pub mod dispatch;
pub mod export;

/// JSON logs for a Lambda function (`RUST_LOG` filters; default `info`), once at start-up.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .without_time()
        .init();
}
