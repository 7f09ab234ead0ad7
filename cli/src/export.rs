//! `scorecards export`: one process, embedded stand-ins (SQLite state, a local directory).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use jiff::Timestamp;
use scorecards_shared::adapters::{ledger::StoreLedger, local_dir::LocalDirSink};
use scorecards_shared::clock::{Clock, SystemClock};
use scorecards_shared::config::{OrgSetup, load_orgs};
use scorecards_shared::domain::{DateField, JobSpec, OrgId, Source, Window};
use scorecards_shared::ports::{BucketKey, JobStatus};
use scorecards_shared::runner::{OrgStatus, Ports, RunSettings, org_exporter, run_org};

use crate::input;
use crate::progress::{OrgProgress, WatchedJobs, WatchedLedger, Written, to_second};
use crate::report::{OrgRow, print_table};

/// Options of `scorecards export`.
#[derive(Args, Debug)]
#[command(after_help = input::WINDOW_RULE)]
pub struct ExportArgs {
    /// Start the bundled Genesys Cloud simulator in-process and export its orgs.
    #[arg(long, conflicts_with = "orgs_file")]
    simulate: bool,
    #[arg(long, default_value = "demo", requires = "simulate", help = input::scenario_help())]
    scenario: String,
    /// Orgs file for real orgs (see orgs.example.toml). `--orgs` is accepted too.
    #[arg(long, value_name = "FILE", alias = "orgs")]
    orgs_file: Option<PathBuf>,
    /// Window start: RFC 3339 with a zone (2026-11-28T00:00:00Z) or a date (midnight UTC);
    /// its whole UTC day is exported.
    #[arg(long, conflicts_with = "window")]
    from: Option<String>,
    /// Window end, exclusive (default now); its UTC day is exported whole unless it is
    /// midnight.
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Named window, UTC: yesterday, today, last-24h, last-<N>d (N whole days before today,
    /// and today so far; N at most 366).
    #[arg(long, default_value = "yesterday")]
    window: String,
    /// Date field the window applies to: submittedDate, releaseDate, createdDate, conversationDate.
    #[arg(long, default_value = "submittedDate")]
    date_field: DateField,
    /// Which evaluations: human, auto (automated) or both.
    #[arg(long, default_value = "both")]
    source: Source,
    /// Output directory (parts, forms, manifests); created when missing.
    #[arg(long, default_value = "./exports")]
    out: PathBuf,
    /// State database (rate ledger, leases, checkpoints), shared by concurrent runs; its
    /// folder must exist.
    #[arg(long, default_value = "./scorecards.db")]
    state: PathBuf,
    /// Longest Retry-After wait to sit through; longer ones defer the org with a checkpoint.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    max_wait: u64,
    /// Re-export days that are already committed.
    #[arg(long)]
    force: bool,
    /// No progress bars (for logs and CI): a line per committed day and a heartbeat every
    /// 30 s instead.
    #[arg(long)]
    no_progress: bool,
    /// Do not write the analytics tables (`<out>/tables/…`) of the committed days.
    #[arg(long)]
    no_tables: bool,
}

/// The orgs to work on and what is known about them.
pub(crate) struct OrgSources {
    pub orgs: Vec<OrgSetup>,
    /// Display names by org id, where known (the orgs file's `name`, the simulator's).
    pub names: HashMap<OrgId, String>,
    /// The simulator, when started (keep it alive while working).
    pub sim: Option<genesys_sim::SimHandle>,
}

/// The orgs to work on: the bundled simulator's (started in-process, `--simulate
/// --scenario NAME|FILE`) or an orgs file's (`--orgs-file`). `what` names the command in
/// the error when neither is given. Every problem with the input is an [`InvalidValue`].
pub(crate) async fn org_setups(
    simulate: bool,
    scenario: &str,
    orgs: Option<&Path>,
    what: &str,
) -> anyhow::Result<OrgSources> {
    if simulate {
        let loaded = input::scenario(scenario)?;
        let sim = genesys_sim::start(loaded).await?;
        let (from, to) = sim.period();
        eprintln!(
            "simulator: {} (scenario {scenario}); its evaluations were created {} .. {} (UTC), \
             their other dates lie within that period, conversation dates up to 2 days earlier",
            sim.base_url(),
            to_second(from),
            to_second(to),
        );
        let names = sim
            .orgs()
            .into_iter()
            .filter_map(|o| Some((o.org_id.parse().ok()?, o.name)))
            .collect();
        Ok(OrgSources {
            orgs: crate::bench::sim_orgs(&sim, true)?,
            names,
            sim: Some(sim),
        })
    } else if let Some(path) = orgs {
        let orgs = load_orgs(path).map_err(|e| input::bad("--orgs-file", e.to_string()))?;
        Ok(OrgSources {
            orgs,
            names: file_names(path),
            sim: None,
        })
    } else {
        Err(input::bad(
            "--simulate or --orgs-file",
            format!(
                "choose what to {what}: --simulate (the bundled simulator) or --orgs-file FILE (real orgs)"
            ),
        ))
    }
}

/// The optional `name` of each `[[org]]` of an orgs file (already validated by `load_orgs`).
fn file_names(path: &Path) -> HashMap<OrgId, String> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        org: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        org_id: String,
        #[serde(default)]
        name: Option<String>,
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let Ok(file) = toml::from_str::<File>(&text) else {
        return HashMap::new();
    };
    file.org
        .into_iter()
        .filter_map(|e| Some((e.org_id.parse().ok()?, e.name?)))
        .collect()
}

/// The days a window exports, as the banner shows them: `2026-11-27` or
/// `2026-11-01 .. 2026-11-08 (8 days)`, the current day marked "so far".
fn days_text(days: &[(jiff::civil::Date, Window)], now: Timestamp) -> String {
    let Some(((first, _), (last, last_window))) = days.first().zip(days.last()) else {
        return "no day".into();
    };
    let so_far = if last_window.to == now {
        " (the last one up to now)"
    } else {
        ""
    };
    if first == last {
        format!("UTC day {first}{so_far}")
    } else {
        format!("UTC days {first} .. {last} ({} days{so_far})", days.len())
    }
}

/// Runs the export. Exit code 1 when any org failed, 3 when any org is incomplete
/// (deferred, held by another process, or committed with gaps), 130 after Ctrl-C (SIGINT), 143
/// after SIGTERM, else 0.
/// Every input is checked before the simulator starts or any request is sent.
pub async fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    let window = input::window(&args.window, args.from.as_deref(), args.to.as_deref(), now)?;
    input::check_out_dir("--out", &args.out)?;
    // Bars only on a terminal; in a log file or CI, a line per day and a heartbeat instead.
    let no_progress = args.no_progress || !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let store = input::open_state("--state", &args.state)?;
    if args.simulate {
        // Checked before the simulator starts.
        input::scenario(&args.scenario)?;
    }
    let OrgSources {
        orgs,
        names,
        sim: _sim,
    } = org_setups(
        args.simulate,
        &args.scenario,
        args.orgs_file.as_deref(),
        "export",
    )
    .await?;
    if let Some(sim) = &_sim {
        let (from, to) = sim.period();
        let earliest = from.checked_sub(jiff::SignedDuration::from_hours(48))?;
        // Dates lie in [period start − 2 days, period end], the end included.
        if window.to <= earliest || window.from > to {
            eprintln!(
                "warning: the window {} .. {} lies outside the scenario's data: expect 0 evaluations",
                to_second(window.from),
                to_second(window.to)
            );
        }
    }

    let days = window.utc_days(now);
    let whole = if args.from.is_some()
        && (window.from != days[0].1.from || days.last().is_some_and(|d| d.1.to != window.to))
    {
        " (--from/--to widened to whole UTC days: windows are exported by whole days)"
    } else {
        ""
    };
    eprintln!(
        "exporting {} org(s), {}{whole}, by {} into {}",
        orgs.len(),
        days_text(&days, now),
        args.date_field,
        args.out.display()
    );

    let store_ledger = Arc::new(StoreLedger::new(store));
    let mut settings = RunSettings::default();
    settings.rate.max_wait = Duration::from_secs(args.max_wait);
    settings.engine.force = args.force;

    let holder = format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut progress = Vec::new();
    let mut by_org = HashMap::new();
    let mut by_bucket = HashMap::new();
    for org in &orgs {
        let id = &org.endpoint.org_id;
        let p = Arc::new(OrgProgress::new(
            id.to_string(),
            names.get(id).cloned(),
            org.endpoint.region.clone(),
            days.len(),
            org.limit,
        ));
        by_org.insert(id.clone(), p.clone());
        by_bucket.insert(
            BucketKey::for_client(id, &org.endpoint.client_id),
            p.clone(),
        );
        progress.push(p);
    }
    let ports = Ports {
        ledger: Arc::new(WatchedLedger {
            inner: store_ledger.clone(),
            buckets: by_bucket,
        }),
        jobs: Arc::new(WatchedJobs {
            inner: store_ledger,
            orgs: by_org,
            log: no_progress,
        }),
        sink: Arc::new(LocalDirSink::new(&args.out)),
        clock,
    };

    let bars = MultiProgress::new();
    if no_progress {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style =
        ProgressStyle::with_template("{prefix:>24} {bar:20} {msg}").expect("valid template");
    let mut tasks = Vec::new();
    let mut leases = Vec::new();
    let mut buckets = Vec::new();
    let mut shown = Vec::new();
    for (org, p) in orgs.into_iter().zip(&progress) {
        let bar = bars.add(ProgressBar::new(days.len() as u64).with_style(style.clone()));
        bar.set_prefix(p.label.clone());
        shown.push((bar, p.clone()));
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
        let (p, name) = (p.clone(), names.get(&org.endpoint.org_id).cloned());
        tasks.push(tokio::spawn(async move {
            export_one(org, name, jobs, settings, ports, holder, p).await
        }));
    }
    let handles: Vec<ProgressBar> = shown.iter().map(|(bar, _)| bar.clone()).collect();
    // Bars finished and cleared before the table, so none is drawn again after it.
    let clear_bars = || {
        handles.iter().for_each(ProgressBar::finish_and_clear);
        bars.clear().ok();
    };
    let ticker = tokio::spawn(show_progress(shown, no_progress));
    let all = async {
        let mut rows = Vec::new();
        for task in tasks.iter_mut() {
            rows.push(task.await.context("an org's export task panicked")?);
        }
        anyhow::Ok(rows)
    };
    let stopped = tokio::select! {
        rows = all => Ok(rows),
        code = stop_signal() => Err(code),
    };
    let rows = match stopped {
        Ok(rows) => rows?,
        Err(code) => {
            // Stopped, not merely asked to stop, before the leases are freed: a task on
            // another worker thread could otherwise take a lease after it was freed.
            tasks.iter().for_each(tokio::task::JoinHandle::abort);
            for task in tasks {
                // A finished task's handle may already have given its result (awaiting it
                // again would panic); it holds no lease anyway.
                if !task.is_finished() {
                    let _ = task.await;
                }
            }
            ticker.abort();
            // Free this process's job leases and rate-ledger places at once; checkpoints
            // stay for the next run. Days already finished keep their status.
            let now = ports.clock.now();
            for (spec, holder) in &leases {
                let status = JobStatus::Failed {
                    reason: "interrupted".into(),
                };
                let _ = ports.jobs.finish(spec, holder, status, now).await;
            }
            for (bucket, holder) in &buckets {
                let _ = ports.ledger.release(bucket, holder).await;
            }
            clear_bars();
            let rows: Vec<OrgRow> = progress.iter().map(|p| interrupted_row(p)).collect();
            print_table(&rows);
            eprintln!(
                "interrupted: committed days are listed above; the rest is checkpointed: run the same command again to resume"
            );
            return Ok(ExitCode::from(code));
        }
    };
    ticker.abort();
    clear_bars();
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

/// Shows progress every second on the bars, or, with `--no-progress`, a heartbeat line per
/// unfinished org every 30 s (committed days are logged as they happen).
async fn show_progress(orgs: Vec<(ProgressBar, Arc<OrgProgress>)>, quiet: bool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut seconds = 0u64;
    loop {
        tick.tick().await;
        let now = Timestamp::now();
        if quiet {
            if seconds > 0 && seconds.is_multiple_of(HEARTBEAT_SECS) {
                for (_, p) in &orgs {
                    if !p.finished.load(Ordering::SeqCst) {
                        eprintln!("{}: working: {}", p.label, p.line(now));
                    }
                }
            }
        } else {
            for (bar, p) in &orgs {
                bar.set_position(p.days_done.load(Ordering::SeqCst) as u64);
                bar.set_message(p.line(now));
            }
        }
        seconds += 1;
    }
}

/// Seconds between heartbeat lines with `--no-progress`.
const HEARTBEAT_SECS: u64 = 30;

/// An org's line after Ctrl-C: what this run committed before it was interrupted.
fn interrupted_row(p: &OrgProgress) -> OrgRow {
    let stats = p.client.get().map(|c| c.stats()).unwrap_or_default();
    let final_status = p.status.lock().expect("not poisoned").clone();
    OrgRow {
        name: p.name.clone(),
        org_id: p.org_id.clone(),
        region: p.region.clone(),
        limit: p.limit,
        elapsed: p.elapsed(),
        evaluations: p.committed_evaluations.load(Ordering::SeqCst),
        count_mismatches: 0,
        stats,
        days: (p.days_done.load(Ordering::SeqCst), p.days_total),
        interrupted: final_status.is_none(),
        status: final_status.unwrap_or(OrgStatus::Committed),
    }
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
    name: Option<String>,
    jobs: Vec<JobSpec>,
    settings: RunSettings,
    ports: Ports,
    holder: String,
    progress: Arc<OrgProgress>,
) -> OrgRow {
    let started = Instant::now();
    let days_total = jobs.len();
    let row = |status: OrgStatus, summary: Option<scorecards_shared::runner::OrgSummary>| {
        *progress.status.lock().expect("not poisoned") = Some(status.clone());
        progress.finished.store(true, Ordering::SeqCst);
        OrgRow {
            name: name.clone(),
            org_id: org.endpoint.org_id.to_string(),
            region: org.endpoint.region.clone(),
            limit: org.limit,
            elapsed: started.elapsed(),
            evaluations: summary.as_ref().map_or(0, |s| s.evaluations),
            count_mismatches: summary.as_ref().map_or(0, |s| s.count_mismatches),
            stats: summary.map(|s| s.stats).unwrap_or_default(),
            days: (progress.days_done.load(Ordering::SeqCst), days_total),
            interrupted: false,
            status,
        }
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
    let _ = progress.client.set(exporter.client.clone());
    let summary = run_org(&exporter, &jobs, &Written(progress.clone())).await;
    row(summary.status.clone(), Some(summary))
}

/// Resolves when the process is asked to stop, with the shells' exit code for it (128 + the
/// signal's number): Ctrl-C (SIGINT) → 130; SIGTERM (`kill`, a service manager, a container
/// stop) → 143. A signal that cannot be watched is never reported.
async fn stop_signal() -> u8 {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            () = ctrl_c => 130,
            _ = term.recv() => 143,
        },
        Err(_) => {
            ctrl_c.await;
            130
        }
    }
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
