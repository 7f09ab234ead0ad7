//! An [`ExportSink`] in a local directory, in the object layout of DESIGN §7.
//!
//! Every object is written to a temporary file in the same directory and renamed into place,
//! so a reader never sees a partial object; `_manifest.json` is written last the same way.
//! After a commit, `run=` directories of the partition other than the committed run are
//! deleted.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

use crate::ports::{ExportSink, Manifest, StoreError, manifest_key, partition_prefix};

/// A sink rooted at a directory (created on first write).
#[derive(Debug, Clone)]
pub struct LocalDirSink {
    root: PathBuf,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new("local-dir", e)
}

impl LocalDirSink {
    /// A sink writing below `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        if key.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(err(format!("refusing object key {key:?}")));
        }
        Ok(self.root.join(rel))
    }
}

async fn write_atomically(path: &Path, bytes: Vec<u8>) -> Result<(), StoreError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = path
            .parent()
            .ok_or_else(|| err("object key has no parent"))?;
        std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| err(format!("{}: {e}", dir.display())))?;
        tmp.write_all(&bytes).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(&path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        Ok(())
    })
    .await
    .map_err(err)?
}

#[async_trait]
impl ExportSink for LocalDirSink {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        write_atomically(&self.path(key)?, bytes).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(format!("{key}: {e}"))),
            _ => Ok(()),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        tokio::fs::try_exists(self.path(key)?).await.map_err(err)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(format!("{key}: {e}"))),
        }
    }

    async fn commit(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let key = manifest_key(&manifest.org_id, manifest.date);
        let json = serde_json::to_vec(manifest).map_err(err)?;
        write_atomically(&self.path(&key)?, json).await?;
        let partition = self.path(&partition_prefix(&manifest.org_id, manifest.date))?;
        let keep = format!("run={}", manifest.run_id);
        let mut entries = tokio::fs::read_dir(&partition).await.map_err(err)?;
        while let Some(entry) = entries.next_entry().await.map_err(err)? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("run=") && name != keep {
                tokio::fs::remove_dir_all(entry.path()).await.map_err(err)?;
            }
        }
        Ok(())
    }
}
