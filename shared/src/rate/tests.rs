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

/// No reserve, no jitter margin and a burst of 1: one holder paces at `allowed` per window.
fn config(allowed: u32, window_ms: u64) -> RateConfig {
    RateConfig {
        default_limit: LearnedLimit { allowed, window_ms },
        safety: 0.0,
        burst: 1,
        jitter: Duration::ZERO,
        ..RateConfig::default()
    }
}

fn ledger() -> Arc<dyn RateLedger> {
    Arc::new(StoreLedger::new(MemoryStore::new()))
}

fn assert_rate(rc: &RateControl, want: f64) {
    assert!(
        (rc.rate_per_sec() - want).abs() < 1e-6,
        "rate {} want {want}",
        rc.rate_per_sec()
    );
}

#[tokio::test]
async fn paces_so_no_fixed_window_exceeds_the_limit() {
    let clock = FakeClock::new(start());
    let rc = control(ledger(), &clock, "h1", config(10, 1000));
    assert_rate(&rc, 10.0);
    for _ in 0..21 {
        rc.admit().await.unwrap();
    }
    // 21 requests at 10/s: the first is free, the other 20 take exactly 2 s.
    assert_eq!(clock.now(), start() + Duration::from_secs(2));
}

#[tokio::test]
async fn the_burst_wins_back_an_idle_moment() {
    let clock = FakeClock::new(start());
    let rc = control(
        ledger(),
        &clock,
        "h1",
        RateConfig {
            burst: 2,
            ..config(10, 1000)
        },
    );
    assert_rate(&rc, 10.0); // the burst is not taken out of the share
    rc.admit().await.unwrap();
    clock.advance(Duration::from_secs(1));
    let before = clock.sleeps().len();
    rc.admit().await.unwrap();
    rc.admit().await.unwrap();
    assert!(
        clock.sleeps()[before..].is_empty(),
        "two at once after idling"
    );
    rc.admit().await.unwrap();
    assert_eq!(clock.sleeps()[before..], [Duration::from_millis(100)]);
}

#[tokio::test]
async fn a_joining_holder_waits_until_the_others_have_seen_it() {
    let clock = FakeClock::new(start());
    let ledger = ledger();
    let a = control(Arc::clone(&ledger), &clock, "a", config(12, 1000));
    a.admit().await.unwrap();
    assert_rate(&a, 12.0);
    let b = control(Arc::clone(&ledger), &clock, "b", config(12, 1000));
    b.admit().await.unwrap();
    // b paces at its share at once: 12 / 2 holders.
    assert_rate(&b, 6.0);
    // …and started only after a's renewal (at most `renew_every` away) and one window
    // more, when a's requests under its old share have aged out.
    assert_eq!(clock.sleeps(), [Duration::from_secs(5 + 1)]);
    a.admit().await.unwrap();
    assert_rate(&a, 6.0);
}

#[tokio::test]
async fn a_429_deadline_is_honoured_by_every_holder_exactly() {
    let clock = FakeClock::new(start());
    let ledger = ledger();
    let a = control(Arc::clone(&ledger), &clock, "a", config(1000, 1000));
    let b = control(Arc::clone(&ledger), &clock, "b", config(1000, 1000));
    a.admit().await.unwrap();
    b.admit().await.unwrap();
    let until = clock.now() + Duration::from_secs(7);
    a.on_429(until).await.unwrap();
    // b renews within its interval and then waits exactly until a's deadline.
    clock.advance(Duration::from_secs(5));
    let before = clock.sleeps().len();
    let waited_from = clock.now();
    b.admit().await.unwrap();
    assert_eq!(
        clock.sleeps()[before..],
        [until.duration_since(waited_from).unsigned_abs()]
    );
    assert!(clock.now() >= until);
}

#[tokio::test]
async fn a_deadline_beyond_the_budget_defers() {
    let clock = FakeClock::new(start());
    let rc = control(ledger(), &clock, "a", config(100, 1000));
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
    let rc = control(ledger(), &clock, "a", config(101, 1000));
    assert_rate(&rc, 101.0);
    rc.on_429(start()).await.unwrap();
    assert_rate(&rc, (101.0_f64 * 0.5).floor());
    let headroom = RateHeaders {
        allowed: Some(101),
        count: Some(10),
        reset_secs: Some(1),
    };
    for _ in 0..25 {
        rc.observe(&headroom);
    }
    assert_rate(&rc, 101.0);
}

#[tokio::test]
async fn learns_the_limit_from_headers_and_shares_it() {
    let clock = FakeClock::new(start());
    let ledger = ledger();
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
    let rc = control(ledger(), &clock, "a", config(1000, 60_000));
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
