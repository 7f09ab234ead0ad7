//! `analytics`: S3 `ObjectCreated:*` for `…/_manifest.json` → per-org, per-day summaries.
//! Logic: `scorecards_shared::handlers::analytics`.

use aws_lambda_events::event::s3::S3Event;
use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use scorecards_shared::handlers::{analytics, aws_env};

#[tokio::main]
async fn main() -> Result<(), Error> {
    scorecards_shared::handlers::init_logging();
    let sink = aws_env::analytics_sink().await?;
    let sink = &sink;
    lambda_runtime::run(service_fn(|event: LambdaEvent<S3Event>| async move {
        let done = analytics::handle_s3_event(sink, event.payload)
            .await
            .map_err(|e| Diagnostic {
                error_type: "Retryable".into(),
                error_message: e.to_string(),
            })?;
        Ok::<_, Diagnostic>(serde_json::json!({ "summarised": done.len() }))
    }))
    .await
}
