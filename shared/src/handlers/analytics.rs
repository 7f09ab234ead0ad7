//! The `analytics` function: an S3 `ObjectCreated:*` event for a committed
//! `…/_manifest.json` → summaries of that org and day, computed from exactly the parts the
//! manifest lists:
//!
//! - `analytics/org_id=<org>/date_field=<field>/source=<source>/date=<day>/by_agent_form.json`: per agent (`agent.id`) × evaluation
//!   form (`evaluationForm.id`): evaluations, mean/min/max `answers.totalScore`, mean
//!   `answers.totalCriticalScore`, evaluations with `answers.anyFailedKillQuestions`.
//! - `analytics/org_id=<org>/date_field=<field>/source=<source>/date=<day>/by_question.json`: per question (`questionId`, with its
//!   `questionGroupId`): answers, distribution by `answerId`, mean `score`, share marked NA.
//!
//! Calibration evaluations and evaluations without `answers` (redacted, pending) are left
//! out and counted in `skipped`. Output is sorted and written whole, so running again on the
//! same manifest writes the same bytes. Event keys arrive URL-encoded.

use std::collections::BTreeMap;

use aws_lambda_events::event::s3::S3Event;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::domain::{OrgId, RunId};
use crate::output::{ExportedEvaluation, read_committed};
use crate::ports::{ExportSink, Partition, StoreError};

/// Summary of one agent × form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentForm {
    /// `agent.id`.
    pub agent_id: String,
    /// `evaluationForm.id` (a form version).
    pub form_id: String,
    /// Evaluations with answers.
    pub evaluations: u64,
    /// Mean of `answers.totalScore`.
    pub mean_total_score: f64,
    /// Lowest `answers.totalScore`.
    pub min_total_score: f64,
    /// Highest `answers.totalScore`.
    pub max_total_score: f64,
    /// Mean of `answers.totalCriticalScore` over evaluations that have it.
    pub mean_total_critical_score: Option<f64>,
    /// Evaluations with `answers.anyFailedKillQuestions`.
    pub kill_question_failures: u64,
}

/// Summary of one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// `questionGroupId`.
    pub question_group_id: String,
    /// `questionId`.
    pub question_id: String,
    /// Question scores seen.
    pub answers: u64,
    /// Answers by `answerId` (NA answers have none and are not in it).
    pub answer_counts: BTreeMap<String, u64>,
    /// Mean `score` over answers not marked NA.
    pub mean_score: Option<f64>,
    /// Share of answers marked NA (0 to 1).
    pub na_rate: f64,
}

/// What one manifest yields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summaries {
    /// The org.
    pub org_id: OrgId,
    /// The day.
    pub date: Date,
    /// The committed run summarised.
    pub run_id: RunId,
    /// Evaluations left out (calibration, or no answers).
    pub skipped: u64,
    /// By agent × form, sorted.
    pub by_agent_form: Vec<AgentForm>,
    /// By question, sorted.
    pub by_question: Vec<Question>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Eval {
    #[serde(default)]
    agent: Option<Ref>,
    #[serde(default)]
    evaluation_form: Option<Ref>,
    #[serde(default)]
    answers: Option<Answers>,
}

#[derive(Deserialize)]
struct Ref {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answers {
    #[serde(default)]
    total_score: Option<f64>,
    #[serde(default)]
    total_critical_score: Option<f64>,
    #[serde(default)]
    any_failed_kill_questions: Option<bool>,
    #[serde(default)]
    question_group_scores: Vec<GroupScore>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupScore {
    #[serde(default)]
    question_group_id: Option<String>,
    #[serde(default)]
    question_scores: Vec<QuestionScore>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuestionScore {
    #[serde(default)]
    question_id: Option<String>,
    #[serde(default)]
    answer_id: Option<String>,
    #[serde(default)]
    score: Option<f64>,
    /// Genesys spells it `markedNA`.
    #[serde(default, rename = "markedNA")]
    marked_na: Option<bool>,
}

#[derive(Default)]
struct AgentFormAcc {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
    critical_sum: f64,
    critical_n: u64,
    kills: u64,
}

#[derive(Default)]
struct QuestionAcc {
    answers: u64,
    counts: BTreeMap<String, u64>,
    score_sum: f64,
    scored: u64,
    na: u64,
}

/// Aggregates the evaluations of one committed partition.
pub fn aggregate(evaluations: &[ExportedEvaluation]) -> (u64, Vec<AgentForm>, Vec<Question>) {
    let mut skipped = 0;
    let mut by_agent_form: BTreeMap<(String, String), AgentFormAcc> = BTreeMap::new();
    let mut by_question: BTreeMap<(String, String), QuestionAcc> = BTreeMap::new();
    for e in evaluations {
        let eval = serde_json::from_str::<Eval>(&e.evaluation)
            .ok()
            .filter(|_| !e.is_calibration);
        let Some((agent_form, answers, total)) = eval.and_then(|eval| {
            let answers = eval.answers?;
            let total = answers.total_score?;
            let key = (
                eval.agent.and_then(|a| a.id).unwrap_or_default(),
                eval.evaluation_form.and_then(|f| f.id).unwrap_or_default(),
            );
            Some((key, answers, total))
        }) else {
            skipped += 1;
            continue;
        };
        let acc = by_agent_form
            .entry(agent_form)
            .or_insert_with(|| AgentFormAcc {
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                ..AgentFormAcc::default()
            });
        acc.n += 1;
        acc.sum += total;
        acc.min = acc.min.min(total);
        acc.max = acc.max.max(total);
        if let Some(c) = answers.total_critical_score {
            acc.critical_sum += c;
            acc.critical_n += 1;
        }
        if answers.any_failed_kill_questions == Some(true) {
            acc.kills += 1;
        }
        for group in &answers.question_group_scores {
            for q in &group.question_scores {
                let key = (
                    group.question_group_id.clone().unwrap_or_default(),
                    q.question_id.clone().unwrap_or_default(),
                );
                let acc = by_question.entry(key).or_default();
                acc.answers += 1;
                if q.marked_na == Some(true) {
                    acc.na += 1;
                    continue;
                }
                if let Some(a) = &q.answer_id {
                    *acc.counts.entry(a.clone()).or_default() += 1;
                }
                if let Some(score) = q.score {
                    acc.score_sum += score;
                    acc.scored += 1;
                }
            }
        }
    }
    let by_agent_form = by_agent_form
        .into_iter()
        .map(|((agent_id, form_id), a)| AgentForm {
            agent_id,
            form_id,
            evaluations: a.n,
            mean_total_score: a.sum / a.n as f64,
            min_total_score: a.min,
            max_total_score: a.max,
            mean_total_critical_score: (a.critical_n > 0)
                .then(|| a.critical_sum / a.critical_n as f64),
            kill_question_failures: a.kills,
        })
        .collect();
    let by_question = by_question
        .into_iter()
        .map(|((question_group_id, question_id), q)| Question {
            question_group_id,
            question_id,
            answers: q.answers,
            answer_counts: q.counts,
            mean_score: (q.scored > 0).then(|| q.score_sum / q.scored as f64),
            na_rate: q.na as f64 / q.answers.max(1) as f64,
        })
        .collect();
    (skipped, by_agent_form, by_question)
}

/// Reads a committed partition, writes its summaries and returns them; `None` when nothing
/// is committed there.
pub async fn summarise(
    sink: &dyn ExportSink,
    partition: &Partition,
) -> Result<Option<Summaries>, StoreError> {
    let Some(committed) = read_committed(sink, partition).await? else {
        return Ok(None);
    };
    let (skipped, by_agent_form, by_question) = aggregate(&committed.evaluations);
    let summaries = Summaries {
        org_id: partition.org_id.clone(),
        date: partition.day,
        run_id: committed.manifest.run_id,
        skipped,
        by_agent_form,
        by_question,
    };
    let base = format!(
        "analytics/org_id={}/date_field={}/source={}/date={}",
        partition.org_id, partition.date_field, partition.source, partition.day
    );
    sink.put(
        &format!("{base}/by_agent_form.json"),
        pretty(&summaries.by_agent_form)?,
    )
    .await?;
    sink.put(
        &format!("{base}/by_question.json"),
        pretty(&summaries.by_question)?,
    )
    .await?;
    Ok(Some(summaries))
}

fn pretty(value: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec_pretty(value).map_err(|e| StoreError::new("analytics", e))
}

/// The partition of a manifest key (URL-decoded, as S3 events carry it), or `None` for any
/// other key.
pub fn manifest_partition(key: &str) -> Option<Partition> {
    let key = url::form_urlencoded::parse(format!("k={key}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Partition::of_manifest_key(&key)
}

/// Handles an S3 event: every manifest record is summarised; other keys are ignored.
pub async fn handle_s3_event(
    sink: &dyn ExportSink,
    event: S3Event,
) -> Result<Vec<Summaries>, StoreError> {
    let mut done = Vec::new();
    for record in event.records {
        let Some(key) = record.s3.object.key.as_deref() else {
            continue;
        };
        let Some(partition) = manifest_partition(key) else {
            tracing::info!(key, "not a manifest; ignored");
            continue;
        };
        if let Some(summaries) = summarise(sink, &partition).await? {
            done.push(summaries);
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(
        agent: &str,
        form: &str,
        total: f64,
        kill: bool,
        questions: &str,
    ) -> ExportedEvaluation {
        ExportedEvaluation {
            id: format!("{agent}{total}"),
            evaluation: format!(
                r#"{{"id":"x","agent":{{"id":"{agent}"}},"evaluationForm":{{"id":"{form}"}},"answers":{{"totalScore":{total},"totalCriticalScore":{},"anyFailedKillQuestions":{kill},"questionGroupScores":[{{"questionGroupId":"g1","questionScores":[{questions}]}}]}}}}"#,
                total / 2.0
            ),
            source: "human".into(),
            is_calibration: false,
            envelope: crate::output::Envelope {
                schema_version: 1,
                org_id: "o".parse().unwrap(),
                region: "mypurecloud.com".into(),
                run_id: crate::domain::RunId::try_from("20261128T000000Z-00000000".to_owned())
                    .unwrap(),
                window: crate::output::LineWindowIn {
                    from: "2026-11-28T00:00:00Z".parse().unwrap(),
                    to: "2026-11-29T00:00:00Z".parse().unwrap(),
                    date_field: crate::domain::DateField::SubmittedDate,
                },
            },
        }
    }

    #[test]
    fn aggregates_by_agent_form_and_question() {
        let q = |answer: &str, score: u32, na: bool| {
            format!(
                r#"{{"questionId":"q1","answerId":"{answer}","score":{score},"markedNA":{na}}}"#
            )
        };
        let mut evaluations = vec![
            eval("a1", "f1", 80.0, false, &q("yes", 10, false)),
            eval("a1", "f1", 60.0, true, &q("no", 0, false)),
            eval("a2", "f1", 100.0, false, &q("yes", 10, true)),
        ];
        evaluations.push(ExportedEvaluation {
            is_calibration: true,
            ..eval("a1", "f1", 0.0, false, "")
        });
        evaluations.push(ExportedEvaluation {
            evaluation: r#"{"id":"r","redacted":true}"#.into(),
            ..eval("a3", "f1", 0.0, false, "")
        });
        let (skipped, by_agent_form, by_question) = aggregate(&evaluations);
        assert_eq!(skipped, 2);
        assert_eq!(
            by_agent_form[0],
            AgentForm {
                agent_id: "a1".into(),
                form_id: "f1".into(),
                evaluations: 2,
                mean_total_score: 70.0,
                min_total_score: 60.0,
                max_total_score: 80.0,
                mean_total_critical_score: Some(35.0),
                kill_question_failures: 1,
            }
        );
        assert_eq!(by_agent_form[1].agent_id, "a2");
        assert_eq!(by_question.len(), 1);
        let q1 = &by_question[0];
        assert_eq!(
            (
                q1.question_group_id.as_str(),
                q1.question_id.as_str(),
                q1.answers
            ),
            ("g1", "q1", 3)
        );
        assert_eq!(
            q1.answer_counts,
            BTreeMap::from([("no".into(), 1), ("yes".into(), 1)])
        );
        assert_eq!(q1.mean_score, Some(5.0));
        assert!((q1.na_rate - 1.0 / 3.0).abs() < 1e-12);
    }

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
            "analytics/org_id=o/date_field=submittedDate/source=both/date=2026-11-28/_manifest.json",
        ] {
            assert!(manifest_partition(other).is_none(), "{other}");
        }
    }
}
