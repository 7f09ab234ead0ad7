//! The rate ledger and the job store, written once over a [`ConditionalStore`].
//!
//! Every read-modify-write is a conditional write on the item's version, retried on
//! conflict; expiry is decided from stored timestamps, never from a backend's TTL.
//!
//! Items (JSON):
//! - `bucket#<org>#<client id>`: `{"blocked_until": ts|null, "limit": {"allowed", "window_ms"}|null,
//!   "holders": {"<holder>": lease_until_ts}}`
//! - `job#<org>#<dateField>#<source>#<YYYY-MM-DD>`: a [`JobRecord`].
//! - `work#<org>`: the org's lease (one export chain per org) and its pending days.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::domain::{JobSpec, OrgId};
use crate::ports::{
    BucketKey, BucketState, Checkpoint, ConditionalStore, JobRecord, JobStatus, JobStore,
    JobStoreError, LearnedLimit, Lease, LeaseOutcome, MAX_PENDING_DAYS, PendingDay, RateLedger,
    Settled, StoreError, Versioned,
};

/// How long items may be kept after their last write before the backend cleans them up:
/// job records (leases, checkpoints, status) 90 days; dispatch and idempotency records 30
/// days; rate buckets and the registry are kept.
fn expiry(key: &str) -> Option<Timestamp> {
    let days: i64 = if key.starts_with("job#") {
        90
    } else if key.starts_with("request#") {
        30
    } else {
        return None;
    };
    Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * days))
        .ok()
}

/// Conditional-write attempts before giving up on a hot item.
const MAX_ATTEMPTS: usize = 64;

/// `RateLedger` + `JobStore` over any conditional store.
///
/// It remembers the last version it wrote of each rate bucket (`bucket#…`) and
/// writes the next one against it without reading first: a holder alone on its bucket (one
/// export chain per org) renews and leaves with one conditional write each instead of a
/// read and a write. Safe by construction: the write's condition is that exact version, so
/// it only lands when nobody wrote since (rate buckets are never deleted, so a version is
/// never reused); on a failed condition or an error it reads and tries again as usual.
#[derive(Debug)]
pub struct StoreLedger<S> {
    store: Arc<S>,
    /// Rate bucket key → (version, value) this ledger last wrote.
    seen: Arc<std::sync::Mutex<HashMap<String, (u64, String)>>>,
}

impl<S> Clone for StoreLedger<S> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            seen: Arc::clone(&self.seen),
        }
    }
}

impl<S: ConditionalStore> StoreLedger<S> {
    /// A ledger and job store backed by `store`.
    pub fn new(store: S) -> Self {
        Self {
            store: Arc::new(store),
            seen: Arc::default(),
        }
    }

    /// Reads `key`, applies `f` and writes the result conditionally, retrying on conflict.
    /// `f` returns the new item and a value to hand back, or an error to abort.
    async fn update<T, R, E>(
        &self,
        key: &str,
        mut f: impl FnMut(Option<T>) -> Result<(T, R), E> + Send,
    ) -> Result<R, E>
    where
        T: Serialize + DeserializeOwned + Send,
        E: From<StoreError>,
    {
        let remember = key.starts_with("bucket#");
        let mut seen = if remember {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key)
        } else {
            None
        };
        for _ in 0..MAX_ATTEMPTS {
            let current = match seen.take() {
                Some((version, value)) => Some(Versioned { version, value }),
                None => self.store.get(key).await?,
            };
            let (version, item) = match current {
                Some(v) => (
                    Some(v.version),
                    Some(serde_json::from_str(&v.value).map_err(|e| {
                        StoreError::new("ledger", format!("item {key} is malformed: {e}"))
                    })?),
                ),
                None => (None, None),
            };
            let (next, out) = f(item)?;
            let value = serde_json::to_string(&next)
                .map_err(|e| StoreError::new("ledger", format!("cannot encode {key}: {e}")))?;
            // An error leaves nothing remembered: the write may or may not have landed.
            if self.store.put_if(key, version, &value, expiry(key)).await? {
                if remember {
                    let written = version.map_or(1, |v| v + 1);
                    self.seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.to_owned(), (written, value));
                }
                return Ok(out);
            }
        }
        Err(StoreError::new("ledger", format!("too much contention on {key}")).into())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BucketItem {
    blocked_until: Option<Timestamp>,
    limit: Option<LearnedLimit>,
    holders: BTreeMap<String, Timestamp>,
}

impl BucketItem {
    fn state(&self) -> BucketState {
        BucketState {
            blocked_until: self.blocked_until,
            limit: self.limit,
            active_holders: (self.holders.len() as u32).max(1),
        }
    }
}

#[async_trait]
impl<S: ConditionalStore> RateLedger for StoreLedger<S> {
    async fn renew(
        &self,
        bucket: &BucketKey,
        holder: &str,
        lease_until: Timestamp,
        now: Timestamp,
        limit: Option<LearnedLimit>,
    ) -> Result<BucketState, StoreError> {
        self.update(&bucket.0, |item: Option<BucketItem>| {
            let mut item = item.unwrap_or_default();
            item.holders.retain(|_, until| *until > now);
            item.holders.insert(holder.to_owned(), lease_until);
            if limit.is_some() {
                item.limit = limit;
            }
            if item.blocked_until.is_some_and(|b| b <= now) {
                item.blocked_until = None;
            }
            let state = item.state();
            Ok::<_, StoreError>((item, state))
        })
        .await
    }

    async fn block_until(
        &self,
        bucket: &BucketKey,
        until: Timestamp,
    ) -> Result<BucketState, StoreError> {
        self.update(&bucket.0, |item: Option<BucketItem>| {
            let mut item = item.unwrap_or_default();
            item.blocked_until = Some(item.blocked_until.map_or(until, |b| b.max(until)));
            let state = item.state();
            Ok::<_, StoreError>((item, state))
        })
        .await
    }

    async fn release(&self, bucket: &BucketKey, holder: &str) -> Result<(), StoreError> {
        self.update(&bucket.0, |item: Option<BucketItem>| {
            let mut item = item.unwrap_or_default();
            item.holders.remove(holder);
            Ok::<_, StoreError>((item, ()))
        })
        .await
    }
}

/// Why `acquire`'s update stopped: a live lease of another holder, or the store.
enum Acquire {
    Held(Lease),
    Store(StoreError),
}

impl From<StoreError> for Acquire {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn new_record(spec: &JobSpec, now: Timestamp) -> JobRecord {
    JobRecord {
        spec: spec.clone(),
        lease: None,
        status: JobStatus::Running,
        checkpoint: None,
        updated_at: now,
        epoch: 0,
    }
}

fn check_holder(
    record: &Option<JobRecord>,
    spec: &JobSpec,
    holder: &str,
) -> Result<(), JobStoreError> {
    match record.as_ref().and_then(|r| r.lease.as_ref()) {
        Some(lease) if lease.holder == holder => Ok(()),
        _ => Err(JobStoreError::LeaseLost { job: spec.key() }),
    }
}

#[async_trait]
impl<S: ConditionalStore> JobStore for StoreLedger<S> {
    async fn acquire(
        &self,
        spec: &JobSpec,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, JobStoreError> {
        let outcome = self
            .update(&spec.key(), |record: Option<JobRecord>| {
                let mut record = record.unwrap_or_else(|| new_record(spec, now));
                if let Some(lease) = &record.lease
                    && lease.holder != holder
                    && lease.until > now
                {
                    return Err(Acquire::Held(lease.clone()));
                }
                record.lease = Some(Lease {
                    holder: holder.to_owned(),
                    until,
                });
                record.epoch += 1;
                let epoch = record.epoch;
                record.status = JobStatus::Running;
                record.updated_at = now;
                if record.checkpoint.is_none() {
                    record.spec = spec.clone();
                }
                let checkpoint = record.checkpoint.clone();
                Ok((
                    record,
                    LeaseOutcome::Acquired {
                        checkpoint: checkpoint.map(Box::new),
                        epoch,
                    },
                ))
            })
            .await;
        match outcome {
            Ok(acquired) => Ok(acquired),
            Err(Acquire::Held(lease)) => Ok(LeaseOutcome::HeldByOther(lease)),
            Err(Acquire::Store(e)) => Err(e.into()),
        }
    }

    async fn renew(
        &self,
        spec: &JobSpec,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), JobStoreError> {
        self.update(&spec.key(), |record: Option<JobRecord>| {
            check_holder(&record, spec, holder)?;
            let mut record = record.expect("checked");
            record.lease = Some(Lease {
                holder: holder.to_owned(),
                until,
            });
            record.updated_at = now;
            Ok((record, ()))
        })
        .await
    }

    async fn save_checkpoint(
        &self,
        spec: &JobSpec,
        holder: &str,
        checkpoint: &Checkpoint,
        now: Timestamp,
    ) -> Result<(), JobStoreError> {
        self.update(&spec.key(), |record: Option<JobRecord>| {
            check_holder(&record, spec, holder)?;
            let mut record = record.expect("checked");
            record.checkpoint = Some(checkpoint.clone());
            record.updated_at = now;
            Ok((record, ()))
        })
        .await
    }

    async fn finish(
        &self,
        spec: &JobSpec,
        holder: &str,
        status: JobStatus,
        now: Timestamp,
    ) -> Result<(), JobStoreError> {
        self.update(&spec.key(), |record: Option<JobRecord>| {
            check_holder(&record, spec, holder)?;
            let mut record = record.expect("checked");
            if matches!(
                status,
                JobStatus::Committed { .. } | JobStatus::CommittedWithGaps { .. }
            ) {
                record.checkpoint = None;
            }
            record.status = status.clone();
            record.lease = None;
            record.updated_at = now;
            Ok((record, ()))
        })
        .await
    }

    async fn get(&self, spec: &JobSpec) -> Result<Option<JobRecord>, StoreError> {
        self.store
            .get(&spec.key())
            .await?
            .map(|v| {
                serde_json::from_str(&v.value).map_err(|e| {
                    StoreError::new("ledger", format!("job {} is malformed: {e}", spec.key()))
                })
            })
            .transpose()
    }

    async fn add_pending(&self, org_id: &OrgId, days: &[PendingDay]) -> Result<(), StoreError> {
        self.update(&work_key(org_id), |item: Option<WorkItem>| {
            let mut item = item.unwrap_or_default();
            for day in days {
                item.pending.insert(day.key(), day.clone());
            }
            if item.pending.len() > MAX_PENDING_DAYS {
                return Err(StoreError::new(
                    "ledger",
                    format!(
                        "org {org_id} would have {} days pending (at most {MAX_PENDING_DAYS}): wait for its exports, or ask for fewer days",
                        item.pending.len()
                    ),
                ));
            }
            Ok((item, ()))
        })
        .await
    }

    async fn take_org(
        &self,
        org_id: &OrgId,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<Vec<PendingDay>>, JobStoreError> {
        let taken = self
            .update(&work_key(org_id), |item: Option<WorkItem>| {
                let mut item = item.unwrap_or_default();
                if item
                    .lease
                    .as_ref()
                    .is_some_and(|l| l.holder != holder && l.until > now)
                {
                    return Err(Acquire::Held(item.lease.clone().expect("checked")));
                }
                item.lease = Some(Lease {
                    holder: holder.to_owned(),
                    until,
                });
                let pending = item.oldest_first();
                Ok((item, pending))
            })
            .await;
        match taken {
            Ok(pending) => Ok(Some(pending)),
            Err(Acquire::Held(_)) => Ok(None),
            Err(Acquire::Store(e)) => Err(e.into()),
        }
    }

    async fn pending(&self, org_id: &OrgId) -> Result<Vec<PendingDay>, StoreError> {
        match self.store.get(&work_key(org_id)).await? {
            None => Ok(Vec::new()),
            Some(v) => serde_json::from_str::<WorkItem>(&v.value)
                .map(|w| w.oldest_first())
                .map_err(|e| StoreError::new("ledger", format!("work#{org_id} is malformed: {e}"))),
        }
    }

    async fn settle(
        &self,
        org_id: &OrgId,
        holder: &str,
        day: &PendingDay,
        settled: Settled,
    ) -> Result<(), JobStoreError> {
        let key = work_key(org_id);
        self.update(&key, |item: Option<WorkItem>| {
            let mut item = item.unwrap_or_default();
            if item.lease.as_ref().is_none_or(|l| l.holder != holder) {
                return Err(JobStoreError::LeaseLost { job: key.clone() });
            }
            let k = day.key();
            // Asked for again while it ran: the newer request stays pending as it is.
            let same = item.pending.get(&k).is_some_and(|p| {
                p.request_id == day.request_id && p.spec.window == day.spec.window
            });
            if same {
                match &settled {
                    Settled::Done => {
                        item.pending.remove(&k);
                    }
                    Settled::Retry {
                        not_before,
                        attempts,
                    } => {
                        if let Some(p) = item.pending.get_mut(&k) {
                            p.not_before = Some(*not_before);
                            p.attempts = *attempts;
                        }
                    }
                }
            }
            Ok((item, ()))
        })
        .await
    }

    async fn release_org(
        &self,
        org_id: &OrgId,
        holder: &str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.update(&work_key(org_id), |item: Option<WorkItem>| {
            let mut item = item.unwrap_or_default();
            if item.lease.as_ref().is_some_and(|l| l.holder == holder) {
                item.lease = None;
            }
            let next = item
                .pending
                .values()
                .map(|p| p.not_before.map_or(now, |t| t.max(now)))
                .min();
            Ok::<_, StoreError>((item, next))
        })
        .await
    }
}

/// The orgs registry item: `registry#orgs` = `{"org_ids": [...]}` (sorted).
/// The org's work item: its export chain's lease and its pending days.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WorkItem {
    lease: Option<Lease>,
    pending: BTreeMap<String, PendingDay>,
}

impl WorkItem {
    fn oldest_first(&self) -> Vec<PendingDay> {
        let mut days: Vec<PendingDay> = self.pending.values().cloned().collect();
        days.sort_by_key(|a| (a.spec.day, a.key()));
        days
    }
}

fn work_key(org_id: &OrgId) -> String {
    format!("work#{org_id}")
}

const REGISTRY_KEY: &str = "registry#orgs";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    org_ids: Vec<crate::domain::OrgId>,
}

impl<S: ConditionalStore> StoreLedger<S> {
    /// Adds an org to the registry (idempotent).
    pub async fn register_org(&self, org_id: &crate::domain::OrgId) -> Result<(), StoreError> {
        self.register_orgs(std::slice::from_ref(org_id)).await
    }

    /// Adds orgs to the registry in one conditional write (idempotent).
    pub async fn register_orgs(&self, org_ids: &[crate::domain::OrgId]) -> Result<(), StoreError> {
        self.update(REGISTRY_KEY, |r: Option<Registry>| {
            let mut r = r.unwrap_or_default();
            for org_id in org_ids {
                if let Err(at) = r.org_ids.binary_search(org_id) {
                    r.org_ids.insert(at, org_id.clone());
                }
            }
            Ok::<_, StoreError>((r, ()))
        })
        .await
    }

    /// Removes an org from the registry; `false` when it was not registered.
    pub async fn remove_org(&self, org_id: &crate::domain::OrgId) -> Result<bool, StoreError> {
        self.update(REGISTRY_KEY, |r: Option<Registry>| {
            let mut r = r.unwrap_or_default();
            let before = r.org_ids.len();
            r.org_ids.retain(|o| o != org_id);
            let removed = r.org_ids.len() < before;
            Ok::<_, StoreError>((r, removed))
        })
        .await
    }

    /// Every registered org, sorted.
    pub async fn orgs(&self) -> Result<Vec<crate::domain::OrgId>, StoreError> {
        match self.store.get(REGISTRY_KEY).await? {
            None => Ok(Vec::new()),
            Some(v) => serde_json::from_str::<Registry>(&v.value)
                .map(|r| r.org_ids)
                .map_err(|e| StoreError::new("ledger", format!("registry is malformed: {e}"))),
        }
    }

    /// The response recorded under an idempotency key, if any.
    pub async fn recall<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let key = format!("request#{key}");
        self.store
            .get(&key)
            .await?
            .map(|v| {
                serde_json::from_str(&v.value)
                    .map_err(|e| StoreError::new("ledger", format!("{key} is malformed: {e}")))
            })
            .transpose()
    }

    /// Writes `value` under an idempotency key (`request#<key>`), replacing what is there.
    pub async fn replace<T: Serialize + DeserializeOwned + Send>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_value(value)
            .map_err(|e| StoreError::new("ledger", format!("cannot encode {key}: {e}")))?;
        self.update(&format!("request#{key}"), |_: Option<serde_json::Value>| {
            Ok::<_, StoreError>((value.clone(), ()))
        })
        .await
    }

    /// Records `response` under an idempotency key (`request#<key>`) unless one is recorded
    /// already; returns the recorded one in that case.
    pub async fn remember<T: Serialize + DeserializeOwned + Send>(
        &self,
        key: &str,
        response: &T,
    ) -> Result<Option<T>, StoreError> {
        let key = format!("request#{key}");
        let value = serde_json::to_string(response)
            .map_err(|e| StoreError::new("ledger", format!("cannot encode {key}: {e}")))?;
        if self.store.put_if(&key, None, &value, expiry(&key)).await? {
            return Ok(None);
        }
        let existing = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| StoreError::new("ledger", format!("{key} vanished")))?;
        serde_json::from_str(&existing.value)
            .map(Some)
            .map_err(|e| StoreError::new("ledger", format!("{key} is malformed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::adapters::memory::MemoryStore;

    /// The memory store, counting reads and writes.
    #[derive(Default)]
    struct Counted {
        inner: MemoryStore,
        reads: AtomicU32,
        writes: AtomicU32,
    }

    #[async_trait]
    impl ConditionalStore for Counted {
        async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.get(key).await
        }

        async fn put_if(
            &self,
            key: &str,
            expected: Option<u64>,
            value: &str,
            expires_at: Option<Timestamp>,
        ) -> Result<bool, StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.inner.put_if(key, expected, value, expires_at).await
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[tokio::test]
    async fn a_lone_holder_renews_and_leaves_with_one_write_each_and_sees_other_writers() {
        let store = Arc::new(Counted::default());
        // Two instances' ledgers over one table: each remembers on its own.
        let instance = || StoreLedger {
            store: Arc::clone(&store),
            seen: Arc::default(),
        };
        let (ledger, other) = (instance(), instance());
        let bucket = BucketKey("bucket#org#client".into());
        let ops = || {
            (
                store.reads.load(Ordering::SeqCst),
                store.writes.load(Ordering::SeqCst),
            )
        };
        // Join: the first read and write; then renewals are one write each.
        RateLedger::renew(&ledger, &bucket, "a", at(60), at(0), None)
            .await
            .unwrap();
        assert_eq!(ops(), (1, 1));
        for s in 1..=3 {
            let state = RateLedger::renew(&ledger, &bucket, "a", at(60 + s), at(s), None)
                .await
                .unwrap();
            assert_eq!(state.active_holders, 1);
        }
        assert_eq!(ops(), (1, 4));
        // Another ledger (another instance) joins: the next renewal's blind write fails, it
        // reads and sees two holders.
        RateLedger::renew(&other, &bucket, "b", at(70), at(4), None)
            .await
            .unwrap();
        assert_eq!(ops(), (2, 5));
        let state = RateLedger::renew(&ledger, &bucket, "a", at(65), at(5), None)
            .await
            .unwrap();
        assert_eq!(
            state.active_holders, 2,
            "the other holder's write is not lost"
        );
        assert_eq!(ops(), (3, 7));
        RateLedger::release(&ledger, &bucket, "a").await.unwrap();
        assert_eq!(ops(), (3, 8));
        let state = RateLedger::renew(&other, &bucket, "b", at(70), at(6), None)
            .await
            .unwrap();
        assert_eq!(state.active_holders, 1, "a left");
    }
}
