//! `scorecards chaos`: the seeded fault campaign (`scorecards_shared::chaos`) against the
//! simulator. Prints its figures; exit 1 when any invariant was broken.

use std::process::ExitCode;

use clap::Args;
use scorecards_shared::chaos::{CampaignConfig, run_campaign, timed};

/// Options of `scorecards chaos`.
#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// Seeds to run.
    #[arg(long, default_value_t = 200)]
    seeds: u64,
    /// The first seed (seeds run are S, S+1, …); rerun one seed with `--seeds 1 --first-seed S`.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Seeds run at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Exporter runs allowed per org before the campaign calls it a loop.
    #[arg(long, default_value_t = CampaignConfig::default().max_attempts)]
    max_runs: u32,
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let config = CampaignConfig {
        first_seed: args.first_seed,
        seeds: args.seeds,
        parallel: args.parallel,
        max_attempts: args.max_runs,
    };
    eprintln!(
        "fault campaign: seeds {}..{}, {} at once",
        config.first_seed,
        config.first_seed + config.seeds.saturating_sub(1),
        config.parallel
    );
    let (r, elapsed) = timed(run_campaign(&config)).await;
    println!("seeds run            {}", r.seeds);
    println!(
        "orgs, days, evals    {} orgs, {} days, {} evaluations",
        r.orgs, r.jobs, r.evaluations
    );
    println!(
        "faults injected      {} in the job store, ledger and sink:",
        r.faults.total()
    );
    for (kind, n) in r.faults.iter() {
        if n > 0 {
            println!("  {:<24} {n}", kind.name());
        }
    }
    println!("API faults (sim)     {}", r.api_faults);
    println!(
        "exporter runs        {} ({} restarts; at most {} runs for one org)",
        r.runs, r.restarts, r.max_runs_per_org
    );
    println!("run outcomes:");
    for (outcome, n) in &r.outcomes {
        println!("  {outcome:<24} {n}");
    }
    println!(
        "commits              {} manifests written, {} refused (another holder first)",
        r.commits, r.commit_conflicts
    );
    println!("violations           {}", r.violations.len());
    for v in &r.violations {
        println!("  {v}");
    }
    println!("wall time            {:.1} s", elapsed.as_secs_f64());
    Ok(if r.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
