//! `analytics`: S3 `ObjectCreated:*` for `…/_manifest.json` → the partition's Parquet
//! tables. Logic: `scorecards_tables::handler`.

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use scorecards_shared::handlers::aws_env;
use scorecards_tables::handler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    scorecards_shared::handlers::init_logging();
    let sink = aws_env::analytics_sink().await?;
    let sink = &sink;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<serde_json::Value>| async move {
            let done = handler::handle_s3_event(sink, event.payload)
                .await
                .map_err(|e| Diagnostic {
                    error_type: "Retryable".into(),
                    error_message: e.to_string(),
                })?;
            let outcomes: Vec<String> = done
                .iter()
                .map(|(p, o)| format!("{}: {o:?}", p.prefix()))
                .collect();
            Ok::<_, Diagnostic>(serde_json::json!({ "partitions": outcomes }))
        },
    ))
    .await
}
