//! Wiring for one org: admission (this product's rate control or a benchmark baseline),
//! Genesys client and exporter, and a run over the org's jobs (one per UTC day) with a
//! summary. The CLI and the functions use this; the engine itself knows none of it.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::clock::Clock;
use crate::config::OrgSetup;
use crate::domain::JobSpec;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use crate::engine::{
    EngineConfig, ExportError, ExportObserver, ExportOutcome, ExportReport, Exporter,
};
use crate::genesys::{ClientConfig, GenesysClient, GenesysError};
use crate::ports::{BucketKey, ExportSink, JobStore, LearnedLimit, RateLedger, RequestStats};
use crate::rate::baseline::Baseline;
use crate::rate::{Admission, RateConfig, RateControl};

/// How requests are admitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// This product: paced to the quota through the shared ledger.
    Engine,
    /// Benchmark baseline: a fixed delay before each request.
    FixedDelay(Duration),
    /// Benchmark baseline: no pacing, 429s waited out per request.
    Unpaced,
}

/// Settings for one org's run.
#[derive(Debug, Clone, Copy)]
pub struct RunSettings {
    /// Admission strategy.
    pub strategy: Strategy,
    /// Rate control (its `default_limit` is replaced by the org's assumed limit).
    pub rate: RateConfig,
    /// Retries and timeouts.
    pub client: ClientConfig,
    /// Paging, parts, concurrency.
    pub engine: EngineConfig,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            strategy: Strategy::Engine,
            rate: RateConfig::default(),
            client: ClientConfig::default(),
            engine: EngineConfig::default(),
        }
    }
}

/// The ports one org's exporter uses.
#[derive(Clone)]
pub struct Ports {
    /// Shared rate state.
    pub ledger: Arc<dyn RateLedger>,
    /// Leases and checkpoints.
    pub jobs: Arc<dyn JobStore>,
    /// Output.
    pub sink: Arc<dyn ExportSink>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// An org ready to export.
pub struct OrgExporter {
    /// The exporter.
    pub exporter: Exporter,
    /// Its client (for statistics).
    pub client: Arc<GenesysClient>,
    /// The limit assumed at start.
    pub limit: LearnedLimit,
    /// Days exported at once.
    pub days_in_flight: usize,
}

/// Builds the admission and client of `org` (paced through `ledger` with the other holders
/// of the org); `holder` must be unique per process.
pub fn org_client(
    org: &OrgSetup,
    settings: &RunSettings,
    ledger: &Arc<dyn RateLedger>,
    clock: &Arc<dyn Clock>,
    holder: &str,
) -> Result<Arc<GenesysClient>, GenesysError> {
    let clock = Arc::clone(clock);
    let admission: Arc<dyn Admission> = match settings.strategy {
        Strategy::Engine => Arc::new(RateControl::new(
            BucketKey::for_client(&org.endpoint.org_id, &org.endpoint.client_id),
            holder,
            Arc::clone(ledger),
            Arc::clone(&clock),
            RateConfig {
                default_limit: org.limit,
                ..settings.rate
            },
        )),
        Strategy::FixedDelay(delay) => Arc::new(Baseline::new(delay, Arc::clone(&clock))),
        Strategy::Unpaced => Arc::new(Baseline::new(Duration::ZERO, Arc::clone(&clock))),
    };
    Ok(Arc::new(
        GenesysClient::new(org.endpoint.clone(), settings.client, admission, clock)?
            .with_token_cache(Arc::clone(&org.tokens)),
    ))
}

/// Builds the admission, client and exporter of `org`; `holder` must be unique per process.
pub fn org_exporter(
    org: &OrgSetup,
    settings: &RunSettings,
    ports: &Ports,
    holder: &str,
) -> Result<OrgExporter, GenesysError> {
    let client = org_client(org, settings, &ports.ledger, &ports.clock, holder)?;
    let exporter = Exporter::new(
        Arc::clone(&client),
        Arc::clone(&ports.jobs),
        Arc::clone(&ports.sink),
        Arc::clone(&ports.clock),
        settings.engine,
        holder,
    );
    Ok(OrgExporter {
        exporter,
        client,
        limit: org.limit,
        days_in_flight: settings.engine.days_in_flight,
    })
}

/// How an org's run ended, over all its jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum OrgStatus {
    /// Every job committed (some may have been up to date already).
    Committed,
    /// Every job was already committed up to its window's end: nothing to do.
    UpToDate,
    /// Every job committed, but some manifests list evaluations the API refused
    /// (`unavailable`); the next run exports those days again.
    CommittedWithGaps {
        /// Evaluations listed as unavailable, over the org's days.
        unavailable: u64,
    },
    /// At least one job stopped with a checkpoint; rerun at or after `until`.
    Deferred {
        /// The latest deadline among deferred jobs, UTC.
        until: Timestamp,
    },
    /// Another exporter holds a job's lease.
    AlreadyRunning,
    /// A job failed (the first error); later jobs were not started.
    Failed {
        /// The error, without secrets.
        reason: String,
    },
}

/// What one org's run did.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgSummary {
    /// Final status.
    pub status: OrgStatus,
    /// Evaluations in committed (or up-to-date) manifests and checkpoints of this run.
    pub evaluations: u64,
    /// Requests of this process for the org.
    pub stats: RequestStats,
    /// Jobs committed now, and jobs found already up to date.
    pub committed: usize,
    /// Jobs skipped because they were already committed.
    pub up_to_date: usize,
    /// Days committed now whose independent search count differs from the listing.
    pub count_mismatches: usize,
}

/// Runs `jobs` (the days of one org) with `org`'s exporter, `days_in_flight` at a time
/// (their requests share the org's one pacer, so overlapping days only fill the gaps while
/// a day writes its parts and commits). After a deferred or failed day no new day starts:
/// later days would wait for the same deadline or fail the same way.
pub async fn run_org(
    org: &OrgExporter,
    jobs: &[JobSpec],
    observer: &dyn ExportObserver,
) -> OrgSummary {
    let stop = AtomicBool::new(false);
    let reports: Vec<Option<Result<ExportReport, ExportError>>> =
        futures::stream::iter(jobs.iter().cloned())
            .map(|spec| {
                let stop = &stop;
                async move {
                    if stop.load(Ordering::SeqCst) {
                        return None;
                    }
                    let result = org.exporter.run(&spec, observer).await;
                    if matches!(
                        result,
                        Err(_)
                            | Ok(ExportReport {
                                outcome: ExportOutcome::Deferred { .. },
                                ..
                            })
                    ) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    Some(result)
                }
            })
            .buffer_unordered(org.days_in_flight.max(1))
            .collect()
            .await;
    let mut summary = OrgSummary {
        status: OrgStatus::Committed,
        evaluations: 0,
        stats: RequestStats::default(),
        committed: 0,
        up_to_date: 0,
        count_mismatches: 0,
    };
    let mut unavailable = 0u64;
    for result in reports.into_iter().flatten() {
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                if !matches!(summary.status, OrgStatus::Failed { .. }) {
                    summary.status = OrgStatus::Failed {
                        reason: e.to_string(),
                    };
                }
                continue;
            }
        };
        summary.evaluations += report.evaluations;
        match report.outcome {
            ExportOutcome::Committed(manifest) => {
                summary.committed += 1;
                unavailable += manifest.unavailable.len() as u64;
                if manifest.search_counts.iter().any(|c| c.mismatch()) {
                    summary.count_mismatches += 1;
                }
            }
            ExportOutcome::UpToDate { .. } => summary.up_to_date += 1,
            ExportOutcome::Deferred { until } => {
                summary.status = match summary.status {
                    OrgStatus::Failed { .. } => summary.status,
                    OrgStatus::Deferred { until: u } => OrgStatus::Deferred {
                        until: u.max(until),
                    },
                    _ => OrgStatus::Deferred { until },
                }
            }
            ExportOutcome::AlreadyRunning(_) => {
                if summary.status == OrgStatus::Committed {
                    summary.status = OrgStatus::AlreadyRunning;
                }
            }
        }
    }
    if summary.status == OrgStatus::Committed && summary.committed == 0 && summary.up_to_date > 0 {
        summary.status = OrgStatus::UpToDate;
    }
    if summary.status == OrgStatus::Committed && unavailable > 0 {
        summary.status = OrgStatus::CommittedWithGaps { unavailable };
    }
    org.client.release().await;
    summary.stats = org.client.stats();
    summary
}
