//! Reading committed output (DESIGN §7) the way a consumer must: only the parts a manifest
//! lists, each checked against its SHA-256 and record count.

use std::io::Read;

use flate2::read::GzDecoder;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::ports::{ExportSink, Manifest, Partition, StoreError};

/// One exported evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedEvaluation {
    /// Evaluation id.
    pub id: String,
    /// The evaluation JSON exactly as the API sent it.
    pub evaluation: String,
    /// `human` or `auto`.
    pub source: String,
    /// Part of a calibration.
    pub is_calibration: bool,
    /// The envelope's `org_id`, `region`, `run_id` and `window`.
    pub envelope: Envelope,
}

/// The envelope fields of a line that identify where it belongs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    /// `schema_version`.
    pub schema_version: u32,
    /// The org.
    pub org_id: crate::domain::OrgId,
    /// Region domain.
    pub region: String,
    /// The run the line was written by (the committing manifest's).
    pub run_id: crate::domain::RunId,
    /// The window exported and its date field.
    pub window: LineWindowIn,
}

/// A line's `window`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LineWindowIn {
    /// Start, UTC.
    pub from: jiff::Timestamp,
    /// End (exclusive), UTC.
    pub to: jiff::Timestamp,
    /// Date field.
    pub date_field: crate::domain::DateField,
}

/// A committed partition: its manifest and every line of its parts, in part order.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The manifest.
    pub manifest: Manifest,
    /// The evaluations.
    pub evaluations: Vec<ExportedEvaluation>,
}

#[derive(Deserialize)]
struct LineIn<'a> {
    source: String,
    is_calibration: bool,
    #[serde(borrow)]
    evaluation: &'a RawValue,
    #[serde(flatten)]
    envelope: Envelope,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

fn corrupt(message: String) -> StoreError {
    StoreError::new("output", message)
}

/// Reads a committed partition; `None` when nothing is committed.
///
/// Errors: a listed part is missing, its checksum or record count differs from the manifest,
/// or a line is not a valid envelope.
pub async fn read_committed(
    sink: &dyn ExportSink,
    partition: &Partition,
) -> Result<Option<Committed>, StoreError> {
    let Some(manifest) = sink.manifest(partition).await? else {
        return Ok(None);
    };
    let mut evaluations = Vec::new();
    for part in &manifest.parts {
        let bytes = sink
            .get(&part.key)
            .await?
            .ok_or_else(|| corrupt(format!("{} is listed but missing", part.key)))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != part.sha256 || bytes.len() as u64 != part.bytes {
            return Err(corrupt(format!(
                "{} does not match its manifest entry",
                part.key
            )));
        }
        let mut text = String::new();
        GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(|e| corrupt(format!("{}: {e}", part.key)))?;
        let mut records = 0u64;
        for line in text.lines() {
            let parsed: LineIn<'_> = serde_json::from_str(line)
                .map_err(|e| corrupt(format!("{}: bad line: {e}", part.key)))?;
            let id: IdOnly = serde_json::from_str(parsed.evaluation.get())
                .map_err(|e| corrupt(format!("{}: evaluation without id: {e}", part.key)))?;
            evaluations.push(ExportedEvaluation {
                id: id.id,
                evaluation: parsed.evaluation.get().to_owned(),
                source: parsed.source,
                is_calibration: parsed.is_calibration,
                envelope: parsed.envelope,
            });
            records += 1;
        }
        if records != part.records {
            return Err(corrupt(format!(
                "{} has {records} lines, the manifest says {}",
                part.key, part.records
            )));
        }
    }
    Ok(Some(Committed {
        manifest,
        evaluations,
    }))
}

/// Every evaluation committed for `jobs`, id → evaluation JSON as the API sent it.
///
/// Errors: a job has no committed manifest, an id appears twice, or a part is damaged
/// (see [`read_committed`]).
pub async fn committed_by_id(
    sink: &dyn ExportSink,
    jobs: &[crate::domain::JobSpec],
) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
    let mut out = std::collections::BTreeMap::new();
    for job in jobs {
        let committed = read_committed(sink, &job.partition())
            .await?
            .ok_or_else(|| {
                corrupt(format!(
                    "{} has no committed manifest",
                    job.partition().prefix()
                ))
            })?;
        for e in committed.evaluations {
            if out.contains_key(&e.id) {
                return Err(corrupt(format!("evaluation {} is exported twice", e.id)));
            }
            out.insert(e.id, e.evaluation);
        }
    }
    Ok(out)
}

/// One line of a committed part, borrowed while it is visited.
#[derive(Debug, Clone, Copy)]
pub struct CommittedLine<'a> {
    /// `human` or `auto`.
    pub source: &'a str,
    /// Part of a calibration.
    pub is_calibration: bool,
    /// The evaluation JSON exactly as the API sent it.
    pub evaluation: &'a str,
}

/// Visits every evaluation `manifest` commits, part by part and line by line: one part's
/// compressed bytes and one decoded line are held at a time, so memory does not grow with
/// the day. Each part is checked against its SHA-256, size and record count as
/// [`read_committed`] does (a failed check stops the visit with an error; lines visited
/// before it were from intact data up to that point, so callers discard their output).
pub async fn visit_committed<E>(
    sink: &dyn ExportSink,
    manifest: &Manifest,
    mut visit: impl FnMut(CommittedLine<'_>) -> Result<(), E>,
) -> Result<(), VisitError<E>> {
    use std::io::BufRead;
    for part in &manifest.parts {
        let bytes = sink
            .get(&part.key)
            .await?
            .ok_or_else(|| corrupt(format!("{} is listed but missing", part.key)))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != part.sha256 || bytes.len() as u64 != part.bytes {
            return Err(corrupt(format!("{} does not match its manifest entry", part.key)).into());
        }
        let mut reader = std::io::BufReader::new(GzDecoder::new(&bytes[..]));
        let mut line = String::new();
        let mut records = 0u64;
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| corrupt(format!("{}: {e}", part.key)))?;
            if n == 0 {
                break;
            }
            let text = line.trim_end_matches(['\n', '\r']);
            if text.is_empty() {
                continue;
            }
            let parsed: LineIn<'_> = serde_json::from_str(text)
                .map_err(|e| corrupt(format!("{}: bad line: {e}", part.key)))?;
            visit(CommittedLine {
                source: &parsed.source,
                is_calibration: parsed.is_calibration,
                evaluation: parsed.evaluation.get(),
            })
            .map_err(VisitError::Visitor)?;
            records += 1;
        }
        if records != part.records {
            return Err(corrupt(format!(
                "{} has {records} lines, the manifest says {}",
                part.key, part.records
            ))
            .into());
        }
    }
    Ok(())
}

/// Why [`visit_committed`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum VisitError<E> {
    /// Reading the committed output failed (missing or damaged part, bad line).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The visitor failed.
    #[error("{0}")]
    Visitor(E),
}
