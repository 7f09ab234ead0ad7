//! Deterministic data generation (users, forms, evaluations) and their wire JSON.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::scenario::OrgSpec;

/// Mix a seed with stream labels (splitmix64), for independent reproducible rng streams.
pub(crate) fn mix(seed: u64, parts: &[u64]) -> u64 {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    for p in parts {
        x = x.wrapping_add(*p).wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
    }
    x
}

pub(crate) fn rng_for(seed: u64, parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(seed, parts))
}

/// A random (version 4 layout) UUID drawn from `rng`.
pub(crate) fn uuid(rng: &mut impl Rng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ`, UTC.
pub(crate) fn fmt_ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn from_ms(v: i64) -> Timestamp {
    Timestamp::from_millisecond(v).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    /// A deleted user (state `deleted`).
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct AnswerOpt {
    pub id: String,
    pub context_id: String,
    pub text: String,
    pub value: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Question {
    pub id: String,
    pub context_id: String,
    pub text: String,
    pub na_enabled: bool,
    pub is_kill: bool,
    pub is_critical: bool,
    pub options: Vec<AnswerOpt>,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub id: String,
    pub context_id: String,
    pub name: String,
    pub weight: f64,
    pub na_enabled: bool,
    pub questions: Vec<Question>,
}

#[derive(Debug, Clone)]
pub(crate) struct Form {
    pub id: String,
    pub name: String,
    pub context_id: String,
    pub modified: Timestamp,
    pub groups: Vec<Group>,
    /// Latest version of its context.
    pub latest: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QuestionScore {
    pub question_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_id: Option<String>,
    pub score: i64,
    #[serde(rename = "markedNA")]
    pub marked_na: bool,
    pub failed_kill_question: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupScore {
    pub question_group_id: String,
    pub total_score: f64,
    pub max_total_score: f64,
    #[serde(rename = "markedNA")]
    pub marked_na: bool,
    pub total_critical_score: f64,
    pub max_total_critical_score: f64,
    pub total_non_critical_score: f64,
    pub max_total_non_critical_score: f64,
    pub total_score_unweighted: f64,
    pub max_total_score_unweighted: f64,
    pub question_scores: Vec<QuestionScore>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Answers {
    pub total_score: f64,
    pub total_critical_score: f64,
    pub total_non_critical_score: f64,
    pub question_group_scores: Vec<GroupScore>,
    pub any_failed_kill_questions: bool,
    pub comments: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Evaluation {
    pub id: String,
    pub conversation_id: String,
    pub form: usize,
    pub evaluator: Option<usize>,
    pub agent: usize,
    pub calibration_id: Option<String>,
    pub status: &'static str,
    pub answers: Option<Answers>,
    pub agent_has_read: bool,
    pub release: Option<Timestamp>,
    pub created: Timestamp,
    pub changed: Timestamp,
    pub submitted: Option<Timestamp>,
    pub conversation: Timestamp,
    pub conversation_end: Timestamp,
    pub never_release: bool,
    pub rescore: bool,
    pub redacted: bool,
    pub automated: bool,
    pub media_type: &'static str,
    pub policy_id: Option<String>,
    /// Outside the client's divisions (U8).
    pub restricted: bool,
}

/// Date fields an evaluation can be selected or sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DateField {
    /// `conversationDate`
    ConversationDate,
    /// `createdDate` (== `assignedDate` in the sim)
    CreatedDate,
    /// `submittedDate` (absent while PENDING/INPROGRESS)
    SubmittedDate,
    /// `releaseDate` (absent until released)
    ReleaseDate,
}

impl DateField {
    /// The wire name, e.g. `"submittedDate"`.
    pub fn wire_name(self) -> &'static str {
        match self {
            DateField::ConversationDate => "conversationDate",
            DateField::CreatedDate => "createdDate",
            DateField::SubmittedDate => "submittedDate",
            DateField::ReleaseDate => "releaseDate",
        }
    }
    /// Parse a wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "conversationDate" => DateField::ConversationDate,
            "createdDate" => DateField::CreatedDate,
            "submittedDate" => DateField::SubmittedDate,
            "releaseDate" => DateField::ReleaseDate,
            _ => return None,
        })
    }
}

impl Evaluation {
    pub fn date(&self, f: DateField) -> Option<Timestamp> {
        match f {
            DateField::ConversationDate => Some(self.conversation),
            DateField::CreatedDate => Some(self.created),
            DateField::SubmittedDate => self.submitted,
            DateField::ReleaseDate => self.release,
        }
    }
}

pub(crate) struct OrgData {
    pub org_id: String,
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    pub users: Vec<User>,
    pub forms: Vec<Form>,
    pub evals: Vec<Evaluation>,
    pub by_id: HashMap<String, usize>,
    pub form_by_id: HashMap<String, usize>,
}

const FIRST: &[&str] = &[
    "Aroha", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jack", "Kiri",
    "Liam", "Mia", "Noah", "Olivia", "Priya", "Quinn", "Ravi", "Sofia", "Tane", "Uma", "Victor",
    "Wiremu", "Xin", "Yara", "Zoe",
];
const LAST: &[&str] = &[
    "Anderson", "Brown", "Chen", "Davies", "Evans", "Fraser", "Gupta", "Harris", "Ito", "Jones",
    "Kumar", "Lee", "Martin", "Ngata", "O'Brien", "Patel", "Robinson", "Smith", "Taylor", "Wilson",
];
const FORM_NAMES: &[&str] = &[
    "Customer Service Call Review",
    "Sales Compliance",
    "Chat Quality",
    "Complaint Handling",
    "Technical Support Review",
    "Collections Script Adherence",
];
const GROUP_NAMES: &[&str] = &[
    "Opening",
    "Discovery",
    "Resolution",
    "Compliance",
    "Closing",
    "Soft Skills",
];
const QUESTIONS: &[&str] = &[
    "Did the agent greet the customer by name?",
    "Did the agent verify the customer's identity?",
    "Did the agent confirm the reason for the contact?",
    "Was the correct resolution offered?",
    "Did the agent avoid jargon?",
    "Did the agent read the mandatory disclosure?",
    "Was the customer placed on hold correctly?",
    "Did the agent summarise next steps?",
    "Did the agent show empathy?",
    "Was the interaction logged correctly?",
];

/// Period of generated data, `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Period {
    pub start: Timestamp,
    pub end: Timestamp,
}

fn gen_form_versions(
    rng: &mut ChaCha8Rng,
    fi: usize,
    versions: usize,
    period: Period,
) -> Vec<Form> {
    let name = FORM_NAMES[fi % FORM_NAMES.len()].to_string();
    let context_id = uuid(rng);
    let n_groups = rng.random_range(2..=4usize);
    // Version-stable structure: context ids, texts, kill/critical flags, option values.
    type OptProto = (String, String, i64);
    type QProto = (String, String, bool, bool, bool, Vec<OptProto>);
    struct Proto {
        ctx: String,
        name: String,
        na: bool,
        qs: Vec<QProto>,
    }
    let mut protos = Vec::new();
    for g in 0..n_groups {
        let n_q = rng.random_range(2..=4usize);
        let mut qs = Vec::new();
        for _ in 0..n_q {
            let text = QUESTIONS[rng.random_range(0..QUESTIONS.len())].to_string();
            let scale: &[(&str, i64)] = if rng.random_bool(0.5) {
                &[("Yes", 1), ("No", 0)]
            } else {
                &[("Excellent", 10), ("Good", 7), ("Fair", 4), ("Poor", 0)]
            };
            let opts = scale
                .iter()
                .map(|(t, v)| (uuid(rng), t.to_string(), *v))
                .collect();
            qs.push((
                uuid(rng),
                text,
                rng.random_bool(0.3),
                rng.random_bool(0.1),
                rng.random_bool(0.3),
                opts,
            ));
        }
        protos.push(Proto {
            ctx: uuid(rng),
            name: GROUP_NAMES[(fi + g) % GROUP_NAMES.len()].to_string(),
            na: rng.random_bool(0.2),
            qs,
        });
    }
    let span = (
        ms(period.start) - 90 * 86_400_000,
        ms(period.start) - 86_400_000,
    );
    let mut out = Vec::new();
    for v in 0..versions {
        // Weights change a little per version; they sum to 1.
        let raw: Vec<f64> = (0..n_groups)
            .map(|_| rng.random_range(1..=5) as f64)
            .collect();
        let sum: f64 = raw.iter().sum();
        let groups = protos
            .iter()
            .zip(&raw)
            .map(|(p, w)| Group {
                id: uuid(rng),
                context_id: p.ctx.clone(),
                name: p.name.clone(),
                weight: round4(w / sum),
                na_enabled: p.na,
                questions: p
                    .qs
                    .iter()
                    .map(|(ctx, text, na, kill, crit, opts)| Question {
                        id: uuid(rng),
                        context_id: ctx.clone(),
                        text: text.clone(),
                        na_enabled: *na,
                        is_kill: *kill,
                        is_critical: *crit,
                        options: opts
                            .iter()
                            .map(|(octx, t, val)| AnswerOpt {
                                id: uuid(rng),
                                context_id: octx.clone(),
                                text: t.clone(),
                                value: *val,
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        let step = (span.1 - span.0) / versions as i64;
        out.push(Form {
            id: uuid(rng),
            name: name.clone(),
            context_id: context_id.clone(),
            modified: from_ms(span.0 + step * v as i64 + rng.random_range(0..step.max(1))),
            groups,
            latest: v + 1 == versions,
        });
    }
    out
}

/// Choose answers for `form` and compute every score from the form's values and weights.
///
/// Group: `totalScore` = earned/max × 100 over answered (non-NA) questions; critical and
/// non-critical likewise over `isCritical` questions / the others; unweighted = raw points.
/// Total: Σ weight × group% / Σ weight over non-NA groups, 0 when a kill question failed
/// (answered with its lowest value). Critical/non-critical totals: raw earned/max × 100
/// across the form (0 when there are no such questions). Rounded to 4 decimals.
pub(crate) fn score(form: &Form, rng: &mut ChaCha8Rng) -> Answers {
    let mut groups = Vec::new();
    let (mut wsum, mut wtotal) = (0.0, 0.0);
    let (mut crit_e, mut crit_m, mut non_e, mut non_m) = (0i64, 0i64, 0i64, 0i64);
    let mut any_kill = false;
    let skill: f64 = rng.random_range(0.5..0.98);
    for g in &form.groups {
        let group_na = g.na_enabled && rng.random_bool(0.05);
        let mut qs = Vec::new();
        let (mut e, mut m, mut ce, mut cm, mut ne, mut nm) = (0, 0, 0, 0, 0, 0);
        for q in &g.questions {
            let na = group_na || (q.na_enabled && rng.random_bool(0.08));
            if na {
                qs.push(QuestionScore {
                    question_id: q.id.clone(),
                    answer_id: None,
                    score: 0,
                    marked_na: true,
                    failed_kill_question: false,
                });
                continue;
            }
            // Options are ordered best first; a skilled agent mostly picks the first.
            let mut k = 0;
            while k + 1 < q.options.len() && !rng.random_bool(skill) {
                k += 1;
            }
            let opt = &q.options[k];
            let max = q.options.iter().map(|o| o.value).max().unwrap_or(0);
            let min = q.options.iter().map(|o| o.value).min().unwrap_or(0);
            let failed_kill = q.is_kill && opt.value == min;
            any_kill |= failed_kill;
            e += opt.value;
            m += max;
            if q.is_critical {
                ce += opt.value;
                cm += max;
            } else {
                ne += opt.value;
                nm += max;
            }
            qs.push(QuestionScore {
                question_id: q.id.clone(),
                answer_id: Some(opt.id.clone()),
                score: opt.value,
                marked_na: false,
                failed_kill_question: failed_kill,
            });
        }
        let pct = |a: i64, b: i64| {
            if b > 0 {
                round4(a as f64 * 100.0 / b as f64)
            } else {
                0.0
            }
        };
        let marked_na = m == 0;
        if !marked_na {
            wsum += g.weight;
            wtotal += g.weight * (e as f64 * 100.0 / m as f64);
        }
        crit_e += ce;
        crit_m += cm;
        non_e += ne;
        non_m += nm;
        groups.push(GroupScore {
            question_group_id: g.id.clone(),
            total_score: pct(e, m),
            max_total_score: if marked_na { 0.0 } else { 100.0 },
            marked_na,
            total_critical_score: pct(ce, cm),
            max_total_critical_score: if cm > 0 { 100.0 } else { 0.0 },
            total_non_critical_score: pct(ne, nm),
            max_total_non_critical_score: if nm > 0 { 100.0 } else { 0.0 },
            total_score_unweighted: e as f64,
            max_total_score_unweighted: m as f64,
            question_scores: qs,
        });
    }
    let total = if any_kill || wsum == 0.0 {
        0.0
    } else {
        round4(wtotal / wsum)
    };
    let pct = |a: i64, b: i64| {
        if b > 0 {
            round4(a as f64 * 100.0 / b as f64)
        } else {
            0.0
        }
    };
    const COMMENTS: &[&str] = &[
        "",
        "",
        "Good call overall.",
        "Needs coaching on disclosures.",
        "Great empathy.",
    ];
    Answers {
        total_score: total,
        total_critical_score: pct(crit_e, crit_m),
        total_non_critical_score: pct(non_e, non_m),
        question_group_scores: groups,
        any_failed_kill_questions: any_kill,
        comments: COMMENTS[rng.random_range(0..COMMENTS.len())].to_string(),
    }
}

fn rand_between(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

/// Generate one org's data from its own rng stream. Same inputs → identical data.
pub(crate) fn generate_org(seed: u64, index: usize, spec: &OrgSpec, period: Period) -> OrgData {
    let mut rng = rng_for(seed, &[index as u64, 1]);
    let org_id = spec.org_id.clone().unwrap_or_else(|| uuid(&mut rng));
    let client_id = spec.client_id.clone().unwrap_or_else(|| uuid(&mut rng));
    let client_secret = spec.client_secret.clone().unwrap_or_else(|| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rng.random::<[u8; 32]>())
    });
    let mut users = Vec::new();
    let mut agents = Vec::new();
    let mut evaluators = Vec::new();
    let domain = spec
        .name
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    for i in 0..(spec.agents + spec.evaluators) {
        let name = format!(
            "{} {}",
            FIRST[rng.random_range(0..FIRST.len())],
            LAST[rng.random_range(0..LAST.len())]
        );
        let email = format!(
            "{}.{}@{}.example.com",
            name.to_lowercase().replace([' ', '\''], "."),
            i + 1,
            domain
        );
        let deleted = if i < spec.agents {
            agents.push(users.len());
            i < spec.deleted_agents
        } else {
            evaluators.push(users.len());
            i - spec.agents < spec.deleted_evaluators
        };
        users.push(User {
            id: uuid(&mut rng),
            name,
            email,
            deleted,
        });
    }
    let mut forms = Vec::new();
    for fi in 0..spec.forms {
        forms.extend(gen_form_versions(&mut rng, fi, spec.form_versions, period));
    }
    let policy_id = uuid(&mut rng);
    let (ps, pe) = (ms(period.start), ms(period.end).max(ms(period.start) + 1));
    let mut evals = Vec::with_capacity(spec.evaluations);
    for _ in 0..spec.evaluations {
        let id = uuid(&mut rng);
        let conversation_id = uuid(&mut rng);
        let automated = rng.random_bool(spec.automated_fraction);
        let created = rng.random_range(ps..pe);
        let conversation = created - rand_between(&mut rng, 5 * 60_000, 48 * 3_600_000);
        let conversation_end =
            (conversation + rand_between(&mut rng, 60_000, 30 * 60_000)).min(created);
        // Later versions of a form are used more.
        let form_ctx = rng.random_range(0..spec.forms);
        let ver = spec.form_versions
            - 1
            - rng
                .random_range(0..spec.form_versions)
                .min(rng.random_range(0..spec.form_versions));
        let form = form_ctx * spec.form_versions + ver;
        let agent = agents[rng.random_range(0..agents.len())];
        let evaluator = evaluators[rng.random_range(0..evaluators.len())];
        let unsubmitted = !automated && rng.random_bool(spec.unsubmitted_fraction);
        let never_release = !automated && rng.random_bool(spec.never_release_fraction);
        let redacted = rng.random_bool(spec.redacted_fraction);
        let calibration = !automated && rng.random_bool(spec.calibration_fraction);
        let media_type =
            ["CALL", "CALL", "CALL", "CHAT", "EMAIL", "MESSAGE"][rng.random_range(0..6)];
        let answers = score(&forms[form], &mut rng);
        let read = rng.random_bool(0.5);
        let release_roll = rng.random_bool(0.85);
        let status;
        let (mut submitted, mut release) = (None, None);
        if unsubmitted {
            status = if rng.random_bool(0.5) {
                "PENDING"
            } else {
                "INPROGRESS"
            };
        } else {
            status = "FINISHED";
            let s = created
                + rand_between(
                    &mut rng,
                    60_000.min(pe - created),
                    (8 * 3_600_000).min(pe - created),
                );
            submitted = Some(s);
            if automated {
                release = Some(s);
            } else if !never_release && release_roll {
                release = Some(s + rand_between(&mut rng, 0, (24 * 3_600_000).min(pe - s)));
            }
        }
        let changed = release.or(submitted).unwrap_or(created);
        evals.push(Evaluation {
            id,
            conversation_id,
            form,
            evaluator: (!automated).then_some(evaluator),
            agent,
            calibration_id: calibration.then(|| uuid(&mut rng)),
            status,
            answers: (status != "PENDING").then_some(answers),
            agent_has_read: release.is_some() && read,
            release: release.map(from_ms),
            created: from_ms(created),
            changed: from_ms(changed),
            submitted: submitted.map(from_ms),
            conversation: from_ms(conversation),
            conversation_end: from_ms(conversation_end),
            never_release,
            rescore: false,
            redacted,
            automated,
            media_type,
            policy_id: automated.then(|| policy_id.clone()),
            restricted: false,
        });
    }
    // Data knobs draw from their own streams, so the data above does not depend on them.
    apply_midnights(&mut evals, seed, index, spec, period);
    apply_ties(&mut evals, seed, index, spec);
    pick_restricted(&mut evals, seed, index, spec);
    let by_id = evals
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.clone(), i))
        .collect();
    let form_by_id = forms
        .iter()
        .enumerate()
        .map(|(i, f)| (f.id.clone(), i))
        .collect();
    OrgData {
        org_id,
        name: spec.name.clone(),
        client_id,
        client_secret,
        users,
        forms,
        evals,
        by_id,
        form_by_id,
    }
}

/// Number of evaluations a fraction asks for: rounded, at least one when the fraction is
/// positive.
fn share(fraction: f64, n: usize) -> usize {
    if fraction <= 0.0 || n == 0 {
        0
    } else {
        ((fraction * n as f64).round() as usize).clamp(1, n)
    }
}

/// U10 data: `midnight_fraction` of the evaluations get every date set to 00:00:00.000 UTC
/// of a day inside the period.
fn apply_midnights(evals: &mut [Evaluation], seed: u64, index: usize, spec: &OrgSpec, p: Period) {
    const DAY: i64 = 86_400_000;
    let n = share(spec.midnight_fraction, evals.len());
    let first = ms(p.start).div_euclid(DAY) * DAY;
    let first = if first < ms(p.start) {
        first + DAY
    } else {
        first
    };
    let days: Vec<i64> = (0..)
        .map(|k| first + k * DAY)
        .take_while(|&d| d < ms(p.end))
        .collect();
    if n == 0 || days.is_empty() {
        return;
    }
    let mut rng = rng_for(seed, &[index as u64, 6]);
    let mut order: Vec<usize> = (0..evals.len()).collect();
    order.shuffle(&mut rng);
    for (k, &i) in order.iter().take(n).enumerate() {
        let t = from_ms(days[k % days.len()]);
        let e = &mut evals[i];
        e.conversation = t;
        e.conversation_end = t;
        e.created = t;
        e.changed = t;
        e.submitted = e.submitted.map(|_| t);
        e.release = e.release.map(|_| t);
    }
}

/// U4 data: `tied_fraction` of the evaluations copy every date of an earlier evaluation of
/// the same kind (automation, status, released or not), in clusters of 2–5.
fn apply_ties(evals: &mut [Evaluation], seed: u64, index: usize, spec: &OrgSpec) {
    let mut budget = share(spec.tied_fraction, evals.len());
    if budget == 0 {
        return;
    }
    let mut rng = rng_for(seed, &[index as u64, 7]);
    let midnight = |e: &Evaluation| e.created == e.conversation;
    let mut kinds: BTreeMap<(bool, &'static str, bool), Vec<usize>> = BTreeMap::new();
    for (i, e) in evals.iter().enumerate() {
        if !midnight(e) {
            kinds
                .entry((e.automated, e.status, e.release.is_some()))
                .or_default()
                .push(i);
        }
    }
    let mut clusters: Vec<Vec<usize>> = Vec::new();
    for (_, mut members) in kinds {
        members.shuffle(&mut rng);
        let mut rest = &members[..];
        while rest.len() >= 2 {
            let size = rng.random_range(2..=5usize).min(rest.len());
            let mut c = rest[..size].to_vec();
            c.sort_unstable();
            clusters.push(c);
            rest = &rest[size..];
        }
    }
    clusters.shuffle(&mut rng);
    for c in clusters {
        if budget == 0 {
            break;
        }
        let src = evals[c[0]].clone();
        for &i in c.iter().skip(1).take(budget) {
            let e = &mut evals[i];
            e.conversation = src.conversation;
            e.conversation_end = src.conversation_end;
            e.created = src.created;
            e.submitted = src.submitted;
            e.release = src.release;
            e.changed = src.changed;
            budget -= 1;
        }
    }
}

/// U8 data: `restricted_evaluations` human FINISHED evaluations, one from each of that
/// many equal slices of the period (by created date).
fn pick_restricted(evals: &mut [Evaluation], seed: u64, index: usize, spec: &OrgSpec) {
    let mut cands: Vec<usize> = (0..evals.len())
        .filter(|&i| !evals[i].automated && evals[i].status == "FINISHED")
        .collect();
    let n = spec.restricted_evaluations.min(cands.len());
    if n == 0 {
        return;
    }
    cands.sort_by(|&a, &b| evals[a].created.cmp(&evals[b].created).then(a.cmp(&b)));
    let mut rng = rng_for(seed, &[index as u64, 8]);
    for k in 0..n {
        let (lo, hi) = (k * cands.len() / n, (k + 1) * cands.len() / n);
        evals[cands[rng.random_range(lo..hi)]].restricted = true;
    }
}

// ---------------------------------------------------------------- wire rendering

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ref<'a> {
    id: &'a str,
    self_uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FormRef<'a> {
    id: &'a str,
    name: &'a str,
    context_id: &'a str,
    self_uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SourceRef<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// Which `answers` an evaluation is rendered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswersView {
    /// No `answers`.
    Absent,
    /// The full answers with `questionGroupScores`.
    Full,
    /// Totals only (no `questionGroupScores`).
    Totals,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TotalsWire<'a> {
    total_score: f64,
    total_critical_score: f64,
    total_non_critical_score: f64,
    any_failed_kill_questions: bool,
    comments: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum AnswersWire<'a> {
    Full(&'a Answers),
    Totals(TotalsWire<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EvaluationWire<'a> {
    id: &'a str,
    conversation: Ref<'a>,
    evaluation_form: FormRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evaluator: Option<Ref<'a>>,
    agent: Ref<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calibration: Option<Ref<'a>>,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    answers: Option<AnswersWire<'a>>,
    agent_has_read: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    release_date: Option<String>,
    assigned_date: String,
    created_date: String,
    changed_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    submitted_date: Option<String>,
    conversation_date: String,
    conversation_end_date: String,
    never_release: bool,
    assigned: bool,
    rescore: bool,
    redacted: bool,
    media_type: [&'a str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    evaluation_source: Option<SourceRef<'a>>,
    self_uri: String,
}

fn user_ref(u: &User) -> Ref<'_> {
    Ref {
        id: &u.id,
        self_uri: format!("/api/v2/users/{}", u.id),
    }
}

impl OrgData {
    /// The evaluation's JSON; `answers` only when `with_answers` (and not redacted/pending).
    pub fn render_eval(&self, e: &Evaluation, with_answers: bool) -> String {
        let view = if with_answers {
            AnswersView::Full
        } else {
            AnswersView::Absent
        };
        self.render_eval_view(e, view)
    }

    /// The evaluation's JSON with `answers` per `view` (never for redacted/pending).
    pub fn render_eval_view(&self, e: &Evaluation, view: AnswersView) -> String {
        let f = &self.forms[e.form];
        let w = EvaluationWire {
            id: &e.id,
            conversation: Ref {
                id: &e.conversation_id,
                self_uri: format!("/api/v2/conversations/{}", e.conversation_id),
            },
            evaluation_form: FormRef {
                id: &f.id,
                name: &f.name,
                context_id: &f.context_id,
                self_uri: format!("/api/v2/quality/forms/evaluations/{}", f.id),
            },
            evaluator: e.evaluator.map(|i| user_ref(&self.users[i])),
            agent: user_ref(&self.users[e.agent]),
            calibration: e.calibration_id.as_deref().map(|c| Ref {
                id: c,
                self_uri: format!("/api/v2/quality/calibrations/{c}"),
            }),
            status: e.status,
            answers: match (view, e.answers.as_ref()) {
                _ if e.redacted => None,
                (AnswersView::Full, Some(a)) => Some(AnswersWire::Full(a)),
                (AnswersView::Totals, Some(a)) => Some(AnswersWire::Totals(TotalsWire {
                    total_score: a.total_score,
                    total_critical_score: a.total_critical_score,
                    total_non_critical_score: a.total_non_critical_score,
                    any_failed_kill_questions: a.any_failed_kill_questions,
                    comments: &a.comments,
                })),
                _ => None,
            },
            agent_has_read: e.agent_has_read,
            release_date: e.release.map(fmt_ts),
            assigned_date: fmt_ts(e.created),
            created_date: fmt_ts(e.created),
            changed_date: fmt_ts(e.changed),
            submitted_date: e.submitted.map(fmt_ts),
            conversation_date: fmt_ts(e.conversation),
            conversation_end_date: fmt_ts(e.conversation_end),
            never_release: e.never_release,
            assigned: true,
            rescore: e.rescore,
            redacted: e.redacted,
            media_type: [e.media_type],
            evaluation_source: e.policy_id.as_deref().map(|p| SourceRef {
                id: p,
                name: "Virtual Supervisor",
                kind: "Policy",
            }),
            self_uri: format!(
                "/api/v2/quality/conversations/{}/evaluations/{}",
                e.conversation_id, e.id
            ),
        };
        serde_json::to_string(&w).expect("serialising plain structs cannot fail")
    }

    /// Full form version JSON (with question groups) or the listing shape without them.
    pub fn render_form(&self, f: &Form, full: bool, published: bool) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Opt<'a> {
            id: &'a str,
            context_id: &'a str,
            text: &'a str,
            value: i64,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Q<'a> {
            id: &'a str,
            context_id: &'a str,
            text: &'a str,
            help_text: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            na_enabled: bool,
            comments_required: bool,
            is_kill: bool,
            is_critical: bool,
            answer_options: Vec<Opt<'a>>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct G<'a> {
            id: &'a str,
            context_id: &'a str,
            name: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            default_answers_to_highest: bool,
            #[serde(rename = "defaultAnswersToNA")]
            default_answers_to_na: bool,
            na_enabled: bool,
            weight: f64,
            manual_weight: bool,
            questions: Vec<Q<'a>>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct F<'a> {
            id: &'a str,
            name: &'a str,
            modified_date: String,
            published: bool,
            context_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            question_groups: Option<Vec<G<'a>>>,
            weight_mode: &'a str,
            self_uri: String,
        }
        let groups = full.then(|| {
            f.groups
                .iter()
                .map(|g| G {
                    id: &g.id,
                    context_id: &g.context_id,
                    name: &g.name,
                    kind: "questionGroup",
                    default_answers_to_highest: false,
                    default_answers_to_na: false,
                    na_enabled: g.na_enabled,
                    weight: g.weight,
                    manual_weight: true,
                    questions: g
                        .questions
                        .iter()
                        .map(|q| Q {
                            id: &q.id,
                            context_id: &q.context_id,
                            text: &q.text,
                            help_text: "",
                            kind: "multipleChoiceQuestion",
                            na_enabled: q.na_enabled,
                            comments_required: false,
                            is_kill: q.is_kill,
                            is_critical: q.is_critical,
                            answer_options: q
                                .options
                                .iter()
                                .map(|o| Opt {
                                    id: &o.id,
                                    context_id: &o.context_id,
                                    text: &o.text,
                                    value: o.value,
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect()
        });
        let w = F {
            id: &f.id,
            name: &f.name,
            modified_date: fmt_ts(f.modified),
            published,
            context_id: &f.context_id,
            question_groups: groups,
            weight_mode: "SCALED",
            self_uri: format!("/api/v2/quality/forms/evaluations/{}", f.id),
        };
        serde_json::to_string(&w).expect("serialising plain structs cannot fail")
    }

    pub fn render_user(&self, u: &User) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct W<'a> {
            id: &'a str,
            name: &'a str,
            email: &'a str,
            state: &'a str,
            username: &'a str,
            self_uri: String,
        }
        serde_json::to_string(&W {
            id: &u.id,
            name: &u.name,
            email: &u.email,
            state: if u.deleted { "deleted" } else { "active" },
            username: &u.email,
            self_uri: format!("/api/v2/users/{}", u.id),
        })
        .expect("serialising plain structs cannot fail")
    }

    /// Insert a new evaluation (copy of `template` with a fresh id and answers).
    pub fn insert_clone(&mut self, template: usize, id: String, rng: &mut ChaCha8Rng) -> usize {
        let mut e = self.evals[template].clone();
        e.id = id;
        e.restricted = false;
        if e.answers.is_some() {
            e.answers = Some(score(&self.forms[e.form], rng));
        }
        self.by_id.insert(e.id.clone(), self.evals.len());
        self.evals.push(e);
        self.evals.len() - 1
    }

    /// Rescore: new answers, `changedDate` + 60 s, `rescore: true`.
    pub fn rescore(&mut self, idx: usize, rng: &mut ChaCha8Rng) {
        let form = self.evals[idx].form;
        let answers = score(&self.forms[form], rng);
        let e = &mut self.evals[idx];
        e.answers = Some(answers);
        e.changed = e
            .changed
            .checked_add(SignedDuration::from_secs(60))
            .unwrap_or(e.changed);
        e.rescore = true;
    }
}
