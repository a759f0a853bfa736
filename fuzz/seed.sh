#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with real traffic (golden files, recorded CLI
# requests) behind each target's selector bytes, so fuzzing starts deep.
set -euo pipefail
cd "$(dirname "$0")"
seeds=$(find ../tests/golden ../tests/fixtures -type f | sort)
put() { # target name prefix-as-printf-escapes file
  mkdir -p "corpus/$1"
  { printf "$3"; cat "$4"; } > "corpus/$1/$2"
}
n=0
for f in $seeds; do
  n=$((n + 1))
  put sse_decoder "$n" '\x05' "$f"
  put request_body "$n" '' "$f"
  put field_scan "$n" '\x05' "$f"
  put json_array "$n" '\x05' "$f"
  for fmt in 0 1 2 3; do
    put requests "$n-$fmt" "\\x0$fmt" "$f"
    put passthrough "$n-$fmt" "\\x0$fmt\\x03\\x04" "$f"
  done
  for pair in 0 1 2 3 4 5 6 7 8 9 10 11; do
    p=$(printf '\\x%02x' "$pair")
    put documents "$n-$pair" "$p\\x00\\x00" "$f"
    put stream_translation "$n-$pair" "$p\\x01\\x05" "$f"
  done
done
echo "corpus: $(find corpus -type f | wc -l) inputs for $(ls corpus | wc -l) targets"
