//! `scorecards bench`: this engine against two naive strategies on the same simulated
//! scenario, and two exporters sharing one org's quota through one SQLite ledger. Prints
//! figures; asserts nothing (targets are read off the tables).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use genesys_sim::{RateLimitSpec, Scenario, SimHandle, SourceFilter};
use jiff::Timestamp;
use scorecards_shared::adapters::{
    ledger::StoreLedger, local_dir::LocalDirSink, memory::MemoryStore, sqlite::SqliteStore,
};
use scorecards_shared::clock::{Clock, SystemClock};
use scorecards_shared::config::OrgSetup;
use scorecards_shared::domain::{DateField, JobSpec, OrgId, Source, Window};
use scorecards_shared::engine::NoProgress;
use scorecards_shared::genesys::OrgEndpoint;
use scorecards_shared::output::committed_by_id;
use scorecards_shared::ports::{ExportSink, LearnedLimit, RequestStats};
use scorecards_shared::runner::{
    OrgStatus, OrgSummary, Ports, RunSettings, Strategy, org_exporter, run_org,
};
use secrecy::SecretString;

use crate::fleet;
use crate::report::per_thousand;

/// Options of `scorecards bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// How many simulated orgs [default: 20; 200 with --fleet, the backfill org included].
    /// `--orgs` is accepted too.
    #[arg(long, alias = "orgs")]
    org_count: Option<usize>,
    /// Evaluations per org [default: 3000; with --fleet, per org and day: 100].
    #[arg(long)]
    evaluations: Option<usize>,
    /// Requests allowed per token and window (Genesys: 300 per 60 s).
    #[arg(long, default_value_t = 100)]
    allowed: u32,
    /// Window length in milliseconds (shorter than Genesys's 60 s, so the benchmark runs fast).
    #[arg(long, default_value_t = 5000)]
    window_ms: u64,
    /// Delay of the "sequential with a fixed delay" strategy, milliseconds.
    #[arg(long, default_value_t = 200)]
    delay_ms: u64,
    /// Requests in flight per org for the engine and the unpaced strategy.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Run only these strategies (comma-separated: engine, fixed, unpaced) and skip the
    /// two-exporter table unless `shared` is listed too.
    #[arg(long, value_delimiter = ',', value_parser = ["engine", "fixed", "unpaced", "shared"])]
    only: Vec<String>,
    /// `default`: the simulator answers every undocumented behaviour the way the
    /// documentation suggests; `pessimistic`: the other way, every one of them at once
    /// (README "Undocumented API behaviours"), and the orgs' limits are not told to the
    /// exporter (it learns them from the responses).
    #[arg(long, default_value = "default", value_parser = ["default", "pessimistic"])]
    scenario: String,
    /// The AWS flow instead: dispatch and export handlers in this process, an in-memory
    /// queue and a simulated Lambda (README "Fleet benchmark"). Run once with one org's
    /// backfill and again without it.
    #[arg(long)]
    fleet: bool,
    /// With --fleet: days the backfill org asks for (0: no backfill org, one run).
    #[arg(long, default_value_t = 60, requires = "fleet")]
    backfill_days: u32,
    /// With --fleet: export invocations at once (the function's maximum concurrency).
    #[arg(long, default_value_t = 20, requires = "fleet")]
    concurrency: usize,
    /// With --fleet: time limit of one export invocation, seconds (the export stops 20 s
    /// before it to checkpoint and send the continuation).
    #[arg(long, default_value_t = 60, requires = "fleet")]
    invocation_secs: u64,
    /// With --fleet: delay dispatch adds per message, milliseconds [default: the stack's
    /// 200 ms scaled by Genesys's 5 requests/s ÷ the simulator's rate: 50 ms at 100 per
    /// 5,000 ms].
    #[arg(long, requires = "fleet")]
    stagger_ms: Option<u64>,
}

impl BenchArgs {
    fn pessimistic(&self) -> bool {
        self.scenario == "pessimistic"
    }

    /// The simulated fleet: `orgs` × `evaluations`, the quota per org, and under
    /// `pessimistic` every unknown at its other answer (the quota stays the bench's).
    fn scenario(&self, orgs: usize, evaluations: usize) -> Scenario {
        let scenario = Scenario::bench(orgs, evaluations, self.allowed, self.window_ms);
        if self.pessimistic() {
            scenario.map_orgs(|o| {
                let limit = o.limit;
                *o = o.clone().pessimistic();
                o.limit = limit;
            })
        } else {
            scenario
        }
    }
}

/// The simulator's orgs as exportable orgs; `told`: their limits as the simulator enforces
/// them, else the documented default (300 per 60 s) until responses show otherwise.
pub fn sim_orgs(sim: &SimHandle, told: bool) -> anyhow::Result<Vec<OrgSetup>> {
    sim.orgs()
        .into_iter()
        .map(|o| {
            let enforced = quota(&o);
            let org_id: OrgId = o.org_id.parse()?;
            Ok(OrgSetup {
                endpoint: OrgEndpoint::new(
                    org_id,
                    o.region,
                    &o.api_base_url,
                    &o.login_base_url,
                    o.client_id,
                    SecretString::from(o.client_secret),
                )?,
                limit: if told {
                    enforced
                } else {
                    LearnedLimit {
                        allowed: 300,
                        window_ms: 60_000,
                    }
                },
                tokens: Default::default(),
            })
        })
        .collect()
}

/// The limit the simulator enforces on an org's token.
fn quota(o: &genesys_sim::OrgInfo) -> LearnedLimit {
    LearnedLimit {
        allowed: o.token_limit.allowed,
        window_ms: o.token_limit.window_ms,
    }
}

/// The whole data period of the simulator, as export jobs per org.
fn jobs_for(sim: &SimHandle, org: &OrgSetup) -> anyhow::Result<Vec<JobSpec>> {
    let (from, to) = sim.period();
    let now = Timestamp::now();
    let window = Window::new(from, to.min(now))?;
    Ok(window
        .utc_days(now)
        .into_iter()
        .map(|(day, w)| JobSpec {
            org_id: org.endpoint.org_id.clone(),
            day,
            window: w,
            date_field: DateField::SubmittedDate,
            source: Source::Both,
        })
        .collect())
}

/// Whether the committed output of `org` equals the simulator's ground truth, byte for
/// byte, with no duplicate and no day missing — less the evaluations the simulator refuses
/// (outside the client's divisions), which the manifests must list as unavailable.
pub(crate) async fn equals_truth(
    sim: &SimHandle,
    sink: &dyn ExportSink,
    org: &OrgSetup,
    jobs: &[JobSpec],
) -> anyhow::Result<bool> {
    let Ok(exported) = committed_by_id(sink, jobs).await else {
        return Ok(false);
    };
    let mut listed = std::collections::BTreeSet::new();
    for job in jobs {
        if let Some(m) = sink.manifest(&job.partition()).await? {
            listed.extend(m.unavailable.into_iter().map(|u| u.id));
        }
    }
    let (Some(first), Some(last)) = (jobs.first(), jobs.last()) else {
        return Ok(exported.is_empty());
    };
    let truth: BTreeMap<String, String> = sim
        .ground_truth(
            org.endpoint.org_id.as_str(),
            first.window.from,
            last.window.to,
            genesys_sim::DateField::SubmittedDate,
            SourceFilter::Both,
        )
        .into_iter()
        .map(|t| (t.id, t.json))
        .collect();
    let refused: std::collections::BTreeSet<String> = sim
        .restricted_ids(org.endpoint.org_id.as_str())
        .into_iter()
        .filter(|id| truth.contains_key(id))
        .collect();
    let truth: BTreeMap<String, String> = truth
        .into_iter()
        .filter(|(id, _)| !refused.contains(id))
        .collect();
    Ok(truth == exported && listed == refused)
}

struct StrategyFigures {
    name: String,
    wall: Duration,
    ideal: Duration,
    stats: RequestStats,
    evaluations: u64,
    failed: usize,
    truth: bool,
    sim_429: u64,
    violations: u64,
    max_in_window: u64,
}

fn rate_per_sec(limit: LearnedLimit) -> f64 {
    f64::from(limit.allowed) * 1000.0 / limit.window_ms.max(1) as f64
}

/// Requests a strategy could not have avoided: everything but 429s and retries.
fn needed(stats: &RequestStats) -> u64 {
    (stats.requests + stats.token_requests).saturating_sub(stats.responses_429 + stats.retries)
}

async fn run_strategy(
    name: &str,
    scenario: Scenario,
    told: bool,
    strategy: Strategy,
    in_flight: usize,
) -> anyhow::Result<StrategyFigures> {
    let sim = genesys_sim::start(scenario).await?;
    let orgs = sim_orgs(&sim, told)?;
    let quotas: Vec<LearnedLimit> = sim.orgs().iter().map(quota).collect();
    let out = tempfile::tempdir()?;
    let sink: Arc<dyn ExportSink> = Arc::new(LocalDirSink::new(out.path()));
    let ledger = Arc::new(StoreLedger::new(MemoryStore::new()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ports = Ports {
        ledger: ledger.clone(),
        jobs: ledger,
        sink: Arc::clone(&sink),
        clock,
    };
    let mut settings = RunSettings {
        strategy,
        ..RunSettings::default()
    };
    settings.engine.in_flight = in_flight;
    // One request at a time means one day at a time too.
    if in_flight == 1 {
        settings.engine.days_in_flight = 1;
    }
    settings.rate.max_wait = Duration::from_secs(3600);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for org in orgs.clone() {
        let jobs = jobs_for(&sim, &org)?;
        let (ports, name) = (ports.clone(), format!("bench-{}", org.endpoint.org_id));
        tasks.push(tokio::spawn(async move {
            let exporter = org_exporter(&org, &settings, &ports, &name)?;
            anyhow::Ok(run_org(&exporter, &jobs, &NoProgress).await)
        }));
    }
    let mut summaries: Vec<OrgSummary> = Vec::new();
    for t in tasks {
        summaries.push(t.await.context("bench task panicked")??);
    }
    let wall = started.elapsed();
    let mut truth = true;
    for org in &orgs {
        truth &= equals_truth(&sim, sink.as_ref(), org, &jobs_for(&sim, org)?).await?;
    }
    let mut stats = RequestStats::default();
    let mut ideal = Duration::ZERO;
    for (quota, s) in quotas.iter().zip(&summaries) {
        stats.add(&s.stats);
        ideal = ideal.max(Duration::from_secs_f64(
            needed(&s.stats) as f64 / rate_per_sec(*quota),
        ));
    }
    let sim_stats = sim.stats();
    sim.shutdown();
    Ok(StrategyFigures {
        name: name.into(),
        wall,
        ideal,
        stats,
        evaluations: summaries.iter().map(|s| s.evaluations).sum(),
        failed: summaries
            .iter()
            .filter(|s| matches!(s.status, OrgStatus::Failed { .. }))
            .count(),
        truth,
        sim_429: sim_stats.total_429(),
        violations: sim_stats.total_quota_violations(),
        max_in_window: sim_stats
            .orgs
            .values()
            .map(|o| o.totals.max_requests_in_any_window)
            .max()
            .unwrap_or(0),
    })
}

/// Two exporters (two holders, two SQLite connections to one file) on one org at once,
/// each exporting half of the days; the org's quota is enforced org-wide by the simulator.
async fn run_shared(args: &BenchArgs) -> anyhow::Result<()> {
    let scenario = args
        .scenario(1, args.evaluations.unwrap_or(3000) * 2)
        .map_orgs(|o| o.org_limit = Some(RateLimitSpec::new(o.limit.allowed, o.limit.window_ms)));
    let sim = genesys_sim::start(scenario).await?;
    let org = sim_orgs(&sim, !args.pessimistic())?.remove(0);
    let org_quota = quota(&sim.orgs()[0]);
    let jobs = jobs_for(&sim, &org)?;
    let state = tempfile::tempdir()?;
    let out = tempfile::tempdir()?;
    let sink: Arc<dyn ExportSink> = Arc::new(LocalDirSink::new(out.path()));
    let mut settings = RunSettings::default();
    settings.engine.in_flight = args.in_flight;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for half in 0..2 {
        let store = Arc::new(StoreLedger::new(SqliteStore::open(
            &state.path().join("state.db"),
        )?));
        let ports = Ports {
            ledger: store.clone(),
            jobs: store,
            sink: Arc::clone(&sink),
            clock: Arc::new(SystemClock),
        };
        let mine: Vec<JobSpec> = jobs.iter().skip(half).step_by(2).cloned().collect();
        // Two processes: each its own token.
        let org = OrgSetup {
            tokens: Default::default(),
            ..org.clone()
        };
        tasks.push(tokio::spawn(async move {
            let exporter = org_exporter(&org, &settings, &ports, &format!("shared-{half}"))?;
            anyhow::Ok(run_org(&exporter, &mine, &NoProgress).await)
        }));
    }
    let mut stats = RequestStats::default();
    for t in tasks {
        stats.add(&t.await.context("bench task panicked")??.stats);
    }
    let wall = started.elapsed();
    let truth = equals_truth(&sim, sink.as_ref(), &org, &jobs).await?;
    let s = sim.stats();
    let o = s.org(org.endpoint.org_id.as_str());
    let allowed = rate_per_sec(org_quota);
    let achieved = (stats.requests + stats.token_requests) as f64 / wall.as_secs_f64();
    let ideal = needed(&stats) as f64 / allowed;
    println!();
    println!(
        "Two exporters on one org, one shared SQLite ledger (quota {} per {} ms, enforced org-wide)",
        org_quota.allowed, org_quota.window_ms
    );
    println!(
        "{:>10} {:>16} {:>16} {:>12} {:>10} {:>6} {:>11} {:>8}",
        "wall",
        "combined r/s",
        "quota r/s",
        "max/window",
        "efficiency",
        "429s",
        "violations",
        "= truth"
    );
    println!(
        "{:>9.2}s {:>16.2} {:>16.2} {:>12} {:>10.3} {:>6} {:>11} {:>8}",
        wall.as_secs_f64(),
        achieved,
        allowed,
        format!(
            "{}/{}",
            o.totals.max_requests_in_any_window, org_quota.allowed
        ),
        ideal / wall.as_secs_f64(),
        s.total_429(),
        s.total_quota_violations(),
        if truth { "yes" } else { "NO" },
    );
    sim.shutdown();
    Ok(())
}

/// Runs the fleet benchmark: with the backfill, then without it.
async fn run_fleet(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.pessimistic() {
        anyhow::bail!("--fleet runs the default scenario only");
    }
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    let rate = f64::from(args.allowed) * 1000.0 / args.window_ms as f64;
    let stagger = match args.stagger_ms {
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs_f64(0.2 * 5.0 / rate),
    };
    let config = fleet::FleetConfig {
        orgs: args.org_count.unwrap_or(200),
        backfill_days: args.backfill_days,
        evaluations_per_day: args.evaluations.unwrap_or(100),
        allowed: args.allowed,
        window_ms: args.window_ms,
        concurrency: args.concurrency,
        invocation: Duration::from_secs(args.invocation_secs),
        stagger,
        seed: 99,
        latency_ms: None,
    };
    eprintln!(
        "bench --fleet: {} orgs ({}), {} evaluations per org and day, quota {} requests per {} ms per org; {} invocations at once, {} s each; stagger {} ms",
        config.orgs,
        if config.backfill_days > 0 {
            format!(
                "one with a {}-day backfill, the others one day",
                config.backfill_days
            )
        } else {
            "one day each".into()
        },
        config.evaluations_per_day,
        config.allowed,
        config.window_ms,
        config.concurrency,
        args.invocation_secs,
        stagger.as_millis(),
    );
    let with = fleet::run_fleet(&config).await?;
    let mut runs = vec![(
        if config.backfill_days > 0 {
            format!(
                "Fleet: {} orgs, one with a {}-day backfill dispatched first",
                config.orgs, config.backfill_days
            )
        } else {
            format!("Fleet: {} orgs, one day each", config.orgs)
        },
        config.clone(),
        with,
    )];
    if config.backfill_days > 0 {
        eprintln!("running the same fleet without the backfill org");
        let without_config = fleet::FleetConfig {
            orgs: config.orgs - 1,
            backfill_days: 0,
            ..config.clone()
        };
        let without = fleet::run_fleet(&without_config).await?;
        runs.push((
            format!(
                "Fleet: the same {} one-day orgs without the backfill",
                without_config.orgs
            ),
            without_config,
            without,
        ));
    }
    for (title, config, figures) in &runs {
        fleet::print(title, config, figures);
    }
    if let [(_, _, with), (_, _, without)] = &runs[..] {
        let p50 = |f: &fleet::FleetFigures| fleet::quantile(&f.one_day_completion, 0.5);
        let max =
            |f: &fleet::FleetFigures| f.one_day_completion.last().copied().unwrap_or(f64::NAN);
        println!();
        println!(
            "One-day orgs with the backfill present ÷ without it: p50 {:.2}x, max {:.2}x",
            p50(with) / p50(without),
            max(with) / max(without),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the benchmark and prints its tables.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.org_count == Some(0) || args.allowed == 0 || args.window_ms == 0 || args.in_flight == 0
    {
        return Err(crate::input::bad(
            "--org-count, --allowed, --window-ms, --in-flight",
            "each must be at least 1",
        ));
    }
    if args.fleet {
        return run_fleet(&args).await;
    }
    let (orgs, evaluations) = (
        args.org_count.unwrap_or(20),
        args.evaluations.unwrap_or(3000),
    );
    let scenario = || args.scenario(orgs, evaluations);
    eprintln!(
        "bench: {} orgs x {} evaluations, quota {} requests per {} ms per org{}; strategies one after another",
        orgs,
        evaluations,
        args.allowed,
        args.window_ms,
        if args.pessimistic() {
            ", every undocumented behaviour at its other answer, limits not told"
        } else {
            ""
        }
    );
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let strategies = [
        (
            "engine",
            "scorecards engine",
            Strategy::Engine,
            args.in_flight,
        ),
        (
            "fixed",
            &*format!("sequential, fixed {} ms delay", args.delay_ms),
            Strategy::FixedDelay(Duration::from_millis(args.delay_ms)),
            1,
        ),
        (
            "unpaced",
            "unpaced, honours Retry-After",
            Strategy::Unpaced,
            args.in_flight,
        ),
    ];
    let mut figures = Vec::new();
    for (key, name, strategy, in_flight) in strategies {
        if !wanted(key) {
            continue;
        }
        eprintln!("running: {name}");
        figures
            .push(run_strategy(name, scenario(), !args.pessimistic(), strategy, in_flight).await?);
    }
    if !figures.is_empty() {
        println!();
        println!(
            "{:<32} {:>9} {:>9} {:>10} {:>11} {:>8} {:>7} {:>11} {:>10} {:>12} {:>7} {:>8}",
            "strategy",
            "wall",
            "ideal",
            "efficiency",
            "evaluations",
            "requests",
            "429s",
            "violations",
            "req/1k ev",
            "max/window",
            "failed",
            "= truth"
        );
        for f in &figures {
            println!(
                "{:<32} {:>8.2}s {:>8.2}s {:>10.3} {:>11} {:>8} {:>7} {:>11} {:>10} {:>12} {:>7} {:>8}",
                f.name,
                f.wall.as_secs_f64(),
                f.ideal.as_secs_f64(),
                f.ideal.as_secs_f64() / f.wall.as_secs_f64(),
                f.evaluations,
                f.stats.requests + f.stats.token_requests,
                f.sim_429,
                f.violations,
                per_thousand(f.stats.requests, f.evaluations),
                format!("{}/{}", f.max_in_window, args.allowed),
                f.failed,
                if f.truth { "yes" } else { "NO" },
            );
        }
    }
    if wanted("shared") {
        run_shared(&args).await?;
    }
    Ok(ExitCode::SUCCESS)
}
