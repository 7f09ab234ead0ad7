//! `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. Genesys sends whole
//! seconds (reference §5.2); fractional seconds are accepted too. Missing, zero, negative,
//! past or unparseable values become a floor (plus optional jitter) so a client never
//! hot-loops; absurd values are capped.

use std::time::Duration;

use jiff::Timestamp;

/// How `Retry-After` values are bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryAfterPolicy {
    /// Wait used when the value is zero, negative, in the past or garbage. Default 1 s.
    pub floor: Duration,
    /// Largest wait honoured; larger values are capped (and logged). Default 6 h.
    pub cap: Duration,
}

impl Default for RetryAfterPolicy {
    fn default() -> Self {
        Self {
            floor: Duration::from_secs(1),
            cap: Duration::from_secs(6 * 3600),
        }
    }
}

/// What a `Retry-After` header value meant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryAfter {
    /// A usable wait, as sent (delay-seconds or HTTP-date).
    Wait(Duration),
    /// The value was zero, negative, past or unparseable: wait the floor.
    Floor(Duration),
    /// The value exceeded the cap: wait the cap.
    Capped(Duration),
}

impl RetryAfter {
    /// The wait to honour.
    pub fn wait(self) -> Duration {
        match self {
            Self::Wait(d) | Self::Floor(d) | Self::Capped(d) => d,
        }
    }
}

/// Interprets a `Retry-After` header `value` received at `now`.
pub fn parse_retry_after(value: &str, now: Timestamp, policy: &RetryAfterPolicy) -> RetryAfter {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<f64>() {
        (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)))
    } else if let Ok(date) = httpdate::parse_http_date(value) {
        let date = Timestamp::try_from(date).ok();
        date.and_then(|d| {
            let diff = d.duration_since(now);
            (diff.is_positive()).then(|| diff.unsigned_abs())
        })
    } else {
        None
    };
    match wait {
        None => RetryAfter::Floor(policy.floor),
        Some(d) if d > policy.cap => RetryAfter::Capped(policy.cap),
        Some(d) => RetryAfter::Wait(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-10-21T07:27:00Z".parse().unwrap()
    }

    #[test]
    fn every_form() {
        let p = RetryAfterPolicy::default();
        let cases = [
            ("42", RetryAfter::Wait(Duration::from_secs(42))),
            (" 1.5 ", RetryAfter::Wait(Duration::from_millis(1500))),
            (
                "Wed, 21 Oct 2026 07:28:00 GMT",
                RetryAfter::Wait(Duration::from_secs(60)),
            ),
            ("Wed, 21 Oct 2026 07:00:00 GMT", RetryAfter::Floor(p.floor)),
            ("0", RetryAfter::Floor(p.floor)),
            ("-5", RetryAfter::Floor(p.floor)),
            ("abc", RetryAfter::Floor(p.floor)),
            ("", RetryAfter::Floor(p.floor)),
            ("NaN", RetryAfter::Floor(p.floor)),
            ("86400", RetryAfter::Capped(p.cap)),
        ];
        for (value, want) in cases {
            assert_eq!(parse_retry_after(value, now(), &p), want, "value {value:?}");
        }
    }
}
