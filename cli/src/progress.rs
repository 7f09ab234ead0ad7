//! What `scorecards export` shows while it works: per org, days committed of the days to
//! do, evaluations written, the request rate next to the limit, and a visible waiting
//! state while a `Retry-After` deadline holds the org. The job store and the rate ledger
//! are wrapped to see days finish and deadlines set; nothing here changes what they do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use jiff::Timestamp;
use scorecards_shared::domain::{JobSpec, OrgId};
use scorecards_shared::engine::ExportObserver;
use scorecards_shared::genesys::GenesysClient;
use scorecards_shared::ports::{
    BucketKey, BucketState, Checkpoint, JobRecord, JobStatus, JobStore, JobStoreError,
    LearnedLimit, LeaseOutcome, PendingDay, RateLedger, Settled, StoreError,
};
use scorecards_shared::runner::OrgStatus;

/// A time to the second, UTC (`2026-11-28T14:03:07Z`).
pub fn to_second(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// One org's progress, updated by the wrappers below and read by the display.
pub struct OrgProgress {
    pub org_id: String,
    pub name: Option<String>,
    pub region: String,
    /// The name, or the id when the name is unknown.
    pub label: String,
    pub days_total: usize,
    pub days_done: AtomicUsize,
    /// Evaluations written to parts by this run (a resumed day counts its checkpoint).
    pub written: AtomicU64,
    /// Evaluations in the days committed (or verified up to date) by this run.
    pub committed_evaluations: AtomicU64,
    pub limit: LearnedLimit,
    pub client: OnceLock<Arc<GenesysClient>>,
    pub waiting_until: Mutex<Option<Timestamp>>,
    pub finished: std::sync::atomic::AtomicBool,
    /// How the org's run ended (`None` while it runs).
    pub status: Mutex<Option<OrgStatus>>,
    started: Instant,
}

impl OrgProgress {
    pub fn new(
        org_id: String,
        name: Option<String>,
        region: String,
        days_total: usize,
        limit: LearnedLimit,
    ) -> Self {
        Self {
            label: name.clone().unwrap_or_else(|| org_id.clone()),
            org_id,
            name,
            region,
            days_total,
            days_done: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            committed_evaluations: AtomicU64::new(0),
            limit,
            client: OnceLock::new(),
            waiting_until: Mutex::new(None),
            finished: Default::default(),
            status: Mutex::new(None),
            started: Instant::now(),
        }
    }

    /// Time since the org started.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// `days 3/92 · 1234 evaluations · 4.9 r/s (limit 5.0) · waiting 23 s (Retry-After)`.
    pub fn line(&self, now: Timestamp) -> String {
        let mut out = format!(
            "days {}/{} · {} evaluations",
            self.days_done.load(Ordering::SeqCst),
            self.days_total,
            self.written.load(Ordering::SeqCst)
        );
        if let Some(client) = self.client.get() {
            let stats = client.stats();
            let sent = stats.requests + stats.token_requests;
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            let limit = self.limit.allowed as f64 * 1000.0 / self.limit.window_ms.max(1) as f64;
            out += &format!(" · {:.1} r/s (limit {limit:.1})", sent as f64 / secs);
        }
        let until = *self.waiting_until.lock().expect("not poisoned");
        if let Some(until) = until
            && until > now
        {
            let secs = until.duration_since(now).as_secs_f64().ceil() as u64;
            out += &format!(
                " · waiting {secs} s (Retry-After, until {})",
                to_second(until)
            );
        }
        if self.finished.load(Ordering::SeqCst) {
            out += " · done";
        }
        out
    }
}

/// Counts evaluations as they are written.
pub struct Written(pub Arc<OrgProgress>);

impl ExportObserver for Written {
    fn written(&self, n: u64) {
        self.0.written.fetch_add(n, Ordering::SeqCst);
    }
}

/// The job store, watched: a day's final status updates its org's progress (and, with
/// `log`, prints a line).
pub struct WatchedJobs {
    pub inner: Arc<dyn JobStore>,
    pub orgs: HashMap<OrgId, Arc<OrgProgress>>,
    pub log: bool,
}

impl WatchedJobs {
    fn seen(&self, spec: &JobSpec, status: &JobStatus, now: Timestamp) {
        let Some(org) = self.orgs.get(&spec.org_id) else {
            return;
        };
        let (evaluations, note) = match status {
            // A day verified unchanged keeps the commit time of its earlier run.
            JobStatus::Committed {
                evaluations,
                committed_at,
                ..
            } if *committed_at < now => (Some(*evaluations), "up to date (verified)".to_owned()),
            JobStatus::Committed { evaluations, .. } => {
                (Some(*evaluations), "committed".to_owned())
            }
            JobStatus::CommittedWithGaps {
                evaluations,
                unavailable,
                ..
            } => (
                Some(*evaluations),
                format!("committed with gaps ({unavailable} refused by the API)"),
            ),
            JobStatus::Deferred { until, reason } => {
                if self.log {
                    eprintln!(
                        "{} {}: deferred until {} ({reason})",
                        org.label,
                        spec.day,
                        to_second(*until)
                    );
                }
                return;
            }
            JobStatus::Failed { reason } => {
                if self.log && reason != "interrupted" {
                    eprintln!("{} {}: failed: {reason}", org.label, spec.day);
                }
                return;
            }
            JobStatus::Running => return,
        };
        let done = org.days_done.fetch_add(1, Ordering::SeqCst) + 1;
        let evaluations = evaluations.unwrap_or(0);
        org.committed_evaluations
            .fetch_add(evaluations, Ordering::SeqCst);
        if self.log {
            eprintln!(
                "{} {}: {note}, {evaluations} evaluations (day {done} of {})",
                org.label, spec.day, org.days_total
            );
        }
    }
}

#[async_trait]
impl JobStore for WatchedJobs {
    async fn acquire(
        &self,
        spec: &JobSpec,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, JobStoreError> {
        self.inner.acquire(spec, holder, until, now).await
    }
    async fn renew(
        &self,
        spec: &JobSpec,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), JobStoreError> {
        self.inner.renew(spec, holder, until, now).await
    }
    async fn save_checkpoint(
        &self,
        spec: &JobSpec,
        holder: &str,
        checkpoint: &Checkpoint,
        now: Timestamp,
    ) -> Result<(), JobStoreError> {
        self.inner
            .save_checkpoint(spec, holder, checkpoint, now)
            .await
    }
    async fn finish(
        &self,
        spec: &JobSpec,
        holder: &str,
        status: JobStatus,
        now: Timestamp,
    ) -> Result<(), JobStoreError> {
        self.inner.finish(spec, holder, status.clone(), now).await?;
        self.seen(spec, &status, now);
        Ok(())
    }
    async fn get(&self, spec: &JobSpec) -> Result<Option<JobRecord>, StoreError> {
        self.inner.get(spec).await
    }
    async fn add_pending(&self, org_id: &OrgId, days: &[PendingDay]) -> Result<(), StoreError> {
        self.inner.add_pending(org_id, days).await
    }
    async fn take_org(
        &self,
        org_id: &OrgId,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<Vec<PendingDay>>, JobStoreError> {
        self.inner.take_org(org_id, holder, until, now).await
    }
    async fn pending(&self, org_id: &OrgId) -> Result<Vec<PendingDay>, StoreError> {
        self.inner.pending(org_id).await
    }
    async fn settle(
        &self,
        org_id: &OrgId,
        holder: &str,
        day: &PendingDay,
        settled: Settled,
    ) -> Result<(), JobStoreError> {
        self.inner.settle(org_id, holder, day, settled).await
    }
    async fn release_org(
        &self,
        org_id: &OrgId,
        holder: &str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.inner.release_org(org_id, holder, now).await
    }
}

/// The rate ledger, watched: a bucket's `Retry-After` deadline shows as its org waiting.
pub struct WatchedLedger {
    pub inner: Arc<dyn RateLedger>,
    pub buckets: HashMap<BucketKey, Arc<OrgProgress>>,
}

impl WatchedLedger {
    fn seen(&self, bucket: &BucketKey, state: &BucketState) {
        if let Some(org) = self.buckets.get(bucket) {
            *org.waiting_until.lock().expect("not poisoned") = state.blocked_until;
        }
    }
}

#[async_trait]
impl RateLedger for WatchedLedger {
    async fn renew(
        &self,
        bucket: &BucketKey,
        holder: &str,
        lease_until: Timestamp,
        now: Timestamp,
        limit: Option<LearnedLimit>,
    ) -> Result<BucketState, StoreError> {
        let state = self
            .inner
            .renew(bucket, holder, lease_until, now, limit)
            .await?;
        self.seen(bucket, &state);
        Ok(state)
    }
    async fn block_until(
        &self,
        bucket: &BucketKey,
        until: Timestamp,
    ) -> Result<BucketState, StoreError> {
        let state = self.inner.block_until(bucket, until).await?;
        self.seen(bucket, &state);
        Ok(state)
    }
    async fn release(&self, bucket: &BucketKey, holder: &str) -> Result<(), StoreError> {
        self.inner.release(bucket, holder).await
    }
}
