"""Rate limits as clients meet them: the official SDKs and Claude Code get a
429 with retry-after-ms, wait as told by their own retry logic, and
succeed; the test only drains the limit first."""

import json
import urllib.request
import uuid

import anthropic
import openai
import pytest

from conftest import REPO, Stack
from test_clis import BIN, run
from test_money import admin

# 6,000 input tokens a minute: 100 a second. A prompt of ~220 tokens
# estimated waits ~2.2 s once the bucket is empty.
PROMPT = "y" * 800


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    config = (REPO / "conf/demo.yaml").read_text().replace(
        "plans:\n", "plans:\n  - name: limited\n    models: [\"*\"]\n    limits: { input_tpm: 6000 }\n"
        # Claude Code's own requests are tens of thousands of tokens.
        "  - name: limited_big\n    models: [\"*\"]\n    limits: { input_tpm: 600000 }\n", 1)
    path = tmp_path_factory.mktemp("limited") / "limited.yaml"
    path.write_text(config)
    s = Stack(str(path))
    yield s
    s.stop()


def fresh_key(stack, plan="limited"):
    status, account = admin(stack, "POST", "/admin/v1/accounts", {"name": f"l-{uuid.uuid4()}", "plan": plan})
    admin(stack, "POST", f"/admin/v1/accounts/{account['id']}/topups",
          {"amount_usd": "10", "multiplier": 1, "idempotency_key": str(uuid.uuid4())})
    status, key = admin(stack, "POST", f"/admin/v1/accounts/{account['id']}/keys", {"name": "k"})
    return key["key"]


def refusals(stack):
    """How many calls the input-token bucket has refused so far."""
    with urllib.request.urlopen(f"{stack.metrics_url}/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith('tollgate_rate_limit_decisions_total{limit="input_tpm",outcome="refused"}'):
                return float(line.split()[-1])
    return 0.0


def drain(stack, key, prompt=PROMPT):
    """Calls until the bucket refuses; the refusal's retry-after-ms."""
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)
    for _ in range(100):
        try:
            oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": prompt}])
        except openai.RateLimitError as e:
            assert e.response.headers["retry-after"]
            return int(e.response.headers["retry-after-ms"])
    pytest.fail("the bucket never emptied")


def test_the_openai_sdk_waits_as_told_and_succeeds(limited):
    key = fresh_key(limited)
    wait_ms = drain(limited, key)
    assert 0 < wait_ms < 10_000
    oa = openai.OpenAI(base_url=f"{limited.url}/v1", api_key=key, max_retries=3)
    before = refusals(limited)
    raw = oa.chat.completions.with_raw_response.create(model="gpt-5.5", messages=[{"role": "user", "content": PROMPT}])
    assert raw.parse().choices[0].message.content
    assert raw.retries_taken >= 1 and refusals(limited) > before, "refused first, then retried by the SDK"
    assert int(raw.headers["x-ratelimit-limit-tokens"]) == 6000


def test_the_anthropic_sdk_waits_as_told_and_succeeds(limited):
    key = fresh_key(limited)
    wait_ms = drain(limited, key)
    assert 0 < wait_ms < 10_000
    an = anthropic.Anthropic(base_url=limited.url, api_key=key, max_retries=3)
    before = refusals(limited)
    raw = an.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": PROMPT}])
    assert raw.parse().content[0].text
    assert raw.retries_taken >= 1 and refusals(limited) > before, "refused first, then retried by the SDK"
    assert int(raw.headers["anthropic-ratelimit-input-tokens-limit"]) == 6000


def test_claude_code_waits_as_told_and_succeeds(limited, tmp_path):
    if not (BIN / "claude").exists():
        pytest.fail("the coding CLIs are not installed: run scripts/test.sh")
    key = fresh_key(limited, "limited_big")
    drain(limited, key, "z" * 200_000)
    before = refusals(limited)
    out = run([str(BIN / "claude"), "-p", "hello", "--model", "claude-sonnet-4-6", "--output-format", "json"],
              tmp_path, {"ANTHROPIC_BASE_URL": limited.url, "ANTHROPIC_API_KEY": key, "DISABLE_TELEMETRY": "1",
                         "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"})
    result = json.loads(next(line for line in out.splitlines() if line.startswith('{"')))
    assert result["is_error"] is False, out
    assert refusals(limited) > before, "Claude Code was refused first, and retried on its own"
