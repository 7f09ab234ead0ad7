//! An [`ExportSink`] in a local directory, in the object layout of DESIGN §7.
//!
//! Every object is written to a temporary file in the same directory and renamed into place,
//! so a reader never sees a partial object; `_manifest.json` is written last the same way,
//! under an exclusive lock on the partition's `.commit.lock` file (held across processes),
//! and only if the manifest there is still the version the committer expects (its
//! SHA-256). After a commit, whatever the partition's `run=` directories hold that the
//! manifest does not list is deleted.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

use sha2::{Digest, Sha256};

use crate::ports::{ExportSink, Manifest, PartInfo, Partition, StoreError};

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
        // Readable by consumers running as other users, like any exported file.
        set_readable(tmp.as_file());
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
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(format!("{key}: {e}"))),
            _ => {
                // A run folder left empty goes too (S3 has no folders to leave behind); one
                // another process writes into meanwhile stays.
                if let Some(dir) = path.parent()
                    && dir
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("run="))
                {
                    tokio::fs::remove_dir(dir).await.ok();
                }
                Ok(())
            }
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

    async fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let mut entries = match tokio::fs::read_dir(self.path(dir)?).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(err(format!("{dir}: {e}"))),
        };
        let mut keys = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(err)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type().await.map_err(err)?.is_file() {
                keys.push(format!("{dir}/{name}"));
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn verify(&self, part: &PartInfo) -> Result<bool, StoreError> {
        Ok(self.get(&part.key).await?.is_some_and(|bytes| {
            bytes.len() as u64 == part.bytes && hex::encode(Sha256::digest(&bytes)) == part.sha256
        }))
    }

    async fn manifest_version(&self, partition: &Partition) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(&partition.manifest_key())
            .await?
            .map(|bytes| hex::encode(Sha256::digest(bytes))))
    }

    async fn commit(
        &self,
        manifest: &Manifest,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        let partition = manifest.partition();
        let manifest_path = self.path(&partition.manifest_key())?;
        let partition_dir = self.path(&partition.prefix())?;
        let json = serde_json::to_vec(manifest).map_err(err)?;
        let expected = expected.map(str::to_owned);
        let listed: std::collections::BTreeSet<PathBuf> = manifest
            .parts
            .iter()
            .map(|p| self.path(&p.key))
            .collect::<Result<_, _>>()?;
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&partition_dir)
                .map_err(|e| err(format!("{}: {e}", partition_dir.display())))?;
            let lock_path = partition_dir.join(".commit.lock");
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| err(format!("{}: {e}", lock_path.display())))?;
            lock.lock()
                .map_err(|e| err(format!("{}: {e}", lock_path.display())))?;
            let current = match std::fs::read(&manifest_path) {
                Ok(bytes) => Some(hex::encode(Sha256::digest(bytes))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(err(format!("{}: {e}", manifest_path.display()))),
            };
            if current != expected {
                return Ok(false);
            }
            let mut tmp = tempfile::NamedTempFile::new_in(&partition_dir).map_err(err)?;
            std::io::Write::write_all(&mut tmp, &json).map_err(err)?;
            tmp.as_file().sync_all().map_err(err)?;
            set_readable(tmp.as_file());
            tmp.persist(&manifest_path)
                .map_err(|e| err(format!("{}: {e}", manifest_path.display())))?;
            // Still under the lock: everything under the partition's run folders that the
            // manifest does not list (superseded runs, a run's discovery object, parts a
            // stale holder left). A file or folder another process removes or fills
            // meanwhile is left to the next commit.
            remove_unlisted(&partition_dir, &listed);
            Ok(true)
        })
        .await
        .map_err(err)?
    }
}

/// Makes a file readable by everyone (`0644`): temporary files start as `0600`.
fn set_readable(file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(0o644)) {
        tracing::warn!(error = %e, "could not make an exported file readable by others");
    }
}

/// Removes whatever `partition_dir`'s `run=` folders hold that is not in `listed`, and the
/// folders left empty. Best effort: a concurrent change is not an error.
fn remove_unlisted(partition_dir: &Path, listed: &std::collections::BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(partition_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("run=") {
            continue;
        }
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        let mut kept = false;
        for file in files.flatten() {
            if listed.contains(&file.path()) {
                kept = true;
            } else if let Err(e) = std::fs::remove_file(file.path())
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %file.path().display(), error = %e, "could not remove an unlisted object");
            }
        }
        if !kept {
            // Fails harmlessly when another process wrote into it meanwhile.
            std::fs::remove_dir(entry.path()).ok();
        }
    }
}
