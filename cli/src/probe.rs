//! `scorecards probe`: which answer each org gives to the undocumented API behaviours
//! (U1–U12), from a few read-only requests.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use scorecards_shared::adapters::{ledger::StoreLedger, memory::MemoryStore};
use scorecards_shared::clock::{Clock, SystemClock};
use scorecards_shared::domain::{InvalidValue, OrgId};
use scorecards_shared::ports::RateLedger;
use scorecards_shared::probe::{Answer, ProbeReport, ProbeSettings, probe_org};
use scorecards_shared::runner::RunSettings;

use crate::export::{OrgSources, org_setups};

/// Options of `scorecards probe`.
#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// Start the bundled Genesys Cloud simulator in-process and probe its orgs.
    #[arg(long, conflicts_with = "orgs_file")]
    simulate: bool,
    #[arg(long, default_value = "demo", requires = "simulate", help = crate::input::scenario_help())]
    scenario: String,
    /// Orgs file for real orgs (see orgs.example.toml). `--orgs` is accepted too.
    #[arg(long, value_name = "FILE", alias = "orgs")]
    orgs_file: Option<PathBuf>,
    /// Probe only this org (default: every org of the file or scenario).
    #[arg(long, value_name = "ID")]
    org: Option<String>,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
    /// Most requests per org (token requests included).
    #[arg(long, default_value_t = 60, value_name = "N")]
    max_requests: u64,
    /// State database whose rate ledger to share with running exports (default: none).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

/// Probes the orgs; exit code 1 when any org's probe stopped on an error, else 0.
pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    if args.max_requests == 0 {
        return Err(InvalidValue::new("--max-requests", "must be at least 1").into());
    }
    let wanted = match &args.org {
        Some(id) => Some(
            id.parse::<OrgId>()
                .map_err(|e| InvalidValue::new("--org", e.problem))?,
        ),
        None => None,
    };
    let state = match &args.state {
        Some(path) => Some(crate::input::open_state("--state", path)?),
        None => None,
    };
    let OrgSources {
        mut orgs,
        sim: _sim,
        ..
    } = org_setups(
        args.simulate,
        &args.scenario,
        args.orgs_file.as_deref(),
        "probe",
    )
    .await?;
    if let Some(id) = &wanted {
        orgs.retain(|o| &o.endpoint.org_id == id);
        if orgs.is_empty() {
            return Err(InvalidValue::new(
                "--org",
                format!("{id} is not one of the orgs to probe"),
            )
            .into());
        }
    }
    let ledger: Arc<dyn RateLedger> = match state {
        Some(store) => Arc::new(StoreLedger::new(store)),
        None => Arc::new(StoreLedger::new(MemoryStore::new())),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let settings = ProbeSettings {
        max_requests: args.max_requests,
        ..ProbeSettings::default()
    };
    let holder = format!("probe-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut reports = Vec::new();
    for org in &orgs {
        eprintln!("probing {} ({})", org.endpoint.org_id, org.endpoint.region);
        let report = probe_org(
            org,
            &RunSettings::default(),
            &ledger,
            &clock,
            &holder,
            settings,
        )
        .await;
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            print!("{}", table(report));
        }
    }
    let failed = reports.iter().any(|r| r.error.is_some());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One org's findings: a row per unknown (answer, what was seen, setting), its evidence and
/// consequence below it; then the requests sent.
fn table(r: &ProbeReport) -> String {
    let mut out = format!("org {} ({})\n", r.org_id, r.region);
    if let Some(e) = &r.error {
        out += &format!("stopped: {e}\n");
    }
    out += &format!("{:<4} {:<6} {}\n", "", "answer", "observed");
    for f in &r.findings {
        let answer = match f.answer {
            Answer::A => "A",
            Answer::B => "B",
            Answer::NotObserved => "?",
        };
        out += &format!("{:<4} {:<6} {}\n", f.unknown, answer, f.observed);
        if !f.evidence.request.is_empty() {
            out += &format!(
                "{:11}evidence:    {}\n",
                "",
                short(&f.evidence.request, 110)
            );
            out += &format!(
                "{:11}             {}\n",
                "",
                short(&f.evidence.excerpt, 110)
            );
        }
        out += &format!("{:11}consequence: {}\n", "", f.consequence);
        out += &format!("{:11}setting:     {}\n", "", f.setting);
    }
    out += &format!("requests: {}\n\n", r.requests);
    out
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}
