//! A DynamoDB [`ConditionalStore`]: the rate ledger and the job store on AWS.
//!
//! One table, partition key `pk` (S). Each item: `pk` (the item key, e.g.
//! `bucket#<org>#<client id>` or `job#<org>#<dateField>#<YYYY-MM-DD>`), `version` (N, starts at
//! 1), `value` (S, the item's JSON as documented in [`crate::adapters::ledger`]). Writes are
//! `PutItem` with `attribute_not_exists(pk)` or `version = :expected`; reads are strongly
//! consistent. Expiry is decided from timestamps inside `value`, never from TTL.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::ports::{ConditionalStore, StoreError, Versioned};

/// Items of one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new("dynamodb", e)
}

impl DynamoStore {
    /// An AWS error, naming the table (a missing table is then plain: `table T: …`).
    fn table_err(&self, message: String) -> StoreError {
        err(format!("table {}: {message}", self.table))
    }
}

impl DynamoStore {
    /// A store in `table` (partition key `pk`, a string).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl ConditionalStore for DynamoStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.table_err(crate::adapters::aws_message(&e)))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| err(format!("item {key} has no numeric version")))?;
        let value = item
            .get("value")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| err(format!("item {key} has no value")))?
            .clone();
        Ok(Some(Versioned { version, value }))
    }

    async fn put_if(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
        expires_at: Option<jiff::Timestamp>,
    ) -> Result<bool, StoreError> {
        let next = expected.unwrap_or(0) + 1;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(key.to_owned()))
            .item("version", AttributeValue::N(next.to_string()))
            .item("value", AttributeValue::S(value.to_owned()));
        if let Some(t) = expires_at {
            put = put.item("expires_at", AttributeValue::N(t.as_second().to_string()));
        }
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", AttributeValue::N(v.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let service = e.into_service_error();
                if service.is_conditional_check_failed_exception() {
                    Ok(false)
                } else {
                    Err(self.table_err(crate::adapters::aws_service_message(&service)))
                }
            }
        }
    }
}
