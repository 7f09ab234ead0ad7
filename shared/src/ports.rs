//! The ports the engine talks to (DESIGN §3). Adapters in [`crate::adapters`] implement them;
//! the engine never knows which one it has.
//!
//! - [`ConditionalStore`]: a key → versioned JSON item store with conditional writes. The
//!   rate ledger and the job store are written once over it ([`crate::adapters::ledger`]),
//!   so every backend (memory, SQLite, DynamoDB) has the same semantics.
//! - [`RateLedger`]: per-bucket shared rate state.
//! - [`JobStore`]: job leases, checkpoints and status.
//! - [`ExportSink`]: parts, forms and the manifest commit.

use async_trait::async_trait;
use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::domain::{DateField, JobSpec, OrgId, RunId, Source, Window};

/// A storage failure of an adapter (I/O, database, network). Never contains secrets.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct StoreError {
    /// Which adapter failed, e.g. `sqlite` or `local-dir`.
    pub backend: &'static str,
    /// What failed.
    pub message: String,
}

impl StoreError {
    /// A storage error of `backend`.
    pub fn new(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            backend,
            message: message.to_string(),
        }
    }
}

/// An item read from a [`ConditionalStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// Starts at 1 and grows by one with each successful write.
    pub version: u64,
    /// The item, JSON text.
    pub value: String,
}

/// Key → versioned JSON items (as text, so large items are not held as trees) with
/// conditional writes (the DynamoDB `ConditionExpression`
/// model: `attribute_not_exists(pk)` or `version = :expected`).
#[async_trait]
pub trait ConditionalStore: Send + Sync + 'static {
    /// Reads the item at `key`.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Writes `value` at `key` if the stored version is `expected` (`None`: the item must not
    /// exist). The new version is `expected + 1` (or 1). Returns `Ok(false)` when the
    /// condition failed and nothing was written. `expires_at` (UTC) lets a backend clean the
    /// item up after that time (DynamoDB TTL); it never changes what a read returns before.
    async fn put_if(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
        expires_at: Option<Timestamp>,
    ) -> Result<bool, StoreError>;
}

/// A rate bucket: the unit a Genesys limit applies to. By default one per (org id, OAuth
/// client id), i.e. one client-credentials token's quota (`token.rate.per.minute`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BucketKey(pub String);

impl BucketKey {
    /// The bucket of one client-credentials client in one org: `bucket#<org>#<client id>`.
    pub fn for_client(org_id: &OrgId, client_id: &str) -> Self {
        Self(format!("bucket#{org_id}#{client_id}"))
    }
}

/// A limit learned from `inin-ratelimit-allowed` (requests) per window (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedLimit {
    /// Requests allowed per window (`inin-ratelimit-allowed`).
    pub allowed: u32,
    /// Window length in milliseconds.
    pub window_ms: u64,
}

/// Shared state of a bucket, as read from the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BucketState {
    /// The latest `Retry-After` deadline anyone saw, UTC; no request may be sent before it.
    pub blocked_until: Option<Timestamp>,
    /// The learned limit, if any response carried one.
    pub limit: Option<LearnedLimit>,
    /// Holders whose lease has not expired, including the caller after `renew`. At least 1.
    pub active_holders: u32,
}

/// Per-bucket rate state shared by every process working on an org (DESIGN §5).
#[async_trait]
pub trait RateLedger: Send + Sync + 'static {
    /// Registers `holder` on `bucket` (or renews it) with a lease until `lease_until`, stores
    /// `limit` when given, drops holders whose lease expired before `now`, and returns the
    /// bucket's state. One conditional write.
    async fn renew(
        &self,
        bucket: &BucketKey,
        holder: &str,
        lease_until: Timestamp,
        now: Timestamp,
        limit: Option<LearnedLimit>,
    ) -> Result<BucketState, StoreError>;
    /// Raises `blocked_until` to `max(current, until)` and returns the new state.
    async fn block_until(
        &self,
        bucket: &BucketKey,
        until: Timestamp,
    ) -> Result<BucketState, StoreError>;
    /// Removes `holder` from the bucket.
    async fn release(&self, bucket: &BucketKey, holder: &str) -> Result<(), StoreError>;
}

/// One written part of a run (an entry of the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// Object key relative to the sink root, e.g.
    /// `evaluations/org_id=o/date_field=submittedDate/source=both/date=2026-11-28/run=…/part-000001-00000.ndjson.gz`.
    pub key: String,
    /// NDJSON lines (evaluations) in the part.
    pub records: u64,
    /// Size of the gzip object in bytes.
    pub bytes: u64,
    /// SHA-256 of the gzip object, lowercase hex.
    pub sha256: String,
}

/// One discovered evaluation: what the search told us, enough to fetch it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// Evaluation id.
    pub id: String,
    /// `conversation.id`.
    pub conversation_id: String,
    /// `evaluator.id`, absent for some automated evaluations.
    pub evaluator_id: Option<String>,
    /// `agent.id`: the fetch group of evaluations without an evaluator.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// `createdDate` (bounds the bulk query's `startTime`/`endTime`), if the search gave it.
    pub created_date: Option<Timestamp>,
    /// `changedDate` as the search gave it: a refresh compares it with the committed copy.
    #[serde(default)]
    pub changed_date: Option<Timestamp>,
    /// Found by the `systemSubmitted=true` search (an automated evaluation).
    pub automated: bool,
}

/// An evaluation the search found but the API refused to serve (DESIGN §6 step 4): listed
/// in the manifest so a day is never silently short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailable {
    /// Evaluation id.
    pub id: String,
    /// `conversation.id` (empty when the search gave none).
    pub conversation_id: String,
    /// HTTP status of the refusal: 403 (outside the client's divisions), 404 (deleted after
    /// discovery), a 5xx that outlived its retries; 0 when no request could be made (the
    /// search gave no conversation id).
    pub status: u16,
    /// Genesys ErrorBody `code`, e.g. `not.authorized`, or a short reason.
    pub code: String,
}

/// One search listing of a day and its independent count (DESIGN §6 step 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchCount {
    /// The search's `systemSubmitted` flag.
    pub system_submitted: bool,
    /// Distinct evaluations the listing returned (before the window-boundary check).
    pub listed: u64,
    /// The same search counted by a `COUNT` aggregation with `pageSize` 0; `None` when the
    /// service refused the aggregation.
    pub counted: Option<u64>,
}

impl SearchCount {
    /// Whether the independent count disagrees with the listing.
    pub fn mismatch(&self) -> bool {
        self.counted.is_some_and(|c| c != self.listed)
    }
}

/// Progress of a running job, saved after discovery and after each part, so a timed-out
/// or deferred job resumes without refetching what is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run the parts belong to.
    pub run_id: RunId,
    /// The window this run exports (fixed when the run starts, so a resumed run finishes
    /// the window it discovered).
    pub window: Window,
    /// The exact id set of the window, once discovery finished: a gzip NDJSON object of
    /// [`Discovered`] in the sink ([`discovery_key`]), kept out of the job record so that
    /// record stays small however large the window.
    #[serde(default)]
    pub discovery: Option<PartInfo>,
    /// Parts written so far, in order.
    pub parts: Vec<PartInfo>,
    /// Fetch groups whose evaluations are all in `parts`, by their position in the run's
    /// list of groups (sorted by key: `agent:<id>`, `evaluator:<id>`, `single`), one bit
    /// each: the job record stays small however many agents and evaluators a day has.
    #[serde(default)]
    pub groups_done: GroupSet,
    /// Done groups by key, as checkpoints written by earlier versions list them (read
    /// once, then kept in `groups_done`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done_groups: Vec<String>,
    /// Evaluation form ids referenced by the written evaluations.
    pub form_ids: Vec<String>,
    /// Request statistics accumulated over every invocation of this job.
    pub stats: RequestStats,
    /// Distinct evaluations discovery found (written + unavailable + outside the window).
    #[serde(default)]
    pub discovered: u64,
    /// Discovered evaluations whose date lies outside the window (a `DATE_RANGE` that
    /// includes its end instant); they belong to the neighbouring day.
    #[serde(default)]
    pub outside_window: u64,
    /// Discovered evaluations the API refused, in done groups.
    #[serde(default)]
    pub unavailable: Vec<Unavailable>,
    /// The listings of discovery and their independent counts.
    #[serde(default)]
    pub search_counts: Vec<SearchCount>,
    /// Runs in a row that ran out of time without writing an evaluation or finishing
    /// discovery.
    #[serde(default)]
    pub stalled_runs: u32,
    /// A refresh of a committed day: the committed run whose unchanged evaluations this
    /// run carries over, and how many of its parts are carried over so far.
    #[serde(default)]
    pub carried_from: Option<RunId>,
    /// Parts of `carried_from` carried over so far.
    #[serde(default)]
    pub carried_parts: usize,
}

/// A set of small numbers (fetch-group positions), one bit each, serialised as lowercase
/// hex (8,000 groups take 2,000 characters).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupSet(Vec<u8>);

impl GroupSet {
    /// Whether `i` is in the set.
    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Adds `i`.
    pub fn insert(&mut self, i: usize) {
        if self.0.len() <= i / 8 {
            self.0.resize(i / 8 + 1, 0);
        }
        self.0[i / 8] |= 1 << (i % 8);
    }

    /// How many numbers the set holds.
    pub fn len(&self) -> usize {
        self.0.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Serialize for GroupSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for GroupSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text)
            .map(GroupSet)
            .map_err(serde::de::Error::custom)
    }
}

/// Request statistics of a job (a product figure: requests per 1,000 evaluations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RequestStats {
    /// HTTP requests sent to the API host (token requests excluded).
    pub requests: u64,
    /// Token requests sent to the login host.
    pub token_requests: u64,
    /// Responses with status 429.
    pub responses_429: u64,
    /// Retried failures other than 429 (5xx, timeouts, connection errors).
    pub retries: u64,
    /// Milliseconds spent waiting on `Retry-After` deadlines.
    pub waited_ms: u64,
}

impl RequestStats {
    /// What happened after `earlier` (a snapshot of the same counters).
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        RequestStats {
            requests: self.requests.saturating_sub(earlier.requests),
            token_requests: self.token_requests.saturating_sub(earlier.token_requests),
            responses_429: self.responses_429.saturating_sub(earlier.responses_429),
            retries: self.retries.saturating_sub(earlier.retries),
            waited_ms: self.waited_ms.saturating_sub(earlier.waited_ms),
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &RequestStats) {
        self.requests += other.requests;
        self.token_requests += other.token_requests;
        self.responses_429 += other.responses_429;
        self.retries += other.retries;
        self.waited_ms += other.waited_ms;
    }
}

/// Status of a job as recorded in the [`JobStore`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JobStatus {
    /// A holder is working on it (see the lease).
    Running,
    /// The manifest is committed.
    Committed {
        /// The committed run.
        run_id: RunId,
        /// Evaluations in the committed manifest.
        evaluations: u64,
        /// When the manifest was committed, UTC.
        committed_at: Timestamp,
    },
    /// The manifest is committed, but it lists evaluations the API refused
    /// (`unavailable`): the next run exports the day again.
    CommittedWithGaps {
        /// The committed run.
        run_id: RunId,
        /// Evaluations in the committed manifest.
        evaluations: u64,
        /// Evaluations listed as unavailable.
        unavailable: u64,
        /// When the manifest was committed, UTC.
        committed_at: Timestamp,
    },
    /// Stopped early with a checkpoint; resume at or after `until`.
    Deferred {
        /// Earliest useful resume time, UTC (a `Retry-After` deadline).
        until: Timestamp,
        /// Why, e.g. `Retry-After 3600 s`.
        reason: String,
    },
    /// Failed; nothing was committed for this run.
    Failed {
        /// The error, without secrets.
        reason: String,
    },
}

/// A job lease: who works on the job until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The holder id (one per exporter invocation).
    pub holder: String,
    /// Lease expiry, UTC. An expired lease is free.
    pub until: Timestamp,
}

/// Everything the job store keeps for one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job.
    pub spec: JobSpec,
    /// The lease, if anyone holds or held one.
    pub lease: Option<Lease>,
    /// Last status.
    pub status: JobStatus,
    /// The checkpoint of the unfinished run, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Last update, UTC.
    pub updated_at: Timestamp,
    /// Lease acquisitions so far (the latest one's fencing epoch).
    #[serde(default)]
    pub epoch: u64,
}

/// The result of trying to take a job's lease.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseOutcome {
    /// The caller holds the lease; resume from `checkpoint` if present.
    Acquired {
        /// The unfinished run to resume.
        checkpoint: Option<Box<Checkpoint>>,
        /// This acquisition's fencing epoch: one more than the job's previous acquisition
        /// (counted by the conditional write that took the lease), so epochs never repeat.
        epoch: u64,
    },
    /// Someone else holds an unexpired lease.
    HeldByOther(Lease),
}

/// A job-store operation that lost its lease (another holder took over after expiry).
#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    /// The caller no longer holds the job's lease; it must stop without committing.
    #[error("job {job}: lease lost to another holder")]
    LeaseLost {
        /// The job key.
        job: String,
    },
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Job leases, checkpoints and status (DESIGN §3 `JobStore`).
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Takes the job's lease for `holder` until `until` unless another holder's lease is
    /// unexpired at `now`.
    async fn acquire(
        &self,
        spec: &JobSpec,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, JobStoreError>;
    /// Extends the caller's lease. `LeaseLost` when someone else holds it.
    async fn renew(
        &self,
        spec: &JobSpec,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), JobStoreError>;
    /// Saves a checkpoint, only while the caller holds the lease.
    async fn save_checkpoint(
        &self,
        spec: &JobSpec,
        holder: &str,
        checkpoint: &Checkpoint,
        now: Timestamp,
    ) -> Result<(), JobStoreError>;
    /// Records the final status of this invocation and releases the lease. A `Committed`
    /// status clears the checkpoint; `Deferred` keeps it; `Failed` keeps it too (the next
    /// run resumes what was written).
    async fn finish(
        &self,
        spec: &JobSpec,
        holder: &str,
        status: JobStatus,
        now: Timestamp,
    ) -> Result<(), JobStoreError>;
    /// Reads a job.
    async fn get(&self, spec: &JobSpec) -> Result<Option<JobRecord>, StoreError>;

    /// Adds `days` to the org's pending set (`work#<org>`, one conditional write); a day
    /// already pending is replaced (its attempts reset). Errors when the set would hold
    /// more than [`MAX_PENDING_DAYS`].
    async fn add_pending(&self, org_id: &OrgId, days: &[PendingDay]) -> Result<(), StoreError>;
    /// Takes the org's lease for `holder` until `until` and returns its pending days,
    /// oldest first; `None` when another holder's lease is unexpired at `now` (its chain
    /// will see the days).
    async fn take_org(
        &self,
        org_id: &OrgId,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<Vec<PendingDay>>, JobStoreError>;
    /// The org's pending days, oldest first.
    async fn pending(&self, org_id: &OrgId) -> Result<Vec<PendingDay>, StoreError>;
    /// Records what became of a pending day, only while `holder` holds the org's lease. A
    /// day a newer dispatch asked for again while it ran stays pending.
    async fn settle(
        &self,
        org_id: &OrgId,
        holder: &str,
        day: &PendingDay,
        settled: Settled,
    ) -> Result<(), JobStoreError>;
    /// Releases the org's lease and returns when its chain should go on: `None` when
    /// nothing is pending, else the earliest `not_before` (or `now` for a due day).
    async fn release_org(
        &self,
        org_id: &OrgId,
        holder: &str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError>;
}

/// `_manifest.json`: the commit point of a partition (DESIGN §7). A consumer reads only the
/// parts it lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Output schema version (1).
    pub schema_version: u32,
    /// The org.
    pub org_id: OrgId,
    /// Region domain, e.g. `mypurecloud.com`.
    pub region: String,
    /// UTC day of the partition.
    pub date: Date,
    /// `[from, to)` exported, UTC.
    pub window: Window,
    /// Date field the window applied to.
    pub date_field: DateField,
    /// Human, automated or both.
    pub source: Source,
    /// The committed run.
    pub run_id: RunId,
    /// When the run started and committed, UTC.
    pub started_at: Timestamp,
    /// Commit time, UTC.
    pub committed_at: Timestamp,
    /// Parts in order.
    pub parts: Vec<PartInfo>,
    /// Sum of `parts[].records`.
    pub total_records: u64,
    /// Evaluation form ids referenced (`forms/org_id=<org>/<form_id>.json`).
    pub form_ids: Vec<String>,
    /// Request statistics of the run.
    pub stats: RequestStats,
    /// `committed`, or `committed_with_gaps` when `unavailable` is not empty.
    #[serde(default)]
    pub status: CommitStatus,
    /// Distinct evaluations discovery found: `total_records + unavailable + outside_window`.
    #[serde(default)]
    pub discovered: u64,
    /// Evaluations the search returned whose date lies outside the window (they belong to
    /// the neighbouring day and are exported there).
    #[serde(default)]
    pub outside_window: u64,
    /// Evaluations found but refused by the API, with the status and code of the refusal.
    #[serde(default)]
    pub unavailable: Vec<Unavailable>,
    /// The day's search listings and their independent counts.
    #[serde(default)]
    pub search_counts: Vec<SearchCount>,
}

/// Whether a committed manifest holds every discovered evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CommitStatus {
    /// Every discovered evaluation in the window is in the parts.
    #[default]
    Committed,
    /// Some evaluations are listed in `unavailable` instead.
    CommittedWithGaps,
}

impl CommitStatus {
    /// `committed` or `committed_with_gaps`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Committed => "committed",
            Self::CommittedWithGaps => "committed_with_gaps",
        }
    }
}

/// Where one job's output lives (DESIGN §7): one org, date field, source selection and UTC
/// day. Two jobs of one org-day with another date field or source never share a commit
/// point.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Partition {
    /// The org.
    pub org_id: OrgId,
    /// Date field the day's window applies to.
    pub date_field: DateField,
    /// Human, automated or both.
    pub source: Source,
    /// The UTC day.
    pub day: Date,
}

impl Partition {
    /// `evaluations/org_id=<org>/date_field=<field>/source=<source>/date=<YYYY-MM-DD>`.
    pub fn prefix(&self) -> String {
        format!(
            "evaluations/org_id={}/date_field={}/source={}/date={}",
            self.org_id, self.date_field, self.source, self.day
        )
    }

    /// Key of a part: `<prefix>/run=<run>/part-<epoch, 6 digits>-<index, 5 digits>.ndjson.gz`.
    /// The epoch is the lease acquisition that wrote it, so a holder whose lease was taken
    /// over can never overwrite a part another holder wrote (fencing, DESIGN §6 step 5).
    pub fn part_key(&self, run_id: &RunId, epoch: u64, index: usize) -> String {
        format!(
            "{}/run={run_id}/part-{epoch:06}-{index:05}.ndjson.gz",
            self.prefix()
        )
    }

    /// Key of a run's discovered id set: `<prefix>/run=<run>/_discovery-<epoch>.ndjson.gz`
    /// (deleted when the run commits).
    pub fn discovery_key(&self, run_id: &RunId, epoch: u64) -> String {
        format!(
            "{}/run={run_id}/_discovery-{epoch:06}.ndjson.gz",
            self.prefix()
        )
    }

    /// Key of the manifest, the partition's commit point: `<prefix>/_manifest.json`.
    pub fn manifest_key(&self) -> String {
        format!("{}/_manifest.json", self.prefix())
    }

    /// The partition of a manifest key (`…evaluations/org_id=…/date_field=…/source=…/date=…/_manifest.json`,
    /// after any output prefix), or `None` for any other key.
    pub fn of_manifest_key(key: &str) -> Option<Self> {
        let mut segments = key.rsplit('/');
        if segments.next()? != "_manifest.json" {
            return None;
        }
        let day = segments.next()?.strip_prefix("date=")?.parse().ok()?;
        let source = segments.next()?.strip_prefix("source=")?.parse().ok()?;
        let date_field = segments.next()?.strip_prefix("date_field=")?.parse().ok()?;
        let org_id = segments.next()?.strip_prefix("org_id=")?.parse().ok()?;
        (segments.next()? == "evaluations").then_some(Self {
            org_id,
            date_field,
            source,
            day,
        })
    }
}

impl JobSpec {
    /// The partition this job writes.
    pub fn partition(&self) -> Partition {
        Partition {
            org_id: self.org_id.clone(),
            date_field: self.date_field,
            source: self.source,
            day: self.day,
        }
    }
}

impl Manifest {
    /// The partition this manifest commits.
    pub fn partition(&self) -> Partition {
        Partition {
            org_id: self.org_id.clone(),
            date_field: self.date_field,
            source: self.source,
            day: self.date,
        }
    }
}

/// Key of an evaluation form version: `forms/org_id=<org>/<form_id>.json` (form versions
/// are immutable and shared by every partition of the org).
pub fn form_key(org_id: &OrgId, form_id: &str) -> Option<String> {
    let safe = !form_id.is_empty()
        && form_id.len() <= 128
        && form_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    safe.then(|| format!("forms/org_id={org_id}/{form_id}.json"))
}

/// The output store (S3 or a local directory).
#[async_trait]
pub trait ExportSink: Send + Sync + 'static {
    /// Writes an object (a part or a form), replacing any object at `key`.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// Deletes the object at `key` (nothing to do when there is none).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Whether an object exists at `key`.
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Reads an object.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Keys of the objects directly in folder `dir` (a key prefix without its trailing
    /// `/`), sorted; none when the folder does not exist. Objects being written (a local
    /// sink's temporary files) are not listed.
    async fn list(&self, dir: &str) -> Result<Vec<String>, StoreError>;
    /// Whether `part` is stored exactly as listed: its size (S3 `HeadObject`) or, where
    /// reading is cheap, its size and SHA-256.
    async fn verify(&self, part: &PartInfo) -> Result<bool, StoreError>;
    /// The version of the partition's committed manifest (S3 `ETag`; a local manifest's
    /// SHA-256), `None` when nothing is committed.
    async fn manifest_version(&self, partition: &Partition) -> Result<Option<String>, StoreError>;
    /// Commits a partition with a conditional write: writes `_manifest.json` atomically (a
    /// reader sees the old or the new manifest, never a partial one) only if the committed
    /// manifest is still at version `expected` (`None`: none committed), then deletes
    /// every object under the partition's `run=` folders that the manifest does not list
    /// (superseded runs, discovery objects, parts a stale holder left). `Ok(false)` when
    /// another commit came first; nothing was written or deleted then.
    async fn commit(&self, manifest: &Manifest, expected: Option<&str>)
    -> Result<bool, StoreError>;
    /// Reads a partition's committed manifest.
    async fn manifest(&self, partition: &Partition) -> Result<Option<Manifest>, StoreError> {
        let key = partition.manifest_key();
        self.get(&key)
            .await?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::new("output", format!("{key} is malformed: {e}")))
            })
            .transpose()
    }
}

/// One org's work message on the queue: the SQS message body (JSON). An export invocation
/// works through the org's pending days (see [`JobStore::take_org`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    /// The org whose pending days to export.
    pub org_id: OrgId,
    /// The dispatch request that sent it (`job_id` of the dispatch response).
    pub request_id: String,
    /// How many continuations led here (0 for a dispatch's message).
    #[serde(default)]
    pub hop: u32,
}

/// Sends org work messages (SQS on AWS). `delay` is capped at 900 s (the SQS maximum); a
/// longer wait hops again when it arrives.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Enqueues `message`, visible after `delay`.
    async fn send(
        &self,
        message: &JobMessage,
        delay: std::time::Duration,
    ) -> Result<(), StoreError>;
    /// Enqueues several messages (SQS `SendMessageBatch`, 10 per call); all or an error.
    async fn send_batch(
        &self,
        messages: &[(JobMessage, std::time::Duration)],
    ) -> Result<(), StoreError> {
        for (message, delay) in messages {
            self.send(message, *delay).await?;
        }
        Ok(())
    }
}

/// One day waiting to be exported for an org (an entry of the org's work item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingDay {
    /// The job.
    pub spec: JobSpec,
    /// The dispatch that asked for it last.
    pub request_id: String,
    /// Failed runs so far (retryable failures).
    #[serde(default)]
    pub attempts: u32,
    /// Not before this time, UTC (a retry's backoff).
    #[serde(default)]
    pub not_before: Option<Timestamp>,
}

impl PendingDay {
    /// Its key in the org's pending set: `<dateField>#<source>#<YYYY-MM-DD>`.
    pub fn key(&self) -> String {
        Self::key_of(&self.spec)
    }

    /// The pending-set key of `spec`'s day (see [`PendingDay::key`]).
    pub fn key_of(spec: &JobSpec) -> String {
        format!("{}#{}#{}", spec.date_field, spec.source, spec.day)
    }
}

/// What became of a pending day after a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Committed, up to date, or failed for good (its job record says why): off the set.
    Done,
    /// Try again, not before `not_before`, with this many failed attempts.
    Retry {
        /// Earliest next try, UTC.
        not_before: Timestamp,
        /// Failed attempts so far.
        attempts: u32,
    },
}

/// Most days an org may have pending at once (keeps its work item far below DynamoDB's
/// 400 KB item limit).
pub const MAX_PENDING_DAYS: usize = 1_000;

/// A credential problem for one org: names the org and what to fix. Never holds the secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No credentials are registered for the org.
    #[error("org {0}: no credentials registered (onboard it first)")]
    Unknown(OrgId),
    /// The credentials are malformed (stored, or about to be stored).
    #[error("org {org}: credentials are invalid: {problem}")]
    Invalid {
        /// The org.
        org: OrgId,
        /// Field and fix.
        problem: String,
    },
    /// The secret store failed (retryable).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Org id → hosts, client id and client secret (Secrets Manager on AWS).
#[async_trait]
pub trait CredentialSource: Send + Sync + 'static {
    /// The org's endpoint, credentials and assumed limit.
    async fn org(&self, org_id: &OrgId) -> Result<crate::config::OrgSetup, CredentialError>;
    /// Drops what is cached for the org (its credentials were refused: the secret may have
    /// been rotated), so the next [`Self::org`] reads it again.
    async fn forget(&self, _org_id: &OrgId) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_set_is_one_bit_per_group_in_hex() {
        let mut set = GroupSet::default();
        for i in [0, 3, 7, 8, 7_999] {
            set.insert(i);
        }
        assert_eq!(set.len(), 5);
        assert!(set.contains(7_999) && set.contains(8) && !set.contains(9) && !set.contains(9_000));
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(
            json.len(),
            2 + 2 * 1_000,
            "8,000 groups in 2,000 hex characters"
        );
        assert!(json.starts_with("\"8901"), "{}", &json[..8]);
        assert_eq!(serde_json::from_str::<GroupSet>(&json).unwrap(), set);
        assert!(serde_json::from_str::<GroupSet>("\"zz\"").is_err());
    }
}
