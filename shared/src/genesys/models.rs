//! The few wire shapes the exporter reads. Evaluations themselves stay raw JSON
//! ([`serde_json::value::RawValue`]) so they are exported byte for byte, unknown fields and
//! enum values included.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `POST /oauth/token` success body.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// `EvaluationEntityListing` (reference §2.3), entities kept raw. Paging follows `nextUri`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityListing {
    /// The page's entities, as sent.
    #[serde(default)]
    pub entities: Vec<Box<RawValue>>,
    /// Relative URI of the next page; absent, null or empty on the last page.
    #[serde(default)]
    pub next_uri: Option<String>,
}

/// `EvaluationSearchResponse` (reference §1.4), results kept raw.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResponse {
    /// The page's results.
    #[serde(default)]
    pub results: Vec<Box<RawValue>>,
    /// The `pageSize` the service says it served (may be smaller than the one asked for).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Aggregation results by name (`EvaluationSearchAggregationResponse`), when asked for.
    #[serde(default)]
    pub aggregations: Option<std::collections::BTreeMap<String, AggregationResponse>>,
}

/// One `EvaluationSearchAggregationResponse`: a `COUNT` aggregation answers in `count`
/// (or `value`).
#[derive(Debug, Default, Deserialize)]
pub struct AggregationResponse {
    /// Count of documents.
    #[serde(default)]
    pub count: Option<f64>,
    /// Simple aggregation value (SUM, COUNT, AVERAGE).
    #[serde(default)]
    pub value: Option<f64>,
}

/// An entity reference `{id}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct EntityRef {
    /// The id.
    #[serde(default)]
    pub id: Option<String>,
}

/// The fields of an evaluation the exporter itself reads (everything else is passed through).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationHead {
    /// Evaluation id.
    pub id: String,
    /// `conversation.id`.
    #[serde(default)]
    pub conversation: Option<EntityRef>,
    /// `evaluator.id`.
    #[serde(default)]
    pub evaluator: Option<EntityRef>,
    /// `agent.id`.
    #[serde(default)]
    pub agent: Option<EntityRef>,
    /// `evaluationForm.id` (a form version).
    #[serde(default)]
    pub evaluation_form: Option<EntityRef>,
    /// `calibration`: set for calibration evaluations.
    #[serde(default)]
    pub calibration: Option<serde_json::Value>,
    /// `createdDate`.
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_date: Option<Timestamp>,
    /// `changedDate`: the newest wins when an evaluation is seen twice.
    #[serde(default, deserialize_with = "lenient_time")]
    pub changed_date: Option<Timestamp>,
    /// `submittedDate`.
    #[serde(default, deserialize_with = "lenient_time")]
    pub submitted_date: Option<Timestamp>,
    /// `releaseDate`.
    #[serde(default, deserialize_with = "lenient_time")]
    pub release_date: Option<Timestamp>,
    /// `conversationDate`.
    #[serde(default, deserialize_with = "lenient_time")]
    pub conversation_date: Option<Timestamp>,
    /// `status`, e.g. `FINISHED`, `PENDING` (unknown values kept as they are).
    #[serde(default)]
    pub status: Option<String>,
    /// `redacted`: scores are withheld.
    #[serde(default)]
    pub redacted: Option<bool>,
    /// `answers` (only whether question-group scores are present is read).
    #[serde(default)]
    pub answers: Option<AnswersHead>,
}

impl EvaluationHead {
    /// The value of `field` (`submittedDate`, `releaseDate`, `createdDate`,
    /// `conversationDate`), if present.
    pub fn date(&self, field: crate::domain::DateField) -> Option<Timestamp> {
        use crate::domain::DateField;
        match field {
            DateField::SubmittedDate => self.submitted_date,
            DateField::ReleaseDate => self.release_date,
            DateField::CreatedDate => self.created_date,
            DateField::ConversationDate => self.conversation_date,
        }
    }

    /// Whether this evaluation should carry question-group scores but does not: it is not
    /// redacted, not `PENDING`, and `answers.questionGroupScores` is absent (a bulk query
    /// that served totals only, or a `nextUri` that lost `expandAnswerTotalScores`;
    /// reference §8 U1, U2).
    pub fn lacks_question_scores(&self) -> bool {
        let should_have =
            !self.redacted.unwrap_or(false) && self.status.as_deref() != Some("PENDING");
        should_have
            && self
                .answers
                .as_ref()
                .is_none_or(|a| a.question_group_scores.is_none())
    }
}

/// The part of `answers` (`EvaluationScoringSet`) the exporter reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswersHead {
    /// `questionGroupScores`, present or not (its content is passed through untouched).
    #[serde(default)]
    pub question_group_scores: Option<serde::de::IgnoredAny>,
}

/// Dates as `yyyy-MM-ddTHH:mm:ss[.mmm]Z`; anything unparseable becomes `None`, never an error.
fn lenient_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.and_then(|s| s.parse().ok()))
}
