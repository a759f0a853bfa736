#!/usr/bin/env bash
# Installs what building and testing Tollgate needs on a fresh Debian
# machine: cmake (Pingora's zlib-ng build uses it), PostgreSQL and Redis
# (the store tests start their own servers from these binaries: initdb,
# pg_ctl, redis-server). Safe to run again: only what is missing.
set -euo pipefail
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
# Debian keeps PostgreSQL's binaries off PATH, in /usr/lib/postgresql/<version>/bin.
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (cmake builds Pingora; the tests start PostgreSQL and Redis)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
