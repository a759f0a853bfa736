#!/usr/bin/env bash
# What the scripts of deploy/ do, sourced by tests/deploy/check.sh (which
# defines ok, bad, pids, tmp and py):
#   deploy/docker/healthcheck.sh       against a small HTTP server: healthy on
#                                      200 only
#   deploy/systemd/tollgate-upgrade.sh against a stand-in systemctl that keeps
#                                      unit states in files: blue -> green, and
#                                      the refusals that leave blue serving
# shellcheck disable=SC2154 # tmp and py come from check.sh

# --- healthcheck.sh ---------------------------------------------------------------
cat >"$tmp/health.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        status = int(open(sys.argv[1]).read()) if self.path == "/health" else 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
echo 200 >"$tmp/health.status"
$py "$tmp/health.py" "$tmp/health.status" >"$tmp/health.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/health.port" ] && break; sleep 0.1; done
hc() { env TOLLGATE_HEALTH_ADDR="$1" bash deploy/docker/healthcheck.sh >/dev/null 2>&1; }
port=$(cat "$tmp/health.port")
h200=no h503=no hclosed=no hlisten=no
hc "127.0.0.1:$port" && h200=yes
env -u TOLLGATE_HEALTH_ADDR TOLLGATE_LISTEN="0.0.0.0:$port" bash deploy/docker/healthcheck.sh >/dev/null 2>&1 && hlisten=yes
echo 503 >"$tmp/health.status"
hc "127.0.0.1:$port" || h503=no-and-right
hc "127.0.0.1:1" || hclosed=no-and-right
if [ "$h200 $hlisten $h503 $hclosed" = "yes yes no-and-right no-and-right" ]; then
  ok "healthcheck.sh: healthy on 200 (also from TOLLGATE_LISTEN=0.0.0.0:port), unhealthy on 503 and on a closed port"
else
  bad "healthcheck.sh: 200 healthy=$h200, via TOLLGATE_LISTEN=$hlisten, 503=$h503, closed port=$hclosed"
fi

# --- tollgate-upgrade.sh ------------------------------------------------------------
cat >"$tmp/systemctl" <<'EOF'
#!/usr/bin/env bash
# A stand-in systemctl: unit state in $FAKE/<unit>.active, every call in $FAKE/calls.
set -euo pipefail
echo "$*" >>"$FAKE/calls"
unit=${!#}
case "$1" in
  is-active) [ -e "$FAKE/$unit.active" ] ;;
  start)
    touch "$FAKE/$unit.active"
    instance=${unit#tollgate@}
    cat "$TOLLGATE_RUN_DIR/${instance%.service}.flags" >"$FAKE/$unit.flags-at-start" 2>/dev/null || true
    # The new process listens on the upgrade socket (unless told to fail).
    [ -n "${FAKE_NO_SOCKET:-}" ] ||
      python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$TOLLGATE_UPGRADE_SOCK"
    ;;
  kill | stop) rm -f "$FAKE/$unit.active" ;; # SIGQUIT: the old one drains and stops
  enable | disable) ;;
  *) exit 1 ;;
esac
EOF
chmod +x "$tmp/systemctl"
# upgrade SCENARIO [ACTIVE...] [-- ENV...]: runs the helper; its exit code in $FAKE/rc.
upgrade() {
  export FAKE="$tmp/upgrade-$1"
  shift
  mkdir -p "$FAKE/run"
  : >"$FAKE/calls"
  local extra=()
  while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift && extra=("$@") && break; fi
    touch "$FAKE/tollgate@$1.service.active"
    shift
  done
  local rc=0
  env SYSTEMCTL="$tmp/systemctl" TOLLGATE_RUN_DIR="$FAKE/run" TOLLGATE_UPGRADE_SOCK="$FAKE/run/upgrade.sock" \
    TOLLGATE_UPGRADE_SETTLE=0 "${extra[@]}" bash deploy/systemd/tollgate-upgrade.sh >"$FAKE/out" 2>&1 || rc=$?
  echo "$rc" >"$FAKE/rc"
}

upgrade switch blue
f="$tmp/upgrade-switch"
if [ "$(cat "$f/rc")" = 0 ] &&
  grep -qx 'TOLLGATE_SERVE_FLAGS=--upgrade' "$f/tollgate@green.service.flags-at-start" &&
  grep -qx 'kill --kill-who=main --signal=SIGQUIT tollgate@blue.service' "$f/calls" &&
  [ "$(grep -n 'start tollgate@green' "$f/calls" | cut -d: -f1)" -lt "$(grep -n 'kill ' "$f/calls" | cut -d: -f1)" ] &&
  grep -qx 'enable --quiet tollgate@green.service' "$f/calls" &&
  grep -qx 'disable --quiet tollgate@blue.service' "$f/calls" &&
  [ -e "$f/tollgate@green.service.active" ] && [ ! -e "$f/run/green.flags" ]; then
  ok "tollgate-upgrade.sh: starts green with --upgrade, then SIGQUIT to blue; green at boot; the flag removed"
else
  bad "tollgate-upgrade.sh: blue -> green" && sed 's/^/      /' "$f/out" "$f/calls"
fi

upgrade nosocket blue -- FAKE_NO_SOCKET=1
f="$tmp/upgrade-nosocket"
if [ "$(cat "$f/rc")" = 1 ] && ! grep -q '^kill' "$f/calls" && grep -qx 'stop tollgate@green.service' "$f/calls" &&
  [ -e "$f/tollgate@blue.service.active" ]; then
  ok "tollgate-upgrade.sh: a new process that never listens is stopped, blue never signalled"
else
  bad "tollgate-upgrade.sh: no upgrade socket" && sed 's/^/      /' "$f/out" "$f/calls"
fi

upgrade both blue green
upgrade none
if [ "$(cat "$tmp/upgrade-both/rc")" = 1 ] && [ "$(cat "$tmp/upgrade-none/rc")" = 1 ] &&
  ! grep -q '^start\|^kill' "$tmp/upgrade-both/calls" "$tmp/upgrade-none/calls"; then
  ok "tollgate-upgrade.sh: refuses while both instances run, and when none does"
else
  bad "tollgate-upgrade.sh: both or none running" && cat "$tmp/upgrade-both/out" "$tmp/upgrade-none/out"
fi
