#!/usr/bin/env bash
# Memory benchmark: peak memory of `scorecards export` on one org with many evaluations
# (default 100,000, all on one day), the simulator running as a separate process so only
# the exporter is measured, then of `scorecards tables` writing that day's analytics
# tables (its own process). Prints the export table and "peak memory: N MiB" for each. Usage:
#   bash scripts/bench-memory.sh [EVALUATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
evaluations="${1:-100000}"
work="$(mktemp -d)"
trap 'kill "${sim_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet -p genesys-sim -p scorecards-cli
bin="${CARGO_TARGET_DIR:-target}/release"
cat > "$work/scenario.toml" <<TOML
name = "memory"
seed = 5
days_before = 1
[latency.default]
min_ms = 0
max_ms = 0
[[orgs]]
name = "Big Org"
region = "mypurecloud.com"
org_id = "6f0a1b2c-0000-4000-8000-000000000100"
client_id = "memory-bench-client"
client_secret = "memory-bench-secret"
evaluations = $evaluations
agents = 2000
evaluators = 200
limit = { allowed = 1000000, window_ms = 60000 }
token_endpoint_limit = { allowed = 1000, window_ms = 60000 }
TOML

"$bin/genesys-sim" serve --scenario "$work/scenario.toml" > "$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 600); do
  base="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/sim.log" | head -n 1 || true)"
  [ -n "$base" ] && break
  sleep 0.2
done
[ -n "$base" ] || { echo "the simulator did not start:"; cat "$work/sim.log"; exit 1; }

cat > "$work/orgs.toml" <<TOML
[[org]]
org_id = "6f0a1b2c-0000-4000-8000-000000000100"
api_base_url = "$base/api.mypurecloud.com"
login_base_url = "$base/login.mypurecloud.com"
client_id = "memory-bench-client"
client_secret_env = "MEMORY_BENCH_SECRET"
rate_limit = 1000000
TOML
echo "exporting the simulator's $evaluations evaluations (all on yesterday) from $base"
MEMORY_BENCH_SECRET=memory-bench-secret "$bin/scorecards" export \
  --orgs "$work/orgs.toml" --window last-4d --no-progress \
  --out "$work/exports" --state "$work/state.db" --no-tables
echo "analytics tables of the exported day:"
"$bin/scorecards" tables --out "$work/exports"
