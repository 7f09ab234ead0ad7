//! Validated value types of the export domain.
//!
//! Everything that becomes a key segment (org id, date, run id) is validated here, before it
//! reaches a ledger key or an object key (DESIGN §7).

use std::fmt;
use std::str::FromStr;

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan, tz::TimeZone};
use serde::{Deserialize, Serialize};

/// A value that failed validation: names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidValue {
    /// The field or option that was wrong, e.g. `org_id` or `--from`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl InvalidValue {
    /// A validation error for `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

fn is_segment_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A Genesys Cloud organization id (a UUID in practice). Safe as a key segment:
/// 1–128 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrgId(String);

impl OrgId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrgId {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if is_segment_safe(&value) {
            Ok(Self(value))
        } else {
            Err(InvalidValue::new(
                "org_id",
                format!(
                    "{value:?} is not a valid org id: use 1-128 letters, digits, '-' or '_' (the Genesys organization id)"
                ),
            ))
        }
    }
}

impl FromStr for OrgId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<OrgId> for String {
    fn from(value: OrgId) -> Self {
        value.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The evaluation date field a window is applied to (Genesys search `DATE_RANGE` fields,
/// `POST /api/v2/quality/evaluations/search`). Wire names are camelCase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DateField {
    /// `submittedDate` (default): when the evaluator submitted the evaluation.
    #[default]
    SubmittedDate,
    /// `releaseDate`: when the evaluation was released to the agent.
    ReleaseDate,
    /// `createdDate`: when the evaluation was created (assigned).
    CreatedDate,
    /// `conversationDate`: when the evaluated conversation started.
    ConversationDate,
}

impl DateField {
    /// The Genesys wire name, e.g. `submittedDate`.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::SubmittedDate => "submittedDate",
            Self::ReleaseDate => "releaseDate",
            Self::CreatedDate => "createdDate",
            Self::ConversationDate => "conversationDate",
        }
    }
}

impl fmt::Display for DateField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

impl FromStr for DateField {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::SubmittedDate,
            Self::ReleaseDate,
            Self::CreatedDate,
            Self::ConversationDate,
        ]
        .into_iter()
        .find(|f| f.wire_name().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            InvalidValue::new(
                "date_field",
                format!(
                    "{s:?} is not a date field: use submittedDate, releaseDate, createdDate or conversationDate"
                ),
            )
        })
    }
}

/// Which evaluations to export by how they were scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Evaluations scored by people (search `systemSubmitted=false`).
    Human,
    /// Automated (Virtual Supervisor) evaluations (search `systemSubmitted=true`).
    Auto,
    /// Both (default): everything in the window.
    #[default]
    Both,
}

impl Source {
    /// The `systemSubmitted` values to search with.
    pub fn system_submitted_values(self) -> &'static [bool] {
        match self {
            Self::Human => &[false],
            Self::Auto => &[true],
            Self::Both => &[false, true],
        }
    }
}

impl FromStr for Source {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "human" => Ok(Self::Human),
            "auto" => Ok(Self::Auto),
            "both" => Ok(Self::Both),
            _ => Err(InvalidValue::new(
                "source",
                format!("{s:?} is not a source: use human, auto or both"),
            )),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Human => "human",
            Self::Auto => "auto",
            Self::Both => "both",
        })
    }
}

/// A half-open UTC time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// Inclusive start, UTC.
    pub from: Timestamp,
    /// Exclusive end, UTC.
    pub to: Timestamp,
}

impl Window {
    /// A window; `from` must be before `to`.
    pub fn new(from: Timestamp, to: Timestamp) -> Result<Self, InvalidValue> {
        if from < to {
            Ok(Self { from, to })
        } else {
            Err(InvalidValue::new(
                "window",
                format!("from ({from}) must be before to ({to})"),
            ))
        }
    }

    /// Splits the window into UTC days and rounds each out to the whole day, never past
    /// `now` (the day containing `now` ends at `now`). Each day is one export job and one
    /// output partition `date=YYYY-MM-DD`, so a day's manifest always covers the day from
    /// midnight.
    pub fn utc_days(&self, now: Timestamp) -> Vec<(Date, Window)> {
        let mut out = Vec::new();
        let mut day = self.from.to_zoned(TimeZone::UTC).date();
        let last = self.to.to_zoned(TimeZone::UTC).date();
        loop {
            let start = day_start(day);
            if start >= now || (day == last && self.to == start) {
                break;
            }
            let end = day_start(day.tomorrow().expect("date in range")).min(now);
            out.push((
                day,
                Window {
                    from: start,
                    to: end,
                },
            ));
            if day >= last {
                break;
            }
            day = day.tomorrow().expect("date in range");
        }
        out
    }

    /// Whether `t` lies in `[from, to)`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }

    /// Splits the window into two halves (used when a search hits the paging cap).
    /// Returns `None` when the window is too short to split (under 2 ms).
    pub fn halves(&self) -> Option<(Window, Window)> {
        let span = self.to.duration_since(self.from);
        if span.as_millis() < 2 {
            return None;
        }
        let mid = self.from.checked_add(span / 2).ok()?;
        Some((
            Window {
                from: self.from,
                to: mid,
            },
            Window {
                from: mid,
                to: self.to,
            },
        ))
    }
}

/// Midnight UTC at the start of `day`.
pub fn day_start(day: Date) -> Timestamp {
    day.to_zoned(TimeZone::UTC)
        .expect("UTC midnight exists")
        .timestamp()
}

/// Formats a timestamp the way Genesys expects dates: `yyyy-MM-ddTHH:mm:ss.SSSZ` (UTC).
pub fn genesys_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses a user-supplied instant: RFC 3339 (`2026-11-28T00:00:00Z`) or a date
/// (`2026-11-28`, meaning midnight UTC). `field` names the option in the error.
pub fn parse_instant(field: &str, s: &str) -> Result<Timestamp, InvalidValue> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = s.parse::<Date>() {
        return Ok(day_start(d));
    }
    Err(InvalidValue::new(
        field,
        format!(
            "{s:?} is not a UTC time: use RFC 3339 (2026-11-28T00:00:00Z) or a date (2026-11-28)"
        ),
    ))
}

/// A named relative window, resolved against `now`.
pub fn named_window(name: &str, now: Timestamp) -> Result<Window, InvalidValue> {
    let today = day_start(now.to_zoned(TimeZone::UTC).date());
    match name {
        "yesterday" => Window::new(today.checked_sub(24.hours()).expect("in range"), today),
        "today" => Window::new(today, now),
        "last-24h" => Window::new(now.checked_sub(24.hours()).expect("in range"), now),
        _ => match name.strip_prefix("last-").and_then(|d| d.strip_suffix('d')) {
            Some(n) => {
                let days: i64 = n.parse().map_err(|_| bad_window(name))?;
                if !(1..=366).contains(&days) {
                    return Err(bad_window(name));
                }
                Window::new(
                    today
                        .checked_sub((24 * days).hours())
                        .map_err(|_| bad_window(name))?,
                    now,
                )
            }
            None => Err(bad_window(name)),
        },
    }
}

fn bad_window(name: &str) -> InvalidValue {
    InvalidValue::new(
        "--window",
        format!("{name:?} is not a window: use yesterday, today, last-24h or last-<N>d (1-366)"),
    )
}

/// Identifies one export run of a partition; a key segment `run=<id>`.
/// Shape: `YYYYMMDDTHHMMSSZ-<8 hex>`, so runs sort by start time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// A new run id for a run starting at `now`.
    pub fn generate(now: Timestamp) -> Self {
        let rand: u32 = rand::random();
        Self(format!("{}-{rand:08x}", now.strftime("%Y%m%dT%H%M%SZ")))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RunId {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if is_segment_safe(&value) {
            Ok(Self(value))
        } else {
            Err(InvalidValue::new(
                "run_id",
                format!("{value:?} is not a valid run id"),
            ))
        }
    }
}

impl From<RunId> for String {
    fn from(value: RunId) -> Self {
        value.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One export job: one org, one UTC day, one date field (DESIGN §2: one SQS message per
/// org × window). Its output partition is `evaluations/org_id=<org>/date=<day>/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobSpec {
    /// The org exported.
    pub org_id: OrgId,
    /// The UTC day, the partition's `date=` segment.
    pub day: Date,
    /// `[from, to)` within `day`: the whole day, or up to the time the job was created.
    pub window: Window,
    /// Date field the window applies to.
    pub date_field: DateField,
    /// Human, automated or both.
    pub source: Source,
}

impl JobSpec {
    /// The job's key in the `JobStore`: `job#<org>#<dateField>#<source>#<YYYY-MM-DD>`.
    /// Two jobs with the same key write the same partition and hold one lease.
    pub fn key(&self) -> String {
        format!(
            "job#{}#{}#{}#{}",
            self.org_id, self.date_field, self.source, self.day
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn org_id_rejects_path_characters() {
        assert!("abc-123_X".parse::<OrgId>().is_ok());
        for bad in ["", "a/b", "..", "a b", "x=y"] {
            let err = bad.parse::<OrgId>().unwrap_err();
            assert_eq!(err.field, "org_id");
        }
    }

    #[test]
    fn days_round_out_to_whole_days_and_stop_at_now() {
        let w = Window::new(ts("2026-11-27T10:00:00Z"), ts("2026-11-29T09:00:00Z")).unwrap();
        let days = w.utc_days(ts("2026-11-29T09:00:00Z"));
        let got: Vec<_> = days
            .iter()
            .map(|(d, w)| (d.to_string(), w.from.to_string(), w.to.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "2026-11-27".into(),
                    "2026-11-27T00:00:00Z".into(),
                    "2026-11-28T00:00:00Z".into()
                ),
                (
                    "2026-11-28".into(),
                    "2026-11-28T00:00:00Z".into(),
                    "2026-11-29T00:00:00Z".into()
                ),
                (
                    "2026-11-29".into(),
                    "2026-11-29T00:00:00Z".into(),
                    "2026-11-29T09:00:00Z".into()
                ),
            ]
        );
        // A window ending exactly at midnight does not add the next day.
        let w = Window::new(ts("2026-11-27T00:00:00Z"), ts("2026-11-28T00:00:00Z")).unwrap();
        assert_eq!(w.utc_days(ts("2026-12-01T00:00:00Z")).len(), 1);
    }

    #[test]
    fn parses_instants_and_named_windows() {
        assert_eq!(
            parse_instant("--from", "2026-11-28").unwrap(),
            ts("2026-11-28T00:00:00Z")
        );
        assert_eq!(
            parse_instant("--from", "2026-11-28T01:02:03Z").unwrap(),
            ts("2026-11-28T01:02:03Z")
        );
        assert_eq!(
            parse_instant("--from", "28/11/2026").unwrap_err().field,
            "--from"
        );
        let now = ts("2026-11-29T11:00:00Z");
        assert_eq!(
            named_window("yesterday", now).unwrap(),
            Window::new(ts("2026-11-28T00:00:00Z"), ts("2026-11-29T00:00:00Z")).unwrap()
        );
        assert_eq!(
            named_window("last-3d", now).unwrap().from,
            ts("2026-11-26T00:00:00Z")
        );
        assert_eq!(
            named_window("fortnight", now).unwrap_err().field,
            "--window"
        );
    }

    #[test]
    fn genesys_time_has_millis_and_z() {
        assert_eq!(
            genesys_time(ts("2026-11-28T00:00:00Z")),
            "2026-11-28T00:00:00.000Z"
        );
    }

    #[test]
    fn halves_split_evenly() {
        let w = Window::new(ts("2026-11-28T00:00:00Z"), ts("2026-11-29T00:00:00Z")).unwrap();
        let (a, b) = w.halves().unwrap();
        assert_eq!(a.to, ts("2026-11-28T12:00:00Z"));
        assert_eq!(b.from, a.to);
        assert_eq!(b.to, w.to);
    }
}
