"""Money end to end through the official SDKs, unmodified: an operator creates
an account and a key through the admin API and tops up at 4x; the customer calls
models in all four formats, streaming and not; whoami, usage and generation
show the bill; once the key is revoked, every SDK gets its own 401 error."""

import json
import urllib.request
import uuid

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

ADMIN_TOKEN = "tollgate-admin-demo"


def http(method, url, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def admin(stack, method, path, body=None):
    return http(method, f"{stack.admin_url}{path}", ADMIN_TOKEN, body)


@pytest.fixture()
def customer(stack):
    status, account = admin(stack, "POST", "/admin/v1/accounts", {"name": f"sdk-{uuid.uuid4()}", "plan": "pro"})
    assert status == 201, account
    status, topped = admin(stack, "POST", f"/admin/v1/accounts/{account['id']}/topups",
                           {"amount_usd": "10.00", "multiplier": 4, "idempotency_key": str(uuid.uuid4())})
    assert status == 200 and topped["balance_credits"] == 40_000_000
    status, key = admin(stack, "POST", f"/admin/v1/accounts/{account['id']}/keys", {"name": "sdk"})
    assert status == 201
    return account["id"], key["id"], key["key"]


def test_every_sdk_is_billed_and_the_bill_is_shown_then_a_revoked_key_is_refused(stack, customer):
    account, key_id, key = customer
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)
    an = anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0)
    gg = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=stack.url))

    raw = oa.chat.completions.with_raw_response.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    chat_id = raw.headers["x-request-id"]
    chat = raw.parse()
    list(oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], stream=True))
    oa.responses.create(model="gpt-5.5", input="hi")
    with oa.responses.stream(model="claude-sonnet-4-6", input="hi") as s:
        s.get_final_response()
    an.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    with an.messages.stream(model="gemini-3-flash-preview", max_tokens=50,
                            messages=[{"role": "user", "content": "hi"}]) as s:
        s.get_final_message()
    gg.models.generate_content(model="gemini-3-flash-preview", contents="hi")
    list(gg.models.generate_content_stream(model="gpt-5.5", contents="hi"))

    status, generation = http("GET", f"{stack.url}/v1/generation?id={chat_id}", key)
    assert status == 200, generation
    expected = chat.usage.prompt_tokens * 1250 + chat.usage.completion_tokens * 10000
    assert generation["cost_nano_usd"] == expected and generation["estimated"] is False
    status, whoami = http("GET", f"{stack.url}/v1/whoami", key)
    assert status == 200
    assert set(whoami["per_model"]) == {"openai/gpt-5.5", "anthropic/claude-sonnet-4-6", "google/gemini-3-flash-preview"}
    assert whoami["api_key"]["id"] == str(key_id)
    status, ledger = admin(stack, "GET", f"/admin/v1/ledger?account={account}")
    charges = [e for e in ledger["entries"] if e["kind"] == "charge"]
    assert len(charges) == 8, "every call billed once"
    spent = -sum(e["amount_nano_usd"] for e in charges)
    assert whoami["balance_nano_usd"] == 40_000_000_000 - spent
    assert whoami["total_spent_nano_usd"] == spent
    status, usage = http("GET", f"{stack.url}/v1/usage", key)
    assert usage["month"]["requests"] == 8 and usage["plan"] == "pro"
    # The SDKs read the models a key may call.
    assert "openai/gpt-5.5" in [m.id for m in oa.models.list()]

    status, _ = admin(stack, "DELETE", f"/admin/v1/keys/{key_id}")
    assert status == 200
    with pytest.raises(openai.AuthenticationError):
        oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.AuthenticationError):
        an.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(genai.errors.ClientError) as e:
        gg.models.generate_content(model="gemini-3-flash-preview", contents="hi")
    assert e.value.code == 401


def test_an_empty_wallet_is_a_402_each_sdk_understands(stack):
    status, account = admin(stack, "POST", "/admin/v1/accounts", {"name": f"broke-{uuid.uuid4()}", "plan": "pro"})
    status, key = admin(stack, "POST", f"/admin/v1/accounts/{account['id']}/keys", {"name": "k"})
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key["key"], max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 402 and e.value.body["code"] == "insufficient_credits"
    an = anthropic.Anthropic(base_url=stack.url, api_key=key["key"], max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as e:
        an.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 402
