//! The export engine (DESIGN §6): one job = one org × one UTC day × one date field.
//!
//! [`Exporter::run`] takes the job's lease, resumes its checkpoint if any, discovers the
//! exact id set of the window, fetches evaluations in bulk per evaluator (single GETs only
//! for what is missing), writes NDJSON.gz parts with a checkpoint after each, exports the
//! referenced evaluation forms and commits `_manifest.json` last. A `Retry-After` deadline
//! beyond the run's budget stops the run with a checkpoint ([`ExportOutcome::Deferred`]).

mod discovery;
mod fetch;
mod parts;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;

pub use discovery::SearchSettings;
pub use parts::SCHEMA_VERSION;

use crate::clock::{self, Clock};
use crate::domain::Source;
use crate::domain::{JobSpec, RunId};
use crate::genesys::models::EvaluationHead;
use crate::genesys::{Counted, GenesysClient, GenesysError};
use crate::ports::{
    Checkpoint, CommitStatus, Discovered, ExportSink, GroupSet, JobStatus, JobStore, JobStoreError,
    Lease, LeaseOutcome, Manifest, PartInfo, RequestStats, StoreError, Unavailable, form_key,
};
use discovery::Search;
use fetch::{GroupResult, QueryLearning, SINGLE_GROUP, fetch_group, group_of};
use parts::{Line, LineWindow, PartBuilder};

/// Engine settings.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Search paging.
    pub search: SearchSettings,
    /// `pageSize` of bulk evaluation queries. Default 100 (the Genesys maximum is
    /// unconfirmed; lower it if an org answers 400).
    pub query_page_size: u32,
    /// Evaluations per part before a new part starts (parts end at group boundaries).
    /// Default 5,000.
    pub part_records: usize,
    /// Requests in flight per job (groups fetched at once). Default 8.
    pub in_flight: usize,
    /// Days (jobs) of one org exported at once by `runner::run_org`. Default 2.
    pub days_in_flight: usize,
    /// Job lease length; renewed while the run goes on. Default 180 s.
    pub lease: Duration,
    /// Stop by this time (UTC) with a checkpoint, as if deferred to now: the end of a Lambda
    /// invocation, less a margin. Leases never outlive it. Default none.
    pub deadline: Option<Timestamp>,
    /// Re-export a day even if it is committed and up to date.
    pub force: bool,
    /// Runs in a row that may run out of time without progress before the job fails.
    /// Default 5.
    pub max_stalled_runs: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            search: SearchSettings {
                page_size: 100,
                paging_cap: 10_000,
            },
            query_page_size: 100,
            part_records: 5_000,
            in_flight: 8,
            days_in_flight: 2,
            lease: Duration::from_secs(180),
            deadline: None,
            force: false,
            max_stalled_runs: 5,
        }
    }
}

/// Progress callbacks (the CLI draws bars with them). Default: nothing.
pub trait ExportObserver: Send + Sync {
    /// A day's window holds `n` more evaluations (known after its discovery).
    fn discovered(&self, _n: u64) {}
    /// `n` more evaluations are written to parts (counting those from a checkpoint).
    fn written(&self, _n: u64) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoProgress;
impl ExportObserver for NoProgress {}

/// How a job run ended (errors aside).
#[derive(Debug, Clone, PartialEq)]
pub enum ExportOutcome {
    /// The manifest is committed.
    Committed(Box<Manifest>),
    /// Stopped with a checkpoint; run again at or after `until`.
    Deferred {
        /// Earliest useful resume time, UTC.
        until: Timestamp,
    },
    /// Another exporter holds the job's lease; nothing was done.
    AlreadyRunning(Lease),
    /// The committed day was verified against the API (its searches: same ids, same
    /// `changedDate`s, same window): nothing changed since it was committed, nothing was
    /// committed again (use `force` to redo it anyway).
    UpToDate {
        /// The committed run.
        run_id: RunId,
        /// Evaluations in it.
        evaluations: u64,
    },
}

/// A job run that failed. Nothing was committed; the checkpoint keeps what was written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The Genesys API failed (auth, a non-retryable error, retries exhausted).
    #[error(transparent)]
    Genesys(#[from] GenesysError),
    /// The job store failed or the lease was lost.
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    /// The sink or a store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run reached `EngineConfig::deadline` (handled as a deferral to now).
    #[error("out of time for this invocation")]
    OutOfTime,
    /// Writing a part failed.
    #[error("writing a part: {0}")]
    Io(#[from] std::io::Error),
    /// The completeness check before commit failed: written + unavailable + outside the
    /// window does not add up to what discovery found, or a part is not as written.
    /// Nothing is committed.
    #[error("incomplete export, not committed: {0}")]
    Incomplete(String),
    /// Another holder committed the day after this run started (the conditional manifest
    /// write failed): nothing of this run was committed.
    #[error("another exporter committed this day first; nothing of this run was committed")]
    CommitConflict,
    /// The org's credentials act in another org (`GET /api/v2/organizations/me`): a
    /// configuration mistake that would file one org's evaluations under another's id.
    #[error(
        "the credentials configured for org {configured} act in org {actual}: fix the org id or the client credentials"
    )]
    WrongOrg {
        /// The org id configured.
        configured: String,
        /// The org the credentials belong to.
        actual: String,
    },
    /// `runs` runs in a row ran out of time without writing an evaluation or finishing
    /// discovery: the invocation is too short for this day (raise the function's timeout,
    /// or lower the page sizes); the job stops instead of looping.
    #[error(
        "no progress in {runs} runs in a row that each ran out of time (discovery or one fetch group takes longer than an invocation)"
    )]
    NoProgress {
        /// Runs without progress.
        runs: u32,
    },
}

/// What a run reports besides its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    /// How it ended.
    pub outcome: ExportOutcome,
    /// Requests of this job over all its runs (from the checkpoint on).
    pub stats: RequestStats,
    /// Requests of this run alone (what one invocation reports as metrics).
    pub run_stats: RequestStats,
    /// Evaluations written so far (committed or in the checkpoint).
    pub evaluations: u64,
}

/// A lease of `lease` from `now`, never past `deadline`.
fn lease_until(now: Timestamp, lease: Duration, deadline: Option<Timestamp>) -> Timestamp {
    let until = clock::add(now, lease);
    deadline.map_or(until, |d| until.min(d.max(now)))
}

/// How far a run has come: evaluations written, and whether discovery is done.
fn progress(cp: &Checkpoint) -> (u64, bool) {
    (
        cp.parts.iter().map(|p| p.records).sum(),
        cp.discovery.is_some(),
    )
}

/// The lease-renewing task of a run; aborted when dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A new run of `spec`: nothing discovered or written yet.
fn new_checkpoint(spec: &JobSpec, now: Timestamp) -> Checkpoint {
    Checkpoint {
        run_id: RunId::generate(now),
        window: spec.window,
        discovery: None,
        parts: Vec::new(),
        groups_done: GroupSet::default(),
        done_groups: Vec::new(),
        form_ids: Vec::new(),
        stats: RequestStats::default(),
        discovered: 0,
        outside_window: 0,
        unavailable: Vec::new(),
        search_counts: Vec::new(),
        stalled_runs: 0,
        carried_from: None,
        carried_parts: 0,
    }
}

/// How a run that did not stop early ended.
enum Finished {
    /// A new manifest is committed.
    Committed(Manifest),
    /// The committed day was verified against the API: nothing changed.
    Verified(Manifest),
}

/// The committed run of a partition, as a refresh compares it: its manifest, and the
/// `changedDate` of every evaluation it holds.
struct CommittedDay {
    manifest: Manifest,
    changed: BTreeMap<String, Option<Timestamp>>,
}

/// Runs export jobs for one org with one client, job store and sink.
pub struct Exporter {
    client: Arc<GenesysClient>,
    jobs: Arc<dyn JobStore>,
    sink: Arc<dyn ExportSink>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    holder: String,
    /// One cell per form id: set once the form is stored. Concurrent days of the org wait
    /// for the same fetch; after a failure the next one tries again.
    forms: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::OnceCell<()>>>>,
    /// What the org's bulk query turned out to do (page size, totals only).
    query: QueryLearning,
    /// Set once the credentials are seen to act in the configured org.
    org_checked: tokio::sync::OnceCell<()>,
}

struct Run<'a> {
    spec: &'a JobSpec,
    cp: Checkpoint,
    /// This lease acquisition's fencing epoch (in every key this run writes).
    epoch: u64,
    /// The committed manifest's version when the lease was taken (`None`: none).
    base_version: Option<String>,
    /// Statistics of earlier runs of this job (from the checkpoint).
    base_stats: RequestStats,
    /// This run's calls, counted on their own (an org's days may run at once on one client).
    calls: Counted<'a>,
    /// The client's counters when this run started (for `waited_ms`, which is per client).
    client_start: RequestStats,
    started_at: Timestamp,
    /// Groups pushed into the part being built: their refusals and out-of-window
    /// evaluations join the checkpoint with the part.
    staged_unavailable: Vec<Unavailable>,
    staged_outside: u64,
}

impl Exporter {
    /// An exporter; `holder` identifies it in job leases (unique per process or invocation).
    pub fn new(
        client: Arc<GenesysClient>,
        jobs: Arc<dyn JobStore>,
        sink: Arc<dyn ExportSink>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        holder: impl Into<String>,
    ) -> Self {
        Self {
            client,
            jobs,
            sink,
            clock,
            config,
            holder: holder.into(),
            forms: std::sync::Mutex::new(BTreeMap::new()),
            query: QueryLearning::new(config.query_page_size),
            org_checked: tokio::sync::OnceCell::new(),
        }
    }

    /// Runs one job to commit, deferral or failure. A failure is recorded in the job store
    /// (status `failed`, checkpoint kept) before it is returned.
    pub async fn run(
        &self,
        spec: &JobSpec,
        observer: &dyn ExportObserver,
    ) -> Result<ExportReport, ExportError> {
        let now = self.clock.now();
        match self.check_org().await {
            Ok(()) => {}
            // The org's bucket is blocked past this run's budget (a deadline an earlier run
            // met): deferred, like any other request would be.
            Err(ExportError::Genesys(GenesysError::Deferred { until })) => {
                return Ok(ExportReport {
                    outcome: ExportOutcome::Deferred { until },
                    stats: RequestStats::default(),
                    run_stats: RequestStats::default(),
                    evaluations: 0,
                });
            }
            Err(e) => return Err(e),
        }
        let lease_until = self.lease_until(now);
        let checkpoint = match self
            .jobs
            .acquire(spec, &self.holder, lease_until, now)
            .await?
        {
            LeaseOutcome::HeldByOther(lease) => {
                return Ok(ExportReport {
                    outcome: ExportOutcome::AlreadyRunning(lease),
                    stats: RequestStats::default(),
                    run_stats: RequestStats::default(),
                    evaluations: 0,
                });
            }
            LeaseOutcome::Acquired { checkpoint, epoch } => (checkpoint, epoch),
        };
        let (checkpoint, epoch) = checkpoint;
        let base_stats = checkpoint.as_ref().map(|c| c.stats).unwrap_or_default();
        let cp = checkpoint.map_or_else(|| new_checkpoint(spec, now), |c| *c);
        // The commit is conditional on the manifest still being at this version.
        let base_version = self.sink.manifest_version(&spec.partition()).await?;
        let mut run = Run {
            spec,
            cp,
            epoch,
            base_version,
            base_stats,
            calls: self.client.counted(),
            client_start: self.client.stats(),
            started_at: now,
            staged_unavailable: Vec::new(),
            staged_outside: 0,
        };
        let progress_before = progress(&run.cp);
        let heartbeat = self.heartbeat(spec);
        let mut result = self.export(&mut run, observer).await;
        drop(heartbeat);
        if matches!(result, Err(ExportError::OutOfTime)) {
            if progress(&run.cp) > progress_before {
                run.cp.stalled_runs = 0;
            } else {
                run.cp.stalled_runs += 1;
                if run.cp.stalled_runs >= self.config.max_stalled_runs.max(1) {
                    result = Err(ExportError::NoProgress {
                        runs: run.cp.stalled_runs,
                    });
                }
            }
        }
        let stats = self.stats(&run);
        let run_stats = stats.since(&run.base_stats);
        let evaluations = run.cp.parts.iter().map(|p| p.records).sum();
        let now = self.clock.now();
        match result {
            Ok(Finished::Committed(manifest)) => Ok(ExportReport {
                outcome: ExportOutcome::Committed(Box::new(manifest)),
                stats,
                run_stats,
                evaluations,
            }),
            Ok(Finished::Verified(manifest)) => {
                self.jobs
                    .finish(
                        spec,
                        &self.holder,
                        JobStatus::Committed {
                            run_id: manifest.run_id.clone(),
                            evaluations: manifest.total_records,
                            committed_at: manifest.committed_at,
                        },
                        now,
                    )
                    .await?;
                Ok(ExportReport {
                    outcome: ExportOutcome::UpToDate {
                        run_id: manifest.run_id.clone(),
                        evaluations: manifest.total_records,
                    },
                    stats,
                    run_stats,
                    evaluations: manifest.total_records,
                })
            }
            Err(
                e @ (ExportError::Genesys(GenesysError::Deferred { .. }) | ExportError::OutOfTime),
            ) => {
                let until = match e {
                    ExportError::Genesys(GenesysError::Deferred { until }) => until,
                    _ => now,
                };
                run.cp.stats = stats;
                self.jobs
                    .save_checkpoint(spec, &self.holder, &run.cp, now)
                    .await?;
                let reason = e.to_string();
                self.jobs
                    .finish(
                        spec,
                        &self.holder,
                        JobStatus::Deferred { until, reason },
                        now,
                    )
                    .await?;
                Ok(ExportReport {
                    outcome: ExportOutcome::Deferred { until },
                    stats,
                    run_stats,
                    evaluations,
                })
            }
            Err(e) => {
                run.cp.stats = stats;
                // Best effort: record the failure; the original error is what matters.
                let _ = self
                    .jobs
                    .save_checkpoint(spec, &self.holder, &run.cp, now)
                    .await;
                let _ = self
                    .jobs
                    .finish(
                        spec,
                        &self.holder,
                        JobStatus::Failed {
                            reason: e.to_string(),
                        },
                        now,
                    )
                    .await;
                Err(e)
            }
        }
    }

    /// A lease from `now`, never past the deadline.
    fn lease_until(&self, now: Timestamp) -> Timestamp {
        lease_until(now, self.config.lease, self.config.deadline)
    }

    fn stats(&self, run: &Run<'_>) -> RequestStats {
        let mut stats = run.base_stats;
        let mut own = run.calls.stats();
        own.waited_ms = self.client.stats().since(&run.client_start).waited_ms;
        stats.add(&own);
        stats
    }

    /// Checks once that the credentials act in the configured org
    /// (`GET /api/v2/organizations/me`, its `id`), so a copied org id or secret can never
    /// file one org's evaluations under another's id.
    async fn check_org(&self) -> Result<(), ExportError> {
        #[derive(serde::Deserialize)]
        struct Organization {
            id: String,
        }
        self.org_checked
            .get_or_try_init(|| async {
                let org: Organization = self
                    .client
                    .counted()
                    .get_json("/api/v2/organizations/me")
                    .await?;
                let configured = self.client.endpoint().org_id.as_str();
                if org.id != configured {
                    return Err(ExportError::WrongOrg {
                        configured: configured.to_owned(),
                        actual: org.id,
                    });
                }
                Ok(())
            })
            .await
            .copied()
    }

    /// Whether the run reached `EngineConfig::deadline`.
    fn out_of_time(&self) -> bool {
        self.config
            .deadline
            .is_some_and(|deadline| self.clock.now() >= deadline)
    }

    /// Renews the job's lease every third of its length (wall-clock time) while the run
    /// works, so a long discovery, group or wait never lets it lapse; the lease never
    /// outlives the deadline. Stops when dropped, or when the lease is lost (the run then
    /// fails at its next checkpoint or commit).
    fn heartbeat(&self, spec: &JobSpec) -> Heartbeat {
        let (jobs, clock, spec) = (
            Arc::clone(&self.jobs),
            Arc::clone(&self.clock),
            spec.clone(),
        );
        let (holder, lease, deadline) =
            (self.holder.clone(), self.config.lease, self.config.deadline);
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let now = clock.now();
                let until = lease_until(now, lease, deadline);
                if let Err(e) = jobs.renew(&spec, &holder, until, now).await {
                    tracing::warn!(job = %spec.key(), error = %e, "lease not renewed");
                    break;
                }
            }
        }))
    }

    async fn save(&self, run: &mut Run<'_>) -> Result<(), ExportError> {
        run.cp.stats = self.stats(run);
        let now = self.clock.now();
        self.jobs
            .save_checkpoint(run.spec, &self.holder, &run.cp, now)
            .await?;
        Ok(())
    }

    async fn export(
        &self,
        run: &mut Run<'_>,
        observer: &dyn ExportObserver,
    ) -> Result<Finished, ExportError> {
        let spec = run.spec;
        // Read once per run: the commit is conditional on the version read when the lease
        // was taken, so a commit landing meanwhile cannot be overwritten.
        let committed_manifest = self.sink.manifest(&spec.partition()).await?;
        // This very run is the committed one: a stop between its manifest and its job record
        // left the checkpoint behind. It is done.
        if let Some(manifest) = committed_manifest
            .as_ref()
            .filter(|m| m.run_id == run.cp.run_id)
        {
            return Ok(Finished::Verified(manifest.clone()));
        }
        let discovered = match self.read_discovery(run).await? {
            Some(discovered) => discovered,
            None => {
                let discovered = self.discover(run).await?;
                self.write_discovery(run, &discovered).await?;
                discovered
            }
        };
        observer.discovered(discovered.len() as u64);
        observer.written(run.cp.parts.iter().map(|p| p.records).sum());

        // A committed day is refreshed: what is unchanged since its commit is carried over
        // from its parts (S3 reads cost no API quota), only what changed or is new is
        // fetched, and what is gone is dropped. Unchanged altogether: verified, no commit.
        let committed = match committed_manifest {
            Some(manifest) if !self.config.force => self.committed_day(manifest).await?,
            _ => None,
        };

        if run.cp.carried_from.as_ref() != committed.as_ref().map(|c| &c.manifest.run_id)
            && (run.cp.carried_parts > 0 || run.cp.carried_from.is_some())
        {
            // Another commit came in since this refresh started carrying: start over.
            run.cp = Checkpoint {
                stats: run.cp.stats,
                ..new_checkpoint(spec, self.clock.now())
            };
            return Err(ExportError::Incomplete(
                "the day was committed again while this run refreshed it; the next run starts over"
                    .into(),
            ));
        }
        let carry: BTreeSet<String> = committed.as_ref().map_or_else(BTreeSet::new, |c| {
            discovered
                .iter()
                .filter(|d| c.changed.get(&d.id).is_some_and(|t| *t == d.changed_date))
                .map(|d| d.id.clone())
                .collect()
        });
        if let Some(c) = &committed
            && carry.len() == discovered.len()
            && c.changed.len() == carry.len()
            && c.manifest.unavailable.is_empty()
            && c.manifest.window == run.cp.window
            && c.manifest.outside_window == run.cp.outside_window
            && run.cp.parts.is_empty()
        {
            if let Some(object) = &run.cp.discovery {
                self.sink.delete(&object.key).await?;
            }
            return Ok(Finished::Verified(c.manifest.clone()));
        }
        if let Some(c) = &committed
            && !carry.is_empty()
        {
            run.cp.carried_from = Some(c.manifest.run_id.clone());
            self.carry_over(run, &c.manifest, &carry, observer).await?;
        }

        let mut groups: BTreeMap<String, Vec<Discovered>> = BTreeMap::new();
        for d in discovered.into_iter().filter(|d| !carry.contains(&d.id)) {
            groups.entry(group_of(&d)).or_default().push(d);
        }
        // Groups are numbered by their position in key order (the same for every run of
        // this checkpoint: discovery and the carried set are fixed).
        for (i, key) in groups.keys().enumerate() {
            if run.cp.done_groups.contains(key) {
                run.cp.groups_done.insert(i);
            }
        }
        run.cp.done_groups.clear();
        let groups: Vec<(usize, String, Vec<Discovered>)> = groups
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !run.cp.groups_done.contains(*i))
            .map(|(i, (key, members))| (i, key, members))
            .collect();

        let in_flight = self.config.in_flight;
        // Evaluator groups are paged one request at a time each, so several run at once;
        // the single-GET group spreads its own requests.
        let calls = run.calls.clone();
        let query = &self.query;
        let mut results = futures::stream::iter(groups)
            .map(|(index, group, members)| {
                let calls = &calls;
                async move {
                    let per_group = if group == SINGLE_GROUP { in_flight } else { 1 };
                    fetch_group(calls, &group, &members, query, per_group)
                        .await
                        .map(|fetched| (index, group, members.len(), fetched))
                }
            })
            .buffer_unordered(in_flight.max(1));

        // Each group's evaluations go straight into the gzip part being built; a part ends
        // at the first group boundary past `part_records`.
        let mut part = PartBuilder::new();
        let mut part_groups: Vec<usize> = Vec::new();
        let mut stopped = None;
        while let Some(result) = results.next().await {
            let (index, group, members, fetched) = match result {
                Ok(done) => done,
                Err(e) => {
                    stopped = Some(ExportError::from(e));
                    break;
                }
            };
            self.push_group(run, &mut part, &group, members, fetched)?;
            part_groups.push(index);
            if part.records() >= self.config.part_records as u64 {
                let full = std::mem::replace(&mut part, PartBuilder::new());
                self.write_part(run, full, &mut part_groups, observer)
                    .await?;
            }
            if self.out_of_time() {
                stopped = Some(ExportError::OutOfTime);
                break;
            }
        }
        drop(results);
        // What was fetched is written and checkpointed, whatever stopped the fetching (the
        // deadline, a long Retry-After, an error): the next run does not fetch it again.
        if part.records() > 0 || !part_groups.is_empty() {
            self.write_part(run, part, &mut part_groups, observer)
                .await?;
        }
        if let Some(e) = stopped {
            return Err(e);
        }
        self.export_forms(run).await?;

        // Every discovered evaluation is written, refused (listed) or outside the window.
        let written: u64 = run.cp.parts.iter().map(|p| p.records).sum();
        let accounted = written + run.cp.unavailable.len() as u64 + run.cp.outside_window;
        if accounted != run.cp.discovered {
            // The checkpoint does not add up: never commit it, and start the day over.
            let problem = format!(
                "discovered {} evaluations, but {written} are written, {} unavailable and {} outside the window; the day starts over",
                run.cp.discovered,
                run.cp.unavailable.len(),
                run.cp.outside_window
            );
            run.cp = Checkpoint {
                stats: run.cp.stats,
                ..new_checkpoint(spec, self.clock.now())
            };
            return Err(ExportError::Incomplete(problem));
        }

        // Still ours? Then commit: the manifest is the last write.
        let now = self.clock.now();
        self.jobs
            .renew(spec, &self.holder, self.lease_until(now), now)
            .await?;
        let stats = self.stats(run);
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            org_id: spec.org_id.clone(),
            region: self.client.endpoint().region.clone(),
            date: spec.day,
            window: run.cp.window,
            date_field: spec.date_field,
            source: spec.source,
            run_id: run.cp.run_id.clone(),
            started_at: run.started_at,
            committed_at: now,
            total_records: run.cp.parts.iter().map(|p| p.records).sum(),
            parts: run.cp.parts.clone(),
            form_ids: run.cp.form_ids.clone(),
            stats,
            status: if run.cp.unavailable.is_empty() {
                CommitStatus::Committed
            } else {
                CommitStatus::CommittedWithGaps
            },
            discovered: run.cp.discovered,
            outside_window: run.cp.outside_window,
            unavailable: run.cp.unavailable.clone(),
            search_counts: run.cp.search_counts.clone(),
        };
        // Every listed part is still as written (a part key is written by one lease
        // acquisition only, so nothing should have changed it).
        for part in &run.cp.parts {
            if !self.sink.verify(part).await? {
                let key = part.key.clone();
                run.cp = Checkpoint {
                    stats: run.cp.stats,
                    ..new_checkpoint(spec, now)
                };
                return Err(ExportError::Incomplete(format!(
                    "{key} is missing or not as written; the day starts over"
                )));
            }
        }
        if !self
            .sink
            .commit(&manifest, run.base_version.as_deref())
            .await?
        {
            return Err(ExportError::CommitConflict);
        }
        let status = match manifest.status {
            CommitStatus::Committed => JobStatus::Committed {
                run_id: manifest.run_id.clone(),
                evaluations: manifest.total_records,
                committed_at: now,
            },
            CommitStatus::CommittedWithGaps => {
                tracing::warn!(
                    org_id = %spec.org_id,
                    day = %spec.day,
                    unavailable = manifest.unavailable.len(),
                    "committed with gaps: the manifest lists the evaluations the API refused"
                );
                JobStatus::CommittedWithGaps {
                    run_id: manifest.run_id.clone(),
                    evaluations: manifest.total_records,
                    unavailable: manifest.unavailable.len() as u64,
                    committed_at: now,
                }
            }
        };
        self.jobs.finish(spec, &self.holder, status, now).await?;
        Ok(Finished::Committed(manifest))
    }

    /// The window's exact id set (DESIGN §6 step 1). Human evaluations are listed first: an
    /// id the human search lists is human even if the `systemSubmitted` search lists it too
    /// (reference §8 U9), so `source = auto` lists human evaluations as well, to leave them
    /// out. An evaluation whose date (as the search gave it) lies outside the window
    /// belongs to the neighbouring day (a `DATE_RANGE` end that includes its end, U10): it
    /// is counted in `outside_window`, not fetched.
    async fn discover(&self, run: &mut Run<'_>) -> Result<Vec<Discovered>, ExportError> {
        let spec = run.spec;
        let window = run.cp.window;
        let searches: &[bool] = match spec.source {
            Source::Human => &[false],
            Source::Auto | Source::Both => &[false, true],
        };
        let mut human: BTreeSet<String> = BTreeSet::new();
        let mut found: BTreeMap<String, Discovered> = BTreeMap::new();
        let mut outside = 0u64;
        run.cp.search_counts.clear();
        for &system_submitted in searches {
            let search = Search {
                client: &run.calls,
                date_field: spec.date_field,
                system_submitted,
                settings: self.config.search,
                deadline: self.config.deadline,
                clock: self.clock.as_ref(),
            };
            let Some((heads, count)) = search.discover(window).await? else {
                return Err(ExportError::OutOfTime);
            };
            run.cp.search_counts.push(count);
            for (id, head) in heads {
                if !system_submitted {
                    human.insert(id.clone());
                    if spec.source == Source::Auto {
                        continue;
                    }
                } else if human.contains(&id) {
                    continue;
                }
                if found.contains_key(&id) {
                    continue;
                }
                if head
                    .date(spec.date_field)
                    .is_some_and(|t| !window.contains(t))
                {
                    outside += 1;
                    continue;
                }
                found.insert(id, discovery::discovered(&head, system_submitted));
            }
        }
        if outside > 0 {
            tracing::info!(
                outside,
                "evaluations listed outside the window (they belong to the neighbouring day)"
            );
        }
        run.cp.discovered = found.len() as u64 + outside;
        run.cp.outside_window = outside;
        Ok(found.into_values().collect())
    }

    /// The committed run of `manifest`: the `changedDate` of each evaluation in its parts;
    /// `None` when a listed part is damaged (the day is then exported again in full).
    async fn committed_day(&self, manifest: Manifest) -> Result<Option<CommittedDay>, ExportError> {
        let mut changed = BTreeMap::new();
        for part in &manifest.parts {
            let lines = match self.part_lines(part).await {
                Ok(lines) => lines,
                // A listed part missing or not as listed: the committed day cannot be
                // carried over or verified; it is exported again in full (the new commit
                // replaces it).
                Err(ExportError::Incomplete(problem)) => {
                    tracing::warn!(%problem, "the committed day is damaged; exporting it again in full");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            for (head, _) in lines {
                changed.insert(head.id, head.changed_date);
            }
        }
        Ok(Some(CommittedDay { manifest, changed }))
    }

    /// The lines of one committed part, checked against its SHA-256.
    async fn part_lines(
        &self,
        part: &PartInfo,
    ) -> Result<Vec<(EvaluationHead, parts::CommittedLine)>, ExportError> {
        let damaged = |problem: String| ExportError::Incomplete(format!("{}: {problem}", part.key));
        let bytes = self
            .sink
            .get(&part.key)
            .await?
            .ok_or_else(|| damaged("listed but missing".into()))?;
        parts::read_ndjson::<parts::CommittedLine>(&bytes, &part.sha256)
            .map_err(damaged)?
            .into_iter()
            .map(|line| {
                serde_json::from_str::<EvaluationHead>(line.evaluation.get())
                    .map(|head| (head, line))
                    .map_err(|e| damaged(format!("a line without an evaluation id: {e}")))
            })
            .collect()
    }

    /// Writes the committed run's unchanged evaluations (`carry`) into this run's parts,
    /// one new part per committed part, each checkpointed: a resumed run goes on with the
    /// next committed part.
    async fn carry_over(
        &self,
        run: &mut Run<'_>,
        committed: &Manifest,
        carry: &BTreeSet<String>,
        observer: &dyn ExportObserver,
    ) -> Result<(), ExportError> {
        for (index, part_info) in committed
            .parts
            .iter()
            .enumerate()
            .skip(run.cp.carried_parts)
        {
            let mut part = PartBuilder::new();
            for (head, line) in self.part_lines(part_info).await? {
                if !carry.contains(&head.id) {
                    continue;
                }
                part.push(&Line {
                    schema_version: SCHEMA_VERSION,
                    org_id: &run.spec.org_id,
                    region: &self.client.endpoint().region,
                    exported_at: line.exported_at,
                    run_id: &run.cp.run_id,
                    window: LineWindow::new(run.cp.window, run.spec.date_field),
                    source: &line.source,
                    is_calibration: line.is_calibration,
                    evaluation: &line.evaluation,
                })?;
                if let Some(form) = head.evaluation_form.and_then(|f| f.id)
                    && let Err(at) = run.cp.form_ids.binary_search(&form)
                {
                    run.cp.form_ids.insert(at, form);
                }
            }
            // Counted as carried in the same checkpoint that lists the new part: a write
            // that failed carries this committed part again next time.
            let (parts_before, had_records) = (run.cp.parts.len(), part.records() > 0);
            run.cp.carried_parts = index + 1;
            if let Err(e) = self.write_part(run, part, &mut Vec::new(), observer).await {
                if had_records && run.cp.parts.len() == parts_before {
                    run.cp.carried_parts = index;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Stores the window's discovered id set next to the run's parts and checkpoints it.
    async fn write_discovery(
        &self,
        run: &mut Run<'_>,
        discovered: &[Discovered],
    ) -> Result<(), ExportError> {
        let mut object = PartBuilder::new();
        for d in discovered {
            object.push(d)?;
        }
        let (bytes, records, sha256) = object.finish()?;
        let key = run
            .spec
            .partition()
            .discovery_key(&run.cp.run_id, run.epoch);
        let size = bytes.len() as u64;
        self.sink.put(&key, bytes).await?;
        run.cp.discovery = Some(PartInfo {
            key,
            records,
            bytes: size,
            sha256,
        });
        self.save(run).await
    }

    /// The checkpointed discovered id set, if any. A missing or damaged object is
    /// discovered again (the run's written parts stay valid).
    async fn read_discovery(&self, run: &Run<'_>) -> Result<Option<Vec<Discovered>>, ExportError> {
        let Some(object) = &run.cp.discovery else {
            return Ok(None);
        };
        let read = match self.sink.get(&object.key).await? {
            Some(bytes) => parts::read_ndjson(&bytes, &object.sha256),
            None => Err("missing".into()),
        };
        match read {
            Ok(discovered) => Ok(Some(discovered)),
            Err(problem) => {
                tracing::warn!(key = %object.key, %problem, "discovery object unusable; discovering again");
                Ok(None)
            }
        }
    }

    /// Appends one group's evaluations to the part being built and notes their forms; its
    /// refusals and out-of-window evaluations are staged to join the checkpoint with the
    /// part. Every member must be fetched or refused.
    fn push_group(
        &self,
        run: &mut Run<'_>,
        part: &mut PartBuilder,
        group: &str,
        members: usize,
        result: GroupResult,
    ) -> Result<(), ExportError> {
        if result.fetched.len() + result.unavailable.len() != members {
            return Err(ExportError::Incomplete(format!(
                "group {group}: {members} discovered, {} fetched, {} unavailable",
                result.fetched.len(),
                result.unavailable.len()
            )));
        }
        let spec = run.spec;
        let exported_at = self.clock.now();
        let region = &self.client.endpoint().region;
        for f in result.fetched.into_values() {
            if f.head
                .date(spec.date_field)
                .is_some_and(|t| !run.cp.window.contains(t))
            {
                run.staged_outside += 1;
                continue;
            }
            part.push(&Line {
                schema_version: SCHEMA_VERSION,
                org_id: &spec.org_id,
                region,
                exported_at,
                run_id: &run.cp.run_id,
                window: LineWindow::new(run.cp.window, spec.date_field),
                source: if f.automated { "auto" } else { "human" },
                is_calibration: f.calibration,
                evaluation: &f.raw,
            })?;
            if let Some(form) = f.form_id
                && let Err(at) = run.cp.form_ids.binary_search(&form)
            {
                run.cp.form_ids.insert(at, form);
            }
        }
        run.staged_unavailable.extend(result.unavailable);
        Ok(())
    }

    /// Stores `part` as the next part (skipped when it is empty), marks `groups` done and
    /// saves the checkpoint.
    async fn write_part(
        &self,
        run: &mut Run<'_>,
        part: PartBuilder,
        groups: &mut Vec<usize>,
        observer: &dyn ExportObserver,
    ) -> Result<(), ExportError> {
        if part.records() > 0 {
            let (bytes, records, sha256) = part.finish()?;
            let key = run
                .spec
                .partition()
                .part_key(&run.cp.run_id, run.epoch, run.cp.parts.len());
            let size = bytes.len() as u64;
            self.sink.put(&key, bytes).await?;
            run.cp.parts.push(PartInfo {
                key,
                records,
                bytes: size,
                sha256,
            });
            observer.written(records);
        }
        for index in groups.drain(..) {
            run.cp.groups_done.insert(index);
        }
        run.cp.unavailable.append(&mut run.staged_unavailable);
        run.cp.outside_window += std::mem::take(&mut run.staged_outside);
        self.save(run).await
    }

    /// Exports each referenced evaluation form version once
    /// (`GET /api/v2/quality/forms/evaluations/{formId}` → `forms/org_id=<org>/<id>.json`).
    async fn export_forms(&self, run: &Run<'_>) -> Result<(), ExportError> {
        for form_id in &run.cp.form_ids {
            let Some(key) = form_key(&run.spec.org_id, form_id) else {
                tracing::warn!(%form_id, "form id is not safe as a key; not exported");
                continue;
            };
            let cell = Arc::clone(
                self.forms
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(form_id.clone())
                    .or_default(),
            );
            cell.get_or_try_init(|| self.export_form(run, form_id, &key))
                .await?;
        }
        Ok(())
    }

    /// Stores one form version unless it is already there.
    async fn export_form(
        &self,
        run: &Run<'_>,
        form_id: &str,
        key: &str,
    ) -> Result<(), ExportError> {
        if self.sink.exists(key).await? {
            return Ok(());
        }
        let path = format!("/api/v2/quality/forms/evaluations/{form_id}");
        match run
            .calls
            .get_json::<Box<serde_json::value::RawValue>>(&path)
            .await
        {
            Ok(raw) => Ok(self.sink.put(key, raw.get().as_bytes().to_vec()).await?),
            Err(GenesysError::Api { status: 404, .. }) => {
                tracing::warn!(%form_id, "evaluation form not found; not exported");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
