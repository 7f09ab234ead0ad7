//! The `scorecards` binary as users run it: exit codes (0, 1, 2, 3, 130, 143), messages that
//! name the flag, progress lines, Ctrl-C and resuming. Export tests run the bundled
//! simulator in-process; the stack commands need the local AWS emulator that
//! `bash scripts/test.sh` starts (`AWS_ENDPOINT_URL`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;

fn scorecards(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("scorecards").expect("the scorecards binary is built");
    cmd.current_dir(dir).env_remove("RUST_LOG");
    cmd
}

/// `export --simulate` into `dir` with its own output and state.
fn export(dir: &Path, scenario: &str) -> Command {
    let mut cmd = scorecards(dir);
    cmd.args([
        "export",
        "--simulate",
        "--no-progress",
        "--scenario",
        scenario,
    ]);
    cmd.args(["--out", "out", "--state", "state.db"]);
    cmd
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn the_test_scenario_commits_every_org_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), "test")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Test Org A").and(predicate::str::contains("committed")))
        // The banner names the days exported and the simulator's data period.
        .stderr(predicate::str::contains("exporting 2 org(s), UTC day "))
        .stderr(predicate::str::contains("its evaluations were created"))
        // With --no-progress: a line per committed day.
        .stderr(
            predicate::str::contains("committed, ").and(predicate::str::contains("(day 1 of 1)")),
        );
}

#[test]
fn an_org_that_fails_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "failing.toml",
        r#"
name = "failing"
[latency.default]
min_ms = 0
max_ms = 0
[[orgs]]
name = "Broken Org"
region = "mypurecloud.com"
evaluations = 20
[[orgs.faults]]
kind = "http_error"
endpoint = "search"
probability = 1.0
status = 500
"#,
    );
    export(dir.path(), &scenario)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("Broken Org").and(predicate::str::contains("failed: ")));
}

/// A `Retry-After` longer than the export waits in-process defers the org: exit 3, and the
/// table says until when.
#[test]
fn a_long_retry_after_defers_the_org_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "throttled.toml",
        r#"
name = "throttled"
[latency.default]
min_ms = 0
max_ms = 0
[[orgs]]
name = "Throttled Org"
region = "mypurecloud.com"
evaluations = 20
[[orgs.faults]]
kind = "too_many_requests"
endpoint = "search"
at = [1]
retry_after = "3600"
"#,
    );
    export(dir.path(), &scenario).assert().code(3).stdout(
        predicate::str::contains("Throttled Org").and(predicate::str::contains("deferred until")),
    );
}

#[test]
fn the_pessimistic_scenario_commits_with_gaps_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), "pessimistic")
        .args(["--window", "last-3d"])
        .timeout(Duration::from_secs(300))
        .assert()
        .code(3)
        .stdout(predicate::str::contains("committed_with_gaps"));
}

#[test]
fn a_sub_day_window_says_the_whole_day_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), "test")
        .args([
            "--from",
            "2026-11-27T10:00:00Z",
            "--to",
            "2026-11-27T12:00:00Z",
        ])
        .assert()
        .stderr(predicate::str::contains(
            "UTC day 2026-11-27 (--from/--to widened to whole UTC days",
        ));
}

/// Bad input: exit 2, one line naming the flag, before the simulator starts (so before any
/// request: the simulator prints its address when it starts).
#[test]
fn bad_input_exits_2_naming_the_flag_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a-file", "not a directory");
    write(
        d,
        "not-a-db",
        "hello, this is not SQLite, just some text long enough to matter\n",
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--out", "a-file"], "--out: "),
        (vec!["--state", "missing/state.db"], "--state: "),
        (vec!["--state", "not-a-db"], "--state: "),
        (vec!["--state", "."], "--state: "),
        (vec!["--window", "last-400d"], "--window: "),
        (vec!["--window", "fortnight"], "--window: "),
        (vec!["--from", "2000-01-01"], "--from/--to: "),
        (vec!["--from", "2026-11-27T10:00:00"], "--from: "),
        (vec!["--from", "2026-11-27", "--to", "2026-11-26"], "--to: "),
        (vec!["--from", "2999-01-01"], "--from: "),
        (vec!["--scenario", "nope"], "--scenario: "),
    ];
    for (args, flag) in cases {
        let mut cmd = scorecards(d);
        cmd.args(["export", "--simulate", "--no-progress"]);
        for (flag, default) in [
            ("--scenario", "test"),
            ("--out", "out"),
            ("--state", "s.db"),
        ] {
            if !args.contains(&flag) {
                cmd.args([flag, default]);
            }
        }
        cmd.args(&args);
        let started = Instant::now();
        cmd.assert()
            .code(2)
            .stderr(predicate::str::contains(format!("error: {flag}")))
            .stderr(predicate::str::contains("simulator:").not());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{args:?} took long"
        );
    }
    // Neither --simulate nor an orgs file.
    scorecards(d)
        .args(["export", "--out", "out"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--orgs-file"));
    // An orgs file that does not exist (also under its old spelling --orgs).
    for flag in ["--orgs-file", "--orgs"] {
        scorecards(d)
            .args(["export", flag, "nowhere.toml"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("error: --orgs-file: "));
    }
}

/// `run` checks its input as `export` does, before looking for AWS credentials or calling
/// AWS (the endpoint given here would refuse any call).
#[test]
fn run_checks_its_input_before_any_aws_call() {
    let dir = tempfile::tempdir().unwrap();
    let org = "6a8b2c1d-0000-4000-8000-000000000001";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--window", "last-999d"], "--window: "),
        (
            vec![
                "--org-ids",
                org,
                "--from",
                "2026-11-02",
                "--to",
                "2026-11-01",
            ],
            "--to: ",
        ),
        (
            vec!["--orgs", org, "--from", "2026-01-01", "--to", "2026-11-01"],
            "--from/--to: ",
        ),
        (
            vec!["--org-ids", "not/an/id", "--from", "2026-11-01"],
            "--org-ids: ",
        ),
        (
            vec![
                "--remote",
                "--org-ids",
                org,
                "--from",
                "2026-11-01T00:00:00",
            ],
            "--from: ",
        ),
    ];
    for (args, flag) in cases {
        scorecards(dir.path())
            .args(["run", "--dispatch-function", "scorecards-dispatch"])
            .args(&args)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!("error: {flag}")));
    }
}

#[test]
fn without_aws_credentials_the_stack_commands_say_how_to_provide_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = scorecards(dir.path());
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "eu-west-2")
        .args(["orgs", "list", "--table", "scorecards"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no AWS credentials were found"))
        .stderr(predicate::str::contains("AWS_ACCESS_KEY_ID"));
}

/// A scenario slow enough to interrupt: a small org, done (its task's result taken) before
/// the signal comes, then an org with 4 days at 5 requests per second.
const SLOW: &str = r#"
name = "slow"
days_before = 3
[[orgs]]
name = "Quick Org"
region = "mypurecloud.com"
evaluations = 8
agents = 2
evaluators = 1
[[orgs]]
name = "Slow Org"
region = "mypurecloud.com"
evaluations = 3000
agents = 30
evaluators = 6
limit = { allowed = 10, window_ms = 2000 }
"#;

#[test]
fn ctrl_c_prints_what_was_committed_exits_130_and_a_rerun_resumes() {
    interrupted_then_resumed("-INT", 130);
}

#[test]
fn sigterm_stops_like_ctrl_c_with_exit_143() {
    interrupted_then_resumed("-TERM", 143);
}

/// Sends `signal` once the slow org's first day is committed: the table of what was committed, exit
/// `code`, the leases freed (a rerun is not held off) and the rerun finishing the rest.
fn interrupted_then_resumed(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scenario = write(d, "slow.toml", SLOW);
    let args = [
        "export",
        "--simulate",
        "--no-progress",
        "--scenario",
        &scenario,
        "--window",
        "last-3d",
        "--out",
        "out",
        "--state",
        "state.db",
    ];
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("scorecards"))
        .current_dir(d)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the first day is committed.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in stderr.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        // By then the quick org's task has finished.
        if line.starts_with("Slow Org") && line.contains(": committed") {
            break;
        }
    }
    // Keep reading what it says after the signal.
    let rest = std::thread::spawn(move || stderr.map_while(Result::ok).collect::<Vec<_>>());
    assert!(
        seen.last().is_some_and(|l| l.contains(": committed")),
        "{seen:#?}"
    );
    let killed = StdCommand::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(code), "{stdout}");
    assert!(stdout.contains("Slow Org"), "{stdout}");
    assert!(stdout.contains("interrupted: "), "{stdout}");
    assert!(!stdout.contains("interrupted: 0 of"), "{stdout}");
    let rest = rest.join().unwrap();
    assert!(
        rest.iter()
            .any(|l| l.contains("run the same command again to resume")),
        "{rest:#?}"
    );
    // The leases were freed: the rerun is not "already running elsewhere"; it finishes the
    // remaining days.
    scorecards(d)
        .args(args)
        .timeout(Duration::from_secs(300))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("already running").not())
        .stdout(predicate::str::contains("4/4"));
}

mod stack {
    //! Against the local AWS emulator (`AWS_ENDPOINT_URL`, set by `bash scripts/test.sh`).

    use super::*;

    fn endpoint() -> String {
        std::env::var("AWS_ENDPOINT_URL").expect(
            "AWS_ENDPOINT_URL is not set: run `bash scripts/test.sh`, which starts a local AWS emulator (moto)",
        )
    }

    /// A new table on the emulator, created with the AWS CLI-free way: the binary's own
    /// `orgs list` needs one to exist, so create it through the SDK in a small runtime.
    fn table() -> String {
        let _ = endpoint();
        let name = format!("cli-{}-{}", std::process::id(), uuid_suffix());
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use aws_sdk_dynamodb::types::{
                AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            };
            let config = aws_config::load_from_env().await;
            aws_sdk_dynamodb::Client::new(&config)
                .create_table()
                .table_name(&name)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name("pk")
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .unwrap(),
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("pk")
                        .key_type(KeyType::Hash)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .expect("create table on the emulator");
        });
        name
    }

    fn uuid_suffix() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::SeqCst).to_string()
    }

    #[test]
    fn removing_an_org_that_is_not_registered_exits_1() {
        let dir = tempfile::tempdir().unwrap();
        let table = table();
        scorecards(dir.path())
            .args(["orgs", "remove", "--table", &table])
            .args(["--org-id", "6a8b2c1d-0000-4000-8000-000000000001"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("is not registered"));
    }

    #[test]
    fn status_of_an_unknown_dispatch_exits_1_and_list_exits_0() {
        let dir = tempfile::tempdir().unwrap();
        let table = table();
        scorecards(dir.path())
            .args(["status", "--table", &table, "no-such-job"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("no such dispatch"));
        scorecards(dir.path())
            .args(["orgs", "list", "--table", &table])
            .assert()
            .code(0);
    }

    #[test]
    fn orgs_add_refuses_bad_input_with_2() {
        let dir = tempfile::tempdir().unwrap();
        let _ = endpoint();
        let org = "6a8b2c1d-0000-4000-8000-000000000001";
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (
                vec!["--org-id", "acme", "--region", "eu_west_2"],
                "--org-id: ",
            ),
            (
                vec!["--org-id", org, "--region", "mars_north_1"],
                "credentials: ",
            ),
        ];
        for (args, flag) in cases {
            scorecards(dir.path())
                .args([
                    "orgs",
                    "add",
                    "--table",
                    "no-such-table",
                    "--client-id",
                    "c",
                ])
                .args(&args)
                .write_stdin("a-secret\n")
                .assert()
                .code(2)
                .stderr(predicate::str::contains(format!("error: {flag}")));
        }
        scorecards(dir.path())
            .args([
                "orgs",
                "add",
                "--table",
                "no-such-table",
                "--client-id",
                "c",
            ])
            .args(["--org-id", org, "--region", "eu_west_2"])
            .write_stdin("\n")
            .assert()
            .code(2)
            .stderr(predicate::str::contains("error: client secret: "));
    }
}

#[test]
fn the_report_covers_one_org_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), "test").assert().code(0);
    // Two orgs in the folder: the report must be told which (it never mixes customers).
    scorecards(dir.path())
        .args(["report", "--dir", "out", "--out", "r.html"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--orgs"));
    scorecards(dir.path())
        .args(["report", "--dir", "nope", "--out", "r.html"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--dir"));
    scorecards(dir.path())
        .args(["tables", "--out", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--out"));
    let org = std::fs::read_dir(dir.path().join("out/tables/evaluations"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().replace("org_id=", ""))
        .next()
        .unwrap();
    for (flag, value) in [
        ("--orgs", "00000000-0000-0000-0000-000000000000"),
        ("--source", "bogus"),
        ("--date-field", "bogus"),
    ] {
        let mut cmd = scorecards(dir.path());
        cmd.args(["report", "--dir", "out", "--out", "r.html"]);
        if flag != "--orgs" {
            cmd.args(["--orgs", &org]);
        }
        cmd.args([flag, value])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(flag));
    }
    scorecards(dir.path())
        .args(["report", "--dir", "out", "--out", "r.html", "--orgs", &org])
        .assert()
        .code(0);
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(html.contains("<svg"), "a report with charts");
}
