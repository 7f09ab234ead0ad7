"""Runs the README's example queries with DuckDB over a local output tree and compares
their results with figures computed here, independently, from the simulator's ground
truth (the evaluations and evaluation forms exactly as the API serves them).

Usage: check_queries.py OUTPUT_DIR TRUTH_DIR README.md
  OUTPUT_DIR  a `scorecards export --out` directory (with tables/)
  TRUTH_DIR   evaluations.ndjson and forms.ndjson (one API object per line)
Prints one line per check and exits 1 when any check fails.
"""

import collections
import json
import pathlib
import re
import sys

import duckdb

out, truth_dir, readme = (pathlib.Path(a) for a in sys.argv[1:4])
results = []


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))


def close(a, b):
    return a is not None and b is not None and abs(float(a) - float(b)) < 1e-9


# The README's queries: a `<!-- query: NAME -->` line, then a ```sql block.
text = readme.read_text()
queries = dict(re.findall(r"<!-- query: (\w+) -->\s*```sql\n(.*?)```", text, re.S))
setup = re.search(r"<!-- duckdb-setup -->\s*```sql\n(.*?)```", text, re.S)
check("the README has the DuckDB set-up and the queries", setup and len(queries) >= 4, sorted(queries))

con = duckdb.connect()
# The README's set-up, run from the output directory (its paths are relative to it).
con.execute(f"SET file_search_path = '{out}'")
for statement in setup.group(1).split(";"):
    if statement.strip():
        con.execute(statement.replace("'tables/", f"'{out}/tables/"))


orgs = sorted({json.loads(m.read_text())["org_id"] for m in out.glob("evaluations/org_id=*/date_field=*/source=*/date=*/_manifest.json")})
check("one org exported", len(orgs) == 1, orgs)


def rows(name):
    check(f"{name} names its org (Athena's injected projection needs it)", "org_id = '<org id>'" in queries[name])
    cur = con.execute(queries[name].replace("<org id>", orgs[0]))
    columns = [d[0] for d in cur.description]
    return [dict(zip(columns, r)) for r in cur.fetchall()]


# ---- ground truth, from the API objects
evaluations = [json.loads(line) for line in (truth_dir / "evaluations.ndjson").read_text().splitlines()]
forms = {f["id"]: f for f in map(json.loads, (truth_dir / "forms.ndjson").read_text().splitlines())}
max_score = {}
for form in forms.values():
    for group in form.get("questionGroups", []):
        for q in group["questions"]:
            max_score[q["id"]] = max(o["value"] for o in q["answerOptions"])

per_day = collections.Counter(e["submittedDate"][:10] for e in evaluations)
scored = collections.defaultdict(list)
kill_questions = collections.Counter()
answered = collections.Counter()
failed = collections.Counter()
for e in evaluations:
    answers = e.get("answers")
    if "calibration" in e or not answers or answers.get("totalScore") is None:
        continue
    key = (e["agent"]["id"], e["evaluationForm"]["id"])
    scored[key].append(answers["totalScore"])
    for group in answers.get("questionGroupScores", []):
        for q in group["questionScores"]:
            kill_questions[key] += bool(q.get("failedKillQuestion"))
            if q.get("markedNA"):
                continue
            answered[q["questionId"]] += 1
            failed[q["questionId"]] += q["score"] < max_score[q["questionId"]]

# ---- evaluations per day
got = {str(r["date"]): r["evaluations"] for r in rows("evaluations_per_day")}
check("evaluations per day", got == dict(per_day), f"{got} vs {dict(per_day)}")

# ---- mean total score per agent and form (from evaluations)
got = {(r["agent_id"], r["form_id"]): r for r in rows("mean_score_per_agent_form")}
check("mean score: the same agent × form pairs", set(got) == set(scored), f"{len(got)} vs {len(scored)}")
bad = [k for k, v in scored.items() if k in got and not (
    got[k]["evaluations"] == len(v) and close(got[k]["mean_total_score"], sum(v) / len(v)))]
check("mean score per agent and form", not bad and scored, bad[:3])

# ---- agent ranking (from agent_day, days combined)
got = {(r["agent_id"], r["form_id"]): r for r in rows("agent_ranking")}
bad = [k for k, v in scored.items() if not (
    k in got and got[k]["evaluations"] == len(v) and close(got[k]["mean_total_score"], sum(v) / len(v))
    and close(got[k]["min_total_score"], min(v)) and close(got[k]["max_total_score"], max(v))
    and got[k]["failed_kill_questions"] == kill_questions[k])]
check("agent ranking from agent_day", not bad and len(got) == len(scored), bad[:3])

# ---- failure rate per question
got = {r["question_id"]: r for r in rows("question_failure_rate")}
check("failure rate: the same questions", set(got) == set(answered), f"{len(got)} vs {len(answered)}")
bad = [q for q in answered if q in got and not (
    got[q]["answered"] == answered[q] and close(got[q]["failure_rate"], failed[q] / answered[q]))]
check("failure rate per question", not bad and answered and any(failed.values()), bad[:3])
texts = {q["id"]: q["text"] for f in forms.values() for g in f.get("questionGroups", []) for q in g["questions"]}
check("question texts come from the form", all(got[q]["question_text"] == texts[q] for q in got))

# ---- every committed row once: row counts equal the manifests', one run per day
for manifest_path in sorted(out.glob("evaluations/org_id=*/date_field=*/source=*/date=*/_manifest.json")):
    manifest = json.loads(manifest_path.read_text())
    n, runs = con.execute(
        "SELECT count(*), list(DISTINCT run_id) FROM evaluations WHERE org_id = ? AND date_field = ? "
        "AND source = ? AND \"date\" = ?",
        [manifest["org_id"], manifest["date_field"], manifest["source"], manifest["date"]]).fetchone()
    check(f"{manifest['date']}: {manifest['total_records']} rows of run {manifest['run_id']}",
          n == manifest["total_records"] and runs == [manifest["run_id"]], f"{n} rows, runs {runs}")
check("evaluations: one row per ground-truth evaluation",
      con.execute("SELECT count(*), count(DISTINCT evaluation_id) FROM evaluations").fetchone()
      == (len(evaluations), len(evaluations)))

failures = [r for r in results if not r[1]]
for name, ok, detail in results:
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
print(f"{len(results) - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
