//! Checks of what the user gave, done before the first request. A check that fails returns
//! [`InvalidValue`] (the flag, what is wrong and the fix); `main` turns any `InvalidValue`
//! into exit code 2, whatever command it came from.

use std::path::Path;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use scorecards_shared::adapters::sqlite::SqliteStore;
use scorecards_shared::domain::{InvalidValue, Window, named_window};

/// The most UTC days one window may cover, named or `--from`/`--to`: 366 whole days and
/// today so far (`last-366d`).
pub const MAX_DAYS: usize = 367;

/// The rule for windows, as `--help` states it.
pub const WINDOW_RULE: &str = "Windows are exported by whole UTC days (a time inside a day \
    exports the whole day), at most 367 days per run (last-366d: 366 days and today so far); \
    times need a zone (Z or an offset)";

/// The rule for `run`'s windows, as its `--help` states it: the dispatch function takes at
/// most 92 days per request.
pub const RUN_WINDOW_RULE: &str = "Windows are dispatched by whole UTC days (a time inside a \
    day covers the whole day), at most 92 days and 1,000 orgs per request; times need a zone \
    (Z or an offset)";

/// Bad input as an error that exits 2.
pub fn bad(flag: impl Into<String>, problem: impl Into<String>) -> anyhow::Error {
    InvalidValue::new(flag, problem).into()
}

/// A user-given instant: an RFC 3339 time with a zone (`2026-11-28T10:00:00Z`,
/// `…+01:00`) or a date (`2026-11-28`, midnight UTC). A time without a zone is refused.
pub fn parse_time(flag: &str, s: &str) -> Result<Timestamp, InvalidValue> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if s.len() == 10
        && let Ok(d) = s.parse::<Date>()
    {
        return Ok(scorecards_shared::domain::day_start(d));
    }
    if s.parse::<DateTime>().is_ok() {
        return Err(InvalidValue::new(
            flag,
            format!(
                "{s:?} has no zone: add Z for UTC ({s}Z) or an offset ({s}+01:00), or give a date (2026-11-28)"
            ),
        ));
    }
    Err(InvalidValue::new(
        flag,
        format!(
            "{s:?} is not a time: use RFC 3339 with a zone (2026-11-28T00:00:00Z) or a date (2026-11-28)"
        ),
    ))
}

/// The window of `--window NAME` or `--from [--to]`, checked by one rule ([`WINDOW_RULE`]).
/// `to` defaults to `now` and is capped at `now`.
pub fn window(
    named: &str,
    from: Option<&str>,
    to: Option<&str>,
    now: Timestamp,
) -> Result<Window, InvalidValue> {
    let (w, flag) = match from {
        Some(from) => {
            let start = parse_time("--from", from)?;
            if start >= now {
                return Err(InvalidValue::new(
                    "--from",
                    format!("{from} is in the future: nothing has been evaluated yet"),
                ));
            }
            let end = match to {
                Some(to) => parse_time("--to", to)?,
                None => now,
            };
            if end <= start {
                return Err(InvalidValue::new(
                    "--to",
                    format!(
                        "{} must be after --from {from} (--to is exclusive)",
                        to.unwrap_or("now")
                    ),
                ));
            }
            (Window::new(start, end.min(now))?, "--from/--to")
        }
        None => {
            // `last-<N>d` beyond the limit: the same rule and message as `--from`/`--to`.
            if let Some(n) = named
                .strip_prefix("last-")
                .and_then(|r| r.strip_suffix('d'))
                .and_then(|n| n.parse::<usize>().ok())
                && n >= MAX_DAYS
            {
                return Err(InvalidValue::new(
                    "--window",
                    format!(
                        "covers {} UTC days; at most {MAX_DAYS} per run: split it into several runs",
                        n + 1
                    ),
                ));
            }
            (named_window(named, now)?, "--window")
        }
    };
    let days = w.utc_days(now).len();
    if days > MAX_DAYS {
        return Err(InvalidValue::new(
            flag,
            format!(
                "covers {days} UTC days; at most {MAX_DAYS} per run: split it into several runs"
            ),
        ));
    }
    Ok(w)
}

/// `--out`: a directory this process can write (created when missing).
pub fn check_out_dir(flag: &str, path: &Path) -> Result<(), InvalidValue> {
    let shown = path.display();
    if path.exists() && !path.is_dir() {
        return Err(InvalidValue::new(
            flag,
            format!("{shown} is a file, not a directory: give a directory (created when missing)"),
        ));
    }
    std::fs::create_dir_all(path).map_err(|e| {
        InvalidValue::new(flag, format!("{shown}: cannot create the directory ({e})"))
    })?;
    tempfile::NamedTempFile::new_in(path).map_err(|e| {
        InvalidValue::new(
            flag,
            format!("{shown} is not writable ({e}): give a directory you can write"),
        )
    })?;
    Ok(())
}

/// `--state`: opens (or creates) the state database; its folder must exist and an existing
/// file must be a state database.
pub fn open_state(flag: &str, path: &Path) -> Result<SqliteStore, InvalidValue> {
    let shown = path.display();
    if path.is_dir() {
        return Err(InvalidValue::new(
            flag,
            format!("{shown} is a directory: give a file (created when missing)"),
        ));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(InvalidValue::new(
            flag,
            format!(
                "{shown}: the folder {} does not exist: create it or give another path",
                parent.display()
            ),
        ));
    }
    SqliteStore::open(path).map_err(|e| {
        InvalidValue::new(
            flag,
            format!("{shown} is not a scorecards state database ({e}): give a new file or the one earlier runs used"),
        )
    })
}

/// `--scenario`: a built-in name (`genesys_sim::Scenario::BUILTINS`) or a .toml/.json file.
pub fn scenario(name: &str) -> Result<genesys_sim::Scenario, InvalidValue> {
    genesys_sim::Scenario::load(name).map_err(|e| {
        InvalidValue::new(
            "--scenario",
            format!(
                "{e:#} (built-in scenarios: {}; or a .toml/.json file)",
                genesys_sim::Scenario::BUILTINS.join(", ")
            ),
        )
    })
}

/// `--scenario`'s help, from the one list of built-in scenarios.
pub fn scenario_help() -> String {
    format!(
        "Simulator scenario: a built-in name ({}) or a TOML/JSON scenario file",
        genesys_sim::Scenario::BUILTINS.join(", ")
    )
}

/// The AWS configuration of the environment, with credentials and a region found before
/// any AWS call; when either is missing the error says how to provide it.
pub async fn aws_config() -> anyhow::Result<aws_config::SdkConfig> {
    use aws_sdk_lambda::config::ProvideCredentials as _;
    let config = scorecards_shared::handlers::aws_env::sdk_config().await;
    if config.region().is_none() {
        return Err(bad(
            "AWS region",
            "none found: set AWS_REGION (e.g. AWS_REGION=eu-west-2) or a region in ~/.aws/config",
        ));
    }
    let Some(provider) = config.credentials_provider() else {
        return Err(no_credentials("no credentials provider"));
    };
    if let Err(e) = provider.provide_credentials().await {
        return Err(no_credentials(&e.to_string()));
    }
    Ok(config)
}

fn no_credentials(detail: &str) -> anyhow::Error {
    bad(
        "AWS credentials",
        format!(
            "no AWS credentials were found ({detail}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             (and AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE with a profile in \
             ~/.aws/credentials or ~/.aws/config (`aws configure`, `aws sso login`)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-28T15:00:00Z".parse().unwrap()
    }

    #[test]
    fn times_need_a_zone_and_dates_are_midnight_utc() {
        assert_eq!(
            parse_time("--from", "2026-11-27").unwrap(),
            "2026-11-27T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(parse_time("--from", "2026-11-27T10:00:00+01:00").is_ok());
        let e = parse_time("--from", "2026-11-27T10:00:00").unwrap_err();
        assert_eq!(e.field, "--from");
        assert!(e.problem.contains("no zone"), "{e}");
        assert!(parse_time("--to", "yesterday").is_err());
    }

    #[test]
    fn one_limit_for_named_and_explicit_windows() {
        assert_eq!(
            window("last-366d", None, None, now())
                .unwrap()
                .utc_days(now())
                .len(),
            367
        );
        assert!(window("last-367d", None, None, now()).is_err());
        // One rule, one message, whichever way the window is given.
        let e = window("last-400d", None, None, now()).unwrap_err();
        assert_eq!(e.field, "--window");
        assert!(
            e.problem.contains("covers 401 UTC days; at most 367"),
            "{e}"
        );
        let e = window("yesterday", Some("2000-01-01"), None, now()).unwrap_err();
        assert_eq!(e.field, "--from/--to");
        assert!(e.problem.contains("at most 367"), "{e}");
        assert!(window("yesterday", Some("2025-11-27"), None, now()).is_ok());
        assert!(window("yesterday", Some("2025-11-26"), None, now()).is_err());
    }

    #[test]
    fn from_after_to_and_future_starts_are_refused() {
        let e = window("yesterday", Some("2026-11-27"), Some("2026-11-26"), now()).unwrap_err();
        assert_eq!(e.field, "--to");
        let e = window("yesterday", Some("2026-12-01"), None, now()).unwrap_err();
        assert_eq!(e.field, "--from");
    }
}
