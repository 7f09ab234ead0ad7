#!/usr/bin/env bash
# The one test command (README "Test"): installs what the tests need, then runs every check.
# Safe to run on a fresh clone; later runs reuse the cargo cache and the moto venv.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version
cargo fmt --version >/dev/null 2>&1 || { echo "rustfmt is missing: rustup component add rustfmt" >&2; exit 1; }
cargo clippy --version >/dev/null 2>&1 || { echo "clippy is missing: rustup component add clippy" >&2; exit 1; }

echo "== local AWS emulator (moto)"
# Outside the clone so later runs reuse it; pinned to the version measured here.
venv="${SCORECARDS_VENVS:-$HOME/.cache/scorecards}/venv-moto"
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'moto[server]==5.2.5'
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
moto_log="$(mktemp)"
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; rm -f "$moto_log"' EXIT
for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/moto-api/" && break
  sleep 0.2
done
curl -sf -o /dev/null "http://127.0.0.1:$port/moto-api/" || { echo "moto did not start:" >&2; cat "$moto_log" >&2; exit 1; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
echo "moto on $AWS_ENDPOINT_URL"

echo "== infrastructure (infra/template.yaml)"
# cfn-lint and checkov in separate venvs (installed together they downgrade each other).
cache="${SCORECARDS_VENVS:-$HOME/.cache/scorecards}"
if [ ! -x "$cache/venv-cfn-lint/bin/cfn-lint" ]; then
  python3 -m venv "$cache/venv-cfn-lint"
  "$cache/venv-cfn-lint/bin/pip" install --quiet 'cfn-lint==1.58.0'
fi
if [ ! -x "$cache/venv-checkov/bin/checkov" ]; then
  python3 -m venv "$cache/venv-checkov"
  "$cache/venv-checkov/bin/pip" install --quiet 'checkov==3.3.30'
fi
"$cache/venv-cfn-lint/bin/cfn-lint" --non-zero-exit-code error infra/template.yaml
echo "cfn-lint: no errors"
checks_log="$(mktemp)"
"$cache/venv-checkov/bin/checkov" -f infra/template.yaml --skip-download --compact --quiet | tee "$checks_log"
"$cache/venv-cfn-lint/bin/python" infra/test_template.py | tee -a "$checks_log"

echo "== dependency policy (deny.toml)"
# cargo-deny from crates.io, built once into the cache (about 6 minutes on 2 cores).
deny="$cache/cargo-deny/bin/cargo-deny"
if [ ! -x "$deny" ]; then
  cargo install --quiet --locked cargo-deny --version 0.20.2 --root "$cache/cargo-deny"
fi
"$deny" --offline check licenses bans sources

echo "== DuckDB (the README's queries run against a simulator export in the tests)"
if [ ! -x "$cache/venv-duckdb/bin/python" ] || ! "$cache/venv-duckdb/bin/python" -c 'import duckdb' 2>/dev/null; then
  python3 -m venv "$cache/venv-duckdb"
  "$cache/venv-duckdb/bin/pip" install --quiet 'duckdb==2.0.1'
fi
export SCORECARDS_DUCKDB_PYTHON="$cache/venv-duckdb/bin/python" SCORECARDS_REQUIRE_DUCKDB=1

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

# Every target, so the function binaries the tests run under a Runtime API are built with
# the same features as the tests (nothing compiled twice).
echo "== build"
cargo build --locked --workspace --all-targets

echo "== cargo test"
test_log="$(mktemp)"
trap 'kill "$moto_pid" 2>/dev/null || true; rm -f "$moto_log" "$test_log" "$checks_log"' EXIT
cargo test --locked --workspace 2>&1 | tee "$test_log"
# One closing line for every check together: the cargo test binaries (cargo's last line is
# often a doc-test summary with nothing in it), checkov's policy checks and the
# template-code checks.
awk '
  FNR == NR && /Passed checks:/ { gsub(",", ""); p += $3; f += $6; checkov += $3 + $6; next }
  FNR == NR && /^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3; template += $1 + $3; next }
  FNR != NR && /^test result:/ { p += $4; f += $6; cargo += $4 + $6 }
  END { printf "tests: %d passed, %d failed (cargo %d, checkov %d, template-code %d)\n", p, f, cargo, checkov, template }
' "$checks_log" "$test_log"
