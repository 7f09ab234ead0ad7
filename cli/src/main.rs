//! `scorecards`: export Genesys Cloud evaluations for many orgs on one machine, against real
//! orgs or the bundled simulator, and benchmark the rate control.

mod bench;
mod chaos;
mod export;
mod fleet;
mod html_report;
mod input;
mod probe;
mod progress;
mod remote;
mod report;
mod tables;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scorecards_shared::domain::InvalidValue;

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
    /// Run the seeded fault campaign against the simulator: faults in the API, the job
    /// store, the rate ledger and the output; checks every day is committed exactly once.
    Chaos(chaos::ChaosArgs),
    /// Onboard, list and remove orgs of a deployed stack.
    #[command(subcommand)]
    Orgs(remote::OrgsCommand),
    /// Start an export on a deployed stack (invokes its dispatch function; `--remote` is
    /// accepted and implied).
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
    // Output piped into a reader that stops early (`| head`) ends the process quietly, as
    // for any command-line tool, instead of a panic on the closed pipe.
    // SAFETY: called first, before any other thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The AWS SDK's own warnings (e.g. no instance metadata off EC2) are noise here.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Bad input, whatever the command, is an `InvalidValue` somewhere in the error's chain
    // (exit 2, found before the first request); every other error exits 1.
    let result = match Cli::parse().command {
        Command::Export(args) => export::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Probe(args) => probe::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
        Command::Tables(args) => tables::run(args).await,
        Command::Report(args) => html_report::run(args).await,
        Command::Orgs(command) => remote::orgs(command).await,
        Command::Run(args) => remote::run(args).await,
        Command::Status { stack, job_id } => remote::status(stack, job_id).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code_of(&e))
        }
    }
}

/// 2 for bad input (an [`InvalidValue`] anywhere in the chain), else 1.
fn exit_code_of(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<InvalidValue>()) {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bad_input_exits_2() {
        let bad = anyhow::Error::from(InvalidValue::new("--out", "a file"));
        assert_eq!(exit_code_of(&bad), 2);
        assert_eq!(exit_code_of(&bad.context("export")), 2);
        assert_eq!(exit_code_of(&anyhow::anyhow!("the store failed")), 1);
    }
}
