//! `dispatch`: EventBridge Scheduler or the partner backend → the days added to each org's
//! pending set and one SQS message per org. Logic: `scorecards_shared::handlers::dispatch`.

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use scorecards_shared::handlers::{aws_env, dispatch};

#[tokio::main]
async fn main() -> Result<(), Error> {
    scorecards_shared::handlers::init_logging();
    let env = aws_env::dispatch_env().await?;
    let env = &env;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<serde_json::Value>| async move {
            dispatch::dispatch_json(env, event.payload)
                .await
                .map_err(|e| Diagnostic {
                    error_type: match e {
                        dispatch::DispatchError::BadRequest(_) => "BadRequest",
                        dispatch::DispatchError::Conflict(_) => "Conflict",
                        dispatch::DispatchError::Store(_) => "Retryable",
                    }
                    .into(),
                    error_message: e.to_string(),
                })
        },
    ))
    .await
}
