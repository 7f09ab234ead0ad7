//! `scorecards`: export Genesys Cloud evaluations for many orgs on one machine, against real
//! orgs or the bundled simulator, and benchmark the rate control.

mod bench;
mod export;
mod html_report;
mod probe;
mod remote;
mod report;
mod tables;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "scorecards",
    version,
    about = "Export Genesys Cloud quality evaluations (scorecards) for many orgs, paced to each org's API quota"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Export every org's evaluations for a window into a local directory.
    Export(export::ExportArgs),
    /// Tell which answer each org gives to the undocumented API behaviours (read-only).
    Probe(probe::ProbeArgs),
    /// (Re)write the analytics tables of every committed day in a local output directory.
    Tables(tables::TablesArgs),
    /// Write a self-contained HTML report (inline SVG) from the analytics tables.
    Report(html_report::ReportArgs),
    /// Compare this engine with naive strategies against the simulator.
    Bench(bench::BenchArgs),
    /// Onboard, list and remove orgs of a deployed stack.
    #[command(subcommand)]
    Orgs(remote::OrgsCommand),
    /// Start an export on a deployed stack (invokes its dispatch function).
    Run(remote::RunArgs),
    /// Show the jobs of a dispatch (its job_id) on a deployed stack.
    Status {
        #[command(flatten)]
        stack: remote::Stack,
        /// The job_id a dispatch answered with.
        job_id: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The AWS SDK's own warnings (e.g. no instance metadata off EC2) are noise here.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Export, probe and bench fail before any work on bad input (exit 2); the stack commands fail
    // on what AWS answers (exit 1).
    let (result, failure) = match Cli::parse().command {
        Command::Export(args) => (export::run(args).await, 2),
        Command::Bench(args) => (bench::run(args).await, 2),
        Command::Tables(args) => (tables::run(args).await, 2),
        Command::Report(args) => (html_report::run(args).await, 2),
        Command::Probe(args) => (probe::run(args).await, 2),
        Command::Orgs(command) => (remote::orgs(command).await, 1),
        Command::Run(args) => (remote::run(args).await, 1),
        Command::Status { stack, job_id } => (remote::status(stack, job_id).await, 1),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let bad_input = e
                .downcast_ref::<scorecards_shared::domain::InvalidValue>()
                .is_some();
            ExitCode::from(if bad_input { 2 } else { failure })
        }
    }
}
