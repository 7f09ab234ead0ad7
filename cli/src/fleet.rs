//! `scorecards bench --fleet`: the AWS flow (dispatch → one message per org → export
//! invocations) run in this process against the simulator, to see how a fleet of orgs
//! shares a limited number of export invocations. Prints figures; asserts nothing.
//!
//! What is simulated and what is real:
//! - the handlers are the functions' own: [`dispatch_json`] and [`handle_message`], with
//!   the stack's settings ([`RunSettings::default`], [`DispatchLimits`] but for the
//!   stagger, see [`FleetConfig::stagger`]);
//! - the queue is in memory: a message becomes visible after its delay, in whole seconds
//!   like SQS's `DelaySeconds`, and visible messages are handed out oldest first;
//! - "Lambda" runs at most `concurrency` invocations at once on as many warm instances
//!   (each with its own credential cache and so its own access tokens), gives each
//!   invocation a deadline `invocation` after it starts and stops it there; a message whose
//!   invocation failed or was stopped is delivered again after the visibility timeout;
//! - the state (rate ledger, job store, org work items, dispatch records) is the ledger
//!   over the in-memory conditional store, behind a counter of its operations (each one
//!   would be a DynamoDB call); the output goes to a local directory;
//! - time is real: the simulator enforces its windows in real time and the pacing waits
//!   for real. The simulator's quota is faster than Genesys's (20 requests/s by default
//!   against 300 per minute), so the whole flow runs faster than on AWS.
//!
//! The simulator serves one data period for all its orgs, so the backfill org lives in a
//! simulator of its own whose period is the backfill's days; the one-day orgs share one
//! whose period is the day before today. Both end at the start of today (UTC).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use genesys_sim::{Scenario, SimHandle};
use jiff::Timestamp;
use scorecards_shared::adapters::ledger::StoreLedger;
use scorecards_shared::adapters::local_dir::LocalDirSink;
use scorecards_shared::adapters::memory::MemoryStore;
use scorecards_shared::clock::{Clock, SystemClock};
use scorecards_shared::config::OrgSetup;
use scorecards_shared::domain::{JobSpec, OrgId};
use scorecards_shared::handlers::dispatch::{DispatchEnv, DispatchLimits, dispatch_json};
use scorecards_shared::handlers::export::{ExportEnv, Handled, handle_message};
use scorecards_shared::onboarding::dispatch_status;
use scorecards_shared::ports::{
    ConditionalStore, CredentialError, CredentialSource, ExportSink, JobMessage, JobQueue,
    JobStatus, LearnedLimit, StoreError, Versioned,
};
use scorecards_shared::runner::RunSettings;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::bench::{equals_truth, sim_orgs};

/// The shape of a fleet run.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Orgs in all, the backfill org included when `backfill_days` > 0.
    pub orgs: usize,
    /// Days the backfill org asks for (0: no backfill org, every org exports one day).
    pub backfill_days: u32,
    /// Evaluations per org and day.
    pub evaluations_per_day: usize,
    /// Requests allowed per token and window.
    pub allowed: u32,
    /// Window length, milliseconds.
    pub window_ms: u64,
    /// Export invocations at once (the function's maximum concurrency).
    pub concurrency: usize,
    /// Time limit of one invocation (the function's timeout).
    pub invocation: Duration,
    /// Delay dispatch adds per message (the stack's 200 ms, scaled by default to the
    /// simulator's faster quota: see `--stagger-ms`).
    pub stagger: Duration,
    /// Seed of the simulated data.
    pub seed: u64,
    /// Simulated request latency, milliseconds (`None`: the simulator's default, 10–40 ms).
    pub latency_ms: Option<(u64, u64)>,
}

/// What one fleet run measured.
#[derive(Debug, Clone)]
pub struct FleetFigures {
    /// From the dispatch request to the last day committed.
    pub wall: Duration,
    /// The packed ideal (see [`packed_ideal`]).
    pub ideal: Duration,
    /// The longest single org at its rate.
    pub longest_org: Duration,
    /// Orgs dispatched.
    pub orgs: usize,
    /// Org-days dispatched.
    pub org_days: usize,
    /// Seconds from the dispatch request to each one-day org's commit.
    pub one_day_completion: Vec<f64>,
    /// Seconds from the dispatch request to the backfill org's last commit.
    pub backfill_completion: Option<f64>,
    /// API requests the simulator received (token requests excluded).
    pub api_requests: u64,
    /// Token requests the simulator received.
    pub token_requests: u64,
    /// 429 responses.
    pub responses_429: u64,
    /// Requests that arrived before a Retry-After deadline the simulator had given.
    pub quota_violations: u64,
    /// Most requests of one org in one window, over all orgs.
    pub max_in_window: u64,
    /// Messages sent to the queue (dispatch and continuations).
    pub messages_sent: u64,
    /// Continuations among them.
    pub continuations: u64,
    /// Invocations (messages received).
    pub invocations: u64,
    /// Invocations that found the org's chain already running.
    pub already_running: u64,
    /// Invocations that failed or ran out of time (their message came back).
    pub redelivered: u64,
    /// Invocation time summed over every invocation (slot-seconds used).
    pub busy: Duration,
    /// Store operations by item kind.
    pub store_ops: OpCounts,
    /// Days not committed at the end (their last status).
    pub not_committed: Vec<String>,
    /// Orgs whose committed output equals the simulator's ground truth.
    pub orgs_equal_truth: usize,
}

impl FleetFigures {
    /// Packed ideal over wall time.
    pub fn efficiency(&self) -> f64 {
        self.ideal.as_secs_f64() / self.wall.as_secs_f64().max(f64::EPSILON)
    }

    /// Whether every org's output equals the ground truth and every day committed.
    pub fn output_equals_truth(&self) -> bool {
        self.orgs_equal_truth == self.orgs && self.not_committed.is_empty()
    }
}

/// Store operations (each a DynamoDB call on AWS), by the kind of item.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpCounts {
    /// Rate ledger (`bucket#…`): holders' renewals, shared Retry-After deadlines.
    pub rate: u64,
    /// Conditional writes among `rate` (a renewal is one read and one write).
    pub rate_writes: u64,
    /// Org work items (`work#…`): lease, pending days.
    pub work: u64,
    /// Job records (`job#…`): day leases, checkpoints, status.
    pub jobs: u64,
    /// Everything else: registry, dispatch and idempotency records.
    pub other: u64,
}

impl OpCounts {
    fn total(&self) -> u64 {
        self.rate + self.work + self.jobs + self.other
    }
}

/// A [`ConditionalStore`] that counts every `get` and `put_if` by the key's kind. Clones
/// share the items and the counts (one table, many clients).
#[derive(Clone)]
struct CountingStore {
    inner: Arc<MemoryStore>,
    counts: Arc<Mutex<OpCounts>>,
}

impl CountingStore {
    fn count(&self, key: &str) {
        let mut c = self.counts.lock().expect("counter lock");
        match key.split('#').next() {
            Some("bucket") => c.rate += 1,
            Some("work") => c.work += 1,
            Some("job") => c.jobs += 1,
            _ => c.other += 1,
        }
    }
}

#[async_trait]
impl ConditionalStore for CountingStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.count(key);
        self.inner.get(key).await
    }

    async fn put_if(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
        expires_at: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        self.count(key);
        if key.starts_with("bucket#") {
            self.counts.lock().expect("counter lock").rate_writes += 1;
        }
        self.inner.put_if(key, expected, value, expires_at).await
    }
}

/// The in-memory queue: (visible at, sequence) → body.
#[derive(Default)]
struct SimQueue {
    messages: Mutex<BinaryHeap<Reverse<(Instant, u64, String)>>>,
    seq: AtomicU64,
    sent: AtomicU64,
    continuations: AtomicU64,
    arrived: Notify,
}

impl SimQueue {
    fn push(&self, body: String, visible_at: Instant) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.messages
            .lock()
            .expect("queue lock")
            .push(Reverse((visible_at, seq, body)));
        self.arrived.notify_one();
    }

    /// The oldest visible message, if any, else when the next one becomes visible.
    fn pop(&self, now: Instant) -> Result<String, Option<Instant>> {
        let mut messages = self.messages.lock().expect("queue lock");
        match messages.peek() {
            Some(Reverse((at, _, _))) if *at <= now => Ok(messages.pop().expect("peeked").0.2),
            Some(Reverse((at, _, _))) => Err(Some(*at)),
            None => Err(None),
        }
    }
}

#[async_trait]
impl JobQueue for SimQueue {
    async fn send(&self, message: &JobMessage, delay: Duration) -> Result<(), StoreError> {
        let body = serde_json::to_string(message).map_err(|e| StoreError::new("queue", e))?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        if message.hop > 0 {
            self.continuations.fetch_add(1, Ordering::Relaxed);
        }
        // Whole seconds, at most 900, as SQS's DelaySeconds.
        let delay = Duration::from_secs(delay.as_secs().min(900));
        self.push(body, Instant::now() + delay);
        Ok(())
    }
}

/// One warm instance's credentials: the simulator's orgs, each read once and cached with
/// its own access token until forgotten.
struct SimCredentials {
    orgs: Arc<HashMap<OrgId, OrgSetup>>,
    cached: Mutex<HashMap<OrgId, OrgSetup>>,
}

#[async_trait]
impl CredentialSource for SimCredentials {
    async fn org(&self, org_id: &OrgId) -> Result<OrgSetup, CredentialError> {
        let mut cached = self.cached.lock().expect("credentials lock");
        if let Some(setup) = cached.get(org_id) {
            return Ok(setup.clone());
        }
        let setup = self
            .orgs
            .get(org_id)
            .ok_or_else(|| CredentialError::Unknown(org_id.clone()))?;
        let fresh = OrgSetup {
            tokens: Default::default(),
            ..setup.clone()
        };
        cached.insert(org_id.clone(), fresh.clone());
        Ok(fresh)
    }

    async fn forget(&self, org_id: &OrgId) {
        self.cached.lock().expect("credentials lock").remove(org_id);
    }
}

fn rate_per_sec(limit: LearnedLimit) -> f64 {
    f64::from(limit.allowed) * 1000.0 / limit.window_ms.max(1) as f64
}

/// The shortest wall time any scheduler could reach, a lower bound: each org needs its
/// unavoidable requests ÷ its rate (`durations`), and its days are one chain (one
/// invocation at a time per org), so no schedule beats the longest org; and `concurrency`
/// invocations at once can do no more than `concurrency` org-seconds per second, so no
/// schedule beats the sum ÷ `concurrency`. Packing the orgs on `concurrency` slots (a
/// longest-first greedy packing ends within max + sum ÷ slots) finishes at the larger of
/// the two when no org dominates, and at the longest org when one does; the ideal is that
/// larger value. It leaves out what no schedule can avoid either (latency, the dispatch's
/// stagger), so an efficiency of 1.0 is out of reach.
pub fn packed_ideal(durations: &[Duration], concurrency: usize) -> Duration {
    let longest = durations.iter().copied().max().unwrap_or_default();
    let sum: Duration = durations.iter().sum();
    longest.max(sum / concurrency.max(1) as u32)
}

/// Starts the simulators for `config`: (backfill org's, one-day orgs').
async fn start_sims(config: &FleetConfig) -> anyhow::Result<(Option<SimHandle>, SimHandle)> {
    let shape = |orgs: usize, days: u32, seed: u64| {
        let mut s = Scenario::bench(
            orgs,
            config.evaluations_per_day * days as usize,
            config.allowed,
            config.window_ms,
        )
        .with_seed(seed);
        s.days_before = days;
        match config.latency_ms {
            Some((min_ms, max_ms)) => {
                s.with_latency(genesys_sim::LatencySpec::uniform(min_ms, max_ms))
            }
            None => s,
        }
    };
    let one_day_orgs = config.orgs - usize::from(config.backfill_days > 0);
    let backfill = if config.backfill_days > 0 {
        Some(genesys_sim::start(shape(1, config.backfill_days, config.seed + 1)).await?)
    } else {
        None
    };
    let fleet = genesys_sim::start(shape(one_day_orgs, 1, config.seed)).await?;
    Ok((backfill, fleet))
}

/// Runs one fleet: onboards the orgs, dispatches the backfill (first) and the one-day orgs
/// on demand, runs export invocations until the queue is empty, and measures.
pub async fn run_fleet(config: &FleetConfig) -> anyhow::Result<FleetFigures> {
    anyhow::ensure!(
        config.orgs > usize::from(config.backfill_days > 0),
        "--orgs must leave at least one one-day org"
    );
    anyhow::ensure!(
        config.invocation > scorecards_shared::handlers::export::END_MARGIN,
        "--invocation-secs must exceed the export's end margin ({} s)",
        scorecards_shared::handlers::export::END_MARGIN.as_secs()
    );
    let (backfill_sim, fleet_sim) = start_sims(config).await?;
    let sims: Vec<&SimHandle> = backfill_sim.iter().chain([&fleet_sim]).collect();
    let mut setups: Vec<(OrgSetup, &SimHandle)> = Vec::new();
    for sim in &sims {
        for setup in sim_orgs(sim, true)? {
            setups.push((setup, *sim));
        }
    }
    let orgs: Arc<HashMap<OrgId, OrgSetup>> = Arc::new(
        setups
            .iter()
            .map(|(s, _)| (s.endpoint.org_id.clone(), s.clone()))
            .collect(),
    );

    let counts = Arc::new(Mutex::new(OpCounts::default()));
    let table = CountingStore {
        inner: Arc::new(MemoryStore::new()),
        counts: Arc::clone(&counts),
    };
    let store = StoreLedger::new(table.clone());
    let ids: Vec<OrgId> = orgs.keys().cloned().collect();
    store.register_orgs(&ids).await?;
    let out = tempfile::tempdir()?;
    let sink: Arc<dyn ExportSink> = Arc::new(LocalDirSink::new(out.path()));
    let queue = Arc::new(SimQueue::default());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Each warm instance has its own clients over the one table (what a ledger remembers
    // stays in its instance).
    let instance = || {
        let ledger = Arc::new(StoreLedger::new(table.clone()));
        ExportEnv {
            ledger: ledger.clone(),
            jobs: ledger,
            sink: Arc::clone(&sink),
            queue: queue.clone(),
            credentials: Arc::new(SimCredentials {
                orgs: Arc::clone(&orgs),
                cached: Mutex::new(HashMap::new()),
            }),
            clock: Arc::clone(&clock),
            settings: RunSettings::default(),
        }
    };
    let dispatch = DispatchEnv {
        ledger: store.clone(),
        queue: queue.clone(),
        clock: Arc::clone(&clock),
        limits: DispatchLimits {
            stagger: config.stagger,
            ..DispatchLimits::default()
        },
    };
    // Ops of onboarding are not the flow's.
    *counts.lock().expect("counter lock") = OpCounts::default();

    // On demand: the backfill first (the worst case for the others: it is ahead of them
    // in the queue), then one day for every other org.
    let started_at = Timestamp::now();
    let started = Instant::now();
    let mut requests = Vec::new();
    if let Some(sim) = &backfill_sim {
        let (from, to) = sim.period();
        requests.push(serde_json::json!({
            "orgs": [sim.orgs()[0].org_id],
            "from": from.to_string(),
            "to": to.to_string(),
            "idempotency_key": "fleet-backfill",
        }));
    }
    let (from, to) = fleet_sim.period();
    requests.push(serde_json::json!({
        "orgs": fleet_sim.orgs().iter().map(|o| o.org_id.clone()).collect::<Vec<_>>(),
        "from": from.to_string(),
        "to": to.to_string(),
        "idempotency_key": "fleet-one-day",
    }));
    let mut job_ids = Vec::new();
    for request in requests {
        job_ids.push(dispatch_json(&dispatch, request).await?.job_id);
    }

    // Lambda: warm instances, at most `concurrency` invocations at once.
    let mut idle: Vec<Arc<ExportEnv>> = (0..config.concurrency.max(1))
        .map(|_| Arc::new(instance()))
        .collect();
    let mut running = tokio::task::JoinSet::new();
    let (mut invocations, mut already_running, mut redelivered) = (0u64, 0u64, 0u64);
    let mut busy = Duration::ZERO;
    loop {
        let mut next_visible = None;
        while !idle.is_empty() {
            match queue.pop(Instant::now()) {
                Ok(body) => {
                    let env = idle.pop().expect("an idle instance");
                    invocations += 1;
                    let limit = config.invocation;
                    running.spawn(async move {
                        let holder = uuid::Uuid::new_v4().to_string();
                        let received = Instant::now();
                        let deadline = scorecards_shared::clock::add(Timestamp::now(), limit);
                        let handled = tokio::time::timeout(
                            limit,
                            handle_message(&env, &body, &holder, deadline),
                        )
                        .await;
                        (env, body, received, handled.ok().map(|h| h.ok()))
                    });
                }
                Err(at) => {
                    next_visible = at;
                    break;
                }
            }
        }
        // Nothing runs (so every instance was idle and found the queue empty): done.
        if running.is_empty() && next_visible.is_none() {
            break;
        }
        let wake = next_visible.filter(|_| !idle.is_empty());
        tokio::select! {
            Some(done) = running.join_next(), if !running.is_empty() => {
                let (env, body, received, handled) = done?;
                idle.push(env);
                busy += received.elapsed();
                match handled {
                    Some(Some(Handled::AlreadyRunning)) => already_running += 1,
                    Some(Some(_)) => {}
                    // Failed (redelivered by SQS) or stopped at the time limit (the
                    // message comes back after its visibility timeout).
                    _ => {
                        redelivered += 1;
                        queue.push(body, received + config.invocation + Duration::from_secs(5));
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))), if wake.is_some() => {}
            _ = queue.arrived.notified() => {}
        }
    }
    let wall = started.elapsed();

    // What became of every day, per org.
    let mut days_of: BTreeMap<OrgId, Vec<(JobSpec, Option<Timestamp>)>> = BTreeMap::new();
    let mut not_committed = Vec::new();
    for job_id in &job_ids {
        for day in dispatch_status(&store, job_id).await?.unwrap_or_default() {
            let spec = day.spec;
            let committed_at = match day.record.map(|r| r.status) {
                Some(
                    JobStatus::Committed { committed_at, .. }
                    | JobStatus::CommittedWithGaps { committed_at, .. },
                ) => Some(committed_at),
                other => {
                    not_committed.push(format!("{} {}: {other:?}", spec.org_id, spec.day));
                    None
                }
            };
            days_of
                .entry(spec.org_id.clone())
                .or_default()
                .push((spec, committed_at));
        }
    }
    let since_start = |t: Timestamp| t.duration_since(started_at).as_secs_f64();
    let backfill_org = backfill_sim
        .as_ref()
        .map(|s| s.orgs()[0].org_id.parse::<OrgId>())
        .transpose()?;
    let mut one_day_completion = Vec::new();
    let mut backfill_completion = None;
    let mut orgs_equal_truth = 0;
    for (setup, sim) in &setups {
        let org_id = &setup.endpoint.org_id;
        let days = days_of.get(org_id).cloned().unwrap_or_default();
        let done = days.iter().filter_map(|(_, at)| *at).max().map(since_start);
        if Some(org_id) == backfill_org.as_ref() {
            backfill_completion = done;
        } else if let Some(done) = done {
            one_day_completion.push(done);
        }
        let jobs: Vec<JobSpec> = days.into_iter().map(|(spec, _)| spec).collect();
        if equals_truth(sim, sink.as_ref(), setup, &jobs).await? {
            orgs_equal_truth += 1;
        }
    }
    one_day_completion.sort_by(f64::total_cmp);

    // Requests as the simulators saw them; each org's unavoidable ones at its rate.
    let mut durations = Vec::new();
    let (mut api_requests, mut token_requests, mut responses_429) = (0, 0, 0);
    let (mut quota_violations, mut max_in_window) = (0, 0);
    for sim in &sims {
        let stats = sim.stats();
        for info in sim.orgs() {
            let o = stats.org(&info.org_id);
            let tokens = o.endpoint("token").requests;
            token_requests += tokens;
            api_requests += o.totals.requests - tokens;
            responses_429 += o.totals.responses_429;
            quota_violations += o.quota_violations();
            max_in_window = max_in_window.max(o.totals.max_requests_in_any_window);
            let needed = o
                .totals
                .requests
                .saturating_sub(o.totals.responses_429 + o.totals.faults_injected);
            let rate = rate_per_sec(LearnedLimit {
                allowed: info.token_limit.allowed,
                window_ms: info.token_limit.window_ms,
            });
            durations.push(Duration::from_secs_f64(needed as f64 / rate));
        }
    }
    for sim in sims {
        sim.shutdown();
    }
    let store_ops = *counts.lock().expect("counter lock");
    Ok(FleetFigures {
        wall,
        ideal: packed_ideal(&durations, config.concurrency),
        longest_org: durations.iter().copied().max().unwrap_or_default(),
        orgs: setups.len(),
        org_days: days_of.values().map(Vec::len).sum(),
        one_day_completion,
        backfill_completion,
        api_requests,
        token_requests,
        responses_429,
        quota_violations,
        max_in_window,
        messages_sent: queue.sent.load(Ordering::Relaxed),
        continuations: queue.continuations.load(Ordering::Relaxed),
        invocations,
        already_running,
        redelivered,
        busy,
        store_ops,
        not_committed,
        orgs_equal_truth,
    })
}

/// The `p`-quantile (0–1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Prints one run's figures.
pub fn print(title: &str, config: &FleetConfig, f: &FleetFigures) {
    let per = |n: u64, d: u64| n as f64 / d.max(1) as f64;
    println!();
    println!("{title}");
    println!(
        "  wall {:.1} s, packed ideal {:.1} s (longest org {:.1} s, {} orgs on {} invocations): efficiency {:.3}",
        f.wall.as_secs_f64(),
        f.ideal.as_secs_f64(),
        f.longest_org.as_secs_f64(),
        f.orgs,
        config.concurrency,
        f.efficiency(),
    );
    println!(
        "  one-day orgs ({}): committed p50 {:.1} s, max {:.1} s after the dispatch{}",
        f.one_day_completion.len(),
        quantile(&f.one_day_completion, 0.5),
        f.one_day_completion.last().copied().unwrap_or(f64::NAN),
        match f.backfill_completion {
            Some(t) => format!("; backfill org ({} days): {t:.1} s", config.backfill_days),
            None => String::new(),
        },
    );
    println!(
        "  queue: {} messages for {} org-days ({:.3} per org-day; {} continuations), {} invocations ({} found the org's chain running, {} redelivered)",
        f.messages_sent,
        f.org_days,
        per(f.messages_sent, f.org_days as u64),
        f.continuations,
        f.invocations,
        f.already_running,
        f.redelivered,
    );
    println!(
        "  invocations busy {:.1} s in all ({:.0} % of {} slots x wall), {:.2} s per invocation",
        f.busy.as_secs_f64(),
        100.0 * f.busy.as_secs_f64() / (config.concurrency as f64 * f.wall.as_secs_f64()),
        config.concurrency,
        f.busy.as_secs_f64() / f.invocations.max(1) as f64,
    );
    let ops = f.store_ops;
    println!(
        "  requests: {} API + {} token; 429s {}; quota violations {}; most in one window {}/{}",
        f.api_requests,
        f.token_requests,
        f.responses_429,
        f.quota_violations,
        f.max_in_window,
        config.allowed,
    );
    println!(
        "  state operations per API request: rate ledger {:.4} ({} ops, {:.4} writes), all state {:.4} (org work {}, jobs {}, other {})",
        per(ops.rate, f.api_requests),
        ops.rate,
        per(ops.rate_writes, f.api_requests),
        per(ops.total(), f.api_requests),
        ops.work,
        ops.jobs,
        ops.other,
    );
    println!(
        "  output = ground truth: {} ({}/{} orgs{})",
        if f.output_equals_truth() { "yes" } else { "NO" },
        f.orgs_equal_truth,
        f.orgs,
        if f.not_committed.is_empty() {
            String::new()
        } else {
            format!(
                "; {} days not committed, e.g. {}",
                f.not_committed.len(),
                f.not_committed[0]
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ideal_is_the_longest_org_or_the_work_spread_on_every_slot() {
        let s = Duration::from_secs;
        assert_eq!(packed_ideal(&[s(60), s(1), s(1)], 2), s(60));
        assert_eq!(packed_ideal(&[s(4); 10], 2), s(20));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
    }

    /// The fleet path end to end on a tiny fleet: every day of every org committed once,
    /// the output equal to the ground truth, one message per org and no redelivery.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_fleet_lands_the_ground_truth() {
        let config = FleetConfig {
            orgs: 4,
            backfill_days: 3,
            evaluations_per_day: 15,
            allowed: 1_000,
            window_ms: 1_000,
            concurrency: 2,
            invocation: Duration::from_secs(60),
            stagger: Duration::ZERO,
            seed: 5,
            latency_ms: Some((0, 0)),
        };
        let f = run_fleet(&config).await.unwrap();
        assert!(f.output_equals_truth(), "{:?}", f.not_committed);
        assert_eq!((f.orgs, f.org_days), (4, 3 + 3));
        assert_eq!(f.one_day_completion.len(), 3);
        assert!(f.backfill_completion.is_some());
        assert_eq!((f.redelivered, f.responses_429), (0, 0));
        assert_eq!(f.messages_sent - f.continuations, 4, "one message per org");
    }
}
