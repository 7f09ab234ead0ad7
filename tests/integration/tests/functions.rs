//! The functions' handlers end to end on the local AWS emulator, with the simulator as
//! Genesys: dispatch → SQS → export → S3.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use genesys_sim::Scenario;
use scorecards_shared::adapters::dynamodb::DynamoStore;
use scorecards_shared::adapters::ledger::StoreLedger;
use scorecards_shared::adapters::secrets::SecretsManagerCredentials;
use scorecards_shared::adapters::sqs::SqsQueue;
use scorecards_shared::clock::{Clock, add};
use scorecards_shared::domain::{DateField, JobSpec, Source};
use scorecards_shared::handlers::dispatch::{
    DispatchEnv, DispatchError, DispatchLimits, DispatchRecord, dispatch_json,
};
use scorecards_shared::handlers::export::{ExportEnv, Handled, handle_message, handle_sqs_event};
use scorecards_shared::onboarding;
use scorecards_shared::output::committed_by_id;
use scorecards_shared::ports::{JobMessage, JobQueue, JobStatus, JobStore, StoreError};
use scorecards_tables::Outcome;
use scorecards_tables::handler::handle_s3_event;
use serde_json::json;

use crate::aws::{config, dynamo_store, org_secret, queue, s3_sink, unique};
use crate::harness::{Harness, assert_same, settings};

/// The SQS queue, recording what the export function sends (continuations), so a test
/// processes exactly the message that was enqueued.
struct RecordingQueue {
    inner: SqsQueue,
    sent: std::sync::Mutex<Vec<(JobMessage, Duration)>>,
}

#[async_trait::async_trait]
impl JobQueue for RecordingQueue {
    async fn send(&self, message: &JobMessage, delay: Duration) -> Result<(), StoreError> {
        self.inner.send(message, delay).await?;
        self.sent.lock().unwrap().push((message.clone(), delay));
        Ok(())
    }
}

struct Stack {
    h: Harness,
    continuations: Arc<RecordingQueue>,
    dispatch: DispatchEnv<DynamoStore>,
    export: ExportEnv,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    secrets: aws_sdk_secretsmanager::Client,
    prefix: String,
}

async fn stack() -> Stack {
    stack_with(Scenario::test()).await
}

async fn stack_with(scenario: Scenario) -> Stack {
    let h = Harness::start(scenario).await;
    let conf = config().await;
    let (sqs, queue_url) = queue().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&conf);
    let prefix = format!("{}/", unique("scorecards/orgs"));
    let org = &h.sim.orgs()[0];
    let store = dynamo_store().await;
    let ledger = StoreLedger::new(store.clone());
    let mut secret = org_secret(org, &org.client_secret);
    secret["rate_limit"] = json!(org.token_limit.allowed);
    secret["rate_window_secs"] = json!(org.token_limit.window_ms as f64 / 1000.0);
    onboarding::add_org(
        &secrets,
        &ledger,
        &prefix,
        &org.org_id.parse().unwrap(),
        &secret.to_string(),
    )
    .await
    .expect("onboard the org");
    // Onboarding again replaces the secret (a rotation: another value) and keeps one
    // registration; then the first value is put back.
    let mut rotated = secret.clone();
    rotated["client_secret"] = json!("rotated-value");
    for value in [&rotated, &secret] {
        onboarding::add_org(
            &secrets,
            &ledger,
            &prefix,
            &org.org_id.parse().unwrap(),
            &value.to_string(),
        )
        .await
        .unwrap();
        let stored = secrets
            .get_secret_value()
            .secret_id(format!("{prefix}{}", org.org_id))
            .send()
            .await
            .unwrap();
        let stored: serde_json::Value =
            serde_json::from_str(stored.secret_string().unwrap()).unwrap();
        assert_eq!(&stored, value, "the stored secret is the new one");
    }
    assert_eq!(ledger.orgs().await.unwrap().len(), 1);
    // Bad credentials are refused before anything is written.
    let refused = onboarding::add_org(
        &secrets,
        &ledger,
        &prefix,
        &"other-org".parse().unwrap(),
        r#"{"region":"mars","client_id":"c","client_secret":"s"}"#,
    )
    .await;
    assert!(refused.is_err());
    assert_eq!(ledger.orgs().await.unwrap().len(), 1);
    let clock: Arc<dyn Clock> = Arc::new(h.clock.clone());
    let queue = Arc::new(SqsQueue::new(sqs.clone(), queue_url.clone()));
    let continuations = Arc::new(RecordingQueue {
        inner: SqsQueue::new(sqs.clone(), queue_url.clone()),
        sent: Default::default(),
    });
    let shared_store = Arc::new(StoreLedger::new(store));
    let export = ExportEnv {
        ledger: shared_store.clone(),
        jobs: shared_store,
        sink: Arc::new(s3_sink().await),
        queue: continuations.clone(),
        credentials: Arc::new(SecretsManagerCredentials::new(
            secrets.clone(),
            prefix.clone(),
        )),
        clock: Arc::clone(&clock),
        settings: settings(),
    };
    let dispatch = DispatchEnv {
        ledger,
        queue,
        clock,
        limits: DispatchLimits {
            stagger: Duration::ZERO,
            ..DispatchLimits::default()
        },
    };
    Stack {
        h,
        continuations,
        dispatch,
        export,
        sqs,
        queue_url,
        secrets,
        prefix,
    }
}

impl Stack {
    /// Onboards simulator org `index` (again: a rotation) with `client_secret`.
    async fn onboard(&self, index: usize, client_secret: &str) {
        let org = &self.h.sim.orgs()[index];
        let secret = org_secret(org, client_secret);
        onboarding::add_org(
            &self.secrets,
            &self.dispatch.ledger,
            &self.prefix,
            &org.org_id.parse().unwrap(),
            &secret.to_string(),
        )
        .await
        .unwrap();
    }

    /// The jobs of a dispatch and each one's status.
    async fn status(&self, job_id: &str) -> Vec<(JobSpec, Option<JobStatus>)> {
        onboarding::dispatch_status(&self.dispatch.ledger, job_id)
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|day| (day.spec, day.record.map(|r| r.status)))
            .collect()
    }

    /// Every visible message, removed from the queue, as an SQS event per message.
    async fn drain(&self) -> Vec<SqsEvent> {
        let mut events = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return events;
            }
            for m in messages {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle.clone().unwrap())
                    .send()
                    .await
                    .unwrap();
                events.push(SqsEvent {
                    records: vec![SqsMessage {
                        message_id: m.message_id.clone(),
                        body: m.body.clone(),
                        ..SqsMessage::default()
                    }],
                });
            }
        }
    }

    fn jobs(&self) -> Vec<JobSpec> {
        self.h.jobs(&self.h.org(0))
    }

    /// An on-demand request for one day of org 0.
    fn day_request(&self, day: &JobSpec, key: &str) -> serde_json::Value {
        json!({
            "orgs": [self.h.sim.orgs()[0].org_id],
            "from": day.window.from.to_string(),
            "to": day.window.to.to_string(),
            "idempotency_key": key,
        })
    }

    /// An on-demand request for every day of org 0.
    fn request(&self, key: &str) -> serde_json::Value {
        let jobs = self.jobs();
        json!({
            "orgs": [self.h.sim.orgs()[0].org_id],
            "from": jobs[0].window.from.to_string(),
            "to": jobs.last().unwrap().window.to.to_string(),
            "idempotency_key": key,
        })
    }

    async fn export_all(&self, events: Vec<SqsEvent>) {
        let deadline = add(self.h.clock.now(), Duration::from_secs(900));
        for event in events {
            let response = handle_sqs_event(&self.export, event, "invocation", deadline).await;
            assert!(response.batch_item_failures.is_empty(), "no message failed");
        }
    }
}

#[tokio::test]
async fn dispatch_then_export_lands_the_ground_truth_in_s3() {
    let s = stack().await;
    let response = dispatch_json(&s.dispatch, s.request("backfill-1"))
        .await
        .unwrap();
    let jobs = s.jobs();
    assert_eq!(response.days, jobs.len());
    let events = s.drain().await;
    assert_eq!(events.len(), 1, "one message per org");
    let org_id = s.h.sim.orgs()[0].org_id.parse().unwrap();
    let pending = s.export.jobs.pending(&org_id).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.spec.clone()).collect::<Vec<_>>(),
        jobs,
        "every day pending, oldest first"
    );

    // The same message delivered twice: the second finds nothing pending.
    let duplicate = events[0].clone();
    s.export_all(events).await;
    assert!(s.export.jobs.pending(&org_id).await.unwrap().is_empty());
    s.export_all(vec![duplicate]).await;
    let org = s.h.org(0);
    let tokens =
        s.h.sim
            .stats()
            .org(org.endpoint.org_id.as_str())
            .endpoint("token")
            .requests;
    assert_eq!(tokens, 1, "the messages of one org reuse one access token");
    let exported = committed_by_id(s.export.sink.as_ref(), &jobs)
        .await
        .unwrap();
    assert_same(&exported, &s.h.truth(&org, &jobs));

    // Each manifest triggers analytics (a real S3 notification, URL-encoded key); running
    // it again on the same manifest finds the tables current.
    for job in &jobs {
        let key = format!(
            "exports/evaluations/org_id%3D{}/date_field%3D{}/source%3D{}/date%3D{}/_manifest.json",
            job.org_id, job.date_field, job.source, job.day
        );
        let event = json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-29T00:00:00.000Z", "eventName": "ObjectCreated:Put",
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "manifest",
                   "bucket": {"name": "b", "ownerIdentity": {"principalId": "O"}, "arn": "arn:aws:s3:::b"},
                   "object": {"key": key, "size": 1, "eTag": "e", "sequencer": "1"}}
        }]});
        let first = handle_s3_event(s.export.sink.as_ref(), event.clone())
            .await
            .unwrap();
        let committed = s
            .export
            .sink
            .manifest(&job.partition())
            .await
            .unwrap()
            .unwrap();
        let Outcome::Written { run_id, rows } = &first[0].1 else {
            panic!("{:?}", first[0].1)
        };
        assert_eq!(run_id, &committed.run_id);
        assert_eq!(rows[0], committed.total_records, "one row per evaluation");
        assert!(rows[1] > rows[0] && rows[2] > 0, "{rows:?}");
        let tables =
            scorecards_tables::table_key("evaluations", &job.partition(), &committed.run_id);
        let before = s.export.sink.get(&tables).await.unwrap().unwrap();
        // The same notification again (S3 delivers at least once): nothing is rewritten.
        let again = handle_s3_event(s.export.sink.as_ref(), event)
            .await
            .unwrap();
        assert_eq!(again[0].1, Outcome::UpToDate(committed.run_id.clone()));
        assert_eq!(s.export.sink.get(&tables).await.unwrap().unwrap(), before);
        assert_eq!(
            s.export
                .sink
                .list(&scorecards_tables::table_dir(
                    "evaluations",
                    &job.partition()
                ))
                .await
                .unwrap(),
            [tables]
        );
    }

    // The dispatch's status lists every job, committed.
    let status = onboarding::dispatch_status(&s.dispatch.ledger, &response.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.len(), jobs.len());
    assert!(status.iter().all(|day| day.pending.is_none()
        && matches!(
            day.record.as_ref().map(|r| &r.status),
            Some(JobStatus::Committed { .. })
        )));
    assert!(
        onboarding::dispatch_status(&s.dispatch.ledger, "no-such-job")
            .await
            .unwrap()
            .is_none()
    );

    // Replaying the request with the same key returns the same job and enqueues nothing.
    let again = dispatch_json(&s.dispatch, s.request("backfill-1"))
        .await
        .unwrap();
    assert_eq!(again, response);
    assert!(s.drain().await.is_empty());
    // The same key for another request is a conflict, and enqueues nothing.
    let mut other = s.request("backfill-1");
    other["source"] = json!("human");
    assert!(matches!(
        dispatch_json(&s.dispatch, other).await,
        Err(DispatchError::Conflict(key)) if key == "backfill-1"
    ));
    assert!(s.drain().await.is_empty());

    // The same days dispatched again: while they wait, the new dispatch's status says so
    // (their records still tell how the last run ended).
    let again = dispatch_json(&s.dispatch, s.request("backfill-2"))
        .await
        .unwrap();
    let status = onboarding::dispatch_status(&s.dispatch.ledger, &again.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.len(), jobs.len());
    assert!(status.iter().all(|day| day.pending.is_some()
        && matches!(
            day.record.as_ref().map(|r| &r.status),
            Some(JobStatus::Committed { .. })
        )));
    assert_eq!(s.drain().await.len(), 1, "one message for the org");
    // The first dispatch stays done: its days were committed after it was made.
    let first = onboarding::dispatch_status(&s.dispatch.ledger, &response.job_id)
        .await
        .unwrap()
        .unwrap();
    assert!(first.iter().all(|day| day.pending.is_none()), "{first:?}");

    // A removed org can no longer be dispatched.
    let secrets = aws_sdk_secretsmanager::Client::new(&config().await);
    let org_id = s.h.sim.orgs()[0].org_id.parse().unwrap();
    assert!(
        onboarding::remove_org(&secrets, &s.dispatch.ledger, "unused/", &org_id, false)
            .await
            .unwrap()
    );
    assert!(
        !onboarding::remove_org(&secrets, &s.dispatch.ledger, "unused/", &org_id, false)
            .await
            .unwrap(),
        "removing twice says it was not registered"
    );
    assert!(matches!(
        dispatch_json(&s.dispatch, s.request("after-removal")).await,
        Err(DispatchError::BadRequest(e)) if e.field == "orgs"
    ));
}

#[tokio::test]
async fn bad_requests_are_rejected_with_the_field_and_enqueue_nothing() {
    let s = stack().await;
    let org = s.h.sim.orgs()[0].org_id.clone();
    let cases = [
        (
            json!({"orgs": [org], "from": "2026-11-01", "to": "2026-11-02"}),
            "idempotency_key",
        ),
        (
            json!({"orgs": ["not-registered"], "from": "2026-11-01", "to": "2026-11-02", "idempotency_key": "k"}),
            "orgs",
        ),
        (
            json!({"orgs": [org], "from": "2026-11-05", "to": "2026-11-02", "idempotency_key": "k"}),
            "from",
        ),
        (
            json!({"orgs": [org], "from": "2026-01-01", "to": "2026-11-02", "idempotency_key": "k"}),
            "to",
        ),
        (
            json!({"orgs": [org], "from": "yesterday-ish", "to": "2026-11-02", "idempotency_key": "k"}),
            "from",
        ),
        (
            json!({"schedule": {"window": "fortnight"}}),
            "schedule.window",
        ),
        (
            json!({"schedule": {"window": "yesterday", "lookback_days": 90}}),
            "schedule.lookback_days",
        ),
        (
            json!({"orgs": [org], "date_field": "whenever", "from": "2026-11-01", "to": "2026-11-02", "idempotency_key": "k"}),
            "date_field",
        ),
        (json!({"org": [org]}), "request"),
        (
            json!({"orgs": [org], "from": "2026-11-01", "to": "2026-11-02", "idempotency_key": "k".repeat(10_000)}),
            "idempotency_key",
        ),
        (
            json!({"orgs": [org], "from": "2026-11-01", "to": "2026-11-02", "idempotency_key": "a/../b"}),
            "idempotency_key",
        ),
        (
            json!({"orgs": ["../etc"], "from": "2026-11-01", "to": "2026-11-02", "idempotency_key": "k"}),
            "org_id",
        ),
    ];
    for (request, field) in cases {
        match dispatch_json(&s.dispatch, request.clone()).await {
            Err(DispatchError::BadRequest(e)) => assert_eq!(e.field, field, "{request}: {e}"),
            other => panic!("{request}: {other:?}"),
        }
    }
    assert!(s.drain().await.is_empty(), "nothing enqueued");
}

#[tokio::test]
async fn a_scheduled_dispatch_covers_every_registered_org_and_the_lookback() {
    let s = stack().await;
    let response = dispatch_json(
        &s.dispatch,
        json!({"schedule": {"window": "yesterday", "lookback_days": 2}}),
    )
    .await
    .unwrap();
    assert_eq!(response.orgs.len(), 1);
    assert_eq!(response.days, 3, "yesterday and the two days before");
    let events = s.drain().await;
    assert_eq!(events.len(), 1, "one message for the org");
    let m: JobMessage =
        serde_json::from_str(events[0].records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(m.org_id, response.orgs[0]);
    let days: Vec<String> = s
        .export
        .jobs
        .pending(&m.org_id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| {
            assert_eq!(
                (p.spec.date_field, p.spec.source),
                (DateField::SubmittedDate, Source::Both)
            );
            p.spec.day.to_string()
        })
        .collect();
    let today = s.h.clock.now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let want: Vec<String> = (1..=3)
        .rev()
        .map(|n| {
            today
                .checked_sub(jiff::ToSpan::days(n))
                .unwrap()
                .to_string()
        })
        .collect();
    let mut days = days;
    days.sort();
    assert_eq!(days, want);
}

#[tokio::test]
async fn a_long_retry_after_sends_a_continuation_instead_of_waiting() {
    let fault = genesys_sim::FaultSpec::new(
        genesys_sim::FaultKind::TooManyRequests,
        genesys_sim::EndpointSel::Query,
        &[1],
    )
    .retry_after("3600");
    let s = stack_with(Scenario::test().with_fault(0, fault)).await;
    let day = &s.jobs()[1];
    dispatch_json(&s.dispatch, s.day_request(day, "one-day"))
        .await
        .unwrap();
    let events = s.drain().await;
    assert_eq!(events.len(), 1);
    s.export_all(events).await;
    assert!(
        s.h.long_sleeps().is_empty(),
        "no in-process wait for an hour"
    );
    // The continuation is on the queue, delayed (SQS allows at most 900 s).
    assert!(s.drain().await.is_empty());
    let attributes = s
        .sqs
        .get_queue_attributes()
        .queue_url(&s.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let delayed = attributes
        .attributes
        .unwrap_or_default()
        .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .cloned();
    assert_eq!(delayed.as_deref(), Some("1"));

    // An hour later the continuation (hop 1) arrives and the job finishes from its
    // DynamoDB checkpoint, without searching again.
    s.h.clock.advance(Duration::from_secs(3601));
    let searches_before =
        s.h.sim
            .stats()
            .org(&s.h.sim.orgs()[0].org_id)
            .endpoint("search")
            .requests;
    let sent = s.continuations.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "one continuation for the org");
    let (continuation, delay) = sent[0].clone();
    assert_eq!(
        (continuation.org_id.clone(), continuation.hop),
        (day.org_id.clone(), 1)
    );
    assert!(
        delay >= Duration::from_secs(900),
        "delayed as long as SQS allows: {delay:?}"
    );
    let sim_before =
        s.h.sim
            .stats()
            .org(&s.h.sim.orgs()[0].org_id)
            .totals
            .requests;
    let handled = handle_message(
        &s.export,
        &serde_json::to_string(&continuation).unwrap(),
        "later",
        add(s.h.clock.now(), Duration::from_secs(900)),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            handled,
            Handled::Worked {
                committed: 1,
                failed: 0,
                continued: None,
                ..
            }
        ),
        "{handled:?}"
    );
    // The embedded-metric line counts exactly the requests the simulator saw.
    let Handled::Worked { metrics, .. } = &handled else {
        unreachable!()
    };
    let sim_after =
        s.h.sim
            .stats()
            .org(&s.h.sim.orgs()[0].org_id)
            .totals
            .requests;
    let reported: u64 = metrics
        .iter()
        .map(|m| m["Requests"].as_u64().unwrap() + m["TokenRequests"].as_u64().unwrap())
        .sum();
    assert_eq!(metrics.len(), 1);
    // The org check (`organizations/me`) of the new exporter is not one of the day's.
    assert_eq!(reported + 1, sim_after - sim_before, "{metrics:?}");
    let searches =
        s.h.sim
            .stats()
            .org(&s.h.sim.orgs()[0].org_id)
            .endpoint("search")
            .requests;
    assert_eq!(
        searches, searches_before,
        "discovery came from the checkpoint"
    );
    let org = s.h.org(0);
    let one = std::slice::from_ref(day);
    assert_same(
        &committed_by_id(s.export.sink.as_ref(), one).await.unwrap(),
        &s.h.truth(&org, one),
    );
}

#[tokio::test]
async fn two_invocations_on_one_org_export_it_once() {
    let s = stack().await;
    let day = &s.jobs()[1];
    dispatch_json(&s.dispatch, s.day_request(day, "twice"))
        .await
        .unwrap();
    let events = s.drain().await;
    let body = events[0].records[0].body.clone().unwrap();
    let deadline = add(s.h.clock.now(), Duration::from_secs(900));
    let (a, b) = tokio::join!(
        handle_message(&s.export, &body, "invocation-a", deadline),
        handle_message(&s.export, &body, "invocation-b", deadline)
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|h| matches!(h, Handled::AlreadyRunning));
    assert!(
        matches!(outcomes[0], Handled::Worked { committed: 1, .. }),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], Handled::AlreadyRunning);
    let org = s.h.org(0);
    let one = std::slice::from_ref(day);
    assert_same(
        &committed_by_id(s.export.sink.as_ref(), one).await.unwrap(),
        &s.h.truth(&org, one),
    );
}

#[tokio::test]
async fn two_messages_for_one_org_at_once_one_works_and_every_day_commits_once() {
    let s = stack().await;
    let jobs = s.jobs();
    let (a, b) = (&jobs[0], &jobs[1]);
    dispatch_json(&s.dispatch, s.day_request(a, "first"))
        .await
        .unwrap();
    dispatch_json(&s.dispatch, s.day_request(b, "second"))
        .await
        .unwrap();
    let events = s.drain().await;
    assert_eq!(events.len(), 2, "one message per dispatch of the org");
    let bodies: Vec<String> = events
        .iter()
        .map(|e| e.records[0].body.clone().unwrap())
        .collect();
    let deadline = add(s.h.clock.now(), Duration::from_secs(900));
    let (x, y) = tokio::join!(
        handle_message(&s.export, &bodies[0], "invocation-x", deadline),
        handle_message(&s.export, &bodies[1], "invocation-y", deadline)
    );
    let outcomes = [x.unwrap(), y.unwrap()];
    let committed: usize = outcomes
        .iter()
        .map(|h| match h {
            Handled::Worked { committed, .. } => *committed,
            _ => 0,
        })
        .sum();
    assert_eq!(committed, 2, "{outcomes:?}");
    assert!(
        outcomes.contains(&Handled::AlreadyRunning)
            || outcomes
                .iter()
                .any(|h| matches!(h, Handled::Worked { committed: 0, .. })),
        "the second leaves: {outcomes:?}"
    );
    let org = s.h.org(0);
    let two = [a.clone(), b.clone()];
    assert_same(
        &committed_by_id(s.export.sink.as_ref(), &two).await.unwrap(),
        &s.h.truth(&org, &two),
    );
}

#[tokio::test]
async fn a_permanent_error_fails_that_orgs_days_in_one_invocation_and_spares_the_others() {
    let s = stack().await;
    s.onboard(1, "not-the-secret").await;
    let day = &s.jobs()[1];
    let orgs: Vec<String> = s.h.sim.orgs().iter().map(|o| o.org_id.clone()).collect();
    let response = dispatch_json(
        &s.dispatch,
        json!({
            "orgs": orgs,
            "from": day.window.from.to_string(),
            "to": day.window.to.to_string(),
            "idempotency_key": "two-orgs",
        }),
    )
    .await
    .unwrap();
    let events = s.drain().await;
    assert_eq!(events.len(), 2);
    // No message fails (nothing for SQS to redeliver) and no continuation is sent.
    s.export_all(events).await;
    assert!(s.drain().await.is_empty(), "no redelivery, no continuation");
    let status = s.status(&response.job_id).await;
    assert_eq!(status.len(), 2);
    for (spec, state) in status {
        if spec.org_id.as_str() == orgs[0] {
            assert!(
                matches!(state, Some(JobStatus::Committed { .. })),
                "{state:?}"
            );
        } else {
            assert!(
                matches!(&state, Some(JobStatus::Failed { reason }) if reason.contains("login refused")),
                "{state:?}"
            );
        }
        assert!(
            s.export
                .jobs
                .pending(&spec.org_id)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_rotated_secret_is_read_again_by_a_warm_instance() {
    let s = stack().await;
    s.onboard(0, "revoked-secret").await;
    let jobs = s.jobs();
    let first = dispatch_json(&s.dispatch, s.day_request(&jobs[0], "before"))
        .await
        .unwrap();
    s.export_all(s.drain().await).await;
    assert!(matches!(
        &s.status(&first.job_id).await[0].1,
        Some(JobStatus::Failed { .. })
    ));
    // The operator stores the new secret; the same (warm) export environment uses it.
    let org = &s.h.sim.orgs()[0];
    s.onboard(0, &org.client_secret).await;
    let second = dispatch_json(&s.dispatch, s.day_request(&jobs[1], "after"))
        .await
        .unwrap();
    s.export_all(s.drain().await).await;
    assert!(
        matches!(
            &s.status(&second.job_id).await[0].1,
            Some(JobStatus::Committed { .. })
        ),
        "{:?}",
        s.status(&second.job_id).await
    );
}

#[tokio::test]
async fn a_thousand_orgs_by_92_days_are_dispatched_in_one_call() {
    let s = stack().await;
    let orgs: Vec<scorecards_shared::domain::OrgId> = (0..1_000)
        .map(|i| format!("fleet-org-{i:04}").parse().unwrap())
        .collect();
    s.dispatch.ledger.register_orgs(&orgs).await.unwrap();
    let to = s.h.clock.now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let from = to.checked_sub(jiff::ToSpan::days(92)).unwrap();
    let started = std::time::Instant::now();
    let response = dispatch_json(
        &s.dispatch,
        json!({
            "orgs": orgs,
            "from": from.to_string(),
            "to": to.to_string(),
            "idempotency_key": "fleet-backfill",
        }),
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();
    println!("dispatch of 1,000 orgs x 92 days against the local AWS emulator: {elapsed:?}");
    assert_eq!((response.orgs.len(), response.days), (1_000, 92));
    // One message per org.
    let attributes = s
        .sqs
        .get_queue_attributes()
        .queue_url(&s.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let visible = attributes
        .attributes
        .unwrap_or_default()
        .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .cloned();
    assert_eq!(visible.as_deref(), Some("1000"));
    // Every org's pending set is exactly the 92 days; the items stay small.
    for org in orgs.iter().step_by(97).chain(orgs.last()) {
        let pending = s.dispatch.ledger.pending(org).await.unwrap();
        assert_eq!(pending.len(), 92, "{org}");
        assert_eq!(pending[0].spec.day, from);
        assert_eq!(
            pending[91].spec.day,
            to.checked_sub(jiff::ToSpan::days(1)).unwrap()
        );
        assert!(pending.iter().all(|p| p.request_id == response.job_id));
    }
    let record = s
        .dispatch
        .ledger
        .recall::<DispatchRecord>(&format!("dispatch#{}", response.job_id))
        .await
        .unwrap()
        .unwrap();
    let record_size = serde_json::to_string(&record).unwrap().len();
    assert!(record_size < 64_000, "dispatch record {record_size} bytes");
    // The status of the dispatch covers every org × day.
    assert_eq!(record.jobs().len(), 92_000);
    let work = s.dispatch.ledger.pending(&orgs[0]).await.unwrap();
    let work_size = serde_json::to_string(&work).unwrap().len();
    assert!(work_size < 100_000, "work item {work_size} bytes");
}
