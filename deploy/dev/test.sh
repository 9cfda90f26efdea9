#!/usr/bin/env bash
# Sets up and runs the full test suite: formatting, clippy (warnings are errors), then every
# test of the workspace (cargo-nextest when installed, else cargo test; doc tests too).
#
# Tests start their own nats-server and clamd on free ports and create a fresh database per
# test on the PostgreSQL server of FE_TEST_DATABASE_URL, so nothing here is shared with a
# running dev platform. Environment (all optional):
#   FE_TEST_DATABASE_URL  default postgres://postgres@127.0.0.1:5432/postgres (started or
#                         installed when local and not answering)
#   FE_TEST_NATS_SERVER   default .tools/venv/bin/nats-server (2.15.1); to run the suite
#                         against Debian's 2.9 server: FE_TEST_NATS_SERVER=/usr/sbin/nats-server deploy/dev/test.sh
#   FE_TEST_CLAMD         default clamd on PATH, else /usr/sbin/clamd
#   FE_TEST_MOTO          default .tools/venv/bin/moto_server (moto's S3 server, for the S3
#                         storage backend's tests)
#   FE_TEST_TIMEOUT       limit for the test step as a whole (default 45m); each test is also
#                         stopped after 4 minutes (deploy/dev/nextest.toml)
# Extra arguments go to the test runner, e.g. `deploy/dev/test.sh -p events` (doc tests are then
# skipped).
# Exits non-zero when any step fails; every check runs even after an earlier one failed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FE_ROOT"
trap step_summary EXIT

timed "set-up" fe_setup
timed "supply-chain tools" ensure_supply_chain_tools
export FE_TEST_DATABASE_URL=${FE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
timed "postgres" ensure_postgres "$FE_TEST_DATABASE_URL"
export FE_TEST_NATS_SERVER=${FE_TEST_NATS_SERVER:-$FE_NATS_BIN}
export FE_TEST_CLAMD=${FE_TEST_CLAMD:-$(command -v clamd || echo /usr/sbin/clamd)}
export FE_TEST_MOTO=${FE_TEST_MOTO:-$FE_MOTO_BIN}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
log "database server $(pg_redact "$FE_TEST_DATABASE_URL"), $("$FE_TEST_NATS_SERVER" --version), $("$FE_TEST_CLAMD" --version)"

# The whole workspace, or what the arguments select (the root manifest is virtual: a bare
# filter still covers every member).
selection=("$@")
((${#selection[@]} > 0)) || selection=(--workspace)

# A backstop for the test step as a whole, so a hang ends with a report well inside CI's limit
# (--foreground: Ctrl-C still reaches the test runner).
step_timeout=${FE_TEST_TIMEOUT:-45m}

# The served OpenAPI document (`file-engine openapi` prints what /openapi.json serves) is a
# valid OpenAPI 3 document; the two-way comparison with docs/API.md is the test
# `openapi_matches_api_md_both_ways_and_describes_errors_as_served` (tests/ops.rs).
openapi_valid() {
    local doc
    doc=$(mktemp --suffix=.json)
    cargo run -q -p file-engine -- openapi >"$doc"
    "$FE_VENV/bin/openapi-spec-validator" "$doc"
    rm -f "$doc"
}

failed=0
check "deploy manifests" deploy/k8s/validate.sh || failed=1
check "CI pipelines" deploy/ci/validate.sh || failed=1
check "supply chain (cargo deny; advisories when reachable)" deploy/dev/supply-chain.sh || failed=1
check "OpenAPI document (openapi-spec-validator)" openapi_valid || failed=1
check "cargo fmt --check" cargo fmt --all -- --check || failed=1
check "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings || failed=1
if command -v cargo-nextest >/dev/null; then
    # nextest does not run doc tests; a filtered run (arguments given) skips them. They run
    # first so that the test runner's last words are nextest's summary of the whole suite.
    if (($# == 0)); then
        check "cargo test --doc" cargo test --workspace --doc || failed=1
    fi
    # Per-test time limits (deploy/dev/nextest.toml) unless the repository configures its own.
    check "cargo nextest run" timeout --foreground --kill-after=60 "$step_timeout" \
        cargo nextest run --no-fail-fast --tool-config-file "file-engine:$FE_ROOT/deploy/dev/nextest.toml" \
        "${selection[@]}" || failed=1
else
    check "cargo test" timeout --foreground --kill-after=60 "$step_timeout" \
        cargo test --no-fail-fast "${selection[@]}" || failed=1
fi
# The restore drill in its quick form (a full run: deploy/backup/drill.sh).
if (($# == 0)); then
    check "backup and restore drill (quick)" deploy/backup/drill.sh --quick || failed=1
fi
exit "$failed"
