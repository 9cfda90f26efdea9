#!/usr/bin/env bash
# Supply-chain checks of the dependency graph, run by deploy/dev/test.sh and the CI pipelines:
#   - cargo deny check licenses bans sources (deny.toml): offline-capable, always enforced;
#   - cargo deny check advisories and cargo audit: need the RustSec advisory database, fetched
#     from GitHub. Where it cannot be fetched they are reported as NOT CHECKED (loudly, never as
#     passed) and do not fail the run; where it can, a vulnerability fails the run.
#   - --sbom DIR: writes the CycloneDX SBOM of every crate (cargo cyclonedx) into DIR.
# Tools: cargo-deny is installed by deploy/dev/setup.sh; cargo-audit and cargo-cyclonedx with
# FE_SUPPLY_CHAIN_TOOLS=all deploy/dev/setup.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FE_ROOT"
ensure_cargo

if [[ ${1:-} == --sbom ]]; then
    out=${2:?usage: supply-chain.sh --sbom DIR}
    command -v cargo-cyclonedx >/dev/null || die "cargo-cyclonedx missing: FE_SUPPLY_CHAIN_TOOLS=all deploy/dev/setup.sh"
    cargo cyclonedx --all --format json --spec-version 1.5
    mkdir -p "$out"
    find . -name '*.cdx.json' -not -path './target/*' -not -path './.tools/*' -exec mv {} "$out/" \;
    log "SBOM written to $out: $(ls "$out" | tr '\n' ' ')"
    exit 0
fi

if ! command -v cargo-deny >/dev/null; then
    # Installed by deploy/dev/setup.sh when installable; never reported as passed without it.
    warn "licences, bans, sources and advisories NOT CHECKED: cargo-deny is not installed (deploy/dev/setup.sh installs it)"
    exit 0
fi
cargo deny --log-level warn check licenses bans sources
log "licences, bans and sources: ok (deny.toml)"

# The advisory database is a git repository on GitHub: probe it before asking either tool.
if timeout 20 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
    cargo deny --log-level warn check advisories
    if command -v cargo-audit >/dev/null; then
        cargo audit --deny warnings
    else
        warn "cargo-audit not installed (FE_SUPPLY_CHAIN_TOOLS=all deploy/dev/setup.sh); cargo deny checked advisories"
    fi
    log "advisories: ok"
else
    warn "advisories NOT CHECKED: the RustSec advisory database (github.com/rustsec/advisory-db) is unreachable from here; CI runs them where it is reachable"
fi
