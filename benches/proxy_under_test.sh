# Sourced by benches/callgrind.sh and benches/cpu_time.sh: the mock
# provider, one proxy under test (the bare Pingora pass-through of
# benches/gateway.rs, or the release gateway on a configuration), and the
# client that sends it sequential chat requests on one keep-alive
# connection. Run from the repository's root.

# Starts the mock provider on PORT; sets mock_pid.
start_mock() {
  target/release/tollgate-mock --listen "127.0.0.1:$1" >/dev/null 2>&1 &
  mock_pid=$!
}

# Starts the proxy under test: start_proxy CONFIG PORT MOCK_PORT STATE [WRAPPER...].
# CONFIG `bare` is the bare pass-through, anything else a gateway
# configuration (with STATE.db its store, STATE.log its stderr). WRAPPER
# (valgrind and its flags) runs the proxy under it. Sets proxy_pid, and
# proxy_path to the chat path it serves (the bare proxy relays the mock's
# own). The metrics and admin listeners take PORT+1 and PORT+2.
start_proxy() {
  local config=$1 port=$2 mock=$3 state=$4
  shift 4
  if [ "$config" = bare ]; then
    local bench
    bench=$(ls -t target/release/deps/gateway-* | grep -v '\.d$' | head -1)
    "$@" "$bench" --bare-proxy "127.0.0.1:$port" "127.0.0.1:$mock" >/dev/null 2>&1 &
    proxy_path=/openai/v1/chat/completions
  else
    TOLLGATE_LISTEN=127.0.0.1:$port TOLLGATE_METRICS_LISTEN=127.0.0.1:$((port + 1)) \
      TOLLGATE_ADMIN_LISTEN=127.0.0.1:$((port + 2)) TOLLGATE_MOCK_URL=http://127.0.0.1:$mock \
      TOLLGATE_DEMO_KEY=sk-bench RUST_LOG=warn TOLLGATE_DB="$state.db" \
      "$@" "${BINARY:-target/release/tollgate}" serve --config "$config" >/dev/null 2>"$state.log" &
    proxy_path=/v1/chat/completions
  fi
  proxy_pid=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && return; sleep 0.3; done
}

# send_requests PORT N PATH WORDS [WAIT_STORE]: N chat requests whose
# message is "hi" WORDS times; WAIT_STORE=yes then asks a billed gateway
# for a generation, which waits until the store keeps every record.
send_requests() {
  python3 - "$@" <<'PY'
import http.client, json, sys
port, n, path, words = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
wait_store = len(sys.argv) > 5 and sys.argv[5] == "yes"
content = " ".join(["hi"] * words)
body = json.dumps({"model": "gpt-5.5", "max_tokens": 5, "messages": [{"role": "user", "content": content}]})
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("POST", path, body, {"authorization": "Bearer sk-bench", "content-type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
if wait_store:
    c.request("GET", "/v1/generation?id=none", headers={"authorization": "Bearer sk-bench"})
    c.getresponse().read()
PY
}
