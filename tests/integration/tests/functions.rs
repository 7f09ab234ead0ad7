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
    DispatchEnv, DispatchError, DispatchLimits, dispatch_json,
};
use scorecards_shared::handlers::export::{ExportEnv, Handled, handle_message, handle_sqs_event};
use scorecards_shared::onboarding;
use scorecards_shared::output::committed_by_id;
use scorecards_shared::ports::{JobMessage, JobStatus};
use scorecards_tables::Outcome;
use scorecards_tables::handler::handle_s3_event;
use serde_json::json;

use crate::aws::{config, dynamo_store, s3_sink, unique};
use crate::harness::{Harness, assert_same, settings};

struct Stack {
    h: Harness,
    dispatch: DispatchEnv<DynamoStore>,
    export: ExportEnv,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

async fn stack() -> Stack {
    stack_with(Scenario::test()).await
}

async fn stack_with(scenario: Scenario) -> Stack {
    let h = Harness::start(scenario).await;
    let conf = config().await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("scorecards-jobs"))
        .send()
        .await
        .expect("create queue")
        .queue_url
        .unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&conf);
    let prefix = format!("{}/", unique("scorecards/orgs"));
    let org = &h.sim.orgs()[0];
    let store = dynamo_store().await;
    let ledger = StoreLedger::new(store.clone());
    let secret = json!({
        "api_base_url": org.api_base_url,
        "login_base_url": org.login_base_url,
        "client_id": org.client_id,
        "client_secret": org.client_secret,
        "rate_limit": org.token_limit.allowed,
        "rate_window_secs": org.token_limit.window_ms as f64 / 1000.0,
    });
    onboarding::add_org(
        &secrets,
        &ledger,
        &prefix,
        &org.org_id.parse().unwrap(),
        &secret.to_string(),
    )
    .await
    .expect("onboard the org");
    // Onboarding again replaces the secret and keeps one registration.
    onboarding::add_org(
        &secrets,
        &ledger,
        &prefix,
        &org.org_id.parse().unwrap(),
        &secret.to_string(),
    )
    .await
    .unwrap();
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
    let shared_store = Arc::new(StoreLedger::new(store));
    let export = ExportEnv {
        ledger: shared_store.clone(),
        jobs: shared_store,
        sink: Arc::new(s3_sink().await),
        queue: queue.clone(),
        credentials: Arc::new(SecretsManagerCredentials::new(secrets, prefix)),
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
        dispatch,
        export,
        sqs,
        queue_url,
    }
}

impl Stack {
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
    assert_eq!(response.jobs_enqueued, jobs.len());
    let events = s.drain().await;
    assert_eq!(events.len(), jobs.len(), "one message per org and day");

    // The same message delivered twice: the second finds the day committed.
    let duplicate = events[0].clone();
    s.export_all(events).await;
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
    assert!(status.iter().all(|(_, r)| matches!(
        r.as_ref().map(|r| &r.status),
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
    assert_eq!(
        response.jobs_enqueued, 3,
        "yesterday and the two days before"
    );
    let events = s.drain().await;
    let days: Vec<String> = events
        .iter()
        .map(|e| {
            let m: JobMessage =
                serde_json::from_str(e.records[0].body.as_deref().unwrap()).unwrap();
            assert_eq!(
                (m.job.date_field, m.job.source),
                (DateField::SubmittedDate, Source::Both)
            );
            m.job.day.to_string()
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
    let continuation = JobMessage {
        job: day.clone(),
        request_id: "continued".into(),
        hop: 1,
    };
    let handled = handle_message(
        &s.export,
        &serde_json::to_string(&continuation).unwrap(),
        "later",
        add(s.h.clock.now(), Duration::from_secs(900)),
    )
    .await
    .unwrap();
    assert!(matches!(handled, Handled::Done { .. }), "{handled:?}");
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
async fn two_invocations_on_one_job_export_it_once() {
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
    assert!(matches!(outcomes[0], Handled::Done { .. }), "{outcomes:?}");
    assert_eq!(outcomes[1], Handled::AlreadyRunning);
    let org = s.h.org(0);
    let one = std::slice::from_ref(day);
    assert_same(
        &committed_by_id(s.export.sink.as_ref(), one).await.unwrap(),
        &s.h.truth(&org, one),
    );
}
