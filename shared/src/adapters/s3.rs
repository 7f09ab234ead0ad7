//! An S3 [`ExportSink`] in the object layout of DESIGN §7, below an optional key prefix.
//!
//! Objects are single `PutObject`s (parts are built in memory, bounded by the part size), so
//! an object is either absent or whole. `_manifest.json` is written last, with a
//! conditional write (`If-Match` / `If-None-Match`); then every object of the partition's
//! `run=` folders that the manifest does not list is deleted.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use crate::ports::{ExportSink, Manifest, PartInfo, Partition, StoreError};

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

    /// `HeadObject`: the object's size in bytes and `ETag`, `None` when there is none.
    async fn head(&self, key: &str) -> Result<Option<(u64, String)>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                out.content_length().unwrap_or_default().max(0) as u64,
                out.e_tag().unwrap_or_default().to_owned(),
            ))),
            Err(e) => {
                let service = e.into_service_error();
                if service.is_not_found() {
                    Ok(None)
                } else {
                    Err(err(format!(
                        "head {key}: {}",
                        crate::adapters::aws_service_message(&service)
                    )))
                }
            }
        }
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
        Ok(self.head(key).await?.is_some())
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

    async fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let full_dir = format!("{}/", self.full(dir));
        let strip = self.full("").len();
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_dir)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                err(format!(
                    "list {full_dir}: {}",
                    crate::adapters::aws_message(&e)
                ))
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(|k| k[strip..].to_owned()),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn verify(&self, part: &PartInfo) -> Result<bool, StoreError> {
        Ok(self
            .head(&part.key)
            .await?
            .is_some_and(|(size, _)| size == part.bytes))
    }

    async fn manifest_version(&self, partition: &Partition) -> Result<Option<String>, StoreError> {
        Ok(self
            .head(&partition.manifest_key())
            .await?
            .map(|(_, etag)| etag))
    }

    /// `PutObject` with `If-Match: <expected ETag>` (or `If-None-Match: *` when nothing is
    /// committed yet): S3 conditional writes, so of two holders that both believe they may
    /// commit, only the first succeeds; the other gets `PreconditionFailed`.
    async fn commit(
        &self,
        manifest: &Manifest,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        let partition = manifest.partition();
        let key = partition.manifest_key();
        let json = serde_json::to_vec(manifest).map_err(err)?;
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(&key))
            .content_type("application/json")
            .body(json.into());
        let put = match expected {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        if let Err(e) = put.send().await {
            let conflict = e
                .raw_response()
                .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412));
            if conflict {
                return Ok(false);
            }
            return Err(err(format!(
                "put {key}: {}",
                crate::adapters::aws_message(&e)
            )));
        }
        // Everything under the partition's run folders that the manifest does not list:
        // superseded runs, a run's discovery object, parts a stale holder left.
        let runs = self.full(&format!("{}/run=", partition.prefix()));
        let listed: std::collections::BTreeSet<String> =
            manifest.parts.iter().map(|p| self.full(&p.key)).collect();
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
                    && !listed.contains(k)
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
        Ok(true)
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
