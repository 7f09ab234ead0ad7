use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::*;
use crate::adapters::ledger::StoreLedger;
use crate::adapters::memory::MemoryStore;
use crate::clock::FakeClock;

fn start() -> Timestamp {
    "2026-11-28T00:00:00Z".parse().unwrap()
}

fn control(
    ledger: Arc<dyn RateLedger>,
    clock: &FakeClock,
    holder: &str,
    config: RateConfig,
) -> RateControl {
    RateControl::new(
        BucketKey("bucket#org#client".into()),
        holder,
        ledger,
        Arc::new(clock.clone()),
        config,
    )
}

fn config(allowed: u32, window_ms: u64) -> RateConfig {
    RateConfig {
        default_limit: LearnedLimit { allowed, window_ms },
        utilisation: 1.0,
        ..RateConfig::default()
    }
}

#[tokio::test]
async fn paces_at_the_limit() {
    let clock = FakeClock::new(start());
    let ledger: Arc<dyn RateLedger> = Arc::new(StoreLedger::new(MemoryStore::new()));
    let rc = control(ledger, &clock, "h1", config(10, 1000));
    for _ in 0..21 {
        rc.admit().await.unwrap();
    }
    // 21 requests at 10/s: the first is free, the other 20 take exactly 2 s.
    assert_eq!(clock.now(), start() + Duration::from_secs(2));
}

#[tokio::test]
async fn two_holders_share_the_rate() {
    let clock = FakeClock::new(start());
    let ledger: Arc<dyn RateLedger> = Arc::new(StoreLedger::new(MemoryStore::new()));
    let a = control(Arc::clone(&ledger), &clock, "a", config(10, 1000));
    let b = control(Arc::clone(&ledger), &clock, "b", config(10, 1000));
    a.admit().await.unwrap();
    b.admit().await.unwrap();
    // b saw a in the ledger; a learns of b at its next renewal (10 requests' time, ≤ 5 s).
    assert!(
        (b.rate_per_sec() - 5.0).abs() < 1e-9,
        "{}",
        b.rate_per_sec()
    );
    clock.advance(Duration::from_secs(6));
    a.admit().await.unwrap();
    assert!(
        (a.rate_per_sec() - 5.0).abs() < 1e-9,
        "{}",
        a.rate_per_sec()
    );
}

#[tokio::test]
async fn a_429_deadline_is_honoured_by_every_holder_exactly() {
    let clock = FakeClock::new(start());
    let ledger: Arc<dyn RateLedger> = Arc::new(StoreLedger::new(MemoryStore::new()));
    let a = control(Arc::clone(&ledger), &clock, "a", config(1000, 1000));
    let b = control(Arc::clone(&ledger), &clock, "b", config(1000, 1000));
    a.admit().await.unwrap();
    b.admit().await.unwrap();
    let until = start() + Duration::from_secs(7);
    a.on_429(until).await.unwrap();
    // b renews after its renew interval and then waits for a's deadline.
    clock.advance(Duration::from_secs(5));
    let before = clock.sleeps().len();
    b.admit().await.unwrap();
    assert_eq!(clock.sleeps()[before..], [Duration::from_secs(2)]);
    assert!(clock.now() >= until);
}

#[tokio::test]
async fn a_deadline_beyond_the_budget_defers() {
    let clock = FakeClock::new(start());
    let ledger: Arc<dyn RateLedger> = Arc::new(StoreLedger::new(MemoryStore::new()));
    let rc = control(ledger, &clock, "a", config(100, 1000));
    let until = start() + Duration::from_secs(3600);
    rc.on_429(until).await.unwrap();
    match rc.admit().await {
        Err(AdmissionError::Defer { until: u }) => assert_eq!(u, until),
        other => panic!("expected a deferral, got {other:?}"),
    }
}

#[tokio::test]
async fn aimd_halves_on_429_and_recovers_with_headroom() {
    let clock = FakeClock::new(start());
    let ledger: Arc<dyn RateLedger> = Arc::new(StoreLedger::new(MemoryStore::new()));
    let rc = control(ledger, &clock, "a", config(100, 1000));
    assert!((rc.rate_per_sec() - 100.0).abs() < 1e-9);
    rc.on_429(start()).await.unwrap();
    assert!((rc.rate_per_sec() - 50.0).abs() < 1e-9);
    let headroom = RateHeaders {
        allowed: Some(100),
        count: Some(10),
        reset_secs: Some(1),
    };
    for _ in 0..25 {
        rc.observe(&headroom);
    }
    assert!(
        (rc.rate_per_sec() - 100.0).abs() < 1e-6,
        "{}",
        rc.rate_per_sec()
    );
}

#[tokio::test]
async fn learns_the_limit_from_headers_and_shares_it() {
    let clock = FakeClock::new(start());
    let ledger: Arc<dyn RateLedger> = Arc::new(StoreLedger::new(MemoryStore::new()));
    let a = control(Arc::clone(&ledger), &clock, "a", config(300, 60_000));
    a.admit().await.unwrap();
    a.observe(&RateHeaders {
        allowed: Some(180),
        count: Some(1),
        reset_secs: Some(61),
    });
    assert_eq!(
        a.limit(),
        LearnedLimit {
            allowed: 180,
            window_ms: 61_000
        }
    );
    clock.advance(Duration::from_secs(6));
    a.admit().await.unwrap(); // publishes at renewal
    let b = control(Arc::clone(&ledger), &clock, "b", config(300, 60_000));
    b.admit().await.unwrap();
    assert_eq!(
        b.limit(),
        LearnedLimit {
            allowed: 180,
            window_ms: 61_000
        }
    );
}

#[tokio::test]
async fn a_spent_window_blocks_until_reset() {
    let clock = FakeClock::new(start());
    let ledger: Arc<dyn RateLedger> = Arc::new(StoreLedger::new(MemoryStore::new()));
    let rc = control(ledger, &clock, "a", config(1000, 60_000));
    rc.admit().await.unwrap();
    rc.observe(&RateHeaders {
        allowed: Some(1000),
        count: Some(1000),
        reset_secs: Some(9),
    });
    let before = clock.sleeps().len();
    rc.admit().await.unwrap();
    assert_eq!(clock.sleeps()[before..], [Duration::from_secs(9)]);
}

#[tokio::test]
async fn a_joining_holder_is_seen_within_ten_requests_time() {
    let clock = FakeClock::new(start());
    let ledger: Arc<dyn RateLedger> = Arc::new(StoreLedger::new(MemoryStore::new()));
    let a = control(Arc::clone(&ledger), &clock, "a", config(10, 1000));
    a.admit().await.unwrap();
    let b = control(Arc::clone(&ledger), &clock, "b", config(10, 1000));
    b.admit().await.unwrap();
    // At 10 requests/s, a renews after 1 s: not before, and then it halves its pace.
    clock.advance(Duration::from_millis(900));
    a.admit().await.unwrap();
    assert!(
        (a.rate_per_sec() - 10.0).abs() < 1e-9,
        "{}",
        a.rate_per_sec()
    );
    clock.advance(Duration::from_millis(200));
    a.admit().await.unwrap();
    assert!(
        (a.rate_per_sec() - 5.0).abs() < 1e-9,
        "{}",
        a.rate_per_sec()
    );
}
