//! The columns of the three tables: the single definition the writer, the Glue declaration
//! (`infra/test_template.py` reads this file) and the README follow.
//!
//! The hive partition columns `org_id`, `date_field`, `source` and `date` come from the
//! object key (`tables/<table>/org_id=…/date_field=…/source=…/date=…/<run_id>.parquet`) and
//! are not stored in the files, so readers with hive partitioning see them exactly once.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text (Glue `string`).
    String,
    /// UTC instant, millisecond precision (Parquet `TIMESTAMP(MILLIS, isAdjustedToUTC)`,
    /// Glue `timestamp`).
    Timestamp,
    /// 64-bit float (Glue `double`).
    Double,
    /// Boolean (Glue `boolean`).
    Boolean,
    /// 64-bit integer (Glue `bigint`).
    Long,
}

impl Kind {
    /// The Arrow type written.
    pub fn data_type(self) -> DataType {
        match self {
            Kind::String => DataType::Utf8,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Kind::Double => DataType::Float64,
            Kind::Boolean => DataType::Boolean,
            Kind::Long => DataType::Int64,
        }
    }

    /// The Glue (Hive) type declared for it.
    pub fn glue_type(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Timestamp => "timestamp",
            Kind::Double => "double",
            Kind::Boolean => "boolean",
            Kind::Long => "bigint",
        }
    }
}

/// One column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether every row has a value.
    pub required: bool,
}

const fn col(name: &'static str, kind: Kind, required: bool) -> Column {
    Column {
        name,
        kind,
        required,
    }
}

use Kind::{Boolean, Double, Long, String as Str, Timestamp};

/// `evaluations`: one row per committed evaluation.
pub const EVALUATIONS: &[Column] = &[
    col("evaluation_id", Str, true),
    col("conversation_id", Str, false),
    col("status", Str, false),
    col("evaluation_source", Str, true),
    col("is_calibration", Boolean, true),
    col("calibration_id", Str, false),
    col("agent_id", Str, false),
    col("evaluator_id", Str, false),
    col("form_id", Str, false),
    col("form_context_id", Str, false),
    col("form_name", Str, false),
    col("conversation_date", Timestamp, false),
    col("created_date", Timestamp, false),
    col("submitted_date", Timestamp, false),
    col("release_date", Timestamp, false),
    col("changed_date", Timestamp, false),
    col("has_answers", Boolean, true),
    col("total_score", Double, false),
    col("total_critical_score", Double, false),
    col("total_non_critical_score", Double, false),
    col("any_failed_kill_questions", Boolean, false),
    col("redacted", Boolean, false),
    col("rescore", Boolean, false),
    col("never_release", Boolean, false),
    col("agent_has_read", Boolean, false),
    col("media_type", Str, false),
    col("run_id", Str, true),
];

/// `question_scores`: one row per committed evaluation × answered question, with the
/// question's group, text, type and answer text from the evaluation form version.
pub const QUESTION_SCORES: &[Column] = &[
    col("evaluation_id", Str, true),
    col("agent_id", Str, false),
    col("evaluator_id", Str, false),
    col("form_id", Str, false),
    col("form_context_id", Str, false),
    col("evaluation_source", Str, true),
    col("is_calibration", Boolean, true),
    col("question_group_id", Str, false),
    col("question_group_name", Str, false),
    col("question_id", Str, false),
    col("question_context_id", Str, false),
    col("question_text", Str, false),
    col("question_type", Str, false),
    col("answer_id", Str, false),
    col("answer_text", Str, false),
    col("score", Double, false),
    col("max_score", Double, false),
    col("marked_na", Boolean, false),
    col("is_critical", Boolean, false),
    col("is_kill", Boolean, false),
    col("failed_kill_question", Boolean, false),
    col("run_id", Str, true),
];

/// `agent_day`: per agent × evaluation form version, over the partition's scored
/// evaluations (calibration evaluations and evaluations without a total score excluded).
pub const AGENT_DAY: &[Column] = &[
    col("agent_id", Str, false),
    col("form_id", Str, false),
    col("form_context_id", Str, false),
    col("form_name", Str, false),
    col("evaluations", Long, true),
    col("mean_total_score", Double, true),
    col("min_total_score", Double, true),
    col("p25_total_score", Double, true),
    col("median_total_score", Double, true),
    col("p75_total_score", Double, true),
    col("max_total_score", Double, true),
    col("mean_total_critical_score", Double, false),
    col("failed_kill_evaluations", Long, true),
    col("failed_kill_questions", Long, true),
    col("run_id", Str, true),
];

/// The tables, by name.
pub const TABLES: &[(&str, &[Column])] = &[
    ("evaluations", EVALUATIONS),
    ("question_scores", QUESTION_SCORES),
    ("agent_day", AGENT_DAY),
];

/// The hive partition columns, in key order (all Glue `string`).
pub const PARTITION_COLUMNS: &[&str] = &["org_id", "date_field", "source", "date"];

/// The Arrow schema of a table.
pub fn arrow_schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name, c.kind.data_type(), !c.required))
            .collect::<Vec<_>>(),
    ))
}
