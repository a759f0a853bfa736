#!/usr/bin/env bash
# Instructions per request, counted by callgrind: noise-free, unlike wall
# clock on a shared machine. Runs the release gateway on CONFIG under
# valgrind twice (N1=250 and N2=1250 chat requests on one keep-alive connection)
# and prints the difference per request. CONFIG `bare` counts the bare
# Pingora pass-through of `benches/gateway.rs` instead, on the same
# requests: the floor any Pingora proxy pays. `limits` and `unbilled` are
# the demo with every limit of its plan on, and without billing
# (benches/configs.py writes them). KEEP=PREFIX keeps callgrind's files
# (PREFIX.N1, PREFIX.N2) for callgrind_annotate.
#
#   cargo bench --no-run && bash benches/callgrind.sh [conf/demo.yaml|limits|unbilled|bare]
#
# (valgrind from Debian's packages: apt-get install -y valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-conf/demo.yaml}
case "$CONFIG" in
  limits | unbilled)
    generated=$(mktemp -d)
    python3 benches/configs.py "$generated"
    CONFIG="$generated/$CONFIG.yaml"
    ;;
esac
# The ledger writer counted at a realistic batch size: at the gateway
# bench's rates the default 100 ms batch holds 500-1,300 records, but under
# valgrind the gateway serves ~150 requests a second, so a 100 ms batch
# would hold ~15 and each record would carry a fifteenth of a batch's fixed
# cost (its transaction, the day totals' GROUP BY, the WAL frames of every
# index page it touches). A billed configuration is run with batches of
# BATCH_MS (2000: ~300 records); each run ends by asking for a generation,
# which waits until the store has every record, so both runs write all
# theirs. BATCH_MS=100 counts as at the configured default.
BATCH_MS=${BATCH_MS:-2000}
BILLED=no
if [ "$CONFIG" != bare ] && grep -q '^store:' "$CONFIG"; then
  BILLED=yes
  batched=$(mktemp --suffix=.yaml)
  sed "s/^store:\$/store:\n  batch_ms: $BATCH_MS/" "$CONFIG" > "$batched"
  CONFIG=$batched
fi
TOOL=${TOOL:-callgrind}
BINARY=target/release/tollgate
if [ "$TOOL" = dhat ]; then
  # DHAT sees malloc only: a build on the system's allocator, kept beside
  # the real one (which is built again from cache afterwards).
  cargo build --release --quiet --features system-allocator --bin tollgate
  cp target/release/tollgate target/release/tollgate-system-alloc
  cargo bench --no-run --quiet 2>/dev/null
  BINARY=target/release/tollgate-system-alloc
  VALGRIND=(--tool=dhat --read-inline-info=yes --num-callers=64)
  OUT_FLAG=--dhat-out-file
else
  VALGRIND=(--tool=callgrind)
  OUT_FLAG=--callgrind-out-file
fi
. benches/proxy_under_test.sh
run() {
  local n=$1 mock=19811 gw=19812 out
  out=$(mktemp)
  start_mock $mock
  start_proxy "$CONFIG" $gw $mock "$out" valgrind "${VALGRIND[@]}" "$OUT_FLAG=$out"
  send_requests $gw "$n" "$proxy_path" 1 "$BILLED"
  sleep 0.5
  # The bare proxy is Pingora's server: SIGTERM waits out its grace period
  # (five minutes by default) before it exits; SIGINT exits at once, and
  # both end the process normally, so callgrind writes its counts.
  if [ "$CONFIG" = bare ]; then kill -INT "$proxy_pid"; else kill -TERM "$proxy_pid"; fi
  wait "$proxy_pid" || true
  kill "$mock_pid" || true
  if [ "$TOOL" = callgrind ]; then grep -E '^summary' "$out" | awk '{print $2}'; fi
  if [ -n "${KEEP:-}" ]; then cp "$out" "$KEEP.$n"; fi
  rm -rf "$out" "$out.db"* "$out.log"
}
# The two runs' request counts: N2 - N1 requests are what is measured.
N1=${N1:-250}
N2=${N2:-1250}
if [ "$TOOL" = dhat ]; then
  KEEP=${KEEP:-$(mktemp -u)}
  run "$N1"; run "$N2"
  python3 benches/components.py "$KEEP.$N1" "$KEEP.$N2" $((N2 - N1))
  exit
fi
a=$(run "$N1"); b=$(run "$N2")
echo "$CONFIG: $(( (b - a) / (N2 - N1) )) instructions per request"
# COMPONENTS=1: then each component alone, counted only while one of its
# entry functions runs (callgrind's --toggle-collect), so nothing is
# counted twice; what no entry covers is Pingora's and the relay's. An
# entry the compiler inlined into its caller is no symbol and counts
# nothing (a change to `for_standing` once did that): when a component
# drops sharply, check its entries are in `callgrind_annotate`'s list. No
# entry may call another (a nested toggle turns counting off).
if [ -n "${COMPONENTS:-}" ]; then
  base=("${VALGRIND[@]}")
  while IFS='|' read -r name patterns; do
    VALGRIND=("${base[@]}" --collect-atstart=no)
    for p in $patterns; do VALGRIND+=("--toggle-collect=$p"); done
    a=$(KEEP='' run "$N1"); b=$(KEEP='' run "$N2")
    printf '  %-28s %8d\n' "$name" $(( (b - a) / (N2 - N1) ))
  done <<'LIST'
auth|tollgate::exchange::admit::known
read and plan|tollgate::exchange::plan tollgate::exchange::plan_with_access tollgate::proxy::downstream::read_body* tollgate::routing::Router::route
hold|tollgate::exchange::admit::hold
limits|tollgate::limits::Limiter::admit tollgate::limits::Limiter::finish tollgate::limits::PlanLimits::in_force
rate-limit headers|tollgate::limits::headers::for_standing tollgate::proxy::downstream::add_gateway_headers
response head|tollgate::proxy::upstream::response_head
usage scan|tollgate::formats::passthrough::Passthrough::on_chunk tollgate::formats::passthrough::Passthrough::finish
settle|tollgate::billing::service::Billing::settle
journal|*Journal*as*Sink*::record
access log and metrics|tollgate::proxy::context::RequestCtx::finish
writer (store's runtime)|tollgate::store::writer::run* *ExecuteIter*next*
LIST
fi
