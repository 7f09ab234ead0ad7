//! An in-memory [`ConditionalStore`] (tests, and single-process runs that need no state).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{ConditionalStore, StoreError, Versioned};

/// Items in a `HashMap` behind a mutex. Same conditional semantics as the SQLite and
/// DynamoDB stores.
#[derive(Debug, Default)]
pub struct MemoryStore {
    items: Mutex<HashMap<String, Versioned>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ConditionalStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self
            .items
            .lock()
            .map_err(|_| StoreError::new("memory", "lock poisoned"))?
            .get(key)
            .cloned())
    }

    async fn put_if(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
        _expires_at: Option<jiff::Timestamp>,
    ) -> Result<bool, StoreError> {
        let mut items = self
            .items
            .lock()
            .map_err(|_| StoreError::new("memory", "lock poisoned"))?;
        let current = items.get(key).map(|v| v.version);
        if current != expected {
            return Ok(false);
        }
        items.insert(
            key.to_owned(),
            Versioned {
                version: expected.unwrap_or(0) + 1,
                value: value.to_owned(),
            },
        );
        Ok(true)
    }
}
