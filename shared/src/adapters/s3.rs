//! An S3 [`ExportSink`] in the object layout of DESIGN §7, below an optional key prefix.
//!
//! Objects are single `PutObject`s (parts are built in memory, bounded by the part size), so
//! an object is either absent or whole. `_manifest.json` is written last; then objects of
//! the partition's other `run=` folders are deleted.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use crate::ports::{ExportSink, Manifest, StoreError, manifest_key, partition_prefix};

/// A sink in one bucket, every key below `prefix` (empty for the bucket root).
#[derive(Debug, Clone)]
pub struct S3Sink {
    client: Client,
    bucket: String,
    prefix: String,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new("s3", e)
}

impl S3Sink {
    /// A sink writing `s3://<bucket>/<prefix>/…`.
    pub fn new(client: Client, bucket: impl Into<String>, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        Self {
            client,
            bucket: bucket.into(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait]
impl ExportSink for S3Sink {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| err(format!("put {key}: {}", crate::adapters::aws_message(&e))))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| {
                err(format!(
                    "delete {key}: {}",
                    crate::adapters::aws_message(&e)
                ))
            })?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let service = e.into_service_error();
                if service.is_not_found() {
                    Ok(false)
                } else {
                    Err(err(format!(
                        "head {key}: {}",
                        crate::adapters::aws_service_message(&service)
                    )))
                }
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let service = e.into_service_error();
                return if service.is_no_such_key() {
                    Ok(None)
                } else {
                    Err(err(format!(
                        "get {key}: {}",
                        crate::adapters::aws_service_message(&service)
                    )))
                };
            }
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| err(format!("get {key}: {e}")))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn commit(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let key = manifest_key(&manifest.org_id, manifest.date);
        let json = serde_json::to_vec(manifest).map_err(err)?;
        self.put(&key, json).await?;
        let runs = self.full(&format!(
            "{}/run=",
            partition_prefix(&manifest.org_id, manifest.date)
        ));
        let keep = format!("{runs}{}/", manifest.run_id);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&runs)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| err(format!("list {runs}: {}", crate::adapters::aws_message(&e))))?;
            for object in page.contents() {
                if let Some(k) = object.key()
                    && !k.starts_with(&keep)
                {
                    self.client
                        .delete_object()
                        .bucket(&self.bucket)
                        .key(k)
                        .send()
                        .await
                        .map_err(|e| {
                            err(format!("delete {k}: {}", crate::adapters::aws_message(&e)))
                        })?;
                }
            }
        }
        Ok(())
    }
}

/// An S3 client for `config`. With an endpoint override (`AWS_ENDPOINT_URL`, e.g. a local
/// emulator) it uses path-style addressing, which emulators on an IP or `localhost` need.
pub fn client(config: &aws_config::SdkConfig) -> Client {
    let mut builder = aws_sdk_s3::config::Builder::from(config);
    if config.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    Client::from_conf(builder.build())
}
