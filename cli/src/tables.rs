//! `scorecards tables`: the analytics tables of a local output directory (the export
//! writes them after each run; this command writes them again, e.g. after `--no-tables`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use scorecards_shared::adapters::local_dir::LocalDirSink;
use scorecards_shared::ports::{ExportSink, Partition};
use scorecards_tables::{Outcome, local_partitions, write_partition};

/// Options of `scorecards tables`.
#[derive(Args, Debug)]
pub struct TablesArgs {
    /// Output directory of `scorecards export`.
    #[arg(long, default_value = "./exports")]
    out: PathBuf,
    /// Write the tables even where they already reflect the committed run.
    #[arg(long)]
    force: bool,
}

/// Writes the tables of `partitions` (those with a committed manifest) and prints one line
/// per partition written.
pub async fn write(
    sink: &dyn ExportSink,
    partitions: &[Partition],
    force: bool,
) -> anyhow::Result<()> {
    for p in partitions {
        let outcome = write_partition(sink, p, force)
            .await
            .with_context(|| format!("tables of {}", p.prefix()))?;
        if let Outcome::Written { run_id, rows } = outcome {
            eprintln!(
                "tables of {}: run {run_id}, {} evaluations, {} question scores, {} agent × form rows",
                p.prefix(),
                rows[0],
                rows[1],
                rows[2]
            );
        }
    }
    Ok(())
}

/// Runs `scorecards tables`.
pub async fn run(args: TablesArgs) -> anyhow::Result<ExitCode> {
    if !args.out.join("evaluations").is_dir() {
        return Err(crate::input::bad(
            "--out",
            format!(
                "{} is not an output folder of `scorecards export` (no evaluations/ in it)",
                args.out.display()
            ),
        ));
    }
    let partitions =
        local_partitions(&args.out).with_context(|| format!("reading {}", args.out.display()))?;
    let sink = LocalDirSink::new(&args.out);
    write(&sink, &partitions, args.force).await?;
    eprintln!(
        "{} committed day(s) in {}",
        partitions.len(),
        args.out.display()
    );
    if let Some(mib) = crate::report::peak_memory_mib() {
        eprintln!("peak memory: {mib:.1} MiB");
    }
    Ok(ExitCode::SUCCESS)
}
