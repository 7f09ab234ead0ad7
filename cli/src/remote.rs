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
use scorecards_shared::domain::{InvalidValue, OrgId, parse_instant};
use scorecards_shared::onboarding;
use scorecards_shared::ports::CredentialError;
use scorecards_shared::ports::JobStatus;
use serde_json::json;

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

/// `scorecards run --remote …`
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Invoke the deployed dispatch function (the only mode).
    #[arg(long, required = true)]
    remote: bool,
    /// The dispatch function's name (output DispatchFunctionName).
    #[arg(long, env = "SCORECARDS_DISPATCH_FUNCTION")]
    dispatch_function: String,
    /// Orgs to export (comma-separated); without it, every registered org as a schedule would.
    #[arg(long, value_delimiter = ',')]
    orgs: Vec<String>,
    /// With --orgs: window start, UTC (RFC 3339 or a date).
    #[arg(long, requires = "orgs")]
    from: Option<String>,
    /// With --orgs: window end, UTC, exclusive (default now).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Without --orgs: a named window (yesterday, today, last-24h, last-<N>d).
    #[arg(long, default_value = "yesterday", conflicts_with = "orgs")]
    window: String,
    /// Without --orgs: days before the window exported again.
    #[arg(long, default_value_t = 0, conflicts_with = "orgs")]
    lookback_days: u32,
    /// With --orgs: the idempotency key (default: a new one).
    #[arg(long, requires = "orgs")]
    idempotency_key: Option<String>,
}

async fn ledger(stack: &Stack) -> StoreLedger<DynamoStore> {
    let config = scorecards_shared::handlers::aws_env::sdk_config().await;
    StoreLedger::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        stack.table.clone(),
    ))
}

/// Runs an `orgs` command.
pub async fn orgs(command: OrgsCommand) -> anyhow::Result<ExitCode> {
    let config = scorecards_shared::handlers::aws_env::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
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
            let org_id: OrgId = org_id.parse()?;
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
            onboarding::add_org(
                &secrets,
                &ledger(&stack).await,
                &secret_prefix,
                &org_id,
                &doc.to_string(),
            )
            .await?;
            println!("org {org_id} onboarded (secret {secret_prefix}{org_id})");
        }
        OrgsCommand::List { stack } => {
            for org in ledger(&stack).await.orgs().await? {
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
            let org_id: OrgId = org_id.parse()?;
            onboarding::remove_org(
                &secrets,
                &ledger(&stack).await,
                &secret_prefix,
                &org_id,
                delete_secret,
            )
            .await?;
            println!("org {org_id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Invokes the dispatch function and prints its answer.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let request = if args.orgs.is_empty() {
        json!({"schedule": {"window": args.window, "lookback_days": args.lookback_days}})
    } else {
        // Checked here too, so a typo fails before any AWS call.
        let from = args.from.context("--from is required with --orgs")?;
        parse_instant("--from", &from)?;
        let to = args
            .to
            .unwrap_or_else(|| jiff::Timestamp::now().to_string());
        parse_instant("--to", &to)?;
        for org in &args.orgs {
            org.parse::<OrgId>()?;
        }
        json!({
            "orgs": args.orgs,
            "from": from,
            "to": to,
            "idempotency_key": args.idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        })
    };
    let config = scorecards_shared::handlers::aws_env::sdk_config().await;
    let out = aws_sdk_lambda::Client::new(&config)
        .invoke()
        .function_name(&args.dispatch_function)
        .payload(aws_sdk_lambda::primitives::Blob::new(request.to_string()))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "invoking {}: {}",
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
    let Some(jobs) = onboarding::dispatch_status(&ledger(&stack).await, &job_id).await? else {
        bail!("job_id {job_id}: no such dispatch in table {}", stack.table);
    };
    let mut incomplete = false;
    for (spec, record) in jobs {
        let status = match record.map(|r| r.status) {
            None => "queued".to_owned(),
            Some(JobStatus::Running) => "running".into(),
            Some(JobStatus::Committed {
                evaluations,
                committed_at,
                ..
            }) => {
                format!("committed ({evaluations} evaluations, {committed_at})")
            }
            Some(JobStatus::CommittedWithGaps {
                evaluations,
                unavailable,
                committed_at,
                ..
            }) => format!(
                "committed_with_gaps ({evaluations} evaluations, {unavailable} unavailable, {committed_at})"
            ),
            Some(JobStatus::Deferred { until, .. }) => format!("deferred until {until}"),
            Some(JobStatus::Failed { reason }) => format!("failed: {reason}"),
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
