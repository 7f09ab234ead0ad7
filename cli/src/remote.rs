//! Commands against a deployed stack: `scorecards orgs add|list|remove`, `run --remote`,
//! `status`. They use the AWS credentials and region of the environment.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use scorecards_shared::adapters::dynamodb::DynamoStore;
use scorecards_shared::adapters::ledger::StoreLedger;
use scorecards_shared::adapters::secrets::parse_org_secret;
use scorecards_shared::domain::{InvalidValue, OrgId};
use scorecards_shared::onboarding;
use scorecards_shared::ports::CredentialError;
use scorecards_shared::ports::JobStatus;
use serde_json::json;

use crate::input::aws_config;
use crate::progress::to_second;

/// Where the stack is.
#[derive(Args, Debug)]
pub struct Stack {
    /// The stack's DynamoDB table (output TableName).
    #[arg(long, env = "SCORECARDS_TABLE")]
    table: String,
}

/// Which org of which stack.
#[derive(Args, Debug)]
pub struct OrgRef {
    #[command(flatten)]
    stack: Stack,
    /// Secrets Manager name prefix (the stack's OrgSecretPrefix).
    #[arg(
        long,
        env = "SCORECARDS_SECRET_PREFIX",
        default_value = "scorecards/orgs/"
    )]
    secret_prefix: String,
    /// The Genesys organization id.
    #[arg(long)]
    org_id: String,
}

/// `scorecards orgs …`
#[derive(Subcommand, Debug)]
pub enum OrgsCommand {
    /// Store an org's client credentials in Secrets Manager and register it.
    Add {
        #[command(flatten)]
        org: OrgRef,
        /// Region key or domain (or give both base URLs).
        #[arg(long)]
        region: Option<String>,
        /// Replaces https://api.<domain>.
        #[arg(long)]
        api_base_url: Option<String>,
        /// Replaces https://login.<domain>.
        #[arg(long)]
        login_base_url: Option<String>,
        /// OAuth client id (client credentials).
        #[arg(long)]
        client_id: String,
        /// File holding the client secret; without it the secret is read from stdin.
        #[arg(long, value_name = "FILE")]
        client_secret_file: Option<PathBuf>,
    },
    /// List registered orgs.
    List {
        #[command(flatten)]
        stack: Stack,
    },
    /// Unregister an org (and, with --delete-secret, schedule its secret for deletion).
    Remove {
        #[command(flatten)]
        org: OrgRef,
        /// Also delete the secret (Secrets Manager's recovery window applies).
        #[arg(long)]
        delete_secret: bool,
    },
}

/// `scorecards run …`
#[derive(Args, Debug)]
#[command(after_help = crate::input::RUN_WINDOW_RULE)]
pub struct RunArgs {
    /// Accepted for compatibility: `run` always invokes the deployed dispatch function.
    #[arg(long, hide = true)]
    remote: bool,
    /// The dispatch function's name (output DispatchFunctionName).
    #[arg(long, env = "SCORECARDS_DISPATCH_FUNCTION")]
    dispatch_function: String,
    /// Org ids to export (comma-separated); without it, every registered org as a schedule
    /// would. `--orgs` is accepted too.
    #[arg(long, value_delimiter = ',', alias = "orgs", value_name = "ID,...")]
    org_ids: Vec<String>,
    /// With --org-ids: window start, RFC 3339 with a zone or a date (midnight UTC).
    #[arg(long, requires = "org_ids")]
    from: Option<String>,
    /// With --org-ids: window end, exclusive (default now).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Without --org-ids: a named window (yesterday, today, last-24h, last-<N>d).
    #[arg(long, default_value = "yesterday", conflicts_with = "org_ids")]
    window: String,
    /// Without --org-ids: days before the window exported again.
    #[arg(long, default_value_t = 0, conflicts_with = "org_ids")]
    lookback_days: u32,
    /// With --org-ids: the idempotency key (default: a new one).
    #[arg(long, requires = "org_ids")]
    idempotency_key: Option<String>,
}

fn ledger(config: &aws_config::SdkConfig, stack: &Stack) -> StoreLedger<DynamoStore> {
    StoreLedger::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(config),
        stack.table.clone(),
    ))
}

/// `--org-id` as an org id (bad input names the flag).
fn org_id_flag(flag: &str, s: &str) -> Result<OrgId, InvalidValue> {
    s.parse::<OrgId>()
        .map_err(|e| InvalidValue::new(flag, e.problem))
}

/// Runs an `orgs` command. Input is checked before any AWS call; credentials are found
/// before the first one.
pub async fn orgs(command: OrgsCommand) -> anyhow::Result<ExitCode> {
    match command {
        OrgsCommand::Add {
            org:
                OrgRef {
                    stack,
                    secret_prefix,
                    org_id,
                },
            region,
            api_base_url,
            login_base_url,
            client_id,
            client_secret_file,
        } => {
            if uuid::Uuid::parse_str(&org_id).is_err() {
                return Err(InvalidValue::new(
                    "--org-id",
                    format!("{org_id:?}: a Genesys organization id is a UUID (GET /api/v2/organizations/me → id)"),
                )
                .into());
            }
            let org_id = org_id_flag("--org-id", &org_id)?;
            let mut secret = String::new();
            match &client_secret_file {
                Some(path) => {
                    secret = std::fs::read_to_string(path)
                        .with_context(|| format!("--client-secret-file {}", path.display()))?
                }
                None => {
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        eprintln!("client secret (then Ctrl-D):");
                    }
                    std::io::stdin().read_to_string(&mut secret)?;
                }
            }
            let secret = secret.trim_end_matches(['\r', '\n']);
            if secret.trim().is_empty() {
                return Err(InvalidValue::new(
                    "client secret",
                    "empty: give it on stdin or with --client-secret-file",
                )
                .into());
            }
            let mut doc = json!({"client_id": client_id, "client_secret": secret});
            for (key, value) in [
                ("region", region),
                ("api_base_url", api_base_url),
                ("login_base_url", login_base_url),
            ] {
                if let Some(v) = value {
                    doc[key] = json!(v);
                }
            }
            // Bad credentials are bad input (exit 2), found before any AWS call.
            parse_org_secret(&org_id, &doc.to_string()).map_err(|e| match e {
                CredentialError::Invalid { problem, .. } => {
                    anyhow::Error::from(InvalidValue::new("credentials", problem))
                }
                other => other.into(),
            })?;
            let config = aws_config().await?;
            onboarding::add_org(
                &aws_sdk_secretsmanager::Client::new(&config),
                &ledger(&config, &stack),
                &secret_prefix,
                &org_id,
                &doc.to_string(),
            )
            .await?;
            println!("org {org_id} onboarded (secret {secret_prefix}{org_id})");
        }
        OrgsCommand::List { stack } => {
            let config = aws_config().await?;
            for org in ledger(&config, &stack).orgs().await? {
                println!("{org}");
            }
        }
        OrgsCommand::Remove {
            org:
                OrgRef {
                    stack,
                    secret_prefix,
                    org_id,
                },
            delete_secret,
        } => {
            let org_id = org_id_flag("--org-id", &org_id)?;
            let config = aws_config().await?;
            let removed = onboarding::remove_org(
                &aws_sdk_secretsmanager::Client::new(&config),
                &ledger(&config, &stack),
                &secret_prefix,
                &org_id,
                delete_secret,
            )
            .await?;
            if !removed {
                eprintln!(
                    "error: org {org_id} is not registered in table {} (`scorecards orgs list` shows the registered orgs)",
                    stack.table
                );
                return Ok(ExitCode::from(1));
            }
            println!("org {org_id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Most orgs and days of one on-demand dispatch (the dispatch function's limits).
const MAX_DISPATCH_ORGS: usize = 1_000;
const MAX_DISPATCH_DAYS: usize = 92;

/// The dispatch request of `run`, checked as the dispatch function would check it.
fn dispatch_request(
    args: &RunArgs,
    now: jiff::Timestamp,
) -> Result<serde_json::Value, InvalidValue> {
    if args.org_ids.is_empty() {
        // The same rule as every window, checked here so a typo fails before any AWS call.
        crate::input::window(&args.window, None, None, now)?;
        return Ok(
            json!({"schedule": {"window": args.window, "lookback_days": args.lookback_days}}),
        );
    }
    let from = args.from.as_deref().ok_or_else(|| {
        InvalidValue::new("--from", "required with --org-ids (e.g. --from 2026-11-01)")
    })?;
    let window = crate::input::window(&args.window, Some(from), args.to.as_deref(), now)?;
    let days = window.utc_days(now).len();
    if days > MAX_DISPATCH_DAYS {
        return Err(InvalidValue::new(
            "--from/--to",
            format!(
                "covers {days} UTC days; one dispatch takes at most {MAX_DISPATCH_DAYS}: split it"
            ),
        ));
    }
    if args.org_ids.len() > MAX_DISPATCH_ORGS {
        return Err(InvalidValue::new(
            "--org-ids",
            format!(
                "{} orgs; one dispatch takes at most {MAX_DISPATCH_ORGS}: split them",
                args.org_ids.len()
            ),
        ));
    }
    for org in &args.org_ids {
        org_id_flag("--org-ids", org)?;
    }
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if key.is_empty()
        || key.len() > 128
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    {
        return Err(InvalidValue::new(
            "--idempotency-key",
            format!("{key:?}: use 1-128 characters of A-Z a-z 0-9 . _ : -"),
        ));
    }
    // A window that runs to now is sent as running to the start of tomorrow (UTC): the
    // function clamps it to its own now (the same days), and the same command repeated the
    // same day sends the same request, which its idempotency key then recognises.
    let to = if window.to >= now {
        now.to_zoned(jiff::tz::TimeZone::UTC)
            .tomorrow()
            .and_then(|d| d.start_of_day())
            .map_or(window.to, |d| d.timestamp())
    } else {
        window.to
    };
    Ok(json!({
        "orgs": args.org_ids,
        "from": window.from.to_string(),
        "to": to.to_string(),
        "idempotency_key": key,
    }))
}

/// Longest wait for the dispatch function's answer: Lambda's longest timeout (900 s). The
/// AWS calls' usual 5 s attempt timeout would give up on a large dispatch (1,000 orgs × 92
/// days takes seconds) while it runs, and a retry would run it again.
const INVOKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// Invokes the dispatch function and prints its answer. An on-demand request carries an
/// idempotency key (`--idempotency-key`, or a new one printed to stderr), so an invoke that
/// fails on the way back can be repeated with it without dispatching twice.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let request = dispatch_request(&args, jiff::Timestamp::now())?;
    let config = aws_config().await?;
    let key = request["idempotency_key"].as_str().map(str::to_owned);
    if let Some(key) = &key {
        eprintln!("idempotency key: {key}");
    }
    let lambda = aws_sdk_lambda::config::Builder::from(&config)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(INVOKE_TIMEOUT)
                .operation_timeout(INVOKE_TIMEOUT)
                .build(),
        )
        .build();
    let out = aws_sdk_lambda::Client::from_conf(lambda)
        .invoke()
        .function_name(&args.dispatch_function)
        .payload(aws_sdk_lambda::primitives::Blob::new(request.to_string()))
        .send()
        .await
        .map_err(|e| {
            // A function that is not there (or refuses the call) has not run.
            let not_run = e.as_service_error().is_some_and(|s| {
                s.is_resource_not_found_exception()
                    || s.is_invalid_parameter_value_exception()
                    || s.is_invalid_request_content_exception()
            });
            let again = key.as_ref().filter(|_| !not_run).map_or(String::new(), |key| {
                format!(
                    "; the dispatch may have run: repeat the command with --idempotency-key {key} to get its answer without dispatching twice"
                )
            });
            anyhow::anyhow!(
                "invoking {}: {}{again}",
                args.dispatch_function,
                scorecards_shared::adapters::aws_message(&e)
            )
        })?;
    let payload = out
        .payload
        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
        .unwrap_or_default();
    if let Some(kind) = out.function_error {
        eprintln!("dispatch failed ({kind}): {payload}");
        return Ok(ExitCode::from(1));
    }
    println!("{payload}");
    Ok(ExitCode::SUCCESS)
}

/// Prints the jobs of a dispatch and their status.
pub async fn status(stack: Stack, job_id: String) -> anyhow::Result<ExitCode> {
    let config = aws_config().await?;
    let Some(jobs) = onboarding::dispatch_status(&ledger(&config, &stack), &job_id).await? else {
        bail!("job_id {job_id}: no such dispatch in table {}", stack.table);
    };
    let mut incomplete = false;
    let now = jiff::Timestamp::now();
    for day in jobs {
        let spec = day.spec;
        let last = day.record.map(|r| r.status);
        let status = match (day.pending, last) {
            // Waiting to be exported (again): the record only tells how the last run ended.
            (Some(_), Some(JobStatus::Running)) => "running".to_owned(),
            (Some(pending), last) => {
                let mut status = "queued".to_owned();
                if let Some(at) = pending.not_before.filter(|at| *at > now) {
                    status += &format!(", next try after {}", to_second(at));
                }
                if let Some(JobStatus::Failed { reason }) = last {
                    status += &format!(" (last try failed: {reason})");
                }
                status
            }
            (None, last) => match last {
                None => "queued".to_owned(),
                Some(JobStatus::Running) => "running".into(),
                Some(JobStatus::Committed {
                    evaluations,
                    committed_at,
                    ..
                }) => {
                    format!(
                        "committed ({evaluations} evaluations, {})",
                        to_second(committed_at)
                    )
                }
                Some(JobStatus::CommittedWithGaps {
                    evaluations,
                    unavailable,
                    committed_at,
                    ..
                }) => format!(
                    "committed_with_gaps ({evaluations} evaluations, {unavailable} unavailable, {})",
                    to_second(committed_at)
                ),
                Some(JobStatus::Deferred { until, .. }) => {
                    format!("deferred until {}", to_second(until))
                }
                Some(JobStatus::Failed { reason }) => format!("failed: {reason}"),
            },
        };
        incomplete |= !status.starts_with("committed (");
        println!(
            "{:<38} {} {:<16} {status}",
            spec.org_id, spec.day, spec.date_field
        );
    }
    Ok(if incomplete {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(to: Option<&str>) -> RunArgs {
        RunArgs {
            remote: false,
            dispatch_function: "scorecards-dispatch".into(),
            org_ids: vec!["685a0000-0000-0000-0000-000000000001".into()],
            from: Some("2026-11-20".into()),
            to: to.map(Into::into),
            window: "yesterday".into(),
            lookback_days: 0,
            idempotency_key: Some("run-1".into()),
        }
    }

    #[test]
    fn a_window_to_now_is_sent_to_the_start_of_tomorrow_so_a_repeat_is_the_same_request() {
        let (morning, evening) = (
            "2026-11-29T08:00:00.123456789Z".parse().unwrap(),
            "2026-11-29T20:36:41.380822965Z".parse().unwrap(),
        );
        for to in [None, Some("2026-12-30")] {
            let first = dispatch_request(&args(to), morning).unwrap();
            assert_eq!(first["to"], "2026-11-30T00:00:00Z", "{to:?}");
            assert_eq!(dispatch_request(&args(to), evening).unwrap(), first);
        }
        // A window that ends before now is sent as given.
        let past = dispatch_request(&args(Some("2026-11-22")), evening).unwrap();
        assert_eq!(past["to"], "2026-11-22T00:00:00Z");
    }
}
