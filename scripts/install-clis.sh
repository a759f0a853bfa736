#!/usr/bin/env bash
# Installs the coding CLIs the end-to-end tests drive into .cli/ (pinned;
# Claude Code releases after 2.1.197 declare node >=22, the exact version
# below runs on Node 20). Nothing is installed globally.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
if [ ! -x .cli/node_modules/.bin/opencode ]; then
  mkdir -p .cli
  npm install --prefix .cli --no-audit --no-fund --loglevel=error \
    @anthropic-ai/claude-code@2.1.330 @openai/codex@0.169.0 @google/gemini-cli@0.61.0 opencode-ai@1.18.33
fi
# The official Node SDKs the endpoint tests drive (tests/sdk/node).
if [ ! -d .cli/node_modules/@ai-sdk/openai ]; then
  npm install --prefix .cli --no-audit --no-fund --loglevel=error openai@7.60.0 cohere-ai@8.1.0 \
    ai@7.0.185 @ai-sdk/openai@4.0.126 zod@4.6.7
fi
