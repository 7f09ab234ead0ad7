use std::io::Write;

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use scorecards_shared::adapters::local_dir::LocalDirSink;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::*;
use crate::handler::handle_s3_event;

const ORG: &str = "org-1";
const FORM: &str = r#"{"id":"f1","name":"Call Review","contextId":"c1","questionGroups":[
 {"id":"g1","name":"Opening","questions":[
  {"id":"q1","contextId":"qc1","text":"Greeted?","type":"multipleChoiceQuestion","isKill":false,"isCritical":true,
   "answerOptions":[{"id":"a-yes","text":"Yes","value":10},{"id":"a-no","text":"No","value":0}]},
  {"id":"q2","contextId":"qc2","text":"Disclosure?","type":"multipleChoiceQuestion","isKill":true,"isCritical":false,
   "answerOptions":[{"id":"b-yes","text":"Yes","value":5},{"id":"b-no","text":"No","value":0}]}]}]}"#;

fn eval(id: &str, agent: &str, total: f64, kill: bool) -> String {
    json!({"id": id, "conversation": {"id": format!("c-{id}")},
        "evaluationForm": {"id": "f1", "name": "Call Review", "contextId": "c1"},
        "evaluator": {"id": "ev1"}, "agent": {"id": agent}, "status": "FINISHED",
        "submittedDate": "2026-11-28T10:00:00.000Z", "createdDate": "2026-11-28T09:00:00.000Z",
        "mediaType": ["CALL"],
        "answers": {"totalScore": total, "totalCriticalScore": total / 2.0, "totalNonCriticalScore": 1.0,
            "anyFailedKillQuestions": kill,
            "questionGroupScores": [{"questionGroupId": "g1", "questionScores": [
                {"questionId": "q1", "answerId": "a-yes", "score": 10, "markedNA": false, "failedKillQuestion": false},
                {"questionId": "q2", "answerId": if kill {"b-no"} else {"b-yes"}, "score": if kill {0} else {5},
                 "markedNA": false, "failedKillQuestion": kill}]}]}})
    .to_string()
}

fn line(evaluation: &str, calibration: bool) -> String {
    format!(
        r#"{{"schema_version":1,"org_id":"{ORG}","region":"mypurecloud.com","run_id":"run-1","window":{{"from":"2026-11-28T00:00:00Z","to":"2026-11-29T00:00:00Z","date_field":"submittedDate"}},"source":"human","is_calibration":{calibration},"evaluation":{evaluation}}}"#
    ) + "\n"
}

fn partition() -> Partition {
    Partition::of_manifest_key(&format!(
        "evaluations/org_id={ORG}/date_field=submittedDate/source=both/date=2026-11-28/_manifest.json"
    ))
    .unwrap()
}

/// Commits `lines` as run `run` (one part) and returns the manifest.
async fn commit(sink: &LocalDirSink, run: &str, lines: &[String]) -> Manifest {
    let p = partition();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for l in lines {
        gz.write_all(l.as_bytes()).unwrap();
    }
    let bytes = gz.finish().unwrap();
    let key = format!("{}/run={run}/part-000001-00000.ndjson.gz", p.prefix());
    let part = json!({"key": key, "records": lines.len(), "bytes": bytes.len(),
        "sha256": hex::encode(Sha256::digest(&bytes))});
    sink.put(&key, bytes).await.unwrap();
    sink.put(
        &format!("forms/org_id={ORG}/f1.json"),
        FORM.as_bytes().to_vec(),
    )
    .await
    .unwrap();
    let manifest: Manifest = serde_json::from_value(json!({
        "schema_version": 1, "org_id": ORG, "region": "mypurecloud.com", "date": "2026-11-28",
        "window": {"from": "2026-11-28T00:00:00Z", "to": "2026-11-29T00:00:00Z"},
        "date_field": "submittedDate", "source": "both", "run_id": run,
        "started_at": "2026-11-29T00:00:00Z", "committed_at": "2026-11-29T00:01:00Z",
        "parts": [part], "total_records": lines.len(), "form_ids": ["f1"],
        "stats": {"requests": 0, "token_requests": 0, "responses_429": 0, "retries": 0, "waited_ms": 0}
    }))
    .unwrap();
    let expected = sink.manifest_version(&p).await.unwrap();
    assert!(sink.commit(&manifest, expected.as_deref()).await.unwrap());
    manifest
}

fn read(sink: &LocalDirSink, table: &str, run: &str) -> Vec<RecordBatch> {
    let path = sink.root().join(table_key(
        table,
        &partition(),
        &run.to_owned().try_into().unwrap(),
    ));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn files(sink: &LocalDirSink, table: &str) -> Vec<String> {
    let dir = sink.root().join(table_dir(table, &partition()));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn strings<'a>(batch: &'a RecordBatch, column: &str) -> Vec<Option<&'a str>> {
    let a = batch.column_by_name(column).unwrap();
    let a = a.as_any().downcast_ref::<StringArray>().unwrap();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}

fn doubles(batch: &RecordBatch, column: &str) -> Vec<f64> {
    let a = batch.column_by_name(column).unwrap();
    a.as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .values()
        .to_vec()
}

#[test]
fn the_schemas_are_pinned() {
    let describe = |columns: &[Column]| -> Vec<String> {
        arrow_schema(columns)
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect()
    };
    use crate::schema::{Column, arrow_schema};
    let e = describe(EVALUATIONS);
    assert_eq!(e.len(), 27);
    assert_eq!(e[0], "evaluation_id Utf8");
    assert_eq!(e[11], "conversation_date Timestamp(ms, \"UTC\")");
    assert_eq!(e[17], "total_score Float64");
    assert_eq!(e[4], "is_calibration Boolean");
    assert_eq!(e[26], "run_id Utf8");
    let q = describe(QUESTION_SCORES);
    assert_eq!(
        q.iter()
            .map(|c| c.split(' ').next().unwrap())
            .collect::<Vec<_>>()
            .join(","),
        "evaluation_id,agent_id,evaluator_id,form_id,form_context_id,evaluation_source,is_calibration,\
question_group_id,question_group_name,question_id,question_context_id,question_text,question_type,\
answer_id,answer_text,score,max_score,marked_na,is_critical,is_kill,failed_kill_question,run_id"
    );
    let a = describe(AGENT_DAY);
    assert_eq!(a[4], "evaluations Int64");
    assert_eq!(a[8], "median_total_score Float64");
    for (_, columns) in TABLES {
        for c in *columns {
            assert!(
                !crate::schema::PARTITION_COLUMNS.contains(&c.name),
                "{} is a partition column",
                c.name
            );
        }
    }
}

#[test]
fn quartiles_interpolate_linearly() {
    let v = [10.0, 20.0, 30.0, 40.0, 50.0];
    assert_eq!(quantile(&v, 0.25), 20.0);
    assert_eq!(quantile(&[1.0, 2.0], 0.5), 1.5);
    assert_eq!(quantile(&[1.0, 2.0, 4.0, 8.0], 0.75), 5.0);
    assert_eq!(quantile(&[7.0], 0.25), 7.0);
}

#[tokio::test]
async fn a_committed_day_becomes_three_tables_and_a_recommit_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalDirSink::new(dir.path());
    let redacted =
        r#"{"id":"e4","agent":{"id":"a1"},"evaluationForm":{"id":"f1"},"redacted":true}"#;
    let lines = vec![
        line(&eval("e1", "a1", 80.0, false), false),
        line(&eval("e2", "a1", 0.0, true), false),
        line(&eval("e3", "a2", 100.0, false), true),
        line(redacted, false),
    ];
    commit(&sink, "run-1", &lines).await;
    let outcome = write_partition(&sink, &partition(), false).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Written {
            run_id: "run-1".to_owned().try_into().unwrap(),
            rows: [4, 6, 1]
        }
    );
    let e = &read(&sink, "evaluations", "run-1")[0];
    assert_eq!(
        strings(e, "evaluation_id"),
        [Some("e1"), Some("e2"), Some("e3"), Some("e4")]
    );
    assert_eq!(strings(e, "run_id"), [Some("run-1"); 4]);
    let q = &read(&sink, "question_scores", "run-1")[0];
    assert_eq!(strings(q, "question_text")[1], Some("Disclosure?"));
    assert_eq!(strings(q, "question_group_name")[0], Some("Opening"));
    assert_eq!(strings(q, "answer_text")[3], Some("No"));
    assert_eq!(doubles(q, "max_score")[..2], [10.0, 5.0]);
    let a = &read(&sink, "agent_day", "run-1")[0];
    assert_eq!(
        strings(a, "agent_id"),
        [Some("a1")],
        "calibration and unscored left out"
    );
    assert_eq!(doubles(a, "mean_total_score"), [40.0]);
    assert_eq!(doubles(a, "median_total_score"), [40.0]);
    assert_eq!(doubles(a, "p25_total_score"), [20.0]);
    assert_eq!(doubles(a, "mean_total_critical_score"), [20.0]);
    let kills = a.column_by_name("failed_kill_questions").unwrap();
    assert_eq!(
        kills
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0),
        1
    );

    // A duplicate notification finds the tables current.
    let event =
        |_: &str| json!({"Records": [{"s3": {"object": {"key": partition().manifest_key()}}}]});
    let again = handle_s3_event(&sink, event("x")).await.unwrap();
    assert!(matches!(again[0].1, Outcome::UpToDate(_)));

    // Re-committed (an evaluation rescored): the new run's files replace the old ones.
    let rescored = vec![
        line(&eval("e1", "a1", 90.0, false), false),
        line(redacted, false),
    ];
    commit(&sink, "run-2", &rescored).await;
    for table in ["evaluations", "question_scores", "agent_day"] {
        assert_eq!(
            files(&sink, table),
            ["run-1.parquet"],
            "{table} before the event"
        );
    }
    // The notification, twice, and the first run's late one: the tables of run-2, once.
    for _ in 0..3 {
        handle_s3_event(&sink, event("y")).await.unwrap();
    }
    for table in ["evaluations", "question_scores", "agent_day"] {
        assert_eq!(files(&sink, table), ["run-2.parquet"], "{table}");
    }
    let e = &read(&sink, "evaluations", "run-2")[0];
    assert_eq!(doubles(e, "total_score")[0], 90.0);
    assert_eq!(e.num_rows(), 2);
    // A test event and a key that is not a manifest do nothing.
    assert!(
        handle_s3_event(&sink, json!({"Event": "s3:TestEvent"}))
            .await
            .unwrap()
            .is_empty()
    );
    let other = json!({"Records": [{"s3": {"object": {"key": "forms/org_id=o/f1.json"}}}]});
    assert!(handle_s3_event(&sink, other).await.unwrap().is_empty());
    assert_eq!(local_partitions(dir.path()).unwrap(), [partition()]);
}

#[tokio::test]
async fn a_manifest_that_lies_about_its_records_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalDirSink::new(dir.path());
    let mut manifest = commit(
        &sink,
        "run-1",
        &[line(&eval("e1", "a1", 80.0, false), false)],
    )
    .await;
    manifest.parts[0].records = 2;
    manifest.total_records = 2;
    let expected = sink.manifest_version(&partition()).await.unwrap();
    assert!(sink.commit(&manifest, expected.as_deref()).await.unwrap());
    assert!(write_partition(&sink, &partition(), false).await.is_err());
    assert!(files(&sink, "evaluations").is_empty());
}

#[tokio::test]
async fn the_report_is_one_self_contained_page_from_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalDirSink::new(dir.path());
    let lines: Vec<String> = (0..6)
        .map(|i| {
            line(
                &eval(&format!("e{i}"), "agent-1", 50.0 + i as f64 * 10.0, i == 0),
                false,
            )
        })
        .collect();
    commit(&sink, "run-1", &lines).await;
    write_partition(&sink, &partition(), false).await.unwrap();
    let html = crate::report::render(dir.path(), &crate::report::Selection::default()).unwrap();
    assert!(
        html.contains("6 evaluations over 1 day(s), 2026-11-28 to 2026-11-28"),
        "{html}"
    );
    assert!(html.contains("Call Review (6 evaluations)"));
    assert!(
        html.contains("Disclosure? (Call Review › Opening)"),
        "question text, form and group"
    );
    assert!(html.contains("75.0 (6)"), "agent mean and count");
    assert!(
        html.contains("17 % (6)"),
        "1 of 6 disclosure answers failed"
    );
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    let other = crate::report::Selection {
        orgs: vec!["another-org".into()],
        ..Default::default()
    };
    let empty = crate::report::render(dir.path(), &other).unwrap();
    assert!(empty.contains("No committed days with tables match the selection."));
}
