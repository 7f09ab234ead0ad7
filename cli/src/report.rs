//! The final per-org table.

use std::time::Duration;

use scorecards_shared::ports::{LearnedLimit, RequestStats};
use scorecards_shared::runner::OrgStatus;

/// One org's line in the final table.
pub struct OrgRow {
    pub org_id: String,
    pub region: String,
    pub limit: LearnedLimit,
    pub elapsed: Duration,
    pub evaluations: u64,
    pub stats: RequestStats,
    pub status: OrgStatus,
    /// Days whose independent search count differs from the listing.
    pub count_mismatches: usize,
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
        OrgStatus::Deferred { until } => format!("deferred until {until} (rerun to resume)"),
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
        "{:<38} {:<20} {:>11} {:>8} {:>5} {:>9} {:>18} {:>10}  status",
        "org", "region", "evaluations", "requests", "429s", "elapsed", "r/s (limit)", "req/1k ev"
    );
    for r in rows {
        let secs = r.elapsed.as_secs_f64().max(1e-3);
        let sent = r.stats.requests + r.stats.token_requests;
        let limit = format!("{}/{}s", r.limit.allowed, r.limit.window_ms as f64 / 1000.0);
        println!(
            "{:<38} {:<20} {:>11} {:>8} {:>5} {:>8.1}s {:>18} {:>10}  {}",
            r.org_id,
            r.region,
            r.evaluations,
            sent,
            r.stats.responses_429,
            secs,
            format!("{:.2} ({limit})", sent as f64 / secs),
            per_thousand(sent, r.evaluations),
            status_text(&r.status, r.count_mismatches),
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
