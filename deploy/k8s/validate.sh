#!/usr/bin/env bash
# Static validation of the Kubernetes manifests (no cluster, no network beyond PyPI once):
# schema validation with kubernetes-validate (schemas ship inside the package), then the
# project's own rules: every container non-root, read-only root filesystem, no privilege
# escalation, all capabilities dropped, memory limits set.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.tools/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null || "$venv/bin/pip" install -q 'kubernetes-validate==1.37.0'
"$venv/bin/kubernetes-validate" --strict -k 1.30.0 "$here"/*.yaml
"$venv/bin/python" - "$here" <<'PY'
import glob, sys, yaml
bad = []
roles = set()
for path in sorted(glob.glob(sys.argv[1] + "/*.yaml")):
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") != "Deployment":
            continue
        spec = doc["spec"]["template"]["spec"]
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            bad.append(f"{path}: pod not runAsNonRoot")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            name = f"{path}:{c['name']}"
            if not sc.get("readOnlyRootFilesystem"): bad.append(f"{name}: root filesystem writable")
            if sc.get("allowPrivilegeEscalation", True): bad.append(f"{name}: privilege escalation allowed")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []): bad.append(f"{name}: capabilities not dropped")
            if "memory" not in c.get("resources", {}).get("limits", {}): bad.append(f"{name}: no memory limit")
            # Every role is probed and scraped on a port it declares.
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = c.get(probe, {}).get("httpGet", {})
                if get.get("path") != path or get.get("port") not in ports:
                    bad.append(f"{name}: no {probe} on {path} of a declared port")
            notes = doc["spec"]["template"]["metadata"].get("annotations", {})
            if notes.get("prometheus.io/scrape") != "true" or int(notes.get("prometheus.io/port", 0)) not in ports.values():
                bad.append(f"{name}: not scraped on a declared port")
            roles.add(c["args"][0])
missing = {"api", "projector", "worker", "scanner", "notifier"} - roles
if missing:
    bad.append(f"no Deployment for {sorted(missing)}")
if bad:
    print("\n".join(bad)); sys.exit(1)
print("manifests: security rules hold; every role is deployed, probed and scraped")
PY
# Alert rules parse, and each names a runbook section that exists.
"$venv/bin/python" - "$root" <<'PY'
import json, re, sys, yaml
root = sys.argv[1]
runbooks = open(root + "/deploy/RUNBOOKS.md").read()
anchors = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-")) for h in re.findall(r"^## (.+)$", runbooks, re.M)}
rules = yaml.safe_load(open(root + "/deploy/prometheus/file-engine-rules.yaml"))
bad = [r["alert"] for g in rules["groups"] for r in g["rules"] if r["annotations"]["runbook"].split("#")[1] not in anchors]
json.load(open(root + "/deploy/grafana/file-engine.json"))
if bad:
    print("alerts without a runbook section:", bad); sys.exit(1)
print("alert rules and dashboard parse; every alert has a runbook")
PY
