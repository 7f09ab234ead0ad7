//! A seeded fault campaign (feature `chaos`): proves the export is exactly once under faults.
//!
//! For each seed, [`run_seed`] starts the Genesys Cloud simulator with 2–3 small orgs and a
//! few seeded API faults (5xx bursts, 429s with a short `Retry-After`, connection resets,
//! truncated bodies, expiring tokens, paging faults, sometimes a hang past the client
//! timeout), and exports every day of every org with **two exporters per org at once**
//! (different holders; one job store and one output directory shared by all). Each exporter
//! goes through its own fault-injecting job store, rate ledger and sink
//! ([`crate::adapters::faulty`]), which fail seeded calls before or after they take effect,
//! and some runs get a short invocation deadline. The exporters run in rounds: after each
//! round the (fake) clock moves past the lease, so leases a failed run left behind expire,
//! and the next round starts new exporters with new holders (retried invocations), until
//! every job is committed or the run bound is reached. Within a round, `Retry-After` waits
//! and retry backoffs move the shared clock too, so a live holder's lease can run out and
//! the other exporter take the job over (a stale holder); and in half the rounds, the
//! running exporters stall past their lease while a third, late exporter takes their jobs
//! over, so they carry on as stale holders.
//!
//! Then it checks ([`Violation`]): every day is committed, byte-equal to the simulator's
//! ground truth with no id twice; every listed part matches its size and SHA-256
//! ([`crate::output::read_committed`]); no evaluation is in two days
//! ([`crate::output::committed_by_id`]); the job record names the committed run; and the
//! attempts stayed under the bound (nothing loops).
//!
//! A seed fixes the data, the API faults, each exporter's fault plan and deadline; which
//! call meets which fault still depends on how the concurrent exporters interleave.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use genesys_sim::{EndpointSel, FaultKind as ApiFault, FaultSpec, Scenario, SourceFilter};
use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use secrecy::SecretString;

use crate::adapters::faulty::{FaultCounts, Faults, FaultySink, FaultyStore};
use crate::adapters::{ledger::StoreLedger, local_dir::LocalDirSink, memory::MemoryStore};
use crate::clock::{self, Clock, FakeClock};
use crate::config::OrgSetup;
use crate::domain::{DateField, JobSpec, OrgId, Source, Window};
use crate::engine::NoProgress;
use crate::genesys::OrgEndpoint;
use crate::output::{committed_by_id, read_committed};
use crate::ports::{ExportSink, JobStatus, JobStore, LearnedLimit};
use crate::runner::{OrgStatus, Ports, RunSettings, org_exporter, run_org};

/// Exporters working on each org at once.
pub const EXPORTERS_PER_ORG: usize = 2;

/// What a campaign runs.
#[derive(Debug, Clone, Copy)]
pub struct CampaignConfig {
    /// The first seed.
    pub first_seed: u64,
    /// Seeds to run (`first_seed`, `first_seed + 1`, …).
    pub seeds: u64,
    /// Seeds run at once.
    pub parallel: usize,
    /// Exporter runs allowed per org (over all its exporters and rounds) before the
    /// campaign calls it a loop.
    pub max_attempts: u32,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            first_seed: 1,
            seeds: 200,
            parallel: 4,
            max_attempts: 60,
        }
    }
}

/// An invariant a seed broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The seed (rerun it alone with `--seeds 1 --first-seed <seed>`).
    pub seed: u64,
    /// What was wrong.
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seed {}: {}", self.seed, self.what)
    }
}

/// Figures of one seed or of a whole campaign.
#[derive(Debug, Clone, Default)]
pub struct CampaignReport {
    /// Seeds run.
    pub seeds: u64,
    /// Orgs exported.
    pub orgs: u64,
    /// Jobs (org days) exported.
    pub jobs: u64,
    /// Evaluations in the ground truth of those days.
    pub evaluations: u64,
    /// Faults the wrappers injected, by kind.
    pub faults: FaultCounts,
    /// Faults the simulator injected into API responses.
    pub api_faults: u64,
    /// Manifests written (commits that took effect, also those whose answer was lost).
    pub commits: u64,
    /// Commits refused because another holder committed first.
    pub commit_conflicts: u64,
    /// Exporter runs.
    pub runs: u64,
    /// Runs after an org's first round (new holders, started because a day was not yet
    /// committed).
    pub restarts: u64,
    /// How the runs ended: `committed`, `up_to_date`, `deferred`, `already_running`,
    /// `failed: <reason kind>`.
    pub outcomes: BTreeMap<String, u64>,
    /// The most runs any one org needed.
    pub max_runs_per_org: u32,
    /// Invariants broken.
    pub violations: Vec<Violation>,
}

impl CampaignReport {
    fn add(&mut self, other: CampaignReport) {
        self.seeds += other.seeds;
        self.orgs += other.orgs;
        self.jobs += other.jobs;
        self.evaluations += other.evaluations;
        self.faults.add(&other.faults);
        self.api_faults += other.api_faults;
        self.commits += other.commits;
        self.commit_conflicts += other.commit_conflicts;
        self.runs += other.runs;
        self.restarts += other.restarts;
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        self.max_runs_per_org = self.max_runs_per_org.max(other.max_runs_per_org);
        self.violations.extend(other.violations);
    }
}

/// Runs `config.seeds` seeds, `config.parallel` at a time (each on its own task), and
/// adds up their figures. Needs a Tokio runtime with the time driver; a multi-threaded one
/// runs seeds in parallel.
pub async fn run_campaign(config: &CampaignConfig) -> CampaignReport {
    let bound = config.max_attempts;
    let seeds = config.first_seed..config.first_seed.saturating_add(config.seeds);
    let mut reports = futures::stream::iter(seeds)
        .map(|seed| async move {
            match tokio::spawn(run_seed(seed, bound)).await {
                Ok(report) => report,
                Err(e) => CampaignReport {
                    seeds: 1,
                    violations: vec![Violation {
                        seed,
                        what: format!("the seed's task panicked: {e}"),
                    }],
                    ..CampaignReport::default()
                },
            }
        })
        .buffer_unordered(config.parallel.max(1));
    let mut total = CampaignReport::default();
    while let Some(report) = reports.next().await {
        total.add(report);
    }
    total.violations.sort_by_key(|v| v.seed);
    total
}

/// The simulated world of `seed`: the `test` orgs (plus a third one for some seeds), 20–45
/// evaluations each over two days, and one to three API faults per org.
pub fn scenario(seed: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_5ce0_a210);
    let mut sc = Scenario::test().with_seed(seed);
    sc.name = format!("chaos-{seed}");
    sc.days_before = 2;
    if rng.random_bool(0.3) {
        let mut third = sc.orgs[1].clone();
        third.name = "Test Org C".into();
        third.region = "euw2.pure.cloud".into();
        sc.orgs.push(third);
    }
    for org in &mut sc.orgs {
        org.evaluations = rng.random_range(20..=45);
        for _ in 0..rng.random_range(1..=3) {
            org.faults.push(api_fault(&mut rng));
        }
    }
    sc
}

/// One seeded API fault: where it fires is a small request number, or a small probability
/// with a cap.
fn api_fault(rng: &mut ChaCha8Rng) -> FaultSpec {
    let endpoint =
        [EndpointSel::Search, EndpointSel::Query, EndpointSel::Get][rng.random_range(0..3)];
    let mut fault = match rng.random_range(0..10) {
        0 | 1 => FaultSpec::new(ApiFault::HttpError, endpoint, &[])
            .status([500, 502, 503, 504][rng.random_range(0..4)])
            .count(rng.random_range(1..=3)),
        2 => FaultSpec::new(ApiFault::TooManyRequests, endpoint, &[])
            .retry_after(&rng.random_range(1..=5).to_string())
            .count(rng.random_range(1..=2)),
        3 => FaultSpec::new(ApiFault::ConnectionReset, endpoint, &[]),
        4 => FaultSpec::new(ApiFault::TruncatedBody, endpoint, &[]),
        5 => FaultSpec::new(ApiFault::ExpireToken, endpoint, &[]),
        6 => FaultSpec::new(ApiFault::DuplicateAcrossPages, EndpointSel::Search, &[]),
        7 => FaultSpec::new(ApiFault::RepeatNextUri, EndpointSel::Query, &[]),
        8 => FaultSpec::new(ApiFault::EmptyPageWithNextUri, EndpointSel::Query, &[]),
        _ if rng.random_bool(0.3) => FaultSpec {
            hang_ms: Some(400),
            ..FaultSpec::new(ApiFault::Hang, endpoint, &[])
        },
        _ => FaultSpec::new(ApiFault::HttpError, endpoint, &[]).status(503),
    };
    if rng.random_bool(0.5) {
        fault.at = vec![rng.random_range(1..=12)];
    } else {
        fault.probability = Some(rng.random_range(0.01..0.05));
        fault.max_triggers = Some(3);
    }
    fault
}

/// Settings of every exporter: small pages and parts (paging and several fenced parts per
/// day), a 30 s lease, a client timeout a hang outlasts.
fn settings() -> RunSettings {
    let mut s = RunSettings::default();
    s.engine.search.page_size = 10;
    s.engine.query_page_size = 5;
    s.engine.part_records = 8;
    s.engine.in_flight = 4;
    s.engine.lease = Duration::from_secs(30);
    s.client.request_timeout = Duration::from_millis(250);
    s
}

fn org_setup(o: &genesys_sim::OrgInfo) -> Result<OrgSetup, String> {
    let org_id: OrgId = o.org_id.parse().map_err(|e| format!("org id: {e}"))?;
    let endpoint = OrgEndpoint::new(
        org_id,
        o.region.clone(),
        &o.api_base_url,
        &o.login_base_url,
        o.client_id.clone(),
        SecretString::from(o.client_secret.clone()),
    )
    .map_err(|e| format!("endpoint: {e}"))?;
    Ok(OrgSetup {
        endpoint,
        limit: LearnedLimit {
            allowed: o.token_limit.allowed,
            window_ms: o.token_limit.window_ms,
        },
        tokens: Default::default(),
    })
}

/// Mixes the parts of an exporter run's identity into one seed.
fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0xcbf2_9ce4_8422_2325, |h, p| {
        (h ^ p).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(17)
    })
}

/// What the seed's world is shared through.
struct World {
    seed: u64,
    clock: FakeClock,
    store: Arc<MemoryStore>,
    sink: Arc<LocalDirSink>,
    /// The job store without faults, to read what is recorded.
    jobs: StoreLedger<FaultyStore<MemoryStore>>,
    bound: u32,
}

/// Runs one seed and checks its invariants.
pub async fn run_seed(seed: u64, max_attempts: u32) -> CampaignReport {
    let mut report = CampaignReport {
        seeds: 1,
        ..CampaignReport::default()
    };
    let violation = |what: String| Violation { seed, what };
    let sim = match genesys_sim::start(scenario(seed)).await {
        Ok(sim) => sim,
        Err(e) => {
            report
                .violations
                .push(violation(format!("the simulator did not start: {e:#}")));
            return report;
        }
    };
    let out = match tempfile::tempdir() {
        Ok(out) => out,
        Err(e) => {
            report
                .violations
                .push(violation(format!("no output directory: {e}")));
            return report;
        }
    };
    let store = Arc::new(MemoryStore::new());
    let world = World {
        seed,
        clock: FakeClock::new(Timestamp::now()),
        jobs: StoreLedger::new(FaultyStore::new(
            Arc::clone(&store),
            Arc::new(Faults::none()),
        )),
        store,
        sink: Arc::new(LocalDirSink::new(out.path())),
        bound: max_attempts,
    };
    let (from, to) = sim.period();
    let mut orgs = Vec::new();
    for (index, info) in sim.orgs().iter().enumerate() {
        let org = match org_setup(info) {
            Ok(org) => org,
            Err(e) => {
                report.violations.push(violation(e));
                return report;
            }
        };
        let now = world.clock.now();
        let jobs: Vec<JobSpec> = match Window::new(from, to.min(now)) {
            Ok(w) => w
                .utc_days(now)
                .into_iter()
                .map(|(day, window)| JobSpec {
                    org_id: org.endpoint.org_id.clone(),
                    day,
                    window,
                    date_field: DateField::SubmittedDate,
                    source: Source::Both,
                })
                .collect(),
            Err(e) => {
                report.violations.push(violation(format!("window: {e}")));
                return report;
            }
        };
        orgs.push((index as u64, org, jobs));
    }
    let runs = futures::future::join_all(
        orgs.iter()
            .map(|(index, org, jobs)| export_org(&world, *index, org, jobs)),
    )
    .await;
    for r in runs {
        report.add(r);
    }
    for (_, org, jobs) in &orgs {
        report.orgs += 1;
        report.jobs += jobs.len() as u64;
        report.evaluations += check_org(&world, &sim, org, jobs, &mut report.violations).await;
    }
    report.api_faults = sim
        .stats()
        .orgs
        .values()
        .map(|o| o.totals.faults_injected)
        .sum();
    sim.shutdown();
    report
}

/// Whether every job of the org is committed without gaps (read without faults).
async fn all_committed(world: &World, jobs: &[JobSpec]) -> bool {
    for job in jobs {
        match world.jobs.get(job).await {
            Ok(Some(record))
                if matches!(record.status, JobStatus::Committed { .. })
                    && record.spec.window.to >= job.window.to => {}
            _ => return false,
        }
    }
    true
}

/// Exports one org in rounds: in each round [`EXPORTERS_PER_ORG`] exporters (new holders)
/// run the org's days at once; between rounds the clock moves past the lease, so a lease a
/// failed run left behind expires. Rounds go on until every job is committed or the org's
/// run bound is reached.
async fn export_org(world: &World, index: u64, org: &OrgSetup, jobs: &[JobSpec]) -> CampaignReport {
    let mut report = CampaignReport::default();
    // One draw stream per exporter slot; the last slot is the late one.
    let mut rngs: Vec<ChaCha8Rng> = (0..=EXPORTERS_PER_ORG as u64)
        .map(|slot| ChaCha8Rng::seed_from_u64(mix(&[world.seed, index, slot])))
        .collect();
    let mut rounds = ChaCha8Rng::seed_from_u64(mix(&[world.seed, index, u64::MAX]));
    let lease = settings().engine.lease;
    let mut runs = 0u32;
    let mut finished = false;
    for round in 0u64.. {
        if all_committed(world, jobs).await {
            finished = true;
            break;
        }
        let late = rounds.random_bool(0.5);
        let starting = EXPORTERS_PER_ORG as u32 + u32::from(late);
        if runs + starting > world.bound {
            break;
        }
        runs += starting;
        let pause = Duration::from_millis(rounds.random_range(0..60));
        let exporters = rngs.iter_mut().enumerate().filter_map(|(slot, rng)| {
            let run = Run {
                index,
                slot: slot as u64,
                round,
            };
            if slot < EXPORTERS_PER_ORG {
                Some(futures::future::Either::Left(run_exporter(
                    world, run, rng, org, jobs,
                )))
            } else if late {
                // The running exporters stall past their lease (a long pause), and a
                // retried invocation takes their jobs over: they are stale holders now.
                Some(futures::future::Either::Right(async move {
                    tokio::time::sleep(pause).await;
                    world.clock.advance(lease + Duration::from_secs(1));
                    run_exporter(world, run, rng, org, jobs).await
                }))
            } else {
                None
            }
        });
        for r in futures::future::join_all(exporters).await {
            report.add(r);
        }
        if round > 0 {
            report.restarts += u64::from(starting);
        } else if late {
            report.restarts += 1;
        }
        world.clock.advance(lease + Duration::from_secs(1));
    }
    report.max_runs_per_org = runs;
    if !finished {
        report.violations.push(Violation {
            seed: world.seed,
            what: format!(
                "org {}: not every day committed after {runs} runs (bound {}): nothing may loop",
                org.endpoint.org_id, world.bound
            ),
        });
    }
    report
}

/// Which exporter run this is.
#[derive(Debug, Clone, Copy)]
struct Run {
    index: u64,
    slot: u64,
    round: u64,
}

/// One exporter run (a new holder) over the org's days (odd slots in reverse order), behind
/// its own fault plan, sometimes with a short invocation deadline.
async fn run_exporter(
    world: &World,
    run: Run,
    rng: &mut ChaCha8Rng,
    org: &OrgSetup,
    jobs: &[JobSpec],
) -> CampaignReport {
    let mut report = CampaignReport {
        runs: 1,
        ..CampaignReport::default()
    };
    let mut order = jobs.to_vec();
    if run.slot % 2 == 1 {
        order.reverse();
    }
    let faults = Arc::new(
        Faults::new(
            mix(&[world.seed, run.index, run.slot, run.round]),
            rng.random_range(0.0..0.06),
        )
        // A third of the write faults hold the write up to 150 ms: the late exporter
        // (below) may take the job over and commit meanwhile.
        .with_delays(0.35, Duration::from_millis(150)),
    );
    let ledger = Arc::new(StoreLedger::new(FaultyStore::new(
        Arc::clone(&world.store),
        Arc::clone(&faults),
    )));
    let clock: Arc<dyn Clock> = Arc::new(world.clock.clone());
    let ports = Ports {
        ledger: ledger.clone(),
        jobs: ledger,
        sink: Arc::new(FaultySink::new(
            Arc::clone(&world.sink),
            Arc::clone(&faults),
        )),
        clock,
    };
    let mut settings = settings();
    if rng.random_bool(0.25) {
        // A short invocation: stops with a checkpoint at the deadline.
        let budget = Duration::from_millis(rng.random_range(50..1_500));
        settings.engine.deadline = Some(clock::add(world.clock.now(), budget));
    }
    // A fresh process: its own token cache.
    let org = OrgSetup {
        tokens: Default::default(),
        ..org.clone()
    };
    let holder = format!(
        "s{}-o{}-x{}-r{}",
        world.seed, run.index, run.slot, run.round
    );
    let status = match org_exporter(&org, &settings, &ports, &holder) {
        Ok(exporter) => run_org(&exporter, &order, &NoProgress).await.status,
        Err(e) => OrgStatus::Failed {
            reason: e.to_string(),
        },
    };
    report.faults.add(&faults.counts());
    report.commits += faults.commits();
    report.commit_conflicts += faults.commit_conflicts();
    *report.outcomes.entry(outcome_name(&status)).or_default() += 1;
    report
}

/// A short name of how an org run ended (failures by their kind, not their text).
fn outcome_name(status: &OrgStatus) -> String {
    match status {
        OrgStatus::Committed => "committed".into(),
        OrgStatus::UpToDate => "up_to_date".into(),
        OrgStatus::CommittedWithGaps { .. } => "committed_with_gaps".into(),
        OrgStatus::Deferred { .. } => "deferred".into(),
        OrgStatus::AlreadyRunning => "already_running".into(),
        OrgStatus::Failed { reason } => {
            let kind = if reason.contains("lease lost") {
                "lease lost"
            } else if reason.contains("committed this day first") {
                "commit conflict"
            } else if reason.contains("injected-fault") {
                "store or sink fault"
            } else if reason.contains("incomplete export") {
                "incomplete"
            } else {
                "API"
            };
            format!("failed: {kind}")
        }
    }
}

/// Checks the committed output of one org against the simulator's ground truth; returns
/// the number of evaluations the truth holds.
async fn check_org(
    world: &World,
    sim: &genesys_sim::SimHandle,
    org: &OrgSetup,
    jobs: &[JobSpec],
    violations: &mut Vec<Violation>,
) -> u64 {
    let sink: &dyn ExportSink = world.sink.as_ref();
    let mut violation = |what: String| {
        violations.push(Violation {
            seed: world.seed,
            what,
        })
    };
    // When the bound was reached, that is reported already; the job records then say why.
    let finished = all_committed(world, jobs).await;
    let mut evaluations = 0u64;
    for job in jobs {
        let truth: BTreeMap<String, String> = sim
            .ground_truth(
                org.endpoint.org_id.as_str(),
                job.window.from,
                job.window.to,
                genesys_sim::DateField::SubmittedDate,
                SourceFilter::Both,
            )
            .into_iter()
            .map(|t| (t.id, t.json))
            .collect();
        evaluations += truth.len() as u64;
        let day = job.partition().prefix();
        let committed = match read_committed(sink, &job.partition()).await {
            Ok(Some(committed)) => committed,
            Ok(None) => {
                violation(format!("{day}: nothing committed"));
                continue;
            }
            Err(e) => {
                violation(format!("{day}: committed output unreadable: {e}"));
                continue;
            }
        };
        let mut exported = BTreeMap::new();
        for e in committed.evaluations {
            if exported.insert(e.id.clone(), e.evaluation).is_some() {
                violation(format!("{day}: evaluation {} is in the day twice", e.id));
            }
        }
        let missing: Vec<&String> = truth
            .keys()
            .filter(|k| !exported.contains_key(*k))
            .collect();
        let extra: Vec<&String> = exported
            .keys()
            .filter(|k| !truth.contains_key(*k))
            .collect();
        let differ: Vec<&String> = truth
            .iter()
            .filter(|(k, v)| exported.get(*k).is_some_and(|e| e != *v))
            .map(|(k, _)| k)
            .collect();
        if !(missing.is_empty() && extra.is_empty() && differ.is_empty()) {
            violation(format!(
                "{day}: not the ground truth: missing {missing:?}, extra {extra:?}, different bytes {differ:?}"
            ));
        }
        let listed: BTreeSet<&str> = committed
            .manifest
            .parts
            .iter()
            .map(|p| p.key.as_str())
            .collect();
        if listed.len() != committed.manifest.parts.len() {
            violation(format!("{day}: the manifest lists a part twice"));
        }
        if !finished {
            continue;
        }
        match world.jobs.get(job).await {
            Ok(Some(record)) => match record.status {
                JobStatus::Committed {
                    run_id,
                    evaluations,
                    ..
                } if run_id == committed.manifest.run_id
                    && evaluations == committed.manifest.total_records => {}
                status => violation(format!(
                    "{day}: the job record ({status:?}) does not name the committed run {} ({} evaluations)",
                    committed.manifest.run_id, committed.manifest.total_records
                )),
            },
            other => violation(format!("{day}: no job record: {other:?}")),
        }
    }
    if let Err(e) = committed_by_id(sink, jobs).await {
        violation(format!("org {}: {e}", org.endpoint.org_id));
    }
    evaluations
}

/// Wall time of `f`, for reports.
pub async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}
