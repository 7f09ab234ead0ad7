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

/// A fixed-window server as the Genesys Cloud simulator keeps it: a window opens with the
/// first request after the previous one ended; each response carries `inin-ratelimit-*`.
/// It counts every request, including those a real server would refuse.
struct WindowServer {
    allowed: u32,
    window: Duration,
    opened: Option<Timestamp>,
    last_arrival: Option<Timestamp>,
    /// Requests per window, in order.
    per_window: Vec<u32>,
}

impl WindowServer {
    fn new(allowed: u32, window: Duration) -> Self {
        Self {
            allowed,
            window,
            opened: None,
            last_arrival: None,
            per_window: Vec::new(),
        }
    }

    /// A request arriving at `at` (not before the previous one).
    fn request(&mut self, at: Timestamp) -> RateHeaders {
        let at = self.last_arrival.map_or(at, |l| l.max(at));
        self.last_arrival = Some(at);
        let end = self.opened.map(|o| o + self.window);
        if end.is_none_or(|e| at >= e) {
            self.opened = Some(at);
            self.per_window.push(0);
        }
        let count = self.per_window.last_mut().expect("a window is open");
        *count += 1;
        let remaining = (self.opened.unwrap() + self.window).duration_since(at);
        RateHeaders {
            allowed: Some(self.allowed),
            count: Some(*count),
            reset_secs: Some(remaining.as_secs_f64().ceil() as u64),
        }
    }

    fn busiest_window(&self) -> u32 {
        self.per_window.iter().copied().max().unwrap_or(0)
    }
}

/// Latency of the `i`-th request: 20 ms plus up to 80 ms of spread.
fn latency(i: usize) -> Duration {
    Duration::from_millis(20 + (i as u64 * 37) % 81)
}

/// Holders (each on its own clock, joining at its start time) send as fast as their
/// admission allows until `end`, in time order, to one server. Returns each request's
/// admission time.
async fn run(
    holders: &[(&RateControl, &FakeClock)],
    server: &mut WindowServer,
    end: Timestamp,
) -> Vec<Timestamp> {
    let mut next = Vec::new();
    for (rc, clock) in holders {
        rc.admit().await.unwrap();
        next.push(clock.now());
    }
    let mut sent = Vec::new();
    loop {
        let (i, at) = next
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, t)| *t)
            .unwrap();
        if at >= end {
            return sent;
        }
        let headers = server.request(at + latency(sent.len()));
        sent.push(at);
        let (rc, clock) = holders[i];
        rc.observe(&headers);
        rc.admit().await.unwrap();
        next[i] = clock.now();
    }
}

/// Requests per second admitted in `[from, to)`.
fn rate_between(sent: &[Timestamp], from: Timestamp, to: Timestamp) -> f64 {
    let n = sent.iter().filter(|t| **t >= from && **t < to).count();
    n as f64 / to.duration_since(from).as_secs_f64()
}

/// The settings an org gets when its orgs file says nothing about the limit.
fn untold() -> RateConfig {
    RateConfig::default()
}

#[tokio::test]
async fn an_untold_short_window_is_learned_and_paced_to_the_quota() {
    let clock = FakeClock::new(start());
    let rc = control(ledger(), &clock, "a", untold());
    let mut server = WindowServer::new(10, Duration::from_secs(5));
    let end = start() + Duration::from_secs(120);
    let sent = run(&[(&rc, &clock)], &mut server, end).await;
    assert_eq!(
        rc.limit(),
        LearnedLimit {
            allowed: 10,
            window_ms: 5_000
        }
    );
    assert!(server.busiest_window() <= 10, "{:?}", server.per_window);
    // Learned within the first window: from 10 s on, the pace is steady.
    let rate = rate_between(&sent, start() + Duration::from_secs(10), end);
    eprintln!(
        "one holder, 10 per 5 s: {:.1} % of the quota",
        rate / 2.0 * 100.0
    );
    assert!(rate >= 0.9 * 2.0, "{rate}/s");
}

#[tokio::test]
async fn two_holders_share_an_untold_short_window_within_the_quota() {
    let ledger = ledger();
    let clock_a = FakeClock::new(start());
    let a = control(Arc::clone(&ledger), &clock_a, "a", untold());
    // b joins while a is working, after a has published what it learned.
    let joined = start() + Duration::from_secs(12);
    let clock_b = FakeClock::new(joined);
    let b = control(Arc::clone(&ledger), &clock_b, "b", untold());
    let mut server = WindowServer::new(10, Duration::from_secs(5));
    let end = start() + Duration::from_secs(240);
    let first = run(&[(&a, &clock_a)], &mut server, joined).await;
    assert!(!first.is_empty());
    clock_a.advance(joined.duration_since(clock_a.now()).unsigned_abs());
    let sent = run(&[(&a, &clock_a), (&b, &clock_b)], &mut server, end).await;
    assert!(server.busiest_window() <= 10, "{:?}", server.per_window);
    assert_eq!(a.limit().window_ms, 5_000);
    assert_eq!(b.limit().window_ms, 5_000);
    let rate = rate_between(&sent, start() + Duration::from_secs(60), end);
    eprintln!(
        "two holders, 10 per 5 s: {:.1} % of the quota",
        rate / 2.0 * 100.0
    );
    assert!(rate >= 0.85 * 2.0, "{rate}/s");
}

#[tokio::test]
async fn a_window_longer_than_assumed_is_learned_upward() {
    let clock = FakeClock::new(start());
    let rc = control(ledger(), &clock, "a", untold());
    // The public trace: allowed 180, reset 61.
    let mut server = WindowServer::new(180, Duration::from_secs(61));
    let end = start() + Duration::from_secs(61 * 6);
    let sent = run(&[(&rc, &clock)], &mut server, end).await;
    assert_eq!(
        rc.limit(),
        LearnedLimit {
            allowed: 180,
            window_ms: 61_000
        }
    );
    assert!(server.busiest_window() <= 180, "{:?}", server.per_window);
    let rate = rate_between(&sent, start() + Duration::from_secs(61), end);
    let quota = 180.0 / 61.0;
    eprintln!(
        "one holder, 180 per 61 s: {:.1} % of the quota",
        rate / quota * 100.0
    );
    assert!(rate >= 0.97 * quota, "{rate}/s");
}

#[tokio::test]
async fn a_larger_quota_is_paced_within_three_percent() {
    let clock = FakeClock::new(start());
    let rc = control(ledger(), &clock, "a", untold());
    let mut server = WindowServer::new(100, Duration::from_secs(5));
    let end = start() + Duration::from_secs(60);
    let sent = run(&[(&rc, &clock)], &mut server, end).await;
    assert!(server.busiest_window() <= 100, "{:?}", server.per_window);
    let rate = rate_between(&sent, start() + Duration::from_secs(10), end);
    eprintln!(
        "one holder, 100 per 5 s: {:.1} % of the quota",
        rate / 20.0 * 100.0
    );
    assert!(rate >= 0.97 * 20.0, "{rate}/s");
}

#[tokio::test]
async fn nonsense_headers_keep_the_default_window() {
    let clock = FakeClock::new(start());
    let rc = control(ledger(), &clock, "a", untold());
    for headers in [
        RateHeaders {
            allowed: Some(10),
            count: Some(1),
            reset_secs: Some(0),
        },
        RateHeaders {
            allowed: Some(10),
            count: None,
            reset_secs: Some(5),
        },
        RateHeaders {
            allowed: Some(10),
            count: Some(1),
            reset_secs: Some(86_400),
        },
        RateHeaders {
            allowed: Some(0),
            count: Some(0),
            reset_secs: None,
        },
        RateHeaders::default(),
    ] {
        rc.observe(&headers);
        assert_eq!(rc.limit().window_ms, 60_000, "{headers:?}");
    }
    assert_eq!(rc.limit().allowed, 10);
    // Still paced (10 per 60.1 s), never a hot loop.
    for _ in 0..3 {
        rc.admit().await.unwrap();
    }
    assert!(clock.now() >= start() + Duration::from_secs(12));
}

#[tokio::test]
async fn after_a_holder_leaves_the_others_wait_one_span_before_taking_its_share() {
    let clock = FakeClock::new(start());
    let ledger = ledger();
    let a = control(Arc::clone(&ledger), &clock, "a", config(120, 1000));
    let b = control(Arc::clone(&ledger), &clock, "b", config(120, 1000));
    a.admit().await.unwrap();
    b.admit().await.unwrap();
    a.admit().await.unwrap();
    assert_rate(&a, 60.0);
    b.release().await;
    clock.advance(Duration::from_secs(5));
    a.admit().await.unwrap(); // renews: one holder left
    assert_rate(&a, 60.0);
    // a renews every 250 ms; those renewals do not restart the span.
    for _ in 0..3 {
        clock.advance(Duration::from_millis(300));
        a.admit().await.unwrap();
        assert_rate(&a, 60.0);
    }
    clock.advance(Duration::from_millis(300));
    a.admit().await.unwrap();
    assert_rate(&a, 120.0);
}

#[tokio::test]
async fn a_smaller_share_holds_at_once_over_requests_already_sent() {
    let clock = FakeClock::new(start());
    let rc = control(ledger(), &clock, "a", config(10, 1000));
    let t0 = clock.now();
    for _ in 0..6 {
        rc.admit().await.unwrap();
    }
    // 6 sent in the last 0.5 s; a 429 halves the share to 5.
    rc.on_429(clock.now()).await.unwrap();
    rc.admit().await.unwrap();
    // The 7th waits until only 4 of the earlier ones (sent at 0, 0.1, …, 0.5 s) are
    // within the last second: at 1.1 s. Pacing alone at 5/s would send it at 0.7 s.
    assert_eq!(clock.now(), t0 + Duration::from_millis(1100));
}
