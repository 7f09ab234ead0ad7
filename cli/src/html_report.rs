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
    /// The org (one: a report never mixes customers; may be left out when the folder
    /// holds one org's tables).
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

/// Runs `scorecards report`. Bad input (exit 2, naming the flag) before anything is read:
/// a folder without tables, an org without tables there, more than one org (a report never
/// mixes customers), an unknown date field or source, `--from` after `--to`.
pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let tables = args.dir.join("tables").join("evaluations");
    if !tables.is_dir() {
        return Err(crate::input::bad(
            "--dir",
            format!(
                "{} holds no tables: give the output folder of `scorecards export` (or run `scorecards tables --out DIR` first)",
                args.dir.display()
            ),
        ));
    }
    let with_tables: Vec<String> = std::fs::read_dir(&tables)?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("org_id=")
                .map(str::to_owned)
        })
        .collect();
    let org = match args.orgs.as_slice() {
        [] if with_tables.len() == 1 => with_tables[0].clone(),
        [] => {
            return Err(crate::input::bad(
                "--orgs",
                format!(
                    "{} holds the tables of {} orgs: choose one (a report covers one org, never mixing customers)",
                    args.dir.display(),
                    with_tables.len()
                ),
            ));
        }
        [one] => one.clone(),
        _ => {
            return Err(crate::input::bad(
                "--orgs",
                "give one org id: a report covers one org, never mixing customers",
            ));
        }
    };
    org.parse::<scorecards_shared::domain::OrgId>()
        .map_err(|e| crate::input::bad("--orgs", e.problem))?;
    if !with_tables.contains(&org) {
        return Err(crate::input::bad(
            "--orgs",
            format!("{} holds no tables for org {org}", args.dir.display()),
        ));
    }
    args.date_field
        .parse::<scorecards_shared::domain::DateField>()
        .map_err(|e| crate::input::bad("--date-field", e.problem))?;
    args.source
        .parse::<scorecards_shared::domain::Source>()
        .map_err(|e| crate::input::bad("--source", e.problem))?;
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        return Err(crate::input::bad(
            "--from",
            format!("{from} is after --to {to}"),
        ));
    }
    let selection = Selection {
        orgs: vec![org],
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
