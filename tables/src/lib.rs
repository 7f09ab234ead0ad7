//! Analytics tables of committed exports (DESIGN §7): for every committed partition
//! (org × date field × source × UTC day), three Parquet files,
//!
//! ```text
//! tables/evaluations/org_id=<org>/date_field=<field>/source=<source>/date=<YYYY-MM-DD>/<run_id>.parquet
//! tables/question_scores/…same partition…/<run_id>.parquet
//! tables/agent_day/…same partition…/<run_id>.parquet
//! ```
//!
//! built from exactly the parts the partition's manifest lists, read part by part and line
//! by line ([`scorecards_shared::output::visit_committed`]); columns in [`schema`].
//!
//! Replacement: the new run's files are written first, then the manifest is read again; if
//! it still names the run, every other file of the partition's table folders is deleted,
//! else this run's files are deleted (a newer commit's tables win). A reader that lists
//! the folder between the two steps sees both runs' files for that moment; every row
//! carries its `run_id`.

pub mod handler;
pub mod report;
pub mod schema;
pub mod writer;

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use parquet::errors::ParquetError;
use scorecards_shared::domain::RunId;
use scorecards_shared::output::{CommittedLine, VisitError, visit_committed};
use scorecards_shared::ports::{ExportSink, Manifest, Partition, StoreError, form_key};
use serde::Deserialize;

use crate::schema::{AGENT_DAY, EVALUATIONS, QUESTION_SCORES, TABLES};
use crate::writer::{Cell, TableWriter};

/// Why tables could not be written.
#[derive(Debug)]
pub enum TablesError {
    /// Reading or writing the output failed (retryable, or damaged output).
    Store(StoreError),
    /// Building a Parquet file failed.
    Parquet(ParquetError),
    /// A committed line is not an evaluation.
    BadEvaluation(String),
}

impl std::error::Error for TablesError {}

impl std::fmt::Display for TablesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TablesError::Store(e) => write!(f, "{e}"),
            TablesError::Parquet(e) => write!(f, "parquet: {e}"),
            TablesError::BadEvaluation(e) => write!(f, "bad evaluation: {e}"),
        }
    }
}

impl From<StoreError> for TablesError {
    fn from(e: StoreError) -> Self {
        TablesError::Store(e)
    }
}

impl From<ParquetError> for TablesError {
    fn from(e: ParquetError) -> Self {
        TablesError::Parquet(e)
    }
}

/// What writing a partition's tables did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing is committed in the partition (the manifest is gone or was never written).
    NothingCommitted,
    /// The tables already reflect the committed run; nothing was written.
    UpToDate(RunId),
    /// The tables were written for the committed run.
    Written {
        /// The run the tables reflect.
        run_id: RunId,
        /// Rows per table: evaluations, question_scores, agent_day.
        rows: [u64; 3],
    },
    /// Another run was committed while the tables were built; they were discarded (the
    /// newer commit's notification writes its own).
    Superseded,
}

/// Key of a table's file for a partition and run.
pub fn table_key(table: &str, partition: &Partition, run_id: &RunId) -> String {
    format!("{}/{run_id}.parquet", table_dir(table, partition))
}

/// Folder of a table's files for a partition.
pub fn table_dir(table: &str, partition: &Partition) -> String {
    format!(
        "tables/{table}/org_id={}/date_field={}/source={}/date={}",
        partition.org_id, partition.date_field, partition.source, partition.day
    )
}

/// Writes the tables of the partition's committed run, unless they already reflect it
/// (`force` writes them again anyway).
pub async fn write_partition(
    sink: &dyn ExportSink,
    partition: &Partition,
    force: bool,
) -> Result<Outcome, TablesError> {
    let Some(manifest) = sink.manifest(partition).await? else {
        return Ok(Outcome::NothingCommitted);
    };
    let run_id = manifest.run_id.clone();
    if !force && current(sink, partition, &run_id).await? {
        return Ok(Outcome::UpToDate(run_id));
    }
    let files = build(sink, &manifest).await?;
    let rows = [files[0].1, files[1].1, files[2].1];
    let mut written = Vec::new();
    for ((table, _), (bytes, _)) in TABLES.iter().zip(files) {
        let key = table_key(table, partition, &run_id);
        sink.put(&key, bytes).await?;
        written.push(key);
    }
    let now = sink.manifest(partition).await?.map(|m| m.run_id);
    if now.as_ref() != Some(&run_id) {
        for key in &written {
            sink.delete(key).await?;
        }
        return Ok(Outcome::Superseded);
    }
    for (table, _) in TABLES {
        let keep = table_key(table, partition, &run_id);
        for key in sink.list(&table_dir(table, partition)).await? {
            if key != keep && key.ends_with(".parquet") {
                sink.delete(&key).await?;
            }
        }
    }
    Ok(Outcome::Written { run_id, rows })
}

/// Whether every table folder of the partition holds exactly the run's file.
async fn current(
    sink: &dyn ExportSink,
    partition: &Partition,
    run_id: &RunId,
) -> Result<bool, StoreError> {
    for (table, _) in TABLES {
        let keys = sink.list(&table_dir(table, partition)).await?;
        if keys != [table_key(table, partition, run_id)] {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every committed partition under a local output directory (its manifests).
pub fn local_partitions(root: &std::path::Path) -> std::io::Result<Vec<Partition>> {
    fn walk(
        dir: &std::path::Path,
        root: &std::path::Path,
        out: &mut Vec<Partition>,
    ) -> std::io::Result<()> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                if !entry.file_name().to_string_lossy().starts_with("run=") {
                    walk(&path, root, out)?;
                }
            } else if let Ok(rel) = path.strip_prefix(root)
                && let Some(p) = Partition::of_manifest_key(&rel.to_string_lossy())
            {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(&root.join("evaluations"), root, &mut out)?;
    out.sort_by_key(|p| p.manifest_key());
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Evaluation forms

struct QuestionInfo {
    group_id: String,
    group_name: Option<String>,
    context_id: Option<String>,
    text: Option<String>,
    kind: Option<String>,
    is_kill: Option<bool>,
    is_critical: Option<bool>,
    max_score: Option<f64>,
    answers: HashMap<String, String>,
}

#[derive(Default)]
struct FormInfo {
    questions: HashMap<String, QuestionInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FormIn {
    #[serde(default)]
    question_groups: Vec<GroupIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupIn {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    questions: Vec<QuestionIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuestionIn {
    id: String,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    is_kill: Option<bool>,
    #[serde(default)]
    is_critical: Option<bool>,
    #[serde(default)]
    answer_options: Vec<OptionIn>,
}

#[derive(Deserialize)]
struct OptionIn {
    id: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    value: Option<f64>,
}

fn form_info(json: &[u8]) -> Result<FormInfo, serde_json::Error> {
    let form: FormIn = serde_json::from_slice(json)?;
    let mut info = FormInfo::default();
    for group in form.question_groups {
        for q in group.questions {
            let max_score = q
                .answer_options
                .iter()
                .filter_map(|o| o.value)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            info.questions.insert(
                q.id,
                QuestionInfo {
                    group_id: group.id.clone(),
                    group_name: group.name.clone(),
                    context_id: q.context_id,
                    text: q.text,
                    kind: q.kind,
                    is_kill: q.is_kill,
                    is_critical: q.is_critical,
                    max_score,
                    answers: q
                        .answer_options
                        .into_iter()
                        .filter_map(|o| Some((o.id, o.text?)))
                        .collect(),
                },
            );
        }
    }
    Ok(info)
}

async fn load_forms(
    sink: &dyn ExportSink,
    manifest: &Manifest,
) -> Result<HashMap<String, FormInfo>, StoreError> {
    let mut forms = HashMap::new();
    for form_id in &manifest.form_ids {
        let Some(key) = form_key(&manifest.org_id, form_id) else {
            continue;
        };
        match sink.get(&key).await? {
            Some(bytes) => match form_info(&bytes) {
                Ok(info) => {
                    forms.insert(form_id.clone(), info);
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "evaluation form unreadable; its questions have no text")
                }
            },
            None => tracing::warn!(key, "evaluation form missing; its questions have no text"),
        }
    }
    Ok(forms)
}

// ---------------------------------------------------------------------------------------
// Evaluations

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EvalIn {
    id: String,
    #[serde(default)]
    conversation: Option<RefIn>,
    #[serde(default)]
    evaluation_form: Option<FormRefIn>,
    #[serde(default)]
    evaluator: Option<RefIn>,
    #[serde(default)]
    agent: Option<RefIn>,
    #[serde(default)]
    calibration: Option<RefIn>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    answers: Option<AnswersIn>,
    #[serde(default)]
    agent_has_read: Option<bool>,
    #[serde(default)]
    release_date: Option<String>,
    #[serde(default)]
    created_date: Option<String>,
    #[serde(default)]
    changed_date: Option<String>,
    #[serde(default)]
    submitted_date: Option<String>,
    #[serde(default)]
    conversation_date: Option<String>,
    #[serde(default)]
    never_release: Option<bool>,
    #[serde(default)]
    rescore: Option<bool>,
    #[serde(default)]
    redacted: Option<bool>,
    #[serde(default)]
    media_type: Vec<String>,
}

#[derive(Deserialize)]
struct RefIn {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FormRefIn {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    context_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswersIn {
    #[serde(default)]
    total_score: Option<f64>,
    #[serde(default)]
    total_critical_score: Option<f64>,
    #[serde(default)]
    total_non_critical_score: Option<f64>,
    #[serde(default)]
    any_failed_kill_questions: Option<bool>,
    #[serde(default)]
    question_group_scores: Vec<GroupScoreIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupScoreIn {
    #[serde(default)]
    question_group_id: Option<String>,
    #[serde(default)]
    question_scores: Vec<QuestionScoreIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuestionScoreIn {
    #[serde(default)]
    question_id: Option<String>,
    #[serde(default)]
    answer_id: Option<String>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default, rename = "markedNA")]
    marked_na: Option<bool>,
    #[serde(default)]
    failed_kill_question: Option<bool>,
}

fn millis(date: &Option<String>) -> Option<i64> {
    date.as_deref()
        .and_then(|d| d.parse::<Timestamp>().ok())
        .map(|t| t.as_millisecond())
}

/// Per agent × form, while a partition is read.
#[derive(Default)]
struct AgentFormAcc {
    form_context_id: Option<String>,
    form_name: Option<String>,
    totals: Vec<f64>,
    critical_sum: f64,
    critical_n: u64,
    kill_evaluations: i64,
    kill_questions: i64,
}

/// The linear-interpolation quantile of sorted values (numpy's default, DuckDB's
/// `quantile_cont`): position `(n − 1) × q` between the two nearest values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

struct Builders<'f> {
    run_id: String,
    forms: &'f HashMap<String, FormInfo>,
    evaluations: TableWriter,
    questions: TableWriter,
    agents: BTreeMap<(Option<String>, Option<String>), AgentFormAcc>,
}

impl Builders<'_> {
    fn add(&mut self, line: CommittedLine<'_>) -> Result<(), TablesError> {
        let e: EvalIn = serde_json::from_str(line.evaluation)
            .map_err(|err| TablesError::BadEvaluation(err.to_string()))?;
        let run = Some(self.run_id.as_str());
        let form = e.evaluation_form.as_ref();
        let form_id = form.and_then(|f| f.id.as_deref());
        let form_context_id = form.and_then(|f| f.context_id.as_deref());
        let agent_id = e.agent.as_ref().and_then(|a| a.id.as_deref());
        let evaluator_id = e.evaluator.as_ref().and_then(|a| a.id.as_deref());
        let answers = e.answers.as_ref();
        let total = answers.and_then(|a| a.total_score);
        self.evaluations.push(&[
            Cell::S(Some(&e.id)),
            Cell::S(e.conversation.as_ref().and_then(|c| c.id.as_deref())),
            Cell::S(e.status.as_deref()),
            Cell::S(Some(line.source)),
            Cell::B(Some(line.is_calibration)),
            Cell::S(e.calibration.as_ref().and_then(|c| c.id.as_deref())),
            Cell::S(agent_id),
            Cell::S(evaluator_id),
            Cell::S(form_id),
            Cell::S(form_context_id),
            Cell::S(form.and_then(|f| f.name.as_deref())),
            Cell::T(millis(&e.conversation_date)),
            Cell::T(millis(&e.created_date)),
            Cell::T(millis(&e.submitted_date)),
            Cell::T(millis(&e.release_date)),
            Cell::T(millis(&e.changed_date)),
            Cell::B(Some(answers.is_some())),
            Cell::F(total),
            Cell::F(answers.and_then(|a| a.total_critical_score)),
            Cell::F(answers.and_then(|a| a.total_non_critical_score)),
            Cell::B(answers.and_then(|a| a.any_failed_kill_questions)),
            Cell::B(e.redacted),
            Cell::B(e.rescore),
            Cell::B(e.never_release),
            Cell::B(e.agent_has_read),
            Cell::S(e.media_type.first().map(String::as_str)),
            Cell::S(run),
        ])?;
        let Some(answers) = answers else {
            return Ok(());
        };
        let form_info = form_id.and_then(|f| self.forms.get(f));
        let mut kill_questions = 0;
        for group in &answers.question_group_scores {
            for q in &group.question_scores {
                let info = q
                    .question_id
                    .as_deref()
                    .and_then(|id| form_info?.questions.get(id));
                let group_id = group
                    .question_group_id
                    .as_deref()
                    .or(info.map(|i| i.group_id.as_str()));
                let answer_text = q
                    .answer_id
                    .as_deref()
                    .and_then(|a| info?.answers.get(a))
                    .map(String::as_str);
                if q.failed_kill_question == Some(true) {
                    kill_questions += 1;
                }
                self.questions.push(&[
                    Cell::S(Some(&e.id)),
                    Cell::S(agent_id),
                    Cell::S(evaluator_id),
                    Cell::S(form_id),
                    Cell::S(form_context_id),
                    Cell::S(Some(line.source)),
                    Cell::B(Some(line.is_calibration)),
                    Cell::S(group_id),
                    Cell::S(info.and_then(|i| i.group_name.as_deref())),
                    Cell::S(q.question_id.as_deref()),
                    Cell::S(info.and_then(|i| i.context_id.as_deref())),
                    Cell::S(info.and_then(|i| i.text.as_deref())),
                    Cell::S(info.and_then(|i| i.kind.as_deref())),
                    Cell::S(q.answer_id.as_deref()),
                    Cell::S(answer_text),
                    Cell::F(q.score),
                    Cell::F(info.and_then(|i| i.max_score)),
                    Cell::B(q.marked_na),
                    Cell::B(info.and_then(|i| i.is_critical)),
                    Cell::B(info.and_then(|i| i.is_kill)),
                    Cell::B(q.failed_kill_question),
                    Cell::S(run),
                ])?;
            }
        }
        if line.is_calibration {
            return Ok(());
        }
        let Some(total) = total else {
            return Ok(());
        };
        let acc = self
            .agents
            .entry((agent_id.map(str::to_owned), form_id.map(str::to_owned)))
            .or_default();
        if acc.form_name.is_none() {
            acc.form_name = form.and_then(|f| f.name.clone());
            acc.form_context_id = form_context_id.map(str::to_owned);
        }
        acc.totals.push(total);
        if let Some(c) = answers.total_critical_score {
            acc.critical_sum += c;
            acc.critical_n += 1;
        }
        if answers.any_failed_kill_questions == Some(true) {
            acc.kill_evaluations += 1;
        }
        acc.kill_questions += kill_questions;
        Ok(())
    }

    fn agent_day(self) -> Result<(Vec<u8>, u64), ParquetError> {
        let mut w = TableWriter::new(AGENT_DAY)?;
        for ((agent_id, form_id), mut acc) in self.agents {
            acc.totals.sort_by(f64::total_cmp);
            let t = &acc.totals;
            let n = t.len();
            w.push(&[
                Cell::S(agent_id.as_deref()),
                Cell::S(form_id.as_deref()),
                Cell::S(acc.form_context_id.as_deref()),
                Cell::S(acc.form_name.as_deref()),
                Cell::L(Some(n as i64)),
                Cell::F(Some(t.iter().sum::<f64>() / n as f64)),
                Cell::F(Some(t[0])),
                Cell::F(Some(quantile(t, 0.25))),
                Cell::F(Some(quantile(t, 0.5))),
                Cell::F(Some(quantile(t, 0.75))),
                Cell::F(Some(t[n - 1])),
                Cell::F((acc.critical_n > 0).then(|| acc.critical_sum / acc.critical_n as f64)),
                Cell::L(Some(acc.kill_evaluations)),
                Cell::L(Some(acc.kill_questions)),
                Cell::S(Some(self.run_id.as_str())),
            ])?;
        }
        let rows = w.rows();
        Ok((w.finish()?, rows))
    }
}

/// Builds the three files of a committed run: (bytes, rows) of evaluations,
/// question_scores and agent_day.
async fn build(
    sink: &dyn ExportSink,
    manifest: &Manifest,
) -> Result<Vec<(Vec<u8>, u64)>, TablesError> {
    let forms = load_forms(sink, manifest).await?;
    let mut b = Builders {
        run_id: manifest.run_id.to_string(),
        forms: &forms,
        evaluations: TableWriter::new(EVALUATIONS)?,
        questions: TableWriter::new(QUESTION_SCORES)?,
        agents: BTreeMap::new(),
    };
    visit_committed(sink, manifest, |line| b.add(line))
        .await
        .map_err(|e| match e {
            VisitError::Store(e) => TablesError::Store(e),
            VisitError::Visitor(e) => e,
        })?;
    if b.evaluations.rows() != manifest.total_records {
        return Err(TablesError::BadEvaluation(format!(
            "{} evaluations read, the manifest says {}",
            b.evaluations.rows(),
            manifest.total_records
        )));
    }
    let evaluations = std::mem::replace(&mut b.evaluations, TableWriter::new(EVALUATIONS)?);
    let questions = std::mem::replace(&mut b.questions, TableWriter::new(QUESTION_SCORES)?);
    let e_rows = evaluations.rows();
    let q_rows = questions.rows();
    let e = evaluations.finish()?;
    let q = questions.finish()?;
    let a = b.agent_day()?;
    Ok(vec![(e, e_rows), (q, q_rows), a])
}

#[cfg(test)]
mod tests;
