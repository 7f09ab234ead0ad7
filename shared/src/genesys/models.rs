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
}

/// Dates as `yyyy-MM-ddTHH:mm:ss[.mmm]Z`; anything unparseable becomes `None`, never an error.
fn lenient_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.and_then(|s| s.parse().ok()))
}
