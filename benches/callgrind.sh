#!/usr/bin/env bash
# Instructions per request, counted by callgrind: noise-free, unlike wall
# clock on a shared machine. Runs the release gateway on CONFIG under
# valgrind twice (50 and 250 chat requests on one keep-alive connection)
# and prints the difference per request. CONFIG `bare` counts the bare
# Pingora pass-through of `benches/gateway.rs` instead, on the same
# requests: the floor any Pingora proxy pays.
#
#   cargo bench --no-run && bash benches/callgrind.sh [conf/demo.yaml|bare]
#
# (valgrind from Debian's packages: apt-get install -y valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-conf/demo.yaml}
run() {
  local n=$1 mock=19811 gw=19812 metrics=19813 out
  out=$(mktemp)
  target/release/tollgate-mock --listen 127.0.0.1:$mock >/dev/null 2>&1 &
  local mock_pid=$!
  if [ "$CONFIG" = bare ]; then
    local bench
    bench=$(ls -t target/release/deps/gateway-* | grep -v '\.d$' | head -1)
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bench" --bare-proxy 127.0.0.1:$gw 127.0.0.1:$mock \
      >/dev/null 2>&1 &
  else
    TOLLGATE_LISTEN=127.0.0.1:$gw TOLLGATE_METRICS_LISTEN=127.0.0.1:$metrics \
      TOLLGATE_MOCK_URL=http://127.0.0.1:$mock TOLLGATE_DEMO_KEY=sk-bench RUST_LOG=warn \
      TOLLGATE_ADMIN_LISTEN=127.0.0.1:19814 TOLLGATE_DB="$out.db" \
      valgrind --tool=callgrind --callgrind-out-file="$out" target/release/tollgate serve --config "$CONFIG" \
      >/dev/null 2>&1 &
  fi
  local gw_pid=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:$gw/ && break; sleep 0.3; done
  # The bare proxy relays the path as it is: the mock's own.
  local path=/v1/chat/completions
  if [ "$CONFIG" = bare ]; then path=/openai/v1/chat/completions; fi
  python3 - "$gw" "$n" "$path" <<'PY'
import http.client, json, sys
port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = json.dumps({"model": "gpt-5.5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("POST", path, body, {"authorization": "Bearer sk-bench", "content-type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
  sleep 0.5
  kill -TERM $gw_pid; wait $gw_pid || true
  kill $mock_pid || true
  grep -E '^summary' "$out" | awk '{print $2}'
  if [ -n "${KEEP:-}" ]; then cp "$out" "$KEEP.$n"; fi
  rm -rf "$out" "$out.db"*
}
a=$(run 50); b=$(run 250)
echo "$CONFIG: $(( (b - a) / 200 )) instructions per request"
