//! Fault-injecting wrappers over the adapters, for fault campaigns (`scorecards chaos`) and
//! tests. Nothing in production uses them.
//!
//! [`FaultyStore`], [`FaultySink`] and [`FaultyQueue`] implement the same port as the
//! adapter they wrap and pass every call through, except that a seeded draw
//! ([`Faults`], `rand_chacha`) fails some calls with a [`StoreError`]:
//!
//! - **before** the call takes effect: the error comes back and nothing happened (a
//!   request that never reached the service);
//! - **after** the call took effect: the write happened, but its answer is lost and the
//!   caller gets an error (a conditional write applied whose response timed out; a PUT
//!   stored, then reported failed; a commit whose manifest was written, then reported
//!   failed). The caller cannot tell the two apart, which is the point.
//!
//! A plan can also **delay** writes (conditional writes, PUTs, commits; see
//! [`Faults::with_delays`]): the call is held for a while, then takes effect with its real
//! answer — a slow request, or a paused process whose write lands after its lease ran out.
//! Reads (`get`, `exists`, `verify`, `manifest_version`) can only fail before. Every
//! injected fault is counted by [`FaultKind`].
//!
//! The sequence of draws is fixed by the seed; which call gets which draw depends on the
//! order the calls arrive in, so concurrent callers sharing one [`Faults`] see the same
//! faults only if they interleave the same way. Give each caller its own [`Faults`] for a
//! plan that does not depend on the other callers.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ports::{
    ConditionalStore, ExportSink, JobMessage, JobQueue, Manifest, PartInfo, Partition, StoreError,
    Versioned,
};

/// The backend name of injected errors.
const BACKEND: &str = "injected-fault";

/// What an injected fault did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A [`ConditionalStore::get`] failed.
    StoreReadFailed,
    /// A [`ConditionalStore::put_if`] was held for a while before it took effect (a slow
    /// request or a paused process: meanwhile a lease may run out).
    StoreWriteDelayed,
    /// A [`ConditionalStore::put_if`] failed before it took effect.
    StoreWriteFailed,
    /// A [`ConditionalStore::put_if`] took effect (or was refused by its condition), but
    /// the caller got an error instead of the answer.
    StoreWriteAnswerLost,
    /// A sink read (`get`, `exists`, `verify`, `manifest_version`) failed.
    SinkReadFailed,
    /// An [`ExportSink::put`] was held for a while before it took effect.
    PutDelayed,
    /// An [`ExportSink::put`] failed before anything was stored.
    PutFailed,
    /// An [`ExportSink::put`] stored the object, then reported a failure.
    PutAnswerLost,
    /// An [`ExportSink::delete`] failed before anything was deleted.
    DeleteFailed,
    /// An [`ExportSink::delete`] deleted the object, then reported a failure.
    DeleteAnswerLost,
    /// An [`ExportSink::commit`] was held for a while before it took effect.
    CommitDelayed,
    /// An [`ExportSink::commit`] failed before the manifest was written.
    CommitFailed,
    /// An [`ExportSink::commit`] ran (the manifest was written, or the condition refused
    /// it), then reported a failure.
    CommitAnswerLost,
    /// A [`JobQueue::send`] failed before the message was enqueued.
    SendFailed,
    /// A [`JobQueue::send`] enqueued the message, then reported a failure.
    SendAnswerLost,
}

impl FaultKind {
    /// Every kind, in report order.
    pub const ALL: [FaultKind; 15] = [
        FaultKind::StoreReadFailed,
        FaultKind::StoreWriteDelayed,
        FaultKind::StoreWriteFailed,
        FaultKind::StoreWriteAnswerLost,
        FaultKind::SinkReadFailed,
        FaultKind::PutDelayed,
        FaultKind::PutFailed,
        FaultKind::PutAnswerLost,
        FaultKind::DeleteFailed,
        FaultKind::DeleteAnswerLost,
        FaultKind::CommitDelayed,
        FaultKind::CommitFailed,
        FaultKind::CommitAnswerLost,
        FaultKind::SendFailed,
        FaultKind::SendAnswerLost,
    ];

    /// A short name, e.g. `put_answer_lost`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::StoreReadFailed => "store_read_failed",
            FaultKind::StoreWriteDelayed => "store_write_delayed",
            FaultKind::PutDelayed => "put_delayed",
            FaultKind::CommitDelayed => "commit_delayed",
            FaultKind::StoreWriteFailed => "store_write_failed",
            FaultKind::StoreWriteAnswerLost => "store_write_answer_lost",
            FaultKind::SinkReadFailed => "sink_read_failed",
            FaultKind::PutFailed => "put_failed",
            FaultKind::PutAnswerLost => "put_answer_lost",
            FaultKind::DeleteFailed => "delete_failed",
            FaultKind::DeleteAnswerLost => "delete_answer_lost",
            FaultKind::CommitFailed => "commit_failed",
            FaultKind::CommitAnswerLost => "commit_answer_lost",
            FaultKind::SendFailed => "send_failed",
            FaultKind::SendAnswerLost => "send_answer_lost",
        }
    }

    /// Whether the call took effect before the error (an answer lost).
    pub fn took_effect(self) -> bool {
        matches!(
            self,
            FaultKind::StoreWriteAnswerLost
                | FaultKind::PutAnswerLost
                | FaultKind::DeleteAnswerLost
                | FaultKind::CommitAnswerLost
                | FaultKind::SendAnswerLost
        )
    }

    fn index(self) -> usize {
        FaultKind::ALL
            .iter()
            .position(|k| *k == self)
            .expect("every kind is listed")
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Injected faults per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts([u64; FaultKind::ALL.len()]);

impl FaultCounts {
    /// Faults of `kind`.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.0[kind.index()]
    }

    /// Faults of every kind.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &FaultCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// (kind, count) for every kind, in [`FaultKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (FaultKind, u64)> + '_ {
        FaultKind::ALL.iter().map(|k| (*k, self.get(*k)))
    }
}

/// When a drawn fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Before,
    After,
    /// The call is held this long (real time), then runs normally.
    Delayed(Duration),
}

/// A seeded fault plan shared by the wrappers of one caller: each call draws whether it
/// fails (`probability`) and, for writes, whether before or after taking effect
/// (`after_share` of the faults strike after). Counts what it injected, and what the
/// wrapped sink committed.
#[derive(Debug)]
pub struct Faults {
    rng: Mutex<ChaCha8Rng>,
    probability: f64,
    after_share: f64,
    delay_share: f64,
    max_delay: Duration,
    counts: [AtomicU64; FaultKind::ALL.len()],
    commits: AtomicU64,
    commit_conflicts: AtomicU64,
}

impl Faults {
    /// A plan that fails each call with `probability` (clamped to 0..=1), half of the write
    /// faults after the write took effect.
    pub fn new(seed: u64, probability: f64) -> Self {
        Self::with_after_share(seed, probability, 0.5)
    }

    /// A plan that fails each call with `probability`; of the write faults, `after_share`
    /// (clamped to 0..=1) strike after the write took effect.
    pub fn with_after_share(seed: u64, probability: f64, after_share: f64) -> Self {
        Self {
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            probability: probability.clamp(0.0, 1.0),
            after_share: after_share.clamp(0.0, 1.0),
            delay_share: 0.0,
            max_delay: Duration::ZERO,
            counts: Default::default(),
            commits: AtomicU64::new(0),
            commit_conflicts: AtomicU64::new(0),
        }
    }

    /// Of the faults drawn for writes, `share` (clamped to 0..=1) hold the write for up to
    /// `max_delay` (real time, uniform) before it takes effect, then let it through with its
    /// real answer: a slow request, or a process paused while its lease runs out, whose write
    /// lands late. Default: none.
    pub fn with_delays(mut self, share: f64, max_delay: Duration) -> Self {
        self.delay_share = share.clamp(0.0, 1.0);
        self.max_delay = max_delay;
        self
    }

    /// A plan that injects nothing (the wrappers pass every call through).
    pub fn none() -> Self {
        Self::new(0, 0.0)
    }

    /// What was injected so far.
    pub fn counts(&self) -> FaultCounts {
        let mut out = FaultCounts::default();
        for (o, c) in out.0.iter_mut().zip(&self.counts) {
            *o = c.load(Ordering::Relaxed);
        }
        out
    }

    /// Manifests the wrapped sink wrote (commits that took effect, whether or not their
    /// answer was then lost).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Commits the wrapped sink refused because another commit came first.
    pub fn commit_conflicts(&self) -> u64 {
        self.commit_conflicts.load(Ordering::Relaxed)
    }

    /// Draws for one call: `None` (no fault), or when it strikes. Reads pass
    /// `can_take_effect = false` and only ever fail before.
    fn draw(&self, can_take_effect: bool, can_delay: bool) -> Option<When> {
        if self.probability <= 0.0 {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        if !rng.random_bool(self.probability) {
            return None;
        }
        if !can_take_effect {
            return Some(When::Before);
        }
        if can_delay && !self.max_delay.is_zero() && rng.random_bool(self.delay_share) {
            let ms = self.max_delay.as_millis().max(1) as u64;
            return Some(When::Delayed(Duration::from_millis(
                rng.random_range(1..=ms),
            )));
        }
        if rng.random_bool(self.after_share) {
            Some(When::After)
        } else {
            Some(When::Before)
        }
    }

    fn inject(&self, kind: FaultKind, what: &str) -> StoreError {
        self.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
        let message = if kind.took_effect() {
            format!("{what}: no answer (connection lost after the request was sent)")
        } else {
            format!("{what}: failed (service unavailable)")
        };
        StoreError::new(BACKEND, message)
    }

    /// Runs a read, failing it before it runs when the draw says so.
    async fn read<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match self.draw(false, false) {
            Some(_) => Err(self.inject(FaultKind::SinkReadFailed, what)),
            None => call.await,
        }
    }

    /// Runs a write, failing it before it runs (`before`) or after it ran (`after`), or
    /// holding it (`delayed`) when the draw says so. `observe` sees the real answer of a call
    /// that ran.
    async fn write<T>(
        &self,
        delayed: Option<FaultKind>,
        before: FaultKind,
        after: FaultKind,
        what: &str,
        call: impl Future<Output = Result<T, StoreError>>,
        observe: impl FnOnce(&T),
    ) -> Result<T, StoreError> {
        let when = self.draw(true, delayed.is_some());
        match when {
            Some(When::Before) => return Err(self.inject(before, what)),
            Some(When::Delayed(hold)) => {
                if let Some(kind) = delayed {
                    self.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(hold).await;
            }
            _ => {}
        }
        let answer = call.await?;
        observe(&answer);
        if when == Some(When::After) {
            return Err(self.inject(after, what));
        }
        Ok(answer)
    }
}

/// A [`ConditionalStore`] that fails some calls (see the [module docs](self)). The job
/// store and the rate ledger over it ([`crate::adapters::ledger::StoreLedger`]) see every
/// injected fault.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: Arc<S>,
    faults: Arc<Faults>,
}

impl<S: ConditionalStore> FaultyStore<S> {
    /// Wraps `inner` (shared: several callers may each wrap the same store).
    pub fn new(inner: Arc<S>, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

#[async_trait]
impl<S: ConditionalStore> ConditionalStore for FaultyStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self.faults.draw(false, false) {
            Some(_) => Err(self
                .faults
                .inject(FaultKind::StoreReadFailed, &format!("get {key}"))),
            None => self.inner.get(key).await,
        }
    }

    async fn put_if(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
        expires_at: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        self.faults
            .write(
                Some(FaultKind::StoreWriteDelayed),
                FaultKind::StoreWriteFailed,
                FaultKind::StoreWriteAnswerLost,
                &format!("conditional write {key}"),
                self.inner.put_if(key, expected, value, expires_at),
                |_| {},
            )
            .await
    }
}

/// An [`ExportSink`] that fails some calls (see the [module docs](self)).
#[derive(Debug)]
pub struct FaultySink<K> {
    inner: Arc<K>,
    faults: Arc<Faults>,
}

impl<K: ExportSink> FaultySink<K> {
    /// Wraps `inner` (shared: several callers may each wrap the same sink).
    pub fn new(inner: Arc<K>, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

#[async_trait]
impl<K: ExportSink> ExportSink for FaultySink<K> {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.faults
            .write(
                Some(FaultKind::PutDelayed),
                FaultKind::PutFailed,
                FaultKind::PutAnswerLost,
                &format!("put {key}"),
                self.inner.put(key, bytes),
                |_| {},
            )
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.faults
            .write(
                None,
                FaultKind::DeleteFailed,
                FaultKind::DeleteAnswerLost,
                &format!("delete {key}"),
                self.inner.delete(key),
                |_| {},
            )
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.faults
            .read(&format!("exists {key}"), self.inner.exists(key))
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.faults
            .read(&format!("get {key}"), self.inner.get(key))
            .await
    }

    async fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        self.faults
            .read(&format!("list {dir}"), self.inner.list(dir))
            .await
    }

    async fn verify(&self, part: &PartInfo) -> Result<bool, StoreError> {
        self.faults
            .read(&format!("verify {}", part.key), self.inner.verify(part))
            .await
    }

    async fn manifest_version(&self, partition: &Partition) -> Result<Option<String>, StoreError> {
        self.faults
            .read(
                &format!("manifest version of {}", partition.prefix()),
                self.inner.manifest_version(partition),
            )
            .await
    }

    async fn commit(
        &self,
        manifest: &Manifest,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        let faults = &self.faults;
        faults
            .write(
                Some(FaultKind::CommitDelayed),
                FaultKind::CommitFailed,
                FaultKind::CommitAnswerLost,
                &format!("commit {}", manifest.partition().manifest_key()),
                self.inner.commit(manifest, expected),
                |written| {
                    let counter = if *written {
                        &faults.commits
                    } else {
                        &faults.commit_conflicts
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                },
            )
            .await
    }

    async fn manifest(&self, partition: &Partition) -> Result<Option<Manifest>, StoreError> {
        self.faults
            .read(
                &format!("manifest of {}", partition.prefix()),
                self.inner.manifest(partition),
            )
            .await
    }
}

/// A [`JobQueue`] that fails some sends (see the [module docs](self)).
#[derive(Debug)]
pub struct FaultyQueue<Q> {
    inner: Arc<Q>,
    faults: Arc<Faults>,
}

impl<Q: JobQueue> FaultyQueue<Q> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<Q>, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

#[async_trait]
impl<Q: JobQueue> JobQueue for FaultyQueue<Q> {
    async fn send(&self, message: &JobMessage, delay: Duration) -> Result<(), StoreError> {
        self.faults
            .write(
                None,
                FaultKind::SendFailed,
                FaultKind::SendAnswerLost,
                &format!("send org {}", message.org_id),
                self.inner.send(message, delay),
                |_| {},
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryStore;

    #[tokio::test]
    async fn a_lost_answer_took_effect_and_a_failed_write_did_not() {
        // Every call faults; all write faults strike after, then all before.
        let inner = Arc::new(MemoryStore::new());
        let after = FaultyStore::new(
            Arc::clone(&inner),
            Arc::new(Faults::with_after_share(1, 1.0, 1.0)),
        );
        assert!(after.put_if("k", None, "1", None).await.is_err());
        assert_eq!(inner.get("k").await.unwrap().unwrap().version, 1);

        let before = FaultyStore::new(
            Arc::clone(&inner),
            Arc::new(Faults::with_after_share(1, 1.0, 0.0)),
        );
        assert!(before.put_if("k", Some(1), "2", None).await.is_err());
        assert!(before.get("k").await.is_err());
        assert_eq!(inner.get("k").await.unwrap().unwrap().value, "1");
        let counts = before.faults.counts();
        assert_eq!(counts.get(FaultKind::StoreWriteFailed), 1);
        assert_eq!(counts.get(FaultKind::StoreReadFailed), 1);
        assert_eq!(
            after.faults.counts().get(FaultKind::StoreWriteAnswerLost),
            1
        );
    }

    #[tokio::test]
    async fn no_faults_passes_every_call_through() {
        let inner = Arc::new(MemoryStore::new());
        let store = FaultyStore::new(Arc::clone(&inner), Arc::new(Faults::none()));
        assert!(store.put_if("k", None, "1", None).await.unwrap());
        assert!(!store.put_if("k", None, "2", None).await.unwrap());
        assert_eq!(store.get("k").await.unwrap().unwrap().value, "1");
        assert_eq!(store.faults.counts().total(), 0);
    }

    #[tokio::test]
    async fn the_same_seed_draws_the_same_faults() {
        async fn run(seed: u64) -> Vec<bool> {
            let store = FaultyStore::new(
                Arc::new(MemoryStore::new()),
                Arc::new(Faults::new(seed, 0.3)),
            );
            let mut out = Vec::new();
            for i in 0..64 {
                out.push(store.get(&format!("k{i}")).await.is_err());
            }
            out
        }
        assert_eq!(run(5).await, run(5).await);
        assert_ne!(run(5).await, run(6).await);
        assert!(run(5).await.iter().any(|f| *f));
    }

    #[tokio::test]
    async fn sink_faults_before_and_after() {
        use crate::adapters::local_dir::LocalDirSink;
        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(LocalDirSink::new(dir.path()));
        let after = FaultySink::new(
            Arc::clone(&inner),
            Arc::new(Faults::with_after_share(3, 1.0, 1.0)),
        );
        assert!(after.put("a/b.json", b"x".to_vec()).await.is_err());
        assert_eq!(inner.get("a/b.json").await.unwrap().unwrap(), b"x");
        let before = FaultySink::new(
            Arc::clone(&inner),
            Arc::new(Faults::with_after_share(3, 1.0, 0.0)),
        );
        assert!(before.put("a/c.json", b"y".to_vec()).await.is_err());
        assert!(inner.get("a/c.json").await.unwrap().is_none());
        assert!(before.delete("a/b.json").await.is_err());
        assert!(inner.get("a/b.json").await.unwrap().is_some());
        assert_eq!(before.faults.counts().get(FaultKind::PutFailed), 1);
        assert_eq!(before.faults.counts().get(FaultKind::DeleteFailed), 1);
        assert_eq!(after.faults.counts().get(FaultKind::PutAnswerLost), 1);
    }
}
