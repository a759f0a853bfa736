#!/usr/bin/env bash
# Everything CI runs: formatting, lints, unit/integration/property tests
# (they start the real gateway and mock themselves on free ports), and the
# end-to-end tests with the official Python SDKs in a virtualenv and with
# the real coding CLIs (Claude Code, Codex, Gemini CLI, OpenCode) from npm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --all-targets -- -D warnings
echo "==> cargo test"
cargo test

# deploy/ through the real tools (docker compose config, kubectl apply
# --dry-run=client, systemd-analyze verify, hadolint, ...), which
# install-tools.sh puts in .cli/deploy/; check.sh says what it skipped.
echo "==> deploy/ checks"
bash tests/deploy/install-tools.sh
bash tests/deploy/check.sh

echo "==> SDK end-to-end tests (openai, anthropic, google-genai)"
if [ ! -x .venv/bin/pytest ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt
echo "==> headless Chromium and chromedriver (Debian's) for the dashboards' browser tests"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
echo "==> coding CLIs from npm into .cli/"
bash scripts/install-clis.sh
# The binaries `cargo test` built for the integration tests: a `cargo build
# --bins` here would rebuild every dependency with other features.
.venv/bin/pytest -q tests/sdk
