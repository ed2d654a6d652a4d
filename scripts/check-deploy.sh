#!/usr/bin/env bash
# Checks the deployment kit (docker-compose.yml, deploy/) without a cluster or a Docker daemon:
# Kubernetes manifests against the API schemas (kubernetes-validate, offline, strict), the CRDs
# (ServiceMonitor, ScaledObject) structurally, the Prometheus config and rules (promtool check
# and the rule unit tests), the compose file, the Grafana dashboard and the seccomp profile
# (parsed, cross-checked), the systemd unit (systemd-analyze verify). Installs what it needs
# (pip into a venv under target/, apt-get for promtool); a check is skipped, saying so, only
# when its tool cannot be installed (with CHECK_DEPLOY_STRICT=1, as in CI, a skip is a failure).
# Exits non-zero on any failure. tests/deploy_kit.rs checks
# the kit against the broker itself.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

KUBERNETES_VALIDATE=1.37.0
VENV=target/check-deploy-venv
failed=()
skipped=()
say() { printf 'check-deploy: %s\n' "$*"; }
run() { # run NAME COMMAND...: records a failure instead of stopping, so every check reports.
  local name=$1
  shift
  if "$@"; then say "ok: $name"; else say "FAILED: $name"; failed+=("$name"); fi
}

# --- Python with kubernetes-validate and PyYAML (a dependency of it) ----------------------------
py=
if [ -x "$VENV/bin/kubernetes-validate" ] &&
  [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null)" = "$KUBERNETES_VALIDATE" ]; then
  py=$VENV/bin/python
else
  say "installing kubernetes-validate==$KUBERNETES_VALIDATE into $VENV"
  mkdir -p target
  if python3 -m venv "$VENV" >/dev/null 2>&1 &&
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE"; then
    py=$VENV/bin/python
  elif python3 -c 'import yaml' 2>/dev/null; then
    py=python3
    skipped+=("Kubernetes schemas (kubernetes-validate could not be installed)")
  else
    skipped+=("Kubernetes schemas, CRDs, compose, Grafana (neither kubernetes-validate nor PyYAML could be installed)")
  fi
fi

# --- Kubernetes ---------------------------------------------------------------------------------
if [ -x "$VENV/bin/kubernetes-validate" ] && [ "$py" = "$VENV/bin/python" ]; then
  # Built-in kinds against the schemas; kinds it has no schema for (the CRDs) only warn here.
  run "kubernetes schemas" "$VENV/bin/kubernetes-validate" --strict --quiet deploy/kubernetes/*.yaml
fi
if [ -n "$py" ]; then
  run "kubernetes CRDs and cross-references" "$py" - <<'PY'
import glob, sys, yaml
docs = []
for f in sorted(glob.glob("deploy/kubernetes/*.yaml")):
    docs += [(f, d) for d in yaml.safe_load_all(open(f)) if d]
def need(cond, what):
    if not cond:
        sys.exit(f"check-deploy: {what}")
kinds = {}
for f, d in docs:
    for k in ("apiVersion", "kind", "metadata"):
        need(k in d, f"{f}: a document without {k}")
    need(d["metadata"].get("name"), f"{f}: {d['kind']} without metadata.name")
    kinds.setdefault(d["kind"], []).append((f, d))
deployments = {d["metadata"]["name"] for _, d in kinds.get("Deployment", [])}
services = [d for _, d in kinds.get("Service", [])]
for f, d in kinds.get("ServiceMonitor", []):
    need(d["apiVersion"] == "monitoring.coreos.com/v1", f"{f}: ServiceMonitor apiVersion")
    sel = d["spec"]["selector"]["matchLabels"]
    matched = [s for s in services if sel.items() <= s["metadata"].get("labels", {}).items()]
    need(matched, f"{f}: selector {sel} matches no Service")
    for e in d["spec"]["endpoints"]:
        for s in matched:
            need(any(p.get("name") == e["port"] for p in s["spec"]["ports"]),
                 f"{f}: Service {s['metadata']['name']} has no port named {e['port']}")
        need(e.get("path") == "/metrics", f"{f}: endpoint path is not /metrics")
for f, d in kinds.get("ScaledObject", []):
    need(d["apiVersion"] == "keda.sh/v1alpha1", f"{f}: ScaledObject apiVersion")
    target = d["spec"]["scaleTargetRef"]["name"]
    need(target in deployments, f"{f}: scaleTargetRef {target} is no Deployment of the kit")
    need(d["spec"]["triggers"], f"{f}: no triggers")
    for t in d["spec"]["triggers"]:
        need(t["type"] == "prometheus", f"{f}: trigger type {t['type']}")
        for k in ("serverAddress", "query", "threshold"):
            need(isinstance(t["metadata"].get(k), str), f"{f}: trigger metadata.{k} must be a string")
for f, d in kinds.get("PodDisruptionBudget", []):
    sel = d["spec"]["selector"]["matchLabels"]
    pods = [x for _, x in kinds.get("Deployment", [])
            if sel.items() <= x["spec"]["template"]["metadata"]["labels"].items()]
    need(pods, f"{f}: selector {sel} matches no Deployment's pods")
for _, d in kinds.get("Deployment", []):
    for c in d["spec"]["template"]["spec"]["containers"]:
        for p in ("livenessProbe", "readinessProbe"):
            if c["image"].startswith("openhqm"):
                need(p in c, f"broker container {c['name']} has no {p}")
PY
fi

# --- Prometheus ---------------------------------------------------------------------------------
if ! command -v promtool >/dev/null 2>&1; then
  say "installing promtool (Debian package prometheus)"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  { $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus; } >/dev/null 2>&1 || true
fi
if command -v promtool >/dev/null 2>&1; then
  run "promtool check config" promtool check config deploy/prometheus/prometheus.yml
  run "promtool check rules" promtool check rules deploy/prometheus/alerts.yml
  run "promtool test rules" promtool test rules deploy/prometheus/alerts_test.yml
else
  skipped+=("Prometheus config and rules (promtool could not be installed)")
fi

# --- Compose and Grafana ------------------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  run "docker compose config" docker compose -f docker-compose.yml config --quiet
fi
if [ -n "$py" ]; then
  run "compose and Grafana files" "$py" - <<'PY'
import json, os, sys, yaml
def need(cond, what):
    if not cond:
        sys.exit(f"check-deploy: {what}")
c = yaml.safe_load(open("docker-compose.yml"))
need(set(c["services"]) >= {"broker", "redis", "prometheus", "grafana"}, "compose services")
for name, s in c["services"].items():
    for v in s.get("volumes", []):
        host = v.split(":")[0]
        if host.startswith("./"):
            need(os.path.exists(host), f"compose {name}: {host} does not exist")
        else:
            need(host in (c.get("volumes") or {}), f"compose {name}: volume {host} is not declared")
    for dep in s.get("depends_on", []):
        need(dep in c["services"], f"compose {name}: depends on unknown {dep}")
for f in ("deploy/grafana/provisioning/datasources/prometheus.yml",
          "deploy/grafana/provisioning/dashboards/openhqm.yml"):
    need(yaml.safe_load(open(f)).get("apiVersion") == 1, f"{f}: apiVersion 1")
ds = yaml.safe_load(open("deploy/grafana/provisioning/datasources/prometheus.yml"))["datasources"]
d = json.load(open("deploy/grafana/openhqm.json"))
need(d.get("schemaVersion", 0) >= 36, "dashboard schemaVersion")
ids = [p["id"] for p in d["panels"]]
need(len(ids) == len(set(ids)), "dashboard panel ids are not unique")
var = {v["name"]: v for v in d["templating"]["list"]}
need(var["DS_PROMETHEUS"]["current"]["value"] in {x["uid"] for x in ds},
     "the dashboard's default data source is not the provisioned one")
for p in d["panels"]:
    if p["type"] == "row":
        continue
    need(p.get("targets"), f"panel {p['title']!r} has no query")
    for t in p["targets"]:
        need(t.get("expr") and t["datasource"]["uid"] == "${DS_PROMETHEUS}",
             f"panel {p['title']!r}: a target without expr or data source")
sp = json.load(open("deploy/kubernetes/seccomp-io-uring.json"))
need(sp["defaultAction"] == "SCMP_ACT_ERRNO", "seccomp profile: not an allow-list")
allowed = {n for r in sp["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
need({"io_uring_setup", "io_uring_enter", "io_uring_register"} <= allowed,
     "seccomp profile: io_uring not allowed")
PY
fi

# --- systemd ------------------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants ExecStart's binary to exist: a copy of the unit runs /bin/true instead; the
  # pinning drop-in is verified with it.
  unit_dir=$(mktemp -d)
  trap 'rm -rf "$unit_dir"' EXIT
  sed 's#^ExecStart=/usr/local/bin/openhqm #ExecStart=/bin/true #' deploy/systemd/openhqm.service \
    >"$unit_dir/openhqm.service"
  mkdir "$unit_dir/openhqm.service.d"
  cp deploy/systemd/openhqm.service.d/pinning.conf.example "$unit_dir/openhqm.service.d/pinning.conf"
  verify() {
    local out
    out=$(SYSTEMD_UNIT_PATH="$unit_dir:" systemd-analyze verify "$unit_dir/openhqm.service" 2>&1)
    local rc=$?
    # verify only warns on unknown keys: any line about our files is a failure.
    if [ $rc -ne 0 ] || grep -q openhqm <<<"$out"; then
      printf '%s\n' "$out"
      return 1
    fi
  }
  run "systemd-analyze verify" verify
else
  skipped+=("systemd unit (systemd-analyze is not installed)")
fi

for s in "${skipped[@]}"; do say "SKIPPED: $s"; done
if [ "${CHECK_DEPLOY_STRICT:-0}" = 1 ] && ((${#skipped[@]})); then
  failed+=("skipped checks (CHECK_DEPLOY_STRICT=1)")
fi
if ((${#failed[@]})); then
  say "${#failed[@]} check(s) failed: ${failed[*]}"
  exit 1
fi
say "all checks passed"
