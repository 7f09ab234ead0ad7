//! NDJSON.gz parts: one line per evaluation, the raw Genesys object inside an envelope
//! (DESIGN §7).

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::domain::{DateField, OrgId, RunId, Window};

/// Output schema version written in every line and manifest.
pub const SCHEMA_VERSION: u32 = 1;

/// The envelope of one NDJSON line. `evaluation` is the API's JSON, byte for byte.
#[derive(Serialize)]
pub(crate) struct Line<'a> {
    pub schema_version: u32,
    pub org_id: &'a OrgId,
    pub region: &'a str,
    pub exported_at: Timestamp,
    pub run_id: &'a RunId,
    pub window: LineWindow,
    /// `human` or `auto` (found by the `systemSubmitted=true` search).
    pub source: &'a str,
    /// The evaluation belongs to a calibration (`calibration` set); consumers may exclude it.
    pub is_calibration: bool,
    pub evaluation: &'a RawValue,
}

#[derive(Serialize)]
pub(crate) struct LineWindow {
    pub from: Timestamp,
    pub to: Timestamp,
    pub date_field: DateField,
}

impl LineWindow {
    pub(crate) fn new(window: Window, date_field: DateField) -> Self {
        Self {
            from: window.from,
            to: window.to,
            date_field,
        }
    }
}

/// A gzip-compressed NDJSON object being built (a part, or a run's discovered id set).
pub(crate) struct PartBuilder {
    encoder: GzEncoder<Vec<u8>>,
    records: u64,
}

impl PartBuilder {
    pub(crate) fn new() -> Self {
        Self {
            encoder: GzEncoder::new(Vec::new(), Compression::default()),
            records: 0,
        }
    }

    pub(crate) fn push(&mut self, line: &impl Serialize) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.encoder, line)?;
        self.encoder.write_all(b"\n")?;
        self.records += 1;
        Ok(())
    }

    /// Lines written so far.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// The gzip bytes, the record count and the SHA-256 (lowercase hex).
    pub(crate) fn finish(self) -> std::io::Result<(Vec<u8>, u64, String)> {
        let bytes = self.encoder.finish()?;
        let sha = hex::encode(Sha256::digest(&bytes));
        Ok((bytes, self.records, sha))
    }
}

/// The envelope fields a refresh carries over from a committed line (the rest is rewritten
/// for the new run).
#[derive(serde::Deserialize)]
pub(crate) struct CommittedLine {
    pub exported_at: Timestamp,
    pub source: String,
    pub is_calibration: bool,
    pub evaluation: Box<RawValue>,
}

/// Reads a gzip NDJSON object written by [`PartBuilder`], checking its SHA-256.
pub(crate) fn read_ndjson<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    sha256: &str,
) -> Result<Vec<T>, String> {
    use std::io::BufRead;
    if hex::encode(Sha256::digest(bytes)) != sha256 {
        return Err("checksum mismatch".into());
    }
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(bytes));
    reader
        .lines()
        .map(|line| {
            let line = line.map_err(|e| e.to_string())?;
            serde_json::from_str(&line).map_err(|e| e.to_string())
        })
        .collect()
}
