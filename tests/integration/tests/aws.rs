//! The AWS adapters against a local AWS emulator. `bash scripts/test.sh` installs and starts
//! moto and sets `AWS_ENDPOINT_URL`; without it these tests fail and say so.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use genesys_sim::Scenario;
use scorecards_shared::adapters::dynamodb::DynamoStore;
use scorecards_shared::adapters::ledger::StoreLedger;
use scorecards_shared::adapters::s3::{self, S3Sink};
use scorecards_shared::clock::Clock;
use scorecards_shared::engine::{ExportOutcome, NoProgress};
use scorecards_shared::output::committed_by_id;
use scorecards_shared::ports::ExportSink;
use scorecards_shared::runner::{OrgStatus, Ports, org_exporter, run_org};

use crate::harness::{Harness, assert_same, settings};

pub async fn config() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run `bash scripts/test.sh`, which starts a local AWS emulator (moto)"
    );
    scorecards_shared::handlers::aws_env::sdk_config().await
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_like())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh table shaped like the stack's (partition key `pk`, on-demand).
pub async fn dynamo_store() -> DynamoStore {
    let (client, table) = dynamo_table().await;
    DynamoStore::new(client, table)
}

/// A fresh table shaped like the stack's: its client and name.
pub async fn dynamo_table() -> (aws_sdk_dynamodb::Client, String) {
    let client = aws_sdk_dynamodb::Client::new(&config().await);
    let table = unique("scorecards-test");
    client
        .create_table()
        .table_name(&table)
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
    (client, table)
}

#[tokio::test]
async fn job_and_request_items_carry_their_ttl() {
    use scorecards_shared::ports::JobStore;
    let (client, table) = dynamo_table().await;
    let ledger = StoreLedger::new(DynamoStore::new(client.clone(), table.clone()));
    let from: jiff::Timestamp = "2026-11-28T00:00:00Z".parse().unwrap();
    let spec = scorecards_shared::domain::JobSpec {
        org_id: "org-1".parse().unwrap(),
        day: "2026-11-28".parse().unwrap(),
        window: scorecards_shared::domain::Window::new(
            from,
            scorecards_shared::clock::add(from, std::time::Duration::from_secs(86_400)),
        )
        .unwrap(),
        date_field: scorecards_shared::domain::DateField::SubmittedDate,
        source: scorecards_shared::domain::Source::Both,
    };
    let now = jiff::Timestamp::now();
    ledger.acquire(&spec, "h", now, now).await.unwrap();
    ledger
        .remember("key-1", &"answer".to_string())
        .await
        .unwrap();
    ledger
        .register_org(&"org-1".parse().unwrap())
        .await
        .unwrap();
    let ttl_days = |key: String| {
        let (client, table) = (client.clone(), table.clone());
        async move {
            let item = client
                .get_item()
                .table_name(table)
                .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(key))
                .send()
                .await
                .unwrap()
                .item
                .unwrap();
            item.get("expires_at").map(|v| {
                let at: i64 = v.as_n().unwrap().parse().unwrap();
                (at - now.as_second()) as f64 / 86_400.0
            })
        }
    };
    let job = ttl_days(spec.key()).await.expect("job items expire");
    assert!((89.9..=90.1).contains(&job), "{job}");
    let request = ttl_days("request#key-1".into())
        .await
        .expect("request items expire");
    assert!((29.9..=30.1).contains(&request), "{request}");
    assert_eq!(
        ttl_days("registry#orgs".into()).await,
        None,
        "the registry is kept"
    );
}

pub async fn s3_sink() -> S3Sink {
    let (client, bucket) = bucket().await;
    S3Sink::new(client, bucket, "exports")
}

/// A fresh SQS queue: its client and URL.
pub async fn queue() -> (aws_sdk_sqs::Client, String) {
    let sqs = aws_sdk_sqs::Client::new(&config().await);
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("scorecards-jobs"))
        .send()
        .await
        .expect("create queue")
        .queue_url
        .unwrap();
    (sqs, queue_url)
}

/// The org secret (`SecretString` JSON) of simulator org `org`, with `client_secret`.
pub fn org_secret(org: &genesys_sim::OrgInfo, client_secret: &str) -> serde_json::Value {
    serde_json::json!({
        "api_base_url": org.api_base_url,
        "login_base_url": org.login_base_url,
        "client_id": org.client_id,
        "client_secret": client_secret,
    })
}

/// A fresh bucket: its client and name.
pub async fn bucket() -> (aws_sdk_s3::Client, String) {
    let client = s3::client(&config().await);
    let bucket = unique("scorecards-test");
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket on the emulator");
    (client, bucket)
}

#[tokio::test]
async fn an_export_into_s3_with_dynamodb_state_equals_ground_truth() {
    let h = Harness::start(Scenario::test()).await;
    let store = Arc::new(StoreLedger::new(dynamo_store().await));
    let sink: Arc<dyn ExportSink> = Arc::new(s3_sink().await);
    let ports = Ports {
        ledger: store.clone(),
        jobs: store,
        sink: Arc::clone(&sink),
        clock: Arc::new(h.clock.clone()) as Arc<dyn Clock>,
    };
    let org = h.org(0);
    let jobs = h.jobs(&org);
    let exporter = org_exporter(&org, &settings(), &ports, "aws").unwrap();
    let summary = run_org(&exporter, &jobs, &NoProgress).await;
    assert_eq!(summary.status, OrgStatus::Committed, "{summary:?}");
    let exported = committed_by_id(sink.as_ref(), &jobs).await.unwrap();
    assert_same(&exported, &h.truth(&org, &jobs));

    // A forced re-export writes a new run, commits it, and deletes the old run's objects.
    let first = sink.manifest(&jobs[0].partition()).await.unwrap().unwrap();
    let mut forced = settings();
    forced.engine.force = true;
    let again = org_exporter(&org, &forced, &ports, "aws-2").unwrap();
    let report = again.exporter.run(&jobs[0], &NoProgress).await.unwrap();
    let ExportOutcome::Committed(second) = report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert_ne!(second.run_id, first.run_id);
    for part in &first.parts {
        assert!(
            !sink.exists(&part.key).await.unwrap(),
            "{} is deleted",
            part.key
        );
    }
    for part in &second.parts {
        assert!(sink.exists(&part.key).await.unwrap());
    }
    assert_same(
        &committed_by_id(sink.as_ref(), &jobs).await.unwrap(),
        &h.truth(&org, &jobs),
    );
}

#[tokio::test]
async fn a_secret_scheduled_for_deletion_is_as_gone_as_a_missing_one() {
    use scorecards_shared::adapters::secrets::SecretsManagerCredentials;
    use scorecards_shared::ports::{CredentialError, CredentialSource};
    let client = aws_sdk_secretsmanager::Client::new(&config().await);
    let prefix = format!("{}/", unique("scorecards/orgs"));
    let org: scorecards_shared::domain::OrgId = "org-deleted".parse().unwrap();
    client
        .create_secret()
        .name(format!("{prefix}{org}"))
        .secret_string(r#"{"region": "mypurecloud.com", "client_id": "c", "client_secret": "s"}"#)
        .send()
        .await
        .unwrap();
    let credentials = SecretsManagerCredentials::new(client.clone(), prefix.clone());
    assert!(credentials.org(&org).await.is_ok());
    // `orgs remove --delete-secret`: deleted with a recovery window, still there but refused.
    client
        .delete_secret()
        .secret_id(format!("{prefix}{org}"))
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    credentials.forget(&org).await;
    let got = credentials.org(&org).await;
    assert!(
        matches!(&got, Err(CredentialError::Unknown(id)) if *id == org),
        "{got:?}"
    );
    // And a table that is not there is named in the error.
    let missing = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config().await),
        "no-such-table",
    );
    let e = scorecards_shared::ports::ConditionalStore::get(&missing, "registry#orgs")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("table no-such-table"), "{e}");
    // Onboarding into it fails before any secret is written.
    let other: scorecards_shared::domain::OrgId = "org-other".parse().unwrap();
    let refused = scorecards_shared::onboarding::add_org(
        &client,
        &StoreLedger::new(missing),
        &prefix,
        &other,
        r#"{"region": "mypurecloud.com", "client_id": "c", "client_secret": "s"}"#,
    )
    .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("no-such-table")),
        "{refused:?}"
    );
    assert!(
        client
            .describe_secret()
            .secret_id(format!("{prefix}{other}"))
            .send()
            .await
            .is_err(),
        "no secret was written"
    );
}
