//! The three Lambda binaries as Lambda runs them. Each built binary (`cargo build --workspace
//! --all-targets`, which the test command runs first) is started as a process of
//! its own with only the environment Lambda and the stack give it, and this test serves it
//! the Lambda Runtime API (version 2018-06-01: `runtime/invocation/next`,
//! `runtime/invocation/{id}/response`, `runtime/invocation/{id}/error`). The events are the JSON AWS sends: the template's Scheduler input
//! for dispatch, an SQS event for export, an S3 notification for analytics. AWS is the local
//! emulator (moto), Genesys the simulator.
//!
//! The binaries are looked up in `SCORECARDS_FUNCTION_BINARIES` (a directory) or else next
//! to this test's target directory (`target/debug`). Each start prints the binary's size
//! and its cold init time (process start to its first `next` request).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use genesys_sim::{Scenario, SourceFilter};
use jiff::Timestamp;
use scorecards_shared::adapters::dynamodb::DynamoStore;
use scorecards_shared::adapters::ledger::StoreLedger;
use scorecards_shared::adapters::s3::S3Sink;
use scorecards_shared::onboarding;
use scorecards_shared::output::committed_by_id;
use scorecards_shared::ports::{JobMessage, JobStatus};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::aws::{bucket, config, dynamo_table, org_secret, queue, unique};
use crate::harness::assert_same;

/// What a function answered to one invocation.
#[derive(Debug)]
enum Reply {
    /// `POST …/response`: the handler's JSON.
    Response(Value),
    /// `POST …/error`: the handler's error (`errorType`, `errorMessage`).
    Error { error_type: String, message: String },
}

struct Invocation {
    request_id: String,
    event: Value,
    deadline: Timestamp,
    reply: oneshot::Sender<Reply>,
}

/// The Runtime API side of Lambda for one function process.
#[derive(Default)]
struct RuntimeState {
    events: tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<Invocation>>>,
    replies: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    first_next: OnceLock<Instant>,
}

const API: &str = "/2018-06-01/runtime";

async fn next(State(state): State<Arc<RuntimeState>>) -> impl IntoResponse {
    state.first_next.get_or_init(Instant::now);
    // Long poll, as Lambda does: the answer waits for the next event.
    let invocation = {
        let mut events = state.events.lock().await;
        events.as_mut().expect("events").recv().await
    };
    let Some(inv) = invocation else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    state
        .replies
        .lock()
        .unwrap()
        .insert(inv.request_id.clone(), inv.reply);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, value.parse().unwrap());
    };
    set("lambda-runtime-aws-request-id", inv.request_id);
    set(
        "lambda-runtime-deadline-ms",
        inv.deadline.as_millisecond().to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:scorecards".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, inv.event.to_string())
}

async fn response(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let reply = serde_json::from_str(&body)
        .map(Reply::Response)
        .unwrap_or_else(|e| panic!("the function's response is not JSON ({e}): {body}"));
    answer(&state, &id, reply)
}

async fn error(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let body: Value = serde_json::from_str(&body).expect("an error body is JSON");
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    let reply = Reply::Error {
        error_type: text("errorType"),
        message: text("errorMessage"),
    };
    answer(&state, &id, reply)
}

fn answer(state: &RuntimeState, id: &str, reply: Reply) -> StatusCode {
    match state.replies.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(reply);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

/// A function binary running under the Runtime API served here.
struct Function {
    name: &'static str,
    child: tokio::process::Child,
    state: Arc<RuntimeState>,
    events: mpsc::UnboundedSender<Invocation>,
    started: Instant,
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    invocations: u32,
}

/// Where the built function binaries are.
fn binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("SCORECARDS_FUNCTION_BINARIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/debug/deps/integration-… → target/debug
            let exe = std::env::current_exe().expect("test binary path");
            exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf()
        });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --all-targets` first (bash scripts/test.sh does)",
        path.display()
    );
    path
}

impl Function {
    /// Starts binary `name` with Lambda's variables, the AWS emulator's and `env`.
    async fn start(name: &'static str, env: &[(&str, String)]) -> Function {
        let state = Arc::new(RuntimeState::default());
        let (events, rx) = mpsc::unbounded_channel();
        *state.events.lock().await = Some(rx);
        let app = Router::new()
            .route(&format!("{API}/invocation/next"), get(next))
            .route(&format!("{API}/invocation/{{id}}/response"), post(response))
            .route(&format!("{API}/invocation/{{id}}/error"), post(error))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let path = binary(name);
        let mut command = tokio::process::Command::new(&path);
        // Only what Lambda and the stack set: nothing of this test's environment leaks in.
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("scorecards-{name}"))
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
            .env("TZ", ":UTC");
        for var in [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_EC2_METADATA_DISABLED",
        ] {
            if let Ok(value) = std::env::var(var) {
                command.env(var, value);
            }
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = Arc::clone(&logs);
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    logs.lock().unwrap().push(line);
                }
            }));
        }
        Function {
            name,
            child,
            state,
            events,
            started,
            logs,
            readers,
            invocations: 0,
        }
    }

    /// Invokes the function with `event` (deadline 300 s from now) and waits for its reply;
    /// panics if the process exits or does not answer within the deadline.
    async fn invoke(&mut self, event: Value) -> Reply {
        self.invocations += 1;
        let (tx, rx) = oneshot::channel();
        let timeout = Duration::from_secs(300);
        self.events
            .send(Invocation {
                request_id: format!("{}-request-{}", self.name, self.invocations),
                event,
                deadline: Timestamp::now() + timeout,
                reply: tx,
            })
            .unwrap();
        tokio::select! {
            reply = rx => reply.expect("reply"),
            status = self.child.wait() => panic!(
                "{} exited during an invocation ({status:?}):\n{}",
                self.name,
                self.logs().join("\n")
            ),
            () = tokio::time::sleep(timeout) => panic!("{} did not answer in {timeout:?}", self.name),
        }
    }

    /// Waits (at most 60 s) for the process to exit on its own, and for its output.
    async fn exited(&mut self) -> std::process::ExitStatus {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit", self.name))
            .unwrap();
        for reader in self.readers.drain(..) {
            reader.await.unwrap();
        }
        status
    }

    /// Process start to its first `next` request, once it has asked.
    fn cold_init(&self) -> Option<Duration> {
        self.state
            .first_next
            .get()
            .map(|at| at.duration_since(self.started))
    }

    /// Its stdout and stderr lines so far.
    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Prints the binary's size and cold init time.
    fn report(&self) {
        let size = std::fs::metadata(binary(self.name)).map_or(0, |m| m.len());
        let init = self.cold_init().map_or("not reached".into(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        });
        eprintln!(
            "{}: binary {:.1} MB, cold init {init}",
            self.name,
            size as f64 / 1e6,
        );
    }
}

/// The Scheduler target's `Input` as the template defines it, with the parameters'
/// defaults: what EventBridge Scheduler passes to dispatch as its event.
fn scheduler_event() -> Value {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml"),
    )
    .unwrap();
    let default_of = |parameter: &str| {
        let block = template
            .split(&format!("\n  {parameter}:\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("parameter {parameter} in the template"));
        block
            .lines()
            .find_map(|l| l.trim().strip_prefix("Default: "))
            .unwrap()
            .to_string()
    };
    let input = template
        .lines()
        .find_map(|l| l.trim().strip_prefix("Input: !Sub '"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("the Scheduler target's Input");
    let input = input
        .replace("${ScheduleWindow}", &default_of("ScheduleWindow"))
        .replace(
            "${ScheduleLookbackDays}",
            &default_of("ScheduleLookbackDays"),
        );
    serde_json::from_str(&input).unwrap_or_else(|e| panic!("Input {input:?}: {e}"))
}

/// An SQS event as the event source mapping delivers one message (batch size 1).
fn sqs_event(message: &aws_sdk_sqs::types::Message) -> Value {
    json!({
        "Records": [{
            "messageId": message.message_id(),
            "receiptHandle": message.receipt_handle(),
            "body": message.body(),
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": Timestamp::now().as_millisecond().to_string(),
                "SenderId": "AROAEXAMPLE:dispatch",
                "ApproximateFirstReceiveTimestamp": Timestamp::now().as_millisecond().to_string()
            },
            "messageAttributes": {},
            "md5OfBody": message.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:scorecards-jobs",
            "awsRegion": "us-east-1"
        }]
    })
}

/// An S3 `ObjectCreated:Put` notification for `key` (URL-encoded, as S3 sends keys).
fn s3_event(bucket: &str, key: &str, size: i64) -> Value {
    let encoded: String = url_encode(key);
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": Timestamp::now().to_string(),
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:AROAEXAMPLE:export"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "0", "x-amz-id-2": "0"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "manifests",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": {"principalId": "EXAMPLE"},
                    "arn": format!("arn:aws:s3:::{bucket}")
                },
                "object": {"key": encoded, "size": size, "eTag": "0", "sequencer": "0"}
            }
        }]
    })
}

fn url_encode(key: &str) -> String {
    // S3 encodes keys in notifications like a form value (`=` → `%3D`, space → `+`) and
    // leaves `/` as is.
    key.split('/')
        .map(|segment| url::form_urlencoded::byte_serialize(segment.as_bytes()).collect())
        .collect::<Vec<String>>()
        .join("/")
}

async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        let batch = got.messages.unwrap_or_default();
        if batch.is_empty() {
            return out;
        }
        for m in &batch {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        out.extend(batch);
    }
}

/// The stack's resources on the emulator (a table, a queue, a bucket, a secret prefix),
/// with every simulator org onboarded.
struct Stack {
    ledger: StoreLedger<DynamoStore>,
    table: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
    secret_prefix: String,
}

impl Stack {
    async fn new(sim: &genesys_sim::SimHandle) -> Stack {
        let conf = config().await;
        let (dynamodb, table) = dynamo_table().await;
        let ledger = StoreLedger::new(DynamoStore::new(dynamodb, table.clone()));
        let (sqs, queue_url) = queue().await;
        let (s3, bucket) = bucket().await;
        let secrets = aws_sdk_secretsmanager::Client::new(&conf);
        let secret_prefix = format!("{}/", unique("scorecards/orgs"));
        for org in sim.orgs() {
            let secret = org_secret(&org, &org.client_secret);
            onboarding::add_org(
                &secrets,
                &ledger,
                &secret_prefix,
                &org.org_id.parse().unwrap(),
                &secret.to_string(),
            )
            .await
            .unwrap();
        }
        Stack {
            ledger,
            table,
            sqs,
            queue_url,
            s3,
            bucket,
            secret_prefix,
        }
    }

    /// The stack's variables of a function: `names` with their values here.
    fn env(&self, names: &[&'static str]) -> Vec<(&'static str, String)> {
        names
            .iter()
            .map(|&n| {
                let v = match n {
                    "TABLE_NAME" => self.table.clone(),
                    "QUEUE_URL" => self.queue_url.clone(),
                    "BUCKET_NAME" => self.bucket.clone(),
                    "OUTPUT_PREFIX" => "exports".into(),
                    "ORG_SECRET_PREFIX" => self.secret_prefix.clone(),
                    _ => unreachable!("{n}"),
                };
                (n, v)
            })
            .collect()
    }
}

/// The export function's variables.
const EXPORT_ENV: &[&str] = &[
    "TABLE_NAME",
    "QUEUE_URL",
    "BUCKET_NAME",
    "OUTPUT_PREFIX",
    "ORG_SECRET_PREFIX",
];

#[tokio::test]
async fn the_three_binaries_carry_a_scheduled_run_from_the_scheduler_event_to_the_tables() {
    let sim = genesys_sim::start(Scenario::test()).await.unwrap();
    let stack = Stack::new(&sim).await;
    let Stack {
        ledger,
        sqs,
        queue_url,
        s3,
        bucket,
        ..
    } = &stack;
    let stack_env = |names: &[&'static str]| stack.env(names);
    let orgs: BTreeSet<String> = sim.orgs().iter().map(|o| o.org_id.clone()).collect();

    // dispatch: the Scheduler's event → every registered org's days pending, one message
    // per org.
    let mut dispatch = Function::start("dispatch", &stack_env(&["TABLE_NAME", "QUEUE_URL"])).await;
    let event = scheduler_event();
    let Reply::Response(answer) = dispatch.invoke(event.clone()).await else {
        panic!("dispatch failed: {:?}", dispatch.logs())
    };
    dispatch.report();
    let job_id = answer["job_id"].as_str().expect("job_id").to_string();
    let answered: BTreeSet<String> = answer["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    assert_eq!(answered, orgs);
    let days = 1 + event["schedule"]["lookback_days"].as_u64().unwrap();
    assert_eq!(answer["days"], json!(days), "{answer}");
    // The same warm process refuses a bad event, naming the field.
    match dispatch
        .invoke(json!({"schedule": {"window": "last-400d"}}))
        .await
    {
        Reply::Error {
            error_type,
            message,
        } => {
            assert_eq!(error_type, "BadRequest");
            assert!(message.contains("window"), "{message}");
        }
        other => panic!("a bad window was accepted: {other:?}"),
    }
    let messages = receive_all(sqs, queue_url).await;
    let sent: Vec<JobMessage> = messages
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert_eq!(
        sent.iter()
            .map(|m| m.org_id.as_str().to_string())
            .collect::<Vec<_>>(),
        orgs.iter().cloned().collect::<Vec<_>>(),
        "one message per org"
    );
    assert!(sent.iter().all(|m| m.request_id == job_id && m.hop == 0));

    // export: each message as the event source mapping delivers it; continuations too.
    // The simulator is on loopback, which a function refuses unless told (tests only).
    let mut export_env = stack_env(EXPORT_ENV);
    export_env.push(("SCORECARDS_ALLOW_LOOPBACK", "true".into()));
    let mut export = Function::start("export", &export_env).await;
    let mut queue = messages;
    for _round in 0..10 {
        for message in &queue {
            match export.invoke(sqs_event(message)).await {
                Reply::Response(r) => assert_eq!(r, json!({"batchItemFailures": []})),
                Reply::Error {
                    error_type,
                    message,
                } => {
                    panic!("export failed: {error_type}: {message}")
                }
            }
        }
        queue = receive_all(sqs, queue_url).await;
        if queue.is_empty() {
            break;
        }
    }
    assert!(queue.is_empty(), "the chain ends");
    export.report();
    // A body that is not an org message is dropped (logged), not redelivered.
    let junk = aws_sdk_sqs::types::Message::builder()
        .message_id("junk")
        .receipt_handle("junk")
        .body("{\"orgId\": 7}")
        .build();
    match export.invoke(sqs_event(&junk)).await {
        Reply::Response(r) => assert_eq!(r, json!({"batchItemFailures": []})),
        other => panic!("{other:?}"),
    }

    let status = onboarding::dispatch_status(ledger, &job_id)
        .await
        .unwrap()
        .expect("the dispatch is recorded");
    assert_eq!(status.len(), orgs.len() * days as usize);
    let jobs: Vec<_> = status.iter().map(|day| day.spec.clone()).collect();
    for day in &status {
        assert!(
            day.pending.is_none()
                && matches!(
                    day.record.as_ref().map(|r| &r.status),
                    Some(JobStatus::Committed { .. })
                ),
            "{day:?}"
        );
    }
    let sink = S3Sink::new(s3.clone(), bucket.clone(), "exports");
    let exported = committed_by_id(&sink, &jobs).await.unwrap();
    let mut truth = BTreeMap::new();
    for spec in &jobs {
        for t in sim.ground_truth(
            spec.org_id.as_str(),
            spec.window.from,
            spec.window.to,
            genesys_sim::DateField::SubmittedDate,
            SourceFilter::Both,
        ) {
            truth.insert(t.id, t.json);
        }
    }
    assert!(
        !truth.is_empty(),
        "the simulator has evaluations in the window"
    );
    assert_same(&exported, &truth);
    let logs = export.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("\"_aws\"") && l.contains("CloudWatchMetrics")),
        "an embedded-metric line per job run"
    );

    // analytics: the S3 notification of each manifest → that partition's tables.
    let listed = s3
        .list_objects_v2()
        .bucket(bucket.as_str())
        .prefix("exports/")
        .send()
        .await
        .unwrap();
    let manifests: Vec<_> = listed
        .contents()
        .iter()
        .filter(|o| o.key().unwrap().ends_with("/_manifest.json"))
        .map(|o| (o.key().unwrap().to_string(), o.size().unwrap_or(0)))
        .collect();
    assert_eq!(manifests.len(), jobs.len(), "one manifest per org-day");
    let mut analytics =
        Function::start("analytics", &stack_env(&["BUCKET_NAME", "OUTPUT_PREFIX"])).await;
    let mut rows = 0;
    for (key, size) in &manifests {
        let Reply::Response(r) = analytics.invoke(s3_event(bucket, key, *size)).await else {
            panic!("analytics failed on {key}: {:?}", analytics.logs())
        };
        let outcome = r["partitions"][0].as_str().unwrap_or_default();
        assert!(outcome.contains("Written"), "{key}: {r}");
        rows += outcome
            .split("rows: [")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("rows in {outcome}"));
    }
    analytics.report();
    assert_eq!(
        rows,
        truth.len(),
        "one evaluations row per exported evaluation"
    );
    // A duplicate notification finds the tables current.
    let (key, size) = &manifests[0];
    let Reply::Response(r) = analytics.invoke(s3_event(bucket, key, *size)).await else {
        panic!("analytics failed")
    };
    assert!(
        r["partitions"][0].as_str().unwrap().contains("UpToDate"),
        "{r}"
    );

    // Nothing any function printed holds a client secret.
    for org in sim.orgs() {
        for f in [&dispatch, &export, &analytics] {
            assert!(
                !f.logs().iter().any(|l| l.contains(&org.client_secret)),
                "{} logged a client secret",
                f.name
            );
        }
    }
}

#[tokio::test]
async fn a_binary_without_its_environment_stops_before_asking_for_an_event() {
    config().await;
    let mut export = Function::start("export", &[]).await;
    assert!(!export.exited().await.success());
    assert_eq!(export.cold_init(), None, "it never asked for an event");
    let logs = export.logs().join("\n");
    assert!(logs.contains("TABLE_NAME"), "names the variable: {logs}");
}

#[tokio::test]
async fn inside_lambda_an_org_secret_naming_a_loopback_host_fails_the_orgs_days() {
    let sim = genesys_sim::start(Scenario::test()).await.unwrap();
    let stack = Stack::new(&sim).await;
    let org = &sim.orgs()[0];
    let requests = || {
        let stats = sim.stats();
        stats.unattributed_requests
            + stats
                .orgs
                .values()
                .map(|o| o.totals.requests + o.tokens.values().map(|t| t.requests).sum::<u64>())
                .sum::<u64>()
    };
    let before = requests();
    let mut dispatch = Function::start("dispatch", &stack.env(&["TABLE_NAME", "QUEUE_URL"])).await;
    let event = json!({"orgs": [org.org_id], "from": "2026-11-01", "to": "2026-11-02",
        "idempotency_key": "loopback-1"});
    let Reply::Response(answer) = dispatch.invoke(event).await else {
        panic!("dispatch failed: {:?}", dispatch.logs())
    };
    let messages = receive_all(&stack.sqs, &stack.queue_url).await;
    assert_eq!(messages.len(), 1);
    // Without SCORECARDS_ALLOW_LOOPBACK: the secret's loopback hosts are refused before any
    // request (the day fails for good, naming the field), and nothing is sent to them.
    let mut export = Function::start("export", &stack.env(EXPORT_ENV)).await;
    let Reply::Response(r) = export.invoke(sqs_event(&messages[0])).await else {
        panic!("export failed: {:?}", export.logs())
    };
    assert_eq!(r, json!({"batchItemFailures": []}));
    let status = onboarding::dispatch_status(&stack.ledger, answer["job_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.len(), 1);
    assert!(
        status[0].pending.is_none(),
        "failed for good: off the pending set"
    );
    match status[0].record.as_ref().map(|r| &r.status) {
        Some(JobStatus::Failed { reason }) => {
            assert!(reason.contains("loopback host"), "{reason}");
            assert!(reason.contains("_base_url"), "names the field: {reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(requests(), before, "no request reached the simulator");
}
