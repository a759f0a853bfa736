#!/usr/bin/env bash
# Installs what building Tollgate needs on a fresh Debian machine: cmake
# (Pingora's zlib-ng build uses it). Safe to run again.
set -euo pipefail
if ! command -v cmake >/dev/null 2>&1; then
  echo "==> installing cmake (needed to build Pingora)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi
