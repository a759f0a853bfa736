"""The real coding CLIs, installed from npm by the test command into .cli/,
run non-interactively through the gateway on a model of another provider,
each with one tool round trip (the CLI runs the tool the mock model asks
for and the model answers with its result)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

BIN = REPO / ".cli" / "node_modules" / ".bin"
OK = "tollgate-tool-ok"


def run(args, home: Path, env: dict, cwd: Path | None = None) -> str:
    full = dict(os.environ, HOME=str(home), **env)
    proc = subprocess.run(args, cwd=cwd or home, env=full, capture_output=True, text=True, timeout=180)
    return proc.stdout + "\n" + proc.stderr


@pytest.fixture(autouse=True)
def _installed():
    if not (BIN / "claude").exists():
        pytest.fail("the coding CLIs are not installed: run scripts/test.sh, which installs them into .cli/")


def test_claude_code_on_an_openai_model(every_kind, tmp_path):
    out = run([str(BIN / "claude"), "-p", f'call Bash {{"command":"echo {OK}","description":"echo"}}',
               "--model", "gpt-5.5", "--allowedTools", "Bash", "--output-format", "json"], tmp_path, {
        "ANTHROPIC_BASE_URL": every_kind.url, "ANTHROPIC_API_KEY": every_kind.key, "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"})
    result = json.loads(next(line for line in out.splitlines() if line.startswith('{"')))
    assert result["is_error"] is False, out
    assert result["result"] == f"Tool said: {OK}", out
    assert result["num_turns"] == 2


def test_codex_on_an_anthropic_model(every_kind, tmp_path):
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(f"""
model_provider = "gw"
model = "claude-sonnet-4-6"
check_for_update_on_startup = false
[model_providers.gw]
name = "gw"
base_url = "{every_kind.url}/v1"
env_key = "GW_API_KEY"
wire_api = "responses"
supports_websockets = false
[analytics]
enabled = false
""")
    env = {"CODEX_HOME": str(codex_home), "GW_API_KEY": every_kind.key}
    out = run([str(BIN / "codex"), "exec", "--skip-git-repo-check", f'call exec_command {{"cmd":"echo {OK}"}}'],
              tmp_path, env)
    assert "Tool said:" in out and "ERROR" not in out, out
    assert OK in out, out
    # The session's second turn (issue #19): resumed, with its first turn's history.
    out = run([str(BIN / "codex"), "exec", "--skip-git-repo-check", "resume", "--last",
               'call exec_command {"cmd":"echo second-turn-ok"}'], tmp_path, env)
    assert "second-turn-ok" in out and "ERROR" not in out, out


def test_gemini_cli_on_an_openai_model(every_kind, tmp_path):
    (tmp_path / ".gemini").mkdir()
    (tmp_path / ".gemini" / "settings.json").write_text('{"security":{"auth":{"selectedType":"gemini-api-key"}}}')
    (tmp_path / f"{OK}.txt").write_text("")
    out = run([str(BIN / "gemini"), "-m", "gpt-5.5", "-p", f'call list_directory {{"dir_path":"{tmp_path}"}}'],
              tmp_path, {"GOOGLE_GEMINI_BASE_URL": every_kind.url, "GEMINI_API_KEY": every_kind.key,
                         "GEMINI_CLI_TRUST_WORKSPACE": "true"})
    assert f"{OK}.txt" in out and "Error when talking" not in out, out


def test_opencode_on_a_gemini_model(every_kind, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "opencode.json").write_text(json.dumps({
        "provider": {"gw": {"npm": "@ai-sdk/openai-compatible", "name": "Tollgate",
                            "options": {"baseURL": every_kind.url + "/v1", "apiKey": every_kind.key},
                            "models": {"gemini-3-flash-preview": {"name": "Gemini via Tollgate"}}}},
        "model": "gw/gemini-3-flash-preview"}))
    out = run([str(BIN / "opencode"), "run", "-m", "gw/gemini-3-flash-preview", f'call bash {{"command":"echo {OK}","description":"echo it"}}'],
              tmp_path, {"OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_CONFIG": str(project / "opencode.json")}, cwd=project)
    assert f'Tool said: {{"result":"{OK}' in out, out
