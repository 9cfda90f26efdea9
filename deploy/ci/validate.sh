#!/usr/bin/env bash
# Static validation of the CI pipelines for operators' forges (no forge needed): each file
# against its forge's JSON Schema (bundled with check-jsonschema, no network), then the
# project's rules: the stages run lint → test → build → SBOM → image in that order, the test
# stage runs the README's test command, and the image is signed with cosign.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.tools/venv"
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$root/.github/workflows/ci.yml"
"$venv/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci "$root/.gitlab-ci.yml"
"$venv/bin/python" - "$root" <<'PY'
import sys, yaml
root = sys.argv[1]
order = ["lint", "test", "build", "sbom", "image"]
bad = []

gh = yaml.safe_load(open(root + "/.github/workflows/ci.yml"))
jobs = gh["jobs"]
for prev, job in zip(order, order[1:]):
    if jobs.get(job, {}).get("needs") != prev:
        bad.append(f"github: job {job} must need {prev}")
if order[0] not in jobs or jobs[order[0]].get("needs"):
    bad.append("github: lint must come first")

gl = yaml.safe_load(open(root + "/.gitlab-ci.yml"))
if gl.get("stages") != order:
    bad.append(f"gitlab: stages must be {order}")
for stage in order:
    if not any(isinstance(j, dict) and j.get("stage") == stage for j in gl.values()):
        bad.append(f"gitlab: no job in stage {stage}")

for name, text in (("github", open(root + "/.github/workflows/ci.yml").read()), ("gitlab", open(root + "/.gitlab-ci.yml").read())):
    for needle in ("deploy/dev/test.sh", "cosign sign", "supply-chain.sh --sbom", "deploy/docker/Dockerfile"):
        if needle not in text:
            bad.append(f"{name}: missing `{needle}`")
if bad:
    print("\n".join(bad)); sys.exit(1)
print("CI pipelines: schemas valid; lint → test → build → SBOM → image (cosign-signed)")
PY
