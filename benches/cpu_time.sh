#!/usr/bin/env bash
# CPU time per request, as the machine spends it (kernel included), where
# callgrind counts instructions only: the bare Pingora pass-through and the
# release gateway (`limits`: the demo with every limit of its plan on;
# `unbilled`) each serve N sequential chat requests on one keep-alive
# connection (concurrency 1), ROUNDS times in turn, while `perf stat`
# counts the proxy process's task-clock (every thread: the workers, the
# store's writer, the timers), context switches and page faults.
# PROFILE=1 also samples each proxy with `perf record -e cpu-clock` (a
# timer, so it works where the machine has no hardware counters) and
# prints where its time went: kernel or user, by thread, by symbol.
#
#   cargo bench --no-run && bash benches/cpu_time.sh [N] [ROUNDS]
#   (BINARY=path measures another build of the gateway, TARGETS a subset)
#
# (perf from Debian's packages: apt-get install -y linux-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
ROUNDS=${2:-3}
TARGETS=${TARGETS:-bare unbilled limits}
generated=$(mktemp -d)
# Whatever way it ends, nothing it started is left running.
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$generated"' EXIT
python3 benches/configs.py "$generated"
mock=19911 gw=19912
. benches/proxy_under_test.sh

measure() {
  local target=$1 config perf_pid out
  out=$generated/runs/$target # beside, not among, the configurations
  mkdir -p "$generated/runs"
  config=bare
  if [ "$target" != bare ]; then config=$generated/$target.yaml; fi
  start_mock $mock
  start_proxy "$config" $gw $mock "$out"
  kill -0 "$proxy_pid" 2>/dev/null || { echo "$target did not start:"; cat "$out.log" 2>/dev/null; exit 1; }
  local gw_pid=$proxy_pid mock_pid=$mock_pid path=$proxy_path
  send_requests $gw 500 "$path" 100 # warm: connections pooled, caches and series made
  if [ -n "${PROFILE:-}" ]; then
    perf record -q -e cpu-clock -F 10000 -p "$gw_pid" -o "$out.data" >/dev/null 2>&1 &
  else
    perf stat -e task-clock,context-switches,page-faults -p "$gw_pid" -o "$out.stat" &
  fi
  perf_pid=$!
  sleep 0.3
  send_requests $gw "$N" "$path" 100
  kill -INT $perf_pid
  wait $perf_pid || true
  kill -9 $gw_pid $mock_pid # nothing of theirs is read afterwards
  wait $gw_pid $mock_pid 2>/dev/null || true
  if [ -n "${PROFILE:-}" ]; then
    echo "== $target: share of its samples by thread and space, then by symbol"
    perf report -i "$out.data" --no-children --sort comm,dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8 || true
    perf report -i "$out.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -15 || true
  else
    awk -v n="$N" -v t="$target" '
      /task-clock/ { gsub(",", "", $1); cpu = $1 * 1000 / n }
      /context-switches/ { gsub(",", "", $1); cs = $1 / n }
      /page-faults/ { gsub(",", "", $1); pf = $1 / n }
      END { printf "  %-9s %7.1f µs CPU a request  %5.2f context switches  %5.2f page faults\n", t, cpu, cs, pf }
    ' "$out.stat"
  fi
  rm -rf "$out".*
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round ($N requests each)"
  for target in $TARGETS; do measure "$target"; done
done
