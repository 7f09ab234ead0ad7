//! The `analytics` function: an S3 notification for a committed `…/_manifest.json` →
//! the partition's tables ([`crate::write_partition`]).
//!
//! Idempotent by construction: the event only names the partition; the manifest there is
//! read again and the tables are written for the run it commits now. A duplicate
//! notification finds the tables current and writes nothing; a late notification of an
//! older run finds a newer manifest and writes (or keeps) that run's tables; a
//! notification whose manifest is gone writes nothing; S3's `s3:TestEvent` (no `Records`)
//! and keys other than manifests are ignored. Event keys arrive URL-encoded.

use scorecards_shared::ports::{ExportSink, Partition};

use crate::{Outcome, TablesError, write_partition};

/// The partition of a manifest key (URL-encoded, as S3 events carry it), or `None` for any
/// other key.
pub fn manifest_partition(key: &str) -> Option<Partition> {
    let key = url::form_urlencoded::parse(format!("k={key}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Partition::of_manifest_key(&key)
}

/// Handles a notification (any JSON: an S3 event's `Records[].s3.object.key`, or S3's
/// test event): the tables of
/// every manifest it names, with what was done for each.
pub async fn handle_s3_event(
    sink: &dyn ExportSink,
    event: serde_json::Value,
) -> Result<Vec<(Partition, Outcome)>, TablesError> {
    let Some(records) = event.get("Records").and_then(|r| r.as_array()) else {
        tracing::info!("no records (a test event); ignored");
        return Ok(Vec::new());
    };
    let mut done = Vec::new();
    for record in records {
        let Some(key) = record.pointer("/s3/object/key").and_then(|k| k.as_str()) else {
            tracing::info!("a record without an object key; ignored");
            continue;
        };
        let Some(partition) = manifest_partition(key) else {
            tracing::info!(key, "not a manifest; ignored");
            continue;
        };
        if done.iter().any(|(p, _)| p == &partition) {
            continue;
        }
        let outcome = write_partition(sink, &partition, false).await?;
        tracing::info!(key, outcome = ?outcome, "tables");
        done.push((partition, outcome));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_partition_of_url_encoded_manifest_keys_only() {
        let p = manifest_partition(
            "exports/evaluations/org_id%3Dorg-1/date_field%3DreleaseDate/source%3Dhuman/date%3D2026-11-28/_manifest.json",
        )
        .unwrap();
        assert_eq!(
            (
                p.org_id.as_str(),
                p.date_field.wire_name(),
                p.source.to_string().as_str(),
                p.day.to_string().as_str()
            ),
            ("org-1", "releaseDate", "human", "2026-11-28")
        );
        let key = "evaluations/org_id=o/date_field=submittedDate/source=both/date=2026-11-28/_manifest.json";
        assert_eq!(manifest_partition(key).unwrap().manifest_key(), key);
        for other in [
            "evaluations/org_id=o/date_field=submittedDate/source=both/date=2026-11-28/run=r/part-000001-00000.ndjson.gz",
            "evaluations/org_id=o/date=2026-11-28/_manifest.json",
            "forms/org_id=o/f.json",
            "evaluations/org_id=o/date_field=submittedDate/source=both/date=not-a-date/_manifest.json",
            "evaluations/org_id=o/date_field=nope/source=both/date=2026-11-28/_manifest.json",
            "tables/agent_day/org_id=o/date_field=submittedDate/source=both/date=2026-11-28/run.parquet",
        ] {
            assert!(manifest_partition(other).is_none(), "{other}");
        }
    }
}
