//! The final per-org table.

use std::time::Duration;

use scorecards_shared::ports::{LearnedLimit, RequestStats};
use scorecards_shared::runner::OrgStatus;

/// One org's line in the final table.
pub struct OrgRow {
    /// Display name, where known.
    pub name: Option<String>,
    pub org_id: String,
    pub region: String,
    pub limit: LearnedLimit,
    pub elapsed: Duration,
    pub evaluations: u64,
    pub stats: RequestStats,
    pub status: OrgStatus,
    /// Days whose independent search count differs from the listing.
    pub count_mismatches: usize,
    /// Days committed (or verified up to date) by this run, of the days to do.
    pub days: (usize, usize),
    /// Stopped by Ctrl-C before the org finished.
    pub interrupted: bool,
}

/// Requests per 1,000 evaluations, or `-` without evaluations.
pub fn per_thousand(requests: u64, evaluations: u64) -> String {
    if evaluations == 0 {
        "-".into()
    } else {
        format!("{:.1}", requests as f64 * 1000.0 / evaluations as f64)
    }
}

fn status_text(status: &OrgStatus, count_mismatches: usize) -> String {
    let text = match status {
        OrgStatus::Committed => "committed".into(),
        OrgStatus::CommittedWithGaps { unavailable } => format!(
            "committed_with_gaps: {unavailable} evaluations refused by the API (listed in the manifests' unavailable; rerun to retry)"
        ),
        OrgStatus::UpToDate => {
            "up to date (verified: unchanged since committed; --force re-exports)".into()
        }
        OrgStatus::Deferred { until } => format!(
            "deferred until {} (rerun then to resume)",
            crate::progress::to_second(*until)
        ),
        OrgStatus::AlreadyRunning => "already running elsewhere".into(),
        OrgStatus::Failed { reason } => format!("failed: {reason}"),
    };
    if count_mismatches > 0 {
        format!(
            "{text}; the search's independent count differs from its listing on {count_mismatches} day(s) (see the manifests' search_counts)"
        )
    } else {
        text
    }
}

/// Prints the table to stdout.
pub fn print_table(rows: &[OrgRow]) {
    println!(
        "{:<20} {:<38} {:<20} {:>9} {:>11} {:>8} {:>5} {:>9} {:>18} {:>10}  status",
        "name",
        "org",
        "region",
        "days",
        "evaluations",
        "requests",
        "429s",
        "elapsed",
        "r/s (limit)",
        "req/1k ev"
    );
    for r in rows {
        let secs = r.elapsed.as_secs_f64().max(1e-3);
        let sent = r.stats.requests + r.stats.token_requests;
        let limit = format!("{}/{}s", r.limit.allowed, r.limit.window_ms as f64 / 1000.0);
        let status = if r.interrupted {
            format!(
                "interrupted: {} of {} days committed, the rest checkpointed (rerun to resume)",
                r.days.0, r.days.1
            )
        } else {
            status_text(&r.status, r.count_mismatches)
        };
        println!(
            "{:<20} {:<38} {:<20} {:>9} {:>11} {:>8} {:>5} {:>8.1}s {:>18} {:>10}  {}",
            r.name.as_deref().unwrap_or("-"),
            r.org_id,
            r.region,
            format!("{}/{}", r.days.0, r.days.1),
            r.evaluations,
            sent,
            r.stats.responses_429,
            secs,
            format!("{:.2} ({limit})", sent as f64 / secs),
            per_thousand(sent, r.evaluations),
            status,
        );
    }
}

/// Peak resident memory of this process in MiB (`VmHWM` of `/proc/self/status`, Linux).
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
