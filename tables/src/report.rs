//! A self-contained HTML report (inline SVG, no scripts, no network) from the tables of a
//! local output directory: score distribution per evaluation form, agents ranked by mean
//! score, the questions most often failed, and the trend per day.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use jiff::civil::Date;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use scorecards_shared::ports::Partition;

use crate::{local_partitions, table_key};

/// What the report covers.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these orgs (all when empty).
    pub orgs: Vec<String>,
    /// First day (inclusive).
    pub from: Option<Date>,
    /// Last day (inclusive).
    pub to: Option<Date>,
    /// Date field of the partitions (`submittedDate` when `None`).
    pub date_field: Option<String>,
    /// Source selection of the partitions (`both` when `None`).
    pub source: Option<String>,
}

/// The committed partitions `selection` covers, with the run their manifest commits.
fn partitions(root: &Path, selection: &Selection) -> std::io::Result<Vec<(Partition, String)>> {
    let field = selection.date_field.as_deref().unwrap_or("submittedDate");
    let source = selection.source.as_deref().unwrap_or("both");
    let mut out = Vec::new();
    for p in local_partitions(root)? {
        let keep = (selection.orgs.is_empty()
            || selection.orgs.iter().any(|o| o == p.org_id.as_str()))
            && p.date_field.wire_name() == field
            && p.source.to_string() == source
            && selection.from.is_none_or(|f| p.day >= f)
            && selection.to.is_none_or(|t| p.day <= t);
        if !keep {
            continue;
        }
        let manifest = std::fs::read(root.join(p.manifest_key()))?;
        let run = serde_json::from_slice::<serde_json::Value>(&manifest)
            .ok()
            .and_then(|m| m["run_id"].as_str().map(str::to_owned));
        if let Some(run) = run {
            out.push((p, run));
        }
    }
    Ok(out)
}

fn batches(path: &PathBuf) -> Result<Vec<RecordBatch>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("{}: {e}", path.display()))?
        .map(|b| b.map_err(|e| format!("{}: {e}", path.display())))
        .collect()
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .unwrap_or_else(|| panic!("column {name} of the pinned schema"))
}

#[derive(Default)]
struct Figures {
    /// form name → histogram of total scores in 10 bins (0–10, …, 90–100).
    distribution: BTreeMap<String, [u64; 10]>,
    /// (agent, form name) → (evaluations, sum of total scores).
    agents: BTreeMap<(String, String), (u64, f64)>,
    /// question (its context id: every version of the form) → (text and form, answered, failed).
    questions: BTreeMap<String, (String, u64, u64)>,
    /// form id → form name.
    form_names: BTreeMap<String, String>,
    /// day → (evaluations, scored, sum of total scores).
    days: BTreeMap<String, (u64, u64, f64)>,
}

fn gather(root: &Path, selection: &Selection) -> Result<Figures, String> {
    let mut f = Figures::default();
    for (p, run) in partitions(root, selection).map_err(|e| e.to_string())? {
        let run = run.try_into().map_err(|e| format!("{e}"))?;
        let day = f.days.entry(p.day.to_string()).or_default();
        for b in batches(&root.join(table_key("evaluations", &p, &run)))? {
            let calibration = col::<BooleanArray>(&b, "is_calibration");
            let total = col::<Float64Array>(&b, "total_score");
            let form = col::<StringArray>(&b, "form_name");
            let form_id = col::<StringArray>(&b, "form_id");
            for i in 0..b.num_rows() {
                day.0 += 1;
                if form_id.is_valid(i)
                    && form.is_valid(i)
                    && !f.form_names.contains_key(form_id.value(i))
                {
                    f.form_names
                        .insert(form_id.value(i).to_owned(), form.value(i).to_owned());
                }
                if calibration.value(i) || total.is_null(i) {
                    continue;
                }
                let t = total.value(i);
                day.1 += 1;
                day.2 += t;
                let name = if form.is_null(i) {
                    "(unnamed form)"
                } else {
                    form.value(i)
                };
                let bin = ((t / 10.0).floor() as usize).min(9);
                f.distribution.entry(name.to_owned()).or_default()[bin] += 1;
            }
        }
        for b in batches(&root.join(table_key("agent_day", &p, &run)))? {
            let agent = col::<StringArray>(&b, "agent_id");
            let form = col::<StringArray>(&b, "form_name");
            let n = col::<Int64Array>(&b, "evaluations");
            let mean = col::<Float64Array>(&b, "mean_total_score");
            for i in 0..b.num_rows() {
                let key = (agent.value(i).to_owned(), form.value(i).to_owned());
                let e = f.agents.entry(key).or_default();
                e.0 += n.value(i) as u64;
                e.1 += mean.value(i) * n.value(i) as f64;
            }
        }
        for b in batches(&root.join(table_key("question_scores", &p, &run)))? {
            let calibration = col::<BooleanArray>(&b, "is_calibration");
            let na = col::<BooleanArray>(&b, "marked_na");
            let id = col::<StringArray>(&b, "question_id");
            let context = col::<StringArray>(&b, "question_context_id");
            let group = col::<StringArray>(&b, "question_group_name");
            let text = col::<StringArray>(&b, "question_text");
            let form_id = col::<StringArray>(&b, "form_id");
            let score = col::<Float64Array>(&b, "score");
            let max = col::<Float64Array>(&b, "max_score");
            for i in 0..b.num_rows() {
                if calibration.value(i) || (na.is_valid(i) && na.value(i)) || id.is_null(i) {
                    continue;
                }
                let e = f
                    .questions
                    .entry(if context.is_valid(i) {
                        context.value(i).to_owned()
                    } else {
                        id.value(i).to_owned()
                    })
                    .or_insert_with(|| {
                        let t = if text.is_null(i) {
                            id.value(i)
                        } else {
                            text.value(i)
                        };
                        let form = form_id
                            .is_valid(i)
                            .then(|| f.form_names.get(form_id.value(i)))
                            .flatten();
                        match form {
                            Some(form) if group.is_valid(i) => {
                                (format!("{t} ({form} › {})", group.value(i)), 0, 0)
                            }
                            Some(form) => (format!("{t} ({form})"), 0, 0),
                            None => (t.to_owned(), 0, 0),
                        }
                    });
                e.1 += 1;
                if score.is_valid(i) && max.is_valid(i) && score.value(i) < max.value(i) {
                    e.2 += 1;
                }
            }
        }
    }
    Ok(f)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bars: one row per (label, value, shown text), scaled to `max`.
fn hbars(rows: &[(String, f64, String)], max: f64) -> String {
    let (label_w, bar_w, row_h) = (470.0, 300.0, 22.0);
    let height = row_h * rows.len() as f64 + 4.0;
    let mut svg = format!(
        r#"<svg role="img" width="{w}" height="{height}" viewBox="0 0 {w} {height}" xmlns="http://www.w3.org/2000/svg">"#,
        w = label_w + bar_w + 90.0
    );
    for (i, (label, value, shown)) in rows.iter().enumerate() {
        let y = i as f64 * row_h;
        let w = if max > 0.0 { value / max * bar_w } else { 0.0 };
        let _ = write!(
            svg,
            r##"<text x="{lx}" y="{ty}" text-anchor="end" class="l">{label}</text><rect x="{bx}" y="{ry}" width="{w:.1}" height="{h}" fill="#3b6ea5"/><text x="{vx:.1}" y="{ty}" class="v">{shown}</text>"##,
            lx = label_w - 8.0,
            ty = y + 15.0,
            label = esc(&truncate(label, 62)),
            bx = label_w,
            ry = y + 3.0,
            h = row_h - 6.0,
            vx = label_w + w + 6.0,
            shown = esc(shown),
        );
    }
    svg + "</svg>"
}

/// Vertical bars with labels under them.
fn vbars(bins: &[(String, f64)], unit: &str) -> String {
    let (bar_w, gap, h, top, bottom) = (44.0, 8.0, 140.0, 18.0, 22.0);
    let max = bins.iter().map(|b| b.1).fold(0.0, f64::max);
    let width = (bar_w + gap) * bins.len() as f64 + gap;
    let mut svg = format!(
        r#"<svg role="img" width="{width}" height="{total}" viewBox="0 0 {width} {total}" xmlns="http://www.w3.org/2000/svg">"#,
        total = h + top + bottom
    );
    for (i, (label, value)) in bins.iter().enumerate() {
        let x = gap + i as f64 * (bar_w + gap);
        let bh = if max > 0.0 { value / max * h } else { 0.0 };
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{y:.1}" width="{bar_w}" height="{bh:.1}" fill="#3b6ea5"/><text x="{cx}" y="{vy:.1}" text-anchor="middle" class="v">{v}{unit}</text><text x="{cx}" y="{ly}" text-anchor="middle" class="l">{label}</text>"##,
            y = top + h - bh,
            cx = x + bar_w / 2.0,
            vy = top + h - bh - 4.0,
            v = fmt_num(*value),
            ly = top + h + 15.0,
            label = esc(label),
        );
    }
    svg + "</svg>"
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// Renders the report of the tables under `root` (a `scorecards export --out` directory).
pub fn render(root: &Path, selection: &Selection) -> Result<String, String> {
    let f = gather(root, selection)?;
    let mut html = String::from(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Evaluation scores</title><style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#1d2733;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #d5dde6;padding-bottom:.3rem}
h3{font-size:1rem;margin:1.2rem 0 .3rem}p.note{color:#55606c;font-size:.9rem}
svg .l{font-size:12px;fill:#1d2733}svg .v{font-size:12px;fill:#1d2733;font-weight:600}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;text-align:right}td:first-child,th:first-child{text-align:left}
</style></head><body><h1>Evaluation scores</h1>"#,
    );
    let evaluations: u64 = f.days.values().map(|d| d.0).sum();
    let days = f.days.len();
    let _ = write!(
        html,
        r#"<p>{evaluations} evaluations over {days} day(s){}. Calibration evaluations and evaluations without a total score are left out of the scores.</p>"#,
        match (f.days.keys().next(), f.days.keys().last()) {
            (Some(a), Some(b)) => format!(", {a} to {b}"),
            _ => String::new(),
        }
    );
    if evaluations == 0 {
        html.push_str("<p>No committed days with tables match the selection.</p>");
    }

    html.push_str("<h2>Score distribution per evaluation form</h2><p class=\"note\">Evaluations by total score (0–100), in bands of 10 points.</p>");
    for (form, bins) in &f.distribution {
        let n: u64 = bins.iter().sum();
        let _ = write!(html, "<h3>{} ({n} evaluations)</h3>", esc(form));
        let bins: Vec<(String, f64)> = bins
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    if i == 9 {
                        "90–100".to_owned()
                    } else {
                        format!("{}–{}", i * 10, i * 10 + 9)
                    },
                    *c as f64,
                )
            })
            .collect();
        html.push_str(&vbars(&bins, ""));
    }

    const MIN_EVALUATIONS: u64 = 5;
    let _ = write!(
        html,
        "<h2>Agents ranked by mean total score</h2><p class=\"note\">Per agent and evaluation form, agents with at least {MIN_EVALUATIONS} evaluations in the period (fewer make a mean that says little); the number of evaluations follows each score. Agents are shown by the start of their id (the export holds no names).</p>"
    );
    let mut agents: Vec<_> = f
        .agents
        .iter()
        .filter(|(_, v)| v.0 >= MIN_EVALUATIONS)
        .collect();
    agents.sort_by(|a, b| (b.1.1 / b.1.0 as f64).total_cmp(&(a.1.1 / a.1.0 as f64)));
    let row = |((agent, form), (n, sum)): &(&(String, String), &(u64, f64))| {
        let mean = sum / *n as f64;
        (
            format!("{} · {}", &agent[..agent.len().min(8)], form),
            mean,
            format!("{mean:.1} ({n})"),
        )
    };
    let shown = agents.len().min(15);
    html.push_str("<h3>Highest</h3>");
    let rows: Vec<_> = agents.iter().take(shown).map(row).collect();
    html.push_str(&hbars(&rows, 100.0));
    if agents.len() > shown {
        html.push_str("<h3>Lowest</h3>");
        let start = agents.len().saturating_sub(15).max(shown);
        let rows: Vec<_> = agents[start..].iter().rev().map(row).collect();
        html.push_str(&hbars(&rows, 100.0));
    }
    let _ = write!(
        html,
        "<p class=\"note\">{} agent × form pairs with at least {MIN_EVALUATIONS} evaluations, {} with fewer.</p>",
        agents.len(),
        f.agents.len() - agents.len()
    );

    html.push_str("<h2>Questions most often failed</h2><p class=\"note\">Share of answers below the question's highest answer value (questions marked N/A left out); answers counted in brackets.</p>");
    let mut questions: Vec<_> = f.questions.values().filter(|q| q.1 > 0).collect();
    questions.sort_by(|a, b| (b.2 as f64 / b.1 as f64).total_cmp(&(a.2 as f64 / a.1 as f64)));
    let rows: Vec<_> = questions
        .iter()
        .take(15)
        .map(|(text, answered, failed)| {
            let rate = *failed as f64 / *answered as f64 * 100.0;
            (text.clone(), rate, format!("{rate:.0} % ({answered})"))
        })
        .collect();
    html.push_str(&hbars(&rows, 100.0));

    html.push_str("<h2>Trend per day</h2><h3>Mean total score</h3><p class=\"note\">Days without a scored evaluation are left out.</p>");
    let mean: Vec<(String, f64)> = f
        .days
        .iter()
        .filter(|(_, (_, scored, _))| *scored > 0)
        .map(|(d, (_, scored, sum))| {
            (
                d[5..].to_owned(),
                (sum / *scored as f64 * 10.0).round() / 10.0,
            )
        })
        .collect();
    html.push_str(&vbars(&mean, ""));
    html.push_str("<h3>Evaluations</h3>");
    let counts: Vec<(String, f64)> = f
        .days
        .iter()
        .map(|(d, v)| (d[5..].to_owned(), v.0 as f64))
        .collect();
    html.push_str(&vbars(&counts, ""));
    html.push_str("</body></html>\n");
    Ok(html)
}
