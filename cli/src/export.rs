//! `scorecards export`: one process, embedded stand-ins (SQLite state, a local directory).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use jiff::Timestamp;
use scorecards_shared::adapters::{
    ledger::StoreLedger, local_dir::LocalDirSink, sqlite::SqliteStore,
};
use scorecards_shared::clock::{Clock, SystemClock};
use scorecards_shared::config::{OrgSetup, load_orgs};
use scorecards_shared::domain::{DateField, JobSpec, Source, Window, named_window, parse_instant};
use scorecards_shared::engine::ExportObserver;
use scorecards_shared::ports::{BucketKey, JobStatus};
use scorecards_shared::runner::{OrgStatus, Ports, RunSettings, org_exporter, run_org};

use crate::report::{OrgRow, print_table};

/// Options of `scorecards export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Start the bundled Genesys Cloud simulator in-process and export its orgs.
    #[arg(long, conflicts_with = "orgs")]
    simulate: bool,
    /// Simulator scenario: a built-in name (demo, test, pessimistic, bench) or a TOML/JSON file.
    #[arg(long, default_value = "demo", requires = "simulate")]
    scenario: String,
    /// Orgs file for real orgs (see orgs.example.toml).
    #[arg(long, value_name = "FILE")]
    orgs: Option<PathBuf>,
    /// Window start, UTC: RFC 3339 or a date (days are exported whole).
    #[arg(long, conflicts_with = "window")]
    from: Option<String>,
    /// Window end, UTC (exclusive; default now).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Named window: yesterday, today, last-24h, last-<N>d.
    #[arg(long, default_value = "yesterday")]
    window: String,
    /// Date field the window applies to: submittedDate, releaseDate, createdDate, conversationDate.
    #[arg(long, default_value = "submittedDate")]
    date_field: DateField,
    /// Which evaluations: human, auto (automated) or both.
    #[arg(long, default_value = "both")]
    source: Source,
    /// Output directory (parts, forms, manifests).
    #[arg(long, default_value = "./exports")]
    out: PathBuf,
    /// State database (rate ledger, leases, checkpoints), shared by concurrent runs.
    #[arg(long, default_value = "./scorecards.db")]
    state: PathBuf,
    /// Longest Retry-After wait to sit through; longer ones defer the org with a checkpoint.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    max_wait: u64,
    /// Re-export days that are already committed.
    #[arg(long)]
    force: bool,
    /// No progress bars (for logs and CI).
    #[arg(long)]
    no_progress: bool,
    /// Do not write the analytics tables (`<out>/tables/…`) of the committed days.
    #[arg(long)]
    no_tables: bool,
}

struct Bar(ProgressBar);

impl ExportObserver for Bar {
    fn discovered(&self, n: u64) {
        self.0.inc_length(n);
    }
    fn written(&self, n: u64) {
        self.0.inc(n);
    }
}

fn window(args: &ExportArgs, now: Timestamp) -> anyhow::Result<Window> {
    let w = match &args.from {
        Some(from) => {
            let from = parse_instant("--from", from)?;
            let to = match &args.to {
                Some(to) => parse_instant("--to", to)?,
                None => now,
            };
            Window::new(from, to.min(now))
                .map_err(|e| anyhow::anyhow!("--from/--to: {}", e.problem))?
        }
        None => named_window(&args.window, now)?,
    };
    Ok(w)
}

/// The orgs to work on: the bundled simulator's (started in-process, `--simulate
/// --scenario NAME|FILE`; keep the handle alive while working) or an orgs file's (`--orgs`).
/// `what` names the command in the error when neither is given.
pub(crate) async fn org_setups(
    simulate: bool,
    scenario: &str,
    orgs: Option<&Path>,
    what: &str,
) -> anyhow::Result<(Vec<OrgSetup>, Option<genesys_sim::SimHandle>)> {
    if simulate {
        let loaded = genesys_sim::Scenario::load(scenario)
            .with_context(|| format!("--scenario {scenario}"))?;
        let sim = genesys_sim::start(loaded).await?;
        eprintln!("simulator: {} (scenario {scenario})", sim.base_url());
        Ok((crate::bench::sim_orgs(&sim, true)?, Some(sim)))
    } else if let Some(path) = orgs {
        Ok((load_orgs(path).context("--orgs")?, None))
    } else {
        bail!(
            "choose what to {what}: --simulate (the bundled simulator) or --orgs FILE (real orgs)"
        );
    }
}

/// Runs the export. Exit code 1 when any org failed, 3 when any org is incomplete
/// (deferred, or held by another process), else 0.
pub async fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    let window = window(&args, now)?;
    let (orgs, _sim) = org_setups(
        args.simulate,
        &args.scenario,
        args.orgs.as_deref(),
        "export",
    )
    .await?;

    let store = SqliteStore::open(&args.state)?;
    let ledger = Arc::new(StoreLedger::new(store));
    let ports = Ports {
        ledger: ledger.clone(),
        jobs: ledger,
        sink: Arc::new(LocalDirSink::new(&args.out)),
        clock,
    };
    let mut settings = RunSettings::default();
    settings.rate.max_wait = Duration::from_secs(args.max_wait);
    settings.engine.force = args.force;
    let days = window.utc_days(now);
    eprintln!(
        "exporting {} org(s), {} day(s) {} .. {} by {} into {}",
        orgs.len(),
        days.len(),
        window.from,
        window.to,
        args.date_field,
        args.out.display()
    );

    let bars = MultiProgress::new();
    if args.no_progress {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template("{prefix:>24} {bar:30} {pos}/{len} {elapsed}")
        .expect("valid template");
    let holder = format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut tasks = Vec::new();
    let mut leases = Vec::new();
    let mut buckets = Vec::new();
    for org in orgs {
        let bar = bars.add(ProgressBar::new(0).with_style(style.clone()));
        bar.set_prefix(org.endpoint.org_id.to_string());
        let jobs: Vec<JobSpec> = days
            .iter()
            .map(|(day, w)| JobSpec {
                org_id: org.endpoint.org_id.clone(),
                day: *day,
                window: *w,
                date_field: args.date_field,
                source: args.source,
            })
            .collect();
        let (ports, holder) = (ports.clone(), format!("{holder}-{}", org.endpoint.org_id));
        leases.extend(jobs.iter().map(|j| (j.clone(), holder.clone())));
        buckets.push((
            BucketKey::for_client(&org.endpoint.org_id, &org.endpoint.client_id),
            holder.clone(),
        ));
        tasks.push(tokio::spawn(async move {
            export_one(org, jobs, settings, ports, holder, Bar(bar)).await
        }));
    }
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let all = async {
        let mut rows = Vec::new();
        for task in tasks {
            rows.push(task.await.context("an org's export task panicked")?);
        }
        anyhow::Ok(rows)
    };
    let rows = tokio::select! {
        rows = all => rows?,
        _ = tokio::signal::ctrl_c() => {
            aborts.iter().for_each(|a| a.abort());
            // Free this process's job leases and rate-ledger places at once; checkpoints
            // stay for the next run.
            let now = ports.clock.now();
            for (spec, holder) in &leases {
                let status = JobStatus::Failed { reason: "interrupted".into() };
                let _ = ports.jobs.finish(spec, holder, status, now).await;
            }
            for (bucket, holder) in &buckets {
                let _ = ports.ledger.release(bucket, holder).await;
            }
            bars.clear().ok();
            eprintln!("interrupted: progress is checkpointed; run the same command again to resume");
            return Ok(ExitCode::from(130));
        }
    };
    bars.clear().ok();
    print_table(&rows);
    if let Some(mib) = crate::report::peak_memory_mib() {
        eprintln!("peak memory: {mib:.1} MiB");
    }
    if !args.no_tables {
        let partitions: Vec<_> = leases.iter().map(|(spec, _)| spec.partition()).collect();
        crate::tables::write(ports.sink.as_ref(), &partitions, false).await?;
    }
    Ok(exit_code(rows.iter().map(|r| &r.status)))
}

/// 1 when any org failed, 3 when any org is incomplete (deferred, held by another
/// process, or committed with gaps), else 0.
fn exit_code<'a>(statuses: impl Iterator<Item = &'a OrgStatus> + Clone) -> ExitCode {
    let any = |f: fn(&OrgStatus) -> bool| statuses.clone().any(f);
    if any(|s| matches!(s, OrgStatus::Failed { .. })) {
        ExitCode::from(1)
    } else if any(|s| {
        matches!(
            s,
            OrgStatus::AlreadyRunning
                | OrgStatus::Deferred { .. }
                | OrgStatus::CommittedWithGaps { .. }
        )
    }) {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

async fn export_one(
    org: OrgSetup,
    jobs: Vec<JobSpec>,
    settings: RunSettings,
    ports: Ports,
    holder: String,
    bar: Bar,
) -> OrgRow {
    let started = Instant::now();
    let row = |status, summary: Option<scorecards_shared::runner::OrgSummary>| OrgRow {
        org_id: org.endpoint.org_id.to_string(),
        region: org.endpoint.region.clone(),
        limit: org.limit,
        elapsed: started.elapsed(),
        evaluations: summary.as_ref().map_or(0, |s| s.evaluations),
        count_mismatches: summary.as_ref().map_or(0, |s| s.count_mismatches),
        stats: summary.map(|s| s.stats).unwrap_or_default(),
        status,
    };
    let exporter = match org_exporter(&org, &settings, &ports, &holder) {
        Ok(e) => e,
        Err(e) => {
            return row(
                OrgStatus::Failed {
                    reason: e.to_string(),
                },
                None,
            );
        }
    };
    let summary = run_org(&exporter, &jobs, &bar).await;
    bar.0.finish();
    row(summary.status.clone(), Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_worst_org() {
        let until = "2026-11-29T00:00:00Z".parse().unwrap();
        let failed = OrgStatus::Failed { reason: "x".into() };
        let cases = [
            (
                vec![OrgStatus::Committed, OrgStatus::UpToDate],
                ExitCode::SUCCESS,
            ),
            (
                vec![OrgStatus::Committed, OrgStatus::AlreadyRunning],
                ExitCode::from(3),
            ),
            (vec![OrgStatus::Deferred { until }], ExitCode::from(3)),
            (
                vec![
                    OrgStatus::Committed,
                    OrgStatus::CommittedWithGaps { unavailable: 2 },
                ],
                ExitCode::from(3),
            ),
            (vec![OrgStatus::AlreadyRunning, failed], ExitCode::from(1)),
        ];
        for (statuses, want) in cases {
            assert_eq!(exit_code(statuses.iter()), want, "{statuses:?}");
        }
    }
}
