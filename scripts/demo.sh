#!/usr/bin/env bash
# Runs Tollgate on conf/demo.yaml against the bundled mock upstream, sends
# one request in each format to show them going through, then keeps the
# gateway in the foreground (Ctrl-C stops both).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --bins

export TOLLGATE_MOCK_URL="${TOLLGATE_MOCK_URL:-http://127.0.0.1:9100}"
export TOLLGATE_LISTEN="${TOLLGATE_LISTEN:-127.0.0.1:8080}"
KEY="${TOLLGATE_DEMO_KEY:-sk-tollgate-demo}"
GW="http://${TOLLGATE_LISTEN}"

./target/debug/tollgate-mock --listen "${TOLLGATE_MOCK_URL#http://}" &
MOCK_PID=$!
./target/debug/tollgate serve --config conf/demo.yaml &
GW_PID=$!
trap 'kill $GW_PID $MOCK_PID 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

for _ in $(seq 100); do curl -sf "$GW/health" >/dev/null && break; sleep 0.1; done

echo; echo "==> OpenAI Chat Completions"
curl -sS "$GW/v1/chat/completions" -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d '{"model":"gpt-5.5","messages":[{"role":"user","content":"hello"}]}'
echo; echo "==> Anthropic Messages, streaming"
curl -sSN "$GW/v1/messages" -H "x-api-key: $KEY" -H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' \
  -d '{"model":"claude-sonnet-4-6","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hello"}]}'
echo "==> Gemini"
curl -sS "$GW/v1beta/models/gemini-3-flash-preview:generateContent" -H "x-goog-api-key: $KEY" -H 'content-type: application/json' \
  -d '{"contents":[{"parts":[{"text":"hello"}]}]}'
echo; echo "==> whoami: the demo account's wallet, billed for the calls above"
curl -sS "$GW/v1/whoami" -H "Authorization: Bearer $KEY"
echo; echo
echo "Admin API on http://${TOLLGATE_ADMIN_LISTEN:-127.0.0.1:9091} (token ${TOLLGATE_ADMIN_TOKEN:-tollgate-admin-demo}):"
echo "  ./target/debug/tollgate accounts create --name acme --plan pro"
echo "Tollgate is serving on $GW (metrics on http://${TOLLGATE_METRICS_LISTEN:-127.0.0.1:9090}/metrics)."
echo "Key: $KEY. Ctrl-C to stop."
wait $GW_PID
