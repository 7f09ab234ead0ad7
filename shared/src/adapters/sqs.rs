//! An SQS [`JobQueue`]: one message per org, body = [`JobMessage`] JSON, `DelaySeconds` ≤ 900;
//! several at once with `SendMessageBatch` (10 per call).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;

use crate::ports::{JobMessage, JobQueue, StoreError};

/// The SQS maximum for `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Jobs on one queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    /// A queue by URL.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, message: &JobMessage, delay: Duration) -> Result<(), StoreError> {
        let body = serde_json::to_string(message).map_err(|e| StoreError::new("sqs", e))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
            .send()
            .await
            .map_err(|e| StoreError::new("sqs", crate::adapters::aws_message(&e)))?;
        Ok(())
    }

    async fn send_batch(&self, messages: &[(JobMessage, Duration)]) -> Result<(), StoreError> {
        for chunk in messages.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, (message, delay)) in chunk.iter().enumerate() {
                let body = serde_json::to_string(message).map_err(|e| StoreError::new("sqs", e))?;
                entries.push(
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .delay_seconds(delay.min(&MAX_DELAY).as_secs() as i32)
                        .build()
                        .map_err(|e| StoreError::new("sqs", e))?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| StoreError::new("sqs", crate::adapters::aws_message(&e)))?;
            if let Some(failed) = out.failed().first() {
                return Err(StoreError::new(
                    "sqs",
                    format!(
                        "{} of {} messages not sent; first: {} {}",
                        out.failed().len(),
                        chunk.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }
}
