"""The official Python SDKs, unmodified, against the real gateway on conf/demo.yaml."""

import json
import urllib.request

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

TEXT = "Hello from the"


def test_openai_chat(stack):
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key)
    r = client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == TEXT
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 3


def test_openai_chat_stream_with_and_without_usage(stack):
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key)
    chunks = list(client.chat.completions.create(
        model="openai/gpt-5.5", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert all(c.usage is None for c in chunks), "usage the caller did not ask for is hidden"
    chunks = list(client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 3


def test_openai_chat_stream_helper(stack):
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key)
    with client.chat.completions.stream(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == TEXT


def test_openai_responses(stack):
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key)
    r = client.responses.create(model="gpt-5.5", input="hi", instructions="be brief")
    assert r.output_text == TEXT
    assert r.usage.output_tokens == 3


def test_openai_responses_stream_helper(stack):
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key)
    with client.responses.stream(model="gpt-5.5", input="hi") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == TEXT
    assert final.output_text == TEXT


def test_openai_seed_codex_mount(stack):
    client = openai.OpenAI(base_url=f"{stack.url}/api/v1/codex", api_key=stack.key)
    assert client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content == TEXT
    assert any(m.id == "openai/gpt-5.5" for m in client.models.list())


def test_openai_errors_are_typed(stack):
    bad = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="openai/gpt-5.5", messages=[], extra_headers={"x-mock-status": "500"})
    assert e.value.status_code == 500


def test_anthropic_messages(stack):
    client = anthropic.Anthropic(base_url=stack.url, api_key=stack.key)
    m = client.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                               messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == TEXT
    assert m.stop_reason == "end_turn"
    assert m.usage.output_tokens == 3


def test_anthropic_stream_helper(stack):
    client = anthropic.Anthropic(base_url=stack.url, api_key=stack.key)
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=64,
                                messages=[{"role": "user", "content": "hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == TEXT
    assert final.usage.output_tokens == 3 and final.usage.input_tokens > 0


def test_anthropic_seed_mount_and_bearer_auth(stack):
    # anthropic 2.x may send the key as Bearer; auth_token forces it.
    client = anthropic.Anthropic(base_url=f"{stack.url}/api/v1", auth_token=stack.key, api_key=None)
    m = client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == TEXT


def test_anthropic_errors_are_typed(stack):
    client = anthropic.Anthropic(base_url=stack.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("api_version", ["v1", "v1beta"])
def test_gemini_generate_and_stream(stack, api_version):
    client = genai.Client(api_key=stack.key,
                          http_options=types.HttpOptions(base_url=stack.url, api_version=api_version))
    r = client.models.generate_content(model="gemini-3-flash-preview", contents="hi")
    assert r.text == TEXT
    assert r.usage_metadata.candidates_token_count == 3
    chunks = list(client.models.generate_content_stream(model="gemini-3-flash-preview", contents="hi"))
    assert "".join(c.text or "" for c in chunks) == TEXT
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_gemini_seed_mount(stack):
    client = genai.Client(api_key=stack.key,
                          http_options=types.HttpOptions(base_url=f"{stack.url}/api/v1/gemini"))
    assert client.models.generate_content(model="gemini-3-flash-preview", contents="hi").text == TEXT


def test_gemini_errors_are_typed(stack):
    client = genai.Client(api_key="sk-wrong", http_options=types.HttpOptions(base_url=stack.url))
    with pytest.raises(genai.errors.ClientError) as e:
        client.models.generate_content(model="gemini-3-flash-preview", contents="hi")
    assert e.value.code == 401


def test_sdk_traffic_is_metered(stack):
    with urllib.request.urlopen(f"{stack.metrics_url}/metrics") as r:
        text = r.read().decode()
    for model in ("openai/gpt-5.5", "anthropic/claude-sonnet-4-6", "google/gemini-3-flash-preview"):
        assert f'tollgate_tokens_total{{kind="output",model="{model}"}}' in text, model


def test_customer_key_never_reached_the_upstream(stack):
    with urllib.request.urlopen(f"{stack.mock_url}/_mock/requests") as r:
        seen = json.load(r)
    assert seen, "the mock recorded the SDK traffic"
    assert stack.key not in json.dumps(seen)
