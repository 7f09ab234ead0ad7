//! The analytics tables of a simulator export, queried with the README's SQL by DuckDB
//! (`tests/sql/check_queries.py`) and checked against the simulator's ground truth.

use std::io::Write;

use genesys_sim::Scenario;
use scorecards_shared::engine::NoProgress;
use scorecards_shared::ports::ExportSink;
use scorecards_shared::runner::run_org;
use scorecards_tables::{Outcome, schema::TABLES, table_dir, write_partition};

use crate::harness::Harness;

#[tokio::test]
async fn the_readme_queries_give_the_simulators_ground_truth() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let org_id = org.endpoint.org_id.as_str().to_owned();
    let jobs = h.jobs(&org);
    run_org(&h.exporter(&org, "first"), &jobs, &NoProgress).await;
    let sink = h.sink.as_ref() as &dyn ExportSink;
    for job in &jobs {
        let outcome = write_partition(sink, &job.partition(), false)
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Written { .. }), "{outcome:?}");
    }

    // Rescore two evaluations of a day and export it again: the day's tables are replaced.
    let job = &jobs[1];
    let rescored: Vec<String> = h
        .truth(&org, std::slice::from_ref(job))
        .into_iter()
        .filter(|(_, json)| json.contains("\"questionGroupScores\""))
        .map(|(id, _)| id)
        .take(2)
        .collect();
    for id in &rescored {
        assert!(h.sim.rescore(&org_id, id));
    }
    let first = sink.manifest(&job.partition()).await.unwrap().unwrap();
    run_org(
        &h.exporter(&org, "second"),
        std::slice::from_ref(job),
        &NoProgress,
    )
    .await;
    let second = sink.manifest(&job.partition()).await.unwrap().unwrap();
    assert_ne!(
        first.run_id, second.run_id,
        "the rescored day is committed again"
    );
    // Duplicate and late notifications of either run: the tables of the committed run, once.
    for _ in 0..3 {
        write_partition(sink, &job.partition(), false)
            .await
            .unwrap();
    }
    for job in &jobs {
        let run = sink
            .manifest(&job.partition())
            .await
            .unwrap()
            .unwrap()
            .run_id;
        for (table, _) in TABLES {
            let files = sink
                .list(&table_dir(table, &job.partition()))
                .await
                .unwrap();
            assert_eq!(files.len(), 1, "{table}: {files:?}");
            assert!(files[0].ends_with(&format!("/{run}.parquet")), "{files:?}");
        }
    }

    // Ground truth, straight from the simulator: the evaluations (current state, so the
    // rescored ones as rescored) and the evaluation forms, as the API serves them.
    let truth = tempfile::tempdir().unwrap();
    let mut evaluations = std::fs::File::create(truth.path().join("evaluations.ndjson")).unwrap();
    for json in h.truth(&org, &jobs).values() {
        writeln!(evaluations, "{json}").unwrap();
    }
    let mut forms = std::fs::File::create(truth.path().join("forms.ndjson")).unwrap();
    for form in h.sim.forms_truth(&org_id) {
        writeln!(forms, "{}", form.json).unwrap();
    }

    let python = std::env::var("SCORECARDS_DUCKDB_PYTHON").ok();
    let Some(python) = python.filter(|p| !p.is_empty()) else {
        assert!(
            std::env::var_os("SCORECARDS_REQUIRE_DUCKDB").is_none(),
            "SCORECARDS_REQUIRE_DUCKDB is set but SCORECARDS_DUCKDB_PYTHON is not"
        );
        eprintln!(
            "SKIPPED the DuckDB check: set SCORECARDS_DUCKDB_PYTHON to a Python with duckdb (scripts/test.sh does)"
        );
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(python)
        .arg(root.join("tests/sql/check_queries.py"))
        .arg(h.sink.root())
        .arg(truth.path())
        .arg(root.join("README.md"))
        .output()
        .expect("run tests/sql/check_queries.py");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "the README queries disagree with ground truth:\n{report}"
    );
}
