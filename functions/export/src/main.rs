//! `export`: an SQS event (batch size 1, partial batch failures) of org messages → the
//! org's pending days exported. Logic: `scorecards_shared::handlers::export`.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use scorecards_shared::handlers::{aws_env, export};

#[tokio::main]
async fn main() -> Result<(), Error> {
    scorecards_shared::handlers::init_logging();
    let env = aws_env::export_env().await?;
    let env = &env;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        let deadline = export::deadline_from_millis(event.context.deadline, env.clock.as_ref());
        let holder = event.context.request_id.clone();
        Ok::<SqsBatchResponse, Error>(
            export::handle_sqs_event(env, event.payload, &holder, deadline).await,
        )
    }))
    .await
}
