#!/usr/bin/env bash
# Checks deploy/ and conf/fleet.yaml with the real tools where this machine
# has them, and says which checks it skipped for want of one. Exits 1 on
# any failure. tests/deploy/install-tools.sh puts the tools in .cli/deploy/
# (scripts/test.sh runs both); what is neither there nor on PATH is skipped.
#
#   structure.py           the rules of the issue and README on the files (PyYAML)
#   yamllint               YAML syntax, duplicate keys, indentation
#   hadolint               deploy/Dockerfile (the image cannot be built here:
#                          no base images can be pulled)
#   docker compose config  the compose file, with compose.env.example; and
#                          refused without its secrets
#   promtool               deploy/prometheus.yml
#   kubectl                kustomize, then apply --dry-run=client against a
#                          discovery-only fake API server (fake_apiserver.py)
#   kubernetes-validate    every manifest against Kubernetes' schemas, strict
#   systemd-analyze        verify (in a throwaway root that has the binary) and
#                          security --offline
#   the shell scripts      linted (ShellCheck), and what they do (behave.sh)
#   tollgate check         conf/fleet.yaml through the real parser (target/debug)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.cli/deploy/bin:$PWD/.cli/deploy/venv/bin:$PATH"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

passed=0 failed=0 skipped=0
ok() { echo "ok    $1"; passed=$((passed + 1)); }
bad() { echo "FAIL  $1"; failed=$((failed + 1)); }
skip() { echo "skip  $1"; skipped=$((skipped + 1)); }
have() { command -v "$1" >/dev/null 2>&1; }
# run WHAT CMD...: passes when CMD exits 0; shows its output when not.
run() {
  local what=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then ok "$what"; else bad "$what" && sed 's/^/      /' "$tmp/out"; fi
}
# silent WHAT CMD...: as run, and any output is a failure too.
silent() {
  local what=$1
  shift
  if "$@" >"$tmp/out" 2>&1 && [ ! -s "$tmp/out" ]; then ok "$what"; else bad "$what" && sed 's/^/      /' "$tmp/out"; fi
}

py=python3
[ -x .cli/deploy/venv/bin/python ] && py=.cli/deploy/venv/bin/python
manifests=(namespace configmap secret deployment service poddisruptionbudget)
manifests=("${manifests[@]/#/deploy/kubernetes/}")
manifests=("${manifests[@]/%/.yaml}")

# --- the rules, on the files ------------------------------------------------
if $py -c 'import yaml' 2>/dev/null; then
  run "structure: conf/fleet.yaml and every file of deploy/ (tests/deploy/structure.py)" $py tests/deploy/structure.py
  [ "$failed" -eq 0 ] && echo "      $($py tests/deploy/structure.py | tail -1 | sed 's/^ *//')"
else
  bad "structure: PyYAML is missing (bash tests/deploy/install-tools.sh)"
fi

if have yamllint; then
  run "yamllint: deploy/ and conf/fleet.yaml" yamllint -s -c tests/deploy/yamllint.yaml deploy conf/fleet.yaml
else skip "yamllint (not installed)"; fi

# --- the image ----------------------------------------------------------------
if have hadolint; then
  run "hadolint deploy/Dockerfile" hadolint --no-color deploy/Dockerfile
else skip "hadolint (not installed)"; fi

# --- docker compose -----------------------------------------------------------
compose=()
if have docker && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif have docker-compose && docker-compose version 2>/dev/null | grep -q ' v2\.'; then
  if have docker; then # the same binary as docker's CLI plugin: `docker compose`
    mkdir -p "$tmp/docker/cli-plugins"
    ln -s "$(command -v docker-compose)" "$tmp/docker/cli-plugins/docker-compose"
    compose=(env DOCKER_CONFIG="$tmp/docker" docker compose)
  else
    compose=(docker-compose)
  fi
fi
if [ ${#compose[@]} -gt 0 ]; then
  run "docker compose config: deploy/docker-compose.yml with compose.env.example" \
    "${compose[@]}" -f deploy/docker-compose.yml --env-file deploy/compose.env.example config -q
  if env -u POSTGRES_PASSWORD -u TOLLGATE_ADMIN_TOKEN -u TOLLGATE_DEMO_KEY \
    "${compose[@]}" -f deploy/docker-compose.yml --env-file /dev/null config -q >"$tmp/out" 2>&1; then
    bad "docker compose config refuses to run without the secrets (it accepted)"
  elif grep -q "set it in deploy/.env" "$tmp/out"; then
    ok "docker compose config refuses to run without the secrets"
  else
    bad "docker compose config without the secrets failed for another reason" && sed 's/^/      /' "$tmp/out"
  fi
else skip "docker compose config (no docker compose v2: bash tests/deploy/install-tools.sh)"; fi

if have promtool; then
  run "promtool check config deploy/prometheus.yml" promtool check config deploy/prometheus.yml
else skip "promtool (not installed)"; fi

# --- Kubernetes ---------------------------------------------------------------
if have kubectl; then
  run "kubectl kustomize deploy/kubernetes" kubectl kustomize deploy/kubernetes
  cp "$tmp/out" "$tmp/kustomized.yaml"
  $py tests/deploy/fake_apiserver.py 0 >"$tmp/port" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
  cat >"$tmp/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{ name: fake, cluster: { server: "http://127.0.0.1:$(cat "$tmp/port")" } }]
contexts: [{ name: fake, context: { cluster: fake, user: fake } }]
users: [{ name: fake, user: {} }]
current-context: fake
EOF
  # Schemas are kubernetes-validate's job below: the fake serves no OpenAPI.
  for how in "-f" "-k"; do
    args=()
    if [ "$how" = -f ]; then for f in "${manifests[@]}"; do args+=(-f "$f"); done; else args=(-k deploy/kubernetes); fi
    if KUBECONFIG="$tmp/kubeconfig" kubectl apply --dry-run=client --validate=false "${args[@]}" >"$tmp/out" 2>&1 &&
      [ "$(grep -c 'created (dry run)' "$tmp/out")" -eq 7 ]; then
      ok "kubectl apply --dry-run=client $how: 7 objects"
    else
      bad "kubectl apply --dry-run=client $how" && sed 's/^/      /' "$tmp/out"
    fi
  done
else skip "kubectl (not installed)"; fi

if have kubernetes-validate; then
  files=("${manifests[@]}")
  [ -s "$tmp/kustomized.yaml" ] && files+=("$tmp/kustomized.yaml")
  run "kubernetes-validate --strict (each manifest, and the kustomize output)" \
    kubernetes-validate --strict --quiet "${files[@]}"
else skip "kubernetes-validate (not installed)"; fi

# --- systemd --------------------------------------------------------------------
if have systemd-analyze; then
  # A throwaway root: the unit, stand-ins for /usr/local/bin/tollgate and
  # /bin/kill (verify checks that ExecStart and ExecReload can be
  # executed) and this machine's own units.
  root="$tmp/root"
  mkdir -p "$root/etc/systemd/system" "$root/usr/local/bin" "$root/usr/lib/systemd" "$root/bin"
  cp deploy/systemd/tollgate@.service "$root/etc/systemd/system/"
  printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/tollgate"
  cp "$root/usr/local/bin/tollgate" "$root/bin/kill"
  chmod +x "$root/usr/local/bin/tollgate" "$root/bin/kill"
  for d in /usr/lib/systemd/system /lib/systemd/system; do
    [ -d "$d" ] && cp -a "$d" "$root/usr/lib/systemd/" && break
  done
  silent "systemd-analyze verify tollgate@blue.service (no warning either)" \
    systemd-analyze verify --root="$root" tollgate@blue.service
  if systemd-analyze security --offline=yes --root="$root" --threshold=30 tollgate@blue.service >"$tmp/out" 2>&1; then
    ok "systemd-analyze security: $(grep -o 'exposure level.*' "$tmp/out" | sed 's/ [^ -~]*$//')"
  else
    bad "systemd-analyze security --threshold=30" && tail -3 "$tmp/out" | sed 's/^/      /'
  fi
else skip "systemd-analyze (not installed)"; fi

# --- the scripts ----------------------------------------------------------------
if have shellcheck; then
  run "shellcheck: deploy/ and tests/deploy/ scripts" \
    shellcheck deploy/docker/healthcheck.sh deploy/systemd/tollgate-upgrade.sh tests/deploy/*.sh
else skip "shellcheck (not installed)"; fi
# shellcheck source=tests/deploy/behave.sh
source tests/deploy/behave.sh

# --- the gateway's own parser -----------------------------------------------------
bin=${TOLLGATE_BIN:-target/debug/tollgate}
if [ -x "$bin" ]; then
  fleet_env=(TOLLGATE_DATABASE_URL=postgres://tollgate:placeholder@127.0.0.1:1/tollgate
    TOLLGATE_REDIS_URL=redis://127.0.0.1:1/ TOLLGATE_ADMIN_TOKEN=placeholder-admin-token-0123
    TOLLGATE_DEMO_KEY=sk-tollgate-placeholder)
  if env "${fleet_env[@]}" "$bin" check --config conf/fleet.yaml >"$tmp/out" 2>&1; then
    ok "tollgate check conf/fleet.yaml"
  # Skipped only while the binary has no fleet keys at all: today's store
  # section, or a store with url but no hot_state yet. Keys named otherwise
  # than conf/fleet.yaml's fail.
  elif grep -Eq "store\.url: unknown field .url., expected one of .path., .journal_dir., .batch_ms.$|: unknown field .hot_state." "$tmp/out"; then
    skip "tollgate check conf/fleet.yaml: this binary predates the fleet keys ($(grep -o 'store.url\|hot_state' "$tmp/out" | head -1) unknown)"
  else
    bad "tollgate check conf/fleet.yaml" && sed 's/^/      /' "$tmp/out"
  fi
  # Everything else in the file, through the same parser.
  $py -c 'import sys, yaml
d = yaml.safe_load(open("conf/fleet.yaml"))
d.pop("hot_state"); d["store"].pop("url")
yaml.safe_dump(d, open(sys.argv[1], "w"))' "$tmp/fleet-rest.yaml"
  run "tollgate check conf/fleet.yaml without its fleet keys" env "${fleet_env[@]}" "$bin" check --config "$tmp/fleet-rest.yaml"
else skip "tollgate check (no $bin: cargo build first)"; fi

echo "deploy: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
