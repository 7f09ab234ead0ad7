//! `scorecards report`: a self-contained HTML page from the analytics tables of a local
//! output directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use jiff::civil::Date;
use scorecards_tables::report::{Selection, render};

/// Options of `scorecards report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The HTML file to write.
    #[arg(long, default_value = "report.html")]
    out: PathBuf,
    /// Output directory of `scorecards export` (with its tables/).
    #[arg(long, default_value = "./exports")]
    dir: PathBuf,
    /// Only these org ids (comma-separated; default every org).
    #[arg(long, value_delimiter = ',')]
    orgs: Vec<String>,
    /// First day, UTC (inclusive).
    #[arg(long)]
    from: Option<Date>,
    /// Last day, UTC (inclusive).
    #[arg(long)]
    to: Option<Date>,
    /// Date field of the exported days: submittedDate, releaseDate, createdDate, conversationDate.
    #[arg(long, default_value = "submittedDate")]
    date_field: String,
    /// Source selection of the exported days: both, human or auto.
    #[arg(long, default_value = "both")]
    source: String,
}

/// Runs `scorecards report`.
pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let selection = Selection {
        orgs: args.orgs,
        from: args.from,
        to: args.to,
        date_field: Some(args.date_field),
        source: Some(args.source),
    };
    let html = render(&args.dir, &selection).map_err(anyhow::Error::msg)?;
    std::fs::write(&args.out, html).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
