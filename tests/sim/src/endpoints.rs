//! Endpoint logic (runs under the org lock): listing, filtering, sorting, paging faults.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::{Timestamp, ToSpan};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use rand::Rng;

use crate::data::{AnswersView, DateField, Evaluation, fmt_ts, mix, uuid};
use crate::scenario::{
    DateRangeEnd, DeletedUserQuery, FaultKind, OutsideDivision, QueryAnswers, QueryTimeFilter,
    SearchOverMax, SearchPastCap, SearchSystemSubmitted, SearchTies,
};
use crate::server::{Ctx, Ep, OrgRt};

/// A response under construction.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: Option<&'static str>,
}

impl Reply {
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            content_type: Some("application/json"),
        }
    }
    pub fn empty() -> Reply {
        Reply {
            status: 200,
            body: Vec::new(),
            headers: Vec::new(),
            content_type: None,
        }
    }
}

/// A platform error (rendered as ErrorBody).
#[derive(Debug, Clone)]
pub(crate) struct ApiErr {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl ApiErr {
    pub fn new(status: u16, code: &str, message: &str) -> ApiErr {
        ApiErr {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
        }
    }
    fn bad(field: &str, message: String) -> ApiErr {
        ApiErr {
            status: 400,
            code: "bad.request".into(),
            message,
            field: Some(field.into()),
        }
    }
    fn date(field: &str) -> ApiErr {
        ApiErr {
            status: 400,
            code: "invalid.date".into(),
            message: format!(
                "{field}: Dates must be specified as ISO-8601 strings. For example: yyyy-MM-ddTHH:mm:ss.SSSZ"
            ),
            field: Some(field.into()),
        }
    }
    fn not_found(what: &str) -> ApiErr {
        ApiErr::new(
            404,
            "not.found",
            &format!("The requested {what} was not found."),
        )
    }
}

type Res = Result<Reply, ApiErr>;

fn ok_json(body: String) -> Res {
    Ok(Reply::json(200, body.into_bytes()))
}

fn raw(s: String) -> Box<RawValue> {
    RawValue::from_string(s).expect("rendered entities are valid JSON")
}

pub(crate) fn handle(org: &mut OrgRt, ctx: &Ctx) -> Res {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(ctx.query.as_bytes())
        .into_owned()
        .collect();
    match ctx.ep {
        Ep::TokensMe => tokens_me(org),
        Ep::OrgMe => org_me(org),
        Ep::Search => search(org, &ctx.body),
        Ep::Query => query(org, &params),
        Ep::Get => get_one(org, &ctx.args[0], &ctx.args[1]),
        Ep::FormsList => forms_list(org, &params, false),
        Ep::PublishedForms => forms_list(org, &params, true),
        Ep::FormGet => {
            let i = *org
                .data
                .form_by_id
                .get(&ctx.args[0])
                .ok_or_else(|| ApiErr::not_found("evaluation form"))?;
            ok_json(org.data.render_form(&org.data.forms[i], true, true))
        }
        Ep::Aggregates => aggregates(org, &ctx.body),
        Ep::Users => users(org, &params),
        Ep::Token | Ep::Unknown => Err(ApiErr::new(
            404,
            "not.found",
            "The requested resource was not found.",
        )),
    }
}

// ------------------------------------------------------------------ helpers

fn param<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn multi(p: &[(String, String)], k: &str) -> Vec<String> {
    p.iter()
        .filter(|(n, _)| n == k)
        .flat_map(|(_, v)| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn int_param(
    p: &[(String, String)],
    k: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiErr> {
    match param(p, k) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiErr::bad(
                k,
                format!("{k} must be an integer between {min} and {max}, got {v:?}"),
            )),
        },
    }
}

fn bool_param(p: &[(String, String)], k: &str) -> Result<Option<bool>, ApiErr> {
    match param(p, k) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(ApiErr::bad(
            k,
            format!("{k} must be true or false, got {v:?}"),
        )),
    }
}

fn parse_ts(field: &str, v: &str) -> Result<Timestamp, ApiErr> {
    v.parse::<Timestamp>().map_err(|_| ApiErr::date(field))
}

/// Paging envelope (reference §2.3), serialised in this field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    entities: Vec<Box<RawValue>>,
    page_size: u64,
    page_number: u64,
    total: u64,
    page_count: u64,
    first_uri: String,
    self_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_uri: Option<String>,
    last_uri: String,
}

/// `path?params` with `pageNumber` set to `n` (other parameters kept in order).
fn page_uri(path: &str, params: &[(String, String)], n: u64) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    let mut set = false;
    for (k, v) in params {
        if k == "pageNumber" {
            if !set {
                s.append_pair(k, &n.to_string());
                set = true;
            }
        } else {
            s.append_pair(k, v);
        }
    }
    if !set {
        s.append_pair("pageNumber", &n.to_string());
    }
    format!("{path}?{}", s.finish())
}

#[allow(clippy::too_many_arguments)]
fn envelope(
    path: &str,
    params: &[(String, String)],
    next_params: &[(String, String)],
    entities: Vec<String>,
    page_size: u64,
    page_number: u64,
    total: u64,
    page_count: u64,
    next: Option<u64>,
) -> String {
    let env = Envelope {
        entities: entities.into_iter().map(raw).collect(),
        page_size,
        page_number,
        total,
        page_count,
        first_uri: page_uri(path, params, 1),
        self_uri: page_uri(path, params, page_number),
        next_uri: next.map(|n| page_uri(path, next_params, n)),
        previous_uri: (page_number > 1).then(|| page_uri(path, params, page_number - 1)),
        last_uri: page_uri(path, params, page_count.max(1)),
    };
    serde_json::to_string(&env).expect("envelope serialises")
}

fn simple_page<T>(
    path: &str,
    params: &[(String, String)],
    items: &[T],
    max_page: u64,
    render: impl Fn(&T) -> String,
) -> Res {
    let ps = int_param(params, "pageSize", 25, 1, max_page)?;
    let pn = int_param(params, "pageNumber", 1, 1, u64::from(u32::MAX))?;
    let total = items.len() as u64;
    let start = ((pn - 1) * ps) as usize;
    let page: Vec<String> = items
        .iter()
        .skip(start)
        .take(ps as usize)
        .map(render)
        .collect();
    let page_count = total.div_ceil(ps);
    let next = (pn * ps < total).then_some(pn + 1);
    ok_json(envelope(
        path, params, params, page, ps, pn, total, page_count, next,
    ))
}

// ------------------------------------------------------------------ simple endpoints

fn org_ref(org: &OrgRt) -> Value {
    serde_json::json!({"id": org.data.org_id, "name": org.data.name, "selfUri": format!("/api/v2/organizations/{}", org.data.org_id)})
}

fn tokens_me(org: &OrgRt) -> Res {
    #[derive(Serialize)]
    struct Client<'a> {
        id: &'a str,
        name: String,
        organization: Value,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct TokenInfo<'a> {
        organization: Value,
        home_organization: Value,
        authorized_scope: [&'a str; 0],
        #[serde(rename = "OAuthClient")]
        oauth_client: Client<'a>,
    }
    let body = TokenInfo {
        organization: org_ref(org),
        home_organization: org_ref(org),
        authorized_scope: [],
        oauth_client: Client {
            id: &org.data.client_id,
            name: "Scorecards export (client credentials)".into(),
            organization: serde_json::json!({"id": org.data.org_id, "selfUri": format!("/api/v2/organizations/{}", org.data.org_id)}),
        },
    };
    ok_json(serde_json::to_string(&body).expect("serialises"))
}

fn org_me(org: &OrgRt) -> Res {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct O<'a> {
        id: &'a str,
        name: &'a str,
        default_language: &'a str,
        default_country_code: &'a str,
        third_party_org_name: String,
        domain: String,
        version: u32,
        state: &'a str,
        self_uri: String,
    }
    let short = org
        .data
        .name
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    ok_json(
        serde_json::to_string(&O {
            id: &org.data.org_id,
            name: &org.data.name,
            default_language: "en-us",
            default_country_code: "US",
            third_party_org_name: short.clone(),
            domain: short,
            version: 1,
            state: "active",
            self_uri: format!("/api/v2/organizations/{}", org.data.org_id),
        })
        .expect("serialises"),
    )
}

fn get_one(org: &OrgRt, conversation_id: &str, evaluation_id: &str) -> Res {
    let i = *org
        .data
        .by_id
        .get(evaluation_id)
        .ok_or_else(|| ApiErr::not_found("evaluation"))?;
    let e = &org.data.evals[i];
    if e.conversation_id != conversation_id {
        return Err(ApiErr::not_found("evaluation"));
    }
    if e.restricted && org.spec.switches.get_outside_division == OutsideDivision::Forbidden {
        return Err(ApiErr::new(
            403,
            "not.authorized",
            "You are not authorized to perform the requested action.",
        ));
    }
    ok_json(org.data.render_eval(e, true))
}

fn forms_list(org: &OrgRt, params: &[(String, String)], published: bool) -> Res {
    let forms = &org.data.forms;
    if published {
        let latest_only = bool_param(params, "onlyLatestPerContext")?.unwrap_or(false);
        let items: Vec<usize> = (0..forms.len())
            .filter(|&i| !latest_only || forms[i].latest)
            .collect();
        simple_page(
            "/api/v2/quality/publishedforms/evaluations",
            params,
            &items,
            100,
            |&i| org.data.render_form(&forms[i], false, true),
        )
    } else {
        let expand_history = multi(params, "expand")
            .iter()
            .any(|x| x == "publishHistory");
        let items: Vec<usize> = (0..forms.len()).filter(|&i| forms[i].latest).collect();
        simple_page(
            "/api/v2/quality/forms/evaluations",
            params,
            &items,
            100,
            |&i| org.data.render_form(&forms[i], false, expand_history),
        )
    }
}

/// `state` filters by user state (`active`, `inactive`, `deleted`, `any`); without it every
/// user is listed, deleted ones included.
fn users(org: &OrgRt, params: &[(String, String)]) -> Res {
    let keep: fn(bool) -> bool = match param(params, "state") {
        None | Some("any") => |_| true,
        Some("active") => |deleted| !deleted,
        Some("deleted") => |deleted| deleted,
        Some("inactive") => |_| false,
        Some(v) => {
            return Err(ApiErr::bad(
                "state",
                format!("state must be active, inactive, deleted or any, got {v:?}"),
            ));
        }
    };
    let items: Vec<usize> = (0..org.data.users.len())
        .filter(|&i| keep(org.data.users[i].deleted))
        .collect();
    simple_page("/api/v2/users", params, &items, 500, |&i| {
        org.data.render_user(&org.data.users[i])
    })
}

// ------------------------------------------------------------------ listings with paging faults

/// How a listing sorts: by `key` (missing dates last in ascending order), ties by id
/// (or, with `salt`, by a draw from the salt, then id), the whole order reversed for
/// descending.
#[derive(Clone, Copy)]
struct SortSpec {
    key: DateField,
    desc: bool,
    salt: Option<u64>,
}

impl SortSpec {
    fn new(key: DateField, desc: bool) -> SortSpec {
        SortSpec {
            key,
            desc,
            salt: None,
        }
    }
    fn primary(&self, a: &Evaluation, b: &Evaluation) -> Ordering {
        match (a.date(self.key), b.date(self.key)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    fn cmp(&self, a: &Evaluation, b: &Evaluation) -> Ordering {
        let o = self.primary(a, b).then_with(|| a.id.cmp(&b.id));
        if self.desc { o.reverse() } else { o }
    }
    /// Order of evaluations `a` and `b` (indices into `evals`).
    fn cmp_idx(&self, evals: &[Evaluation], a: usize, b: usize) -> Ordering {
        let Some(salt) = self.salt else {
            return self.cmp(&evals[a], &evals[b]);
        };
        let o = self
            .primary(&evals[a], &evals[b])
            .then_with(|| mix(salt, &[a as u64]).cmp(&mix(salt, &[b as u64])))
            .then_with(|| evals[a].id.cmp(&evals[b].id));
        if self.desc { o.reverse() } else { o }
    }
}

struct PageResult {
    entities: Vec<String>,
    has_next: bool,
    /// `RepeatNextUri` fired: nextUri must point at this page.
    repeat_self: bool,
    /// `EmptyPageWithNextUri` fired: add a nextUri although there is no more data.
    force_next: bool,
    /// Entities of the page proper (without injected ones).
    page_len: usize,
}

#[allow(clippy::too_many_arguments)]
/// Serve page `pn` of `sorted` (indices into the org's evaluations), applying pending
/// paging faults of endpoint `ep`.
fn serve_page(
    org: &mut OrgRt,
    ep: Ep,
    key: &str,
    sorted: &[usize],
    sort: SortSpec,
    ps: usize,
    pn: u64,
    view: AnswersView,
) -> PageResult {
    let start = ((pn - 1) as usize).saturating_mul(ps);
    let end = start.saturating_add(ps).min(sorted.len());
    let page: Vec<usize> = if start < sorted.len() {
        sorted[start..end].to_vec()
    } else {
        Vec::new()
    };
    let has_next = end < sorted.len();
    let injected: Vec<usize> = org
        .injections
        .get(&(key.to_string(), pn))
        .map(|ids| {
            ids.iter()
                .filter_map(|id| org.data.by_id.get(id).copied())
                .collect()
        })
        .unwrap_or_default();
    let allow_uri = ep == Ep::Query;
    let (mut insert, mut rescore, mut dup, mut repeat, mut force_next) =
        (false, None, false, false, false);
    let mut fired = 0;
    for f in org
        .faults
        .iter_mut()
        .filter(|f| f.pending > 0 && f.spec.kind.is_paging() && ep.matches(f.spec.endpoint))
    {
        let take = match f.spec.kind {
            FaultKind::InsertEvaluation if has_next && !page.is_empty() && !insert => {
                insert = true;
                true
            }
            FaultKind::RescoreEvaluation if has_next && rescore.is_none() => {
                rescore = page.iter().copied().find(|&i| {
                    let e = &org.data.evals[i];
                    e.status == "FINISHED" && !e.redacted && e.answers.is_some()
                });
                rescore.is_some()
            }
            FaultKind::DuplicateAcrossPages if has_next && !page.is_empty() && !dup => {
                dup = true;
                true
            }
            FaultKind::RepeatNextUri if allow_uri && has_next && !repeat => {
                repeat = true;
                true
            }
            FaultKind::EmptyPageWithNextUri if allow_uri && !has_next && !force_next => {
                force_next = true;
                true
            }
            _ => false,
        };
        if take {
            f.pending -= 1;
            fired += 1;
        }
    }
    let entities: Vec<String> = injected
        .iter()
        .chain(page.iter())
        .map(|&i| org.data.render_eval_view(&org.data.evals[i], view))
        .collect();
    let next_key = (key.to_string(), pn + 1);
    if let Some(i) = rescore {
        org.data.rescore(i, &mut org.mut_rng);
        org.injections
            .entry(next_key.clone())
            .or_default()
            .push(org.data.evals[i].id.clone());
    }
    if dup && let Some(&last) = page.last() {
        let id = org.data.evals[last].id.clone();
        org.injections.entry(next_key.clone()).or_default().push(id);
    }
    if insert && let (Some(&last), Some(&next)) = (page.last(), sorted.get(end)) {
        for _ in 0..256 {
            let id = uuid(&mut org.mut_rng);
            let mut cand = org.data.evals[last].clone();
            cand.id = id.clone();
            if sort.cmp(&org.data.evals[last], &cand) == Ordering::Less
                && sort.cmp(&cand, &org.data.evals[next]) == Ordering::Less
            {
                org.data.insert_clone(last, id, &mut org.mut_rng);
                break;
            }
        }
    }
    if fired > 0 {
        bump_faults(org, ep, fired);
    }
    PageResult {
        entities,
        has_next,
        repeat_self: repeat,
        force_next,
        page_len: page.len(),
    }
}

fn bump_faults(org: &mut OrgRt, ep: Ep, n: u64) {
    org.bump_faults(ep, n);
}

/// `GET /api/v2/quality/evaluations/query`.
fn query(org: &mut OrgRt, params: &[(String, String)]) -> Res {
    let sw = org.spec.switches.clone();
    let ps = int_param(params, "pageSize", 25, 1, u64::from(sw.query_max_page_size))?;
    let pn = int_param(params, "pageNumber", 1, 1, u64::from(u32::MAX))?;
    if sw.query_paging_cap > 0 && pn.saturating_mul(ps) > sw.query_paging_cap {
        return Err(ApiErr::bad(
            "pageNumber",
            format!(
                "pageNumber × pageSize must not exceed {} (got {})",
                sw.query_paging_cap,
                pn * ps
            ),
        ));
    }
    let conv = param(params, "conversationId");
    let agent = param(params, "agentUserId");
    let evaluator = param(params, "evaluatorUserId");
    let assignee = param(params, "assigneeUserId");
    if conv.is_none() && agent.is_none() && evaluator.is_none() && assignee.is_none() {
        return Err(ApiErr::bad(
            "conversationId",
            "One of conversationId, evaluatorUserId, agentUserId or assigneeUserId is required"
                .into(),
        ));
    }
    let start = param(params, "startTime")
        .map(|v| parse_ts("startTime", v))
        .transpose()?;
    let end = param(params, "endTime")
        .map(|v| parse_ts("endTime", v))
        .transpose()?;
    let expand = bool_param(params, "expandAnswerTotalScores")?.unwrap_or(false);
    let include_deleted = bool_param(params, "includeDeletedUsers")?.unwrap_or(false);
    if sw.deleted_user_query == DeletedUserQuery::Rejected && !include_deleted {
        for (k, v) in [
            ("evaluatorUserId", evaluator),
            ("agentUserId", agent),
            ("assigneeUserId", assignee),
        ] {
            if let Some(id) = v
                && org.data.users.iter().any(|u| u.deleted && u.id == id)
            {
                return Err(ApiErr {
                    status: 400,
                    code: "quality.query.invalid.user".into(),
                    message: format!(
                        "{k}: user {id} is deleted; set includeDeletedUsers=true to query their evaluations"
                    ),
                    field: Some(k.into()),
                });
            }
        }
    }
    let omit_deleted = sw.deleted_user_query == DeletedUserQuery::Omitted && !include_deleted;
    let omit_restricted = sw.get_outside_division == OutsideDivision::Forbidden;
    let by_release = sw.query_time_filter == QueryTimeFilter::Release;
    let is_released = bool_param(params, "isReleased")?;
    let agent_has_read = bool_param(params, "agentHasRead")?;
    let states = multi(params, "evaluationState");
    let form_ctx = param(params, "formContextId");
    let desc = match param(params, "sortOrder") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("asc") => false,
        Some(v) if v.eq_ignore_ascii_case("desc") => true,
        Some(v) => {
            return Err(ApiErr::bad(
                "sortOrder",
                format!("sortOrder must be asc or desc, got {v:?}"),
            ));
        }
    };
    let agent_only = agent.is_some() && conv.is_none() && evaluator.is_none() && assignee.is_none();
    let sort = if agent_only {
        SortSpec::new(DateField::ReleaseDate, desc)
    } else {
        SortSpec::new(DateField::CreatedDate, desc && conv.is_none())
    };
    let d = &org.data;
    let uid = |i: usize| d.users[i].id.as_str();
    let mut sorted: Vec<usize> = (0..d.evals.len())
        .filter(|&i| {
            let e = &d.evals[i];
            let bounded = if by_release {
                e.release
            } else {
                Some(e.created)
            };
            let deleted =
                d.users[e.agent].deleted || e.evaluator.is_some_and(|x| d.users[x].deleted);
            conv.is_none_or(|c| e.conversation_id == c)
                && agent.is_none_or(|a| uid(e.agent) == a)
                && evaluator.is_none_or(|v| e.evaluator.is_some_and(|x| uid(x) == v))
                && assignee.is_none_or(|v| e.evaluator.is_some_and(|x| uid(x) == v))
                && !(agent_only && e.never_release)
                && !(omit_deleted && deleted)
                && !(omit_restricted && e.restricted)
                && start.is_none_or(|s| bounded.is_some_and(|t| t >= s))
                && end.is_none_or(|x| bounded.is_some_and(|t| t < x))
                && is_released.is_none_or(|r| e.release.is_some() == r)
                && agent_has_read.is_none_or(|r| e.agent_has_read == r)
                && (states.is_empty() || states.iter().any(|s| s == e.status))
                && form_ctx.is_none_or(|c| d.forms[e.form].context_id == c)
        })
        .collect();
    sorted.sort_by(|&a, &b| sort.cmp(&d.evals[a], &d.evals[b]));
    let key = {
        let mut k: Vec<&(String, String)> =
            params.iter().filter(|(n, _)| n != "pageNumber").collect();
        k.sort();
        format!("query:{k:?}")
    };
    let total = sorted.len() as u64;
    let view = match (expand, sw.query_answers) {
        (false, _) => AnswersView::Absent,
        (true, QueryAnswers::Full) => AnswersView::Full,
        (true, QueryAnswers::TotalsOnly) => AnswersView::Totals,
    };
    let r = serve_page(org, Ep::Query, &key, &sorted, sort, ps as usize, pn, view);
    let next = if r.repeat_self {
        Some(pn)
    } else if r.has_next || r.force_next {
        Some(pn + 1)
    } else {
        None
    };
    let (total, page_count) = if sw.query_totals_wrong {
        (r.page_len as u64, pn)
    } else {
        (total, total.div_ceil(ps))
    };
    const ID_PARAMS: &[&str] = &[
        "conversationId",
        "agentUserId",
        "evaluatorUserId",
        "assigneeUserId",
    ];
    let next_params: Vec<(String, String)> = if sw.next_uri_drops_params {
        params
            .iter()
            .filter(|(k, _)| ID_PARAMS.contains(&k.as_str()) || k == "pageNumber")
            .cloned()
            .collect()
    } else {
        params.to_vec()
    };
    ok_json(envelope(
        "/api/v2/quality/evaluations/query",
        params,
        &next_params,
        r.entities,
        ps,
        pn,
        total,
        page_count,
        next,
    ))
}

fn field_err(field: &str, msg: &str) -> ApiErr {
    ApiErr::bad(field, format!("{field}: {msg}"))
}

enum Crit {
    Range {
        field: DateField,
        start: Timestamp,
        end: Timestamp,
    },
    Exact {
        field: String,
        values: Vec<String>,
        not: bool,
    },
}

fn parse_criteria(body: &Value) -> Result<Vec<Crit>, ApiErr> {
    let q = body
        .get("query")
        .ok_or_else(|| field_err("query", "is required"))?;
    let arr = q
        .as_array()
        .ok_or_else(|| field_err("query", "must be an array of criteria"))?;
    let mut out = Vec::new();
    for (i, c) in arr.iter().enumerate() {
        let at = |f: &str| format!("query[{i}].{f}");
        let s = |f: &str| c.get(f).and_then(Value::as_str);
        let ty = s("type").ok_or_else(|| field_err(&at("type"), "is required (string)"))?;
        let field = s("field").ok_or_else(|| field_err(&at("field"), "is required (string)"))?;
        let not = match s("operator") {
            None | Some("AND") => false,
            Some("NOT") => true,
            Some(o) => {
                return Err(field_err(
                    &at("operator"),
                    &format!("must be AND or NOT, got {o:?}"),
                ));
            }
        };
        match ty {
            "DATE_RANGE" => {
                let df = DateField::from_wire(field).ok_or_else(|| {
                    field_err(
                        &at("field"),
                        &format!("DATE_RANGE needs conversationDate, createdDate, submittedDate or releaseDate, got {field:?}"),
                    )
                })?;
                let sv = s("startValue")
                    .ok_or_else(|| field_err(&at("startValue"), "is required for DATE_RANGE"))?;
                let ev = s("endValue")
                    .ok_or_else(|| field_err(&at("endValue"), "is required for DATE_RANGE"))?;
                let start = parse_ts(&at("startValue"), sv)?;
                let end = parse_ts(&at("endValue"), ev)?;
                if end <= start {
                    return Err(field_err(&at("endValue"), "must be after startValue"));
                }
                let limit = start
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .checked_add(3.months())
                    .map(|z| z.timestamp())
                    .unwrap_or(start);
                if end > limit {
                    return Err(field_err(
                        &at("endValue"),
                        "the date range must not exceed 3 months",
                    ));
                }
                if not {
                    return Err(field_err(
                        &at("operator"),
                        "NOT is not supported with DATE_RANGE by the simulator",
                    ));
                }
                out.push(Crit::Range {
                    field: df,
                    start,
                    end,
                });
            }
            "EXACT" => {
                const FIELDS: &[&str] = &[
                    "evaluationId",
                    "conversationId",
                    "agentId",
                    "evaluatorId",
                    "assigneeId",
                    "formId",
                    "contextId",
                    "evaluationStatus",
                    "mediaType",
                ];
                if !FIELDS.contains(&field) {
                    return Err(field_err(
                        &at("field"),
                        &format!(
                            "EXACT on {field:?} is not supported by the simulator (supported: {})",
                            FIELDS.join(", ")
                        ),
                    ));
                }
                let mut values: Vec<String> =
                    s("value").map(|v| vec![v.to_string()]).unwrap_or_default();
                if let Some(vs) = c.get("values") {
                    let vs = vs
                        .as_array()
                        .ok_or_else(|| field_err(&at("values"), "must be an array of strings"))?;
                    for v in vs {
                        values.push(
                            v.as_str()
                                .ok_or_else(|| {
                                    field_err(&at("values"), "must be an array of strings")
                                })?
                                .to_string(),
                        );
                    }
                }
                if values.is_empty() {
                    return Err(field_err(&at("value"), "EXACT needs value or values"));
                }
                out.push(Crit::Exact {
                    field: field.to_string(),
                    values,
                    not,
                });
            }
            other => {
                return Err(field_err(
                    &at("type"),
                    &format!(
                        "{other:?} is not supported by the simulator (supported: DATE_RANGE, EXACT)"
                    ),
                ));
            }
        }
    }
    if !out.iter().any(|c| matches!(c, Crit::Range { .. })) {
        return Err(field_err(
            "query",
            "a DATE_RANGE criterion (at most 3 months) is required",
        ));
    }
    Ok(out)
}

fn exact_value<'a>(org: &'a OrgRt, e: &'a Evaluation, field: &str) -> Option<&'a str> {
    let d = &org.data;
    Some(match field {
        "evaluationId" => &e.id,
        "conversationId" => &e.conversation_id,
        "agentId" => &d.users[e.agent].id,
        "evaluatorId" | "assigneeId" => &d.users[e.evaluator?].id,
        "formId" => &d.forms[e.form].id,
        "contextId" => &d.forms[e.form].context_id,
        "evaluationStatus" => e.status,
        "mediaType" => e.media_type,
        _ => return None,
    })
}

/// `POST /api/v2/quality/evaluations/search`.
fn search(org: &mut OrgRt, body: &[u8]) -> Res {
    let sw = org.spec.switches.clone();
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiErr::bad("body", format!("body must be a JSON object: {e}")))?;
    if !v.is_object() {
        return Err(ApiErr::bad("body", "body must be a JSON object".into()));
    }
    let crits = parse_criteria(&v)?;
    let int = |k: &str| -> Result<Option<u64>, ApiErr> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .map(Some)
                .ok_or_else(|| field_err(k, "must be a non-negative integer")),
        }
    };
    let requested = int("pageSize")?.unwrap_or(25);
    let max = u64::from(sw.search_max_page_size);
    // (served page size, echoed page size)
    let (ps, echo) = match sw.search_over_max {
        _ if requested <= max => (requested, requested),
        SearchOverMax::Reject => {
            return Err(field_err("pageSize", &format!("must not exceed {max}")));
        }
        SearchOverMax::Clamp => (max, max),
        SearchOverMax::ClampEchoRequested => (max, requested),
    };
    let pn = int("pageNumber")?.ok_or_else(|| field_err("pageNumber", "is required"))?;
    if pn < 1 {
        return Err(field_err("pageNumber", "must be at least 1"));
    }
    let past_cap = sw.search_paging_cap > 0 && pn.saturating_mul(ps) > sw.search_paging_cap;
    if past_cap && sw.search_past_cap == SearchPastCap::Reject {
        return Err(field_err(
            "pageNumber",
            &format!(
                "pageNumber × pageSize must not exceed {} (got {})",
                sw.search_paging_cap,
                pn.saturating_mul(ps)
            ),
        ));
    }
    let aggregations = parse_aggregations(&v)?;
    let system = match v.get("systemSubmitted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(field_err("systemSubmitted", "must be a boolean")),
    };
    let first_range = crits.iter().find_map(|c| match c {
        Crit::Range { field, .. } => Some(*field),
        _ => None,
    });
    let key_field = match v.get("sortBy") {
        None | Some(Value::Null) => first_range.unwrap_or(DateField::CreatedDate),
        Some(Value::String(s)) => DateField::from_wire(s).ok_or_else(|| {
            field_err(
                "sortBy",
                "must be conversationDate, createdDate, submittedDate or releaseDate",
            )
        })?,
        Some(_) => return Err(field_err("sortBy", "must be a string")),
    };
    let desc = match v.get("sortOrder") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("ASC") => false,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("DESC") => true,
        Some(_) => return Err(field_err("sortOrder", "must be ASC or DESC")),
    };
    let mut sort = SortSpec::new(key_field, desc);
    if sw.search_ties == SearchTies::Unstable {
        sort.salt = Some(org.ties_rng.random());
    }
    let all_sources = sw.search_system_submitted == SearchSystemSubmitted::All;
    let inclusive = sw.date_range_end == DateRangeEnd::Inclusive;
    let d = &org.data;
    let mut sorted: Vec<usize> = (0..d.evals.len())
        .filter(|&i| {
            let e = &d.evals[i];
            let source_ok = if system {
                all_sources || e.automated
            } else {
                !e.automated
            };
            source_ok
                && crits.iter().all(|c| match c {
                    Crit::Range { field, start, end } => e
                        .date(*field)
                        .is_some_and(|t| t >= *start && (t < *end || (inclusive && t == *end))),
                    Crit::Exact { field, values, not } => {
                        let hit = exact_value(org, e, field)
                            .is_some_and(|x| values.iter().any(|v| v == x));
                        hit != *not
                    }
                })
        })
        .collect();
    sorted.sort_by(|&a, &b| sort.cmp_idx(&d.evals, a, b));
    let counts: Option<BTreeMap<String, AggCount>> = (!aggregations.is_empty()).then(|| {
        aggregations
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    AggCount {
                        count: sorted.len() as u64,
                    },
                )
            })
            .collect()
    });
    if let Some(o) = v.as_object_mut() {
        o.remove("pageNumber");
    }
    let key = format!("search:{v}");
    let entities = if ps == 0 || past_cap {
        Vec::new()
    } else {
        serve_page(
            org,
            Ep::Search,
            &key,
            &sorted,
            sort,
            ps as usize,
            pn,
            if sw.search_includes_answers {
                AnswersView::Full
            } else {
                AnswersView::Absent
            },
        )
        .entities
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out {
        page_size: u64,
        page_number: u64,
        results: Vec<Box<RawValue>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        aggregations: Option<BTreeMap<String, AggCount>>,
    }
    ok_json(
        serde_json::to_string(&Out {
            page_size: echo,
            page_number: pn,
            results: entities.into_iter().map(raw).collect(),
            aggregations: counts,
        })
        .expect("serialises"),
    )
}

/// One entry of a search response's `aggregations` map
/// (`EvaluationSearchAggregationResponse`; the simulator fills `count` only).
#[derive(Serialize)]
struct AggCount {
    count: u64,
}

/// Search `aggregations`: names of COUNT aggregations on `evaluationStatus`. Every
/// matching evaluation has a status, so each count is the number of matches.
fn parse_aggregations(body: &Value) -> Result<Vec<String>, ApiErr> {
    let arr = match body.get("aggregations") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(field_err("aggregations", "must be an array")),
    };
    let mut names = Vec::new();
    for (i, a) in arr.iter().enumerate() {
        let at = |f: &str| format!("aggregations[{i}].{f}");
        let s = |f: &str| a.get(f).and_then(Value::as_str);
        let name = s("name").ok_or_else(|| field_err(&at("name"), "is required (string)"))?;
        match s("type") {
            Some("COUNT") => {}
            Some(t) => {
                return Err(field_err(
                    &at("type"),
                    &format!("{t:?} is not supported by the simulator (supported: COUNT)"),
                ));
            }
            None => return Err(field_err(&at("type"), "is required (string)")),
        }
        match s("field") {
            Some("evaluationStatus") => {}
            Some(f) => {
                return Err(field_err(
                    &at("field"),
                    &format!(
                        "{f:?} is not supported by the simulator (supported: evaluationStatus)"
                    ),
                ));
            }
            None => return Err(field_err(&at("field"), "is required (string)")),
        }
        if names.iter().any(|n| n == name) {
            return Err(field_err(&at("name"), &format!("{name:?} is used twice")));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// `POST /api/v2/analytics/evaluations/aggregates/query` (one bucket for the whole
/// interval; `granularity` ignored).
fn aggregates(org: &OrgRt, body: &[u8]) -> Res {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiErr::bad("body", format!("body must be a JSON object: {e}")))?;
    let interval = v
        .get("interval")
        .and_then(Value::as_str)
        .ok_or_else(|| field_err("interval", "is required (\"start/end\", ISO-8601)"))?;
    let (s, e) = interval
        .split_once('/')
        .ok_or_else(|| field_err("interval", "must be \"start/end\""))?;
    let (start, end) = (parse_ts("interval", s)?, parse_ts("interval", e)?);
    if end <= start {
        return Err(field_err("interval", "end must be after start"));
    }
    let metrics: Vec<String> = match v.get("metrics") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|m| {
                m.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| field_err("metrics", "must be strings"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(field_err("metrics", "is required (non-empty array)")),
    };
    for m in &metrics {
        if !["nEvaluations", "oTotalScore", "oTotalCriticalScore"].contains(&m.as_str()) {
            return Err(field_err(
                "metrics",
                &format!(
                    "{m:?} is not supported by the simulator (nEvaluations, oTotalScore, oTotalCriticalScore)"
                ),
            ));
        }
    }
    let group_by: Vec<String> = match v.get("groupBy") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| {
                m.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| field_err("groupBy", "must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(field_err("groupBy", "must be an array")),
    };
    for g in &group_by {
        if !["evaluatorId", "userId", "formId", "contextId"].contains(&g.as_str()) {
            return Err(field_err(
                "groupBy",
                &format!(
                    "{g:?} is not supported by the simulator (evaluatorId, userId, formId, contextId)"
                ),
            ));
        }
    }
    let time_field = match v.get("alternateTimeDimension").and_then(Value::as_str) {
        None | Some("conversationStart") => DateField::ConversationDate,
        Some("evaluationCreatedDate") => DateField::CreatedDate,
        Some("evaluationReleaseDate") => DateField::ReleaseDate,
        Some(o) => {
            return Err(field_err(
                "alternateTimeDimension",
                &format!("{o:?} is not supported by the simulator"),
            ));
        }
    };
    let d = &org.data;
    let dim = |e: &Evaluation, g: &str| -> Option<String> {
        Some(match g {
            "evaluatorId" => d.users[e.evaluator?].id.clone(),
            "userId" => d.users[e.agent].id.clone(),
            "formId" => d.forms[e.form].id.clone(),
            "contextId" => d.forms[e.form].context_id.clone(),
            _ => return None,
        })
    };
    #[derive(Default)]
    struct Acc {
        n: u64,
        score: Vec<f64>,
        crit: Vec<f64>,
    }
    let mut groups: BTreeMap<Vec<(String, String)>, Acc> = BTreeMap::new();
    for e in &d.evals {
        if !e.date(time_field).is_some_and(|t| t >= start && t < end) {
            continue;
        }
        let key: Vec<(String, String)> = group_by
            .iter()
            .filter_map(|g| dim(e, g).map(|val| (g.clone(), val)))
            .collect();
        let acc = groups.entry(key).or_default();
        acc.n += 1;
        if let (Some(a), false) = (&e.answers, e.redacted)
            && e.status == "FINISHED"
        {
            acc.score.push(a.total_score);
            acc.crit.push(a.total_critical_score);
        }
    }
    let stats = |xs: &[f64]| {
        let sum: f64 = xs.iter().sum();
        let max = xs.iter().cloned().fold(f64::MIN, f64::max);
        let min = xs.iter().cloned().fold(f64::MAX, f64::min);
        serde_json::json!({"max": max, "min": min, "count": xs.len(), "sum": (sum * 10_000.0).round() / 10_000.0})
    };
    let results: Vec<Value> = groups
        .into_iter()
        .map(|(k, acc)| {
            let ms: Vec<Value> = metrics
                .iter()
                .filter_map(|m| match m.as_str() {
                    "nEvaluations" => Some(serde_json::json!({"metric": m, "stats": {"count": acc.n}})),
                    "oTotalScore" if !acc.score.is_empty() => Some(serde_json::json!({"metric": m, "stats": stats(&acc.score)})),
                    "oTotalCriticalScore" if !acc.crit.is_empty() => {
                        Some(serde_json::json!({"metric": m, "stats": stats(&acc.crit)}))
                    }
                    _ => None,
                })
                .collect();
            let group: serde_json::Map<String, Value> = k.into_iter().map(|(a, b)| (a, Value::String(b))).collect();
            serde_json::json!({"group": group, "data": [{"interval": format!("{}/{}", fmt_ts(start), fmt_ts(end)), "metrics": ms}]})
        })
        .collect();
    ok_json(serde_json::json!({ "results": results }).to_string())
}
