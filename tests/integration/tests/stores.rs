//! One conformance suite for the conditional stores and the ledger written over them, run
//! the same way against memory, SQLite and DynamoDB (on the local AWS emulator).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use scorecards_shared::adapters::ledger::StoreLedger;
use scorecards_shared::adapters::memory::MemoryStore;
use scorecards_shared::adapters::sqlite::SqliteStore;
use scorecards_shared::clock::add;
use scorecards_shared::domain::{DateField, JobSpec, Source, Window};
use scorecards_shared::ports::{
    BucketKey, ConditionalStore, JobStatus, JobStore, JobStoreError, LeaseOutcome, RateLedger,
};

use crate::aws;

async fn conditional_writes(store: impl ConditionalStore) {
    assert!(store.get("k").await.unwrap().is_none());
    assert!(
        store.put_if("k", None, r#"{"a":1}"#, None).await.unwrap(),
        "create"
    );
    assert!(
        !store.put_if("k", None, "{}", None).await.unwrap(),
        "create again fails"
    );
    let v = store.get("k").await.unwrap().unwrap();
    assert_eq!((v.version, v.value.as_str()), (1, r#"{"a":1}"#));
    assert!(
        !store.put_if("k", Some(7), "{}", None).await.unwrap(),
        "stale version fails"
    );
    assert!(
        store
            .put_if("k", Some(1), r#"{"a":2}"#, None)
            .await
            .unwrap()
    );
    let v = store.get("k").await.unwrap().unwrap();
    assert_eq!((v.version, v.value.as_str()), (2, r#"{"a":2}"#));
}

fn spec() -> JobSpec {
    let from: Timestamp = "2026-11-28T00:00:00Z".parse().unwrap();
    JobSpec {
        org_id: "org-1".parse().unwrap(),
        day: "2026-11-28".parse().unwrap(),
        window: Window::new(from, add(from, Duration::from_secs(86_400))).unwrap(),
        date_field: DateField::SubmittedDate,
        source: Source::Both,
    }
}

async fn job_leases(store: impl ConditionalStore) {
    let jobs = StoreLedger::new(store);
    let spec = spec();
    let now: Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
    let lease = |s: u64| add(now, Duration::from_secs(s));
    assert!(matches!(
        jobs.acquire(&spec, "a", lease(60), now).await.unwrap(),
        LeaseOutcome::Acquired {
            checkpoint: None,
            epoch: 1
        }
    ));
    match jobs.acquire(&spec, "b", lease(60), now).await.unwrap() {
        LeaseOutcome::HeldByOther(l) => assert_eq!((l.holder.as_str(), l.until), ("a", lease(60))),
        other => panic!("{other:?}"),
    }
    // After a's lease expires, b takes over and a has lost it.
    let later = lease(61);
    assert!(matches!(
        jobs.acquire(&spec, "b", add(later, Duration::from_secs(60)), later)
            .await
            .unwrap(),
        LeaseOutcome::Acquired { epoch: 2, .. }
    ));
    assert!(matches!(
        JobStore::renew(&jobs, &spec, "a", lease(120), later).await,
        Err(JobStoreError::LeaseLost { .. })
    ));
    jobs.finish(&spec, "b", JobStatus::Failed { reason: "x".into() }, later)
        .await
        .unwrap();
    let record = jobs.get(&spec).await.unwrap().unwrap();
    assert!(record.lease.is_none());
    assert!(matches!(record.status, JobStatus::Failed { .. }));
}

async fn concurrent_holders_all_land(store: impl ConditionalStore) {
    let ledger = Arc::new(StoreLedger::new(store));
    let bucket = BucketKey("bucket#org-1#client".into());
    let now: Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
    let until = add(now, Duration::from_secs(60));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (ledger, bucket) = (Arc::clone(&ledger), bucket.clone());
            tokio::spawn(async move {
                RateLedger::renew(ledger.as_ref(), &bucket, &format!("h{i}"), until, now, None)
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Every conditional write landed: a ninth holder sees all eight others.
    let state = RateLedger::renew(ledger.as_ref(), &bucket, "h8", until, now, None)
        .await
        .unwrap();
    assert_eq!(state.active_holders, 9);
    let deadline = add(now, Duration::from_secs(30));
    ledger.block_until(&bucket, deadline).await.unwrap();
    let earlier = ledger
        .block_until(&bucket, add(now, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        earlier.blocked_until,
        Some(deadline),
        "a deadline only moves forward"
    );
}

macro_rules! each_store {
    ($($suite:ident),*) => {
        mod memory {
            $( #[tokio::test] async fn $suite() { super::$suite(super::MemoryStore::new()).await } )*
        }
        mod sqlite {
            $( #[tokio::test] async fn $suite() {
                let dir = tempfile::tempdir().unwrap();
                super::$suite(super::SqliteStore::open(&dir.path().join("s.db")).unwrap()).await
            } )*
        }
        mod dynamodb {
            $( #[tokio::test] async fn $suite() { super::$suite(super::aws::dynamo_store().await).await } )*
        }
    };
}

each_store!(conditional_writes, job_leases, concurrent_holders_all_land);
