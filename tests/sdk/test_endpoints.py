"""The official SDKs, unmodified, on the endpoints besides chat (issue #19):
embeddings through the OpenAI SDK (which asks for base64 by default and
decodes it) to an OpenAI and a Gemini model."""

import math

import openai
import pytest


@pytest.mark.parametrize("model", ["text-embedding-3-small", "gemini-embedding-001"])
def test_openai_sdk_embeddings(stack, model):
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key)
    texts = ["the first text", "a second one", "third"]
    r = client.embeddings.create(model=model, input=texts, dimensions=6)
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(len(d.embedding) == 6 for d in r.data)
    assert all(math.isfinite(x) and -1 <= x <= 1 for d in r.data for x in d.embedding)
    assert r.usage.prompt_tokens > 0
    # Asked for floats, the same vectors the SDK decoded from base64.
    floats = client.embeddings.create(model=model, input=texts, dimensions=6, encoding_format="float")
    for a, b in zip(r.data, floats.data):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    one = client.embeddings.create(model=model, input="third", dimensions=6)
    assert one.data[0].embedding == pytest.approx(r.data[2].embedding)


def test_openai_sdk_embeddings_errors_are_typed(stack):
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="gemini-embedding-001", input=[[1, 2, 3]])
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="gpt-5.5", input="a chat model")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-embed", input="x")


@pytest.mark.parametrize("model", ["rerank-v3.5", "jina-reranker-v2"])
def test_cohere_sdk_rerank_v1_and_v2(stack, model):
    import cohere

    docs = ["a car", "a red apple", "red", "green pear"]
    v2 = cohere.ClientV2(api_key=stack.key, base_url=stack.url)
    r = v2.rerank(model=model, query="red apple", documents=docs, top_n=2)
    assert [x.index for x in r.results] == [1, 2]
    assert r.results[0].relevance_score >= r.results[1].relevance_score
    assert r.meta.billed_units.search_units == 1
    v1 = cohere.Client(api_key=stack.key, base_url=stack.url)
    r = v1.rerank(model=model, query="red apple", documents=docs, top_n=3, return_documents=True)
    assert [x.document.text for x in r.results] == ["a red apple", "red", "a car"] or \
        [x.document.text for x in r.results][:2] == ["a red apple", "red"]


def test_cohere_sdk_rerank_errors_are_typed(stack):
    import cohere

    v2 = cohere.ClientV2(api_key=stack.key, base_url=stack.url)
    with pytest.raises(cohere.errors.BadRequestError):
        v2.rerank(model="rerank-v3.5", query="", documents=["a"])
    with pytest.raises(cohere.errors.BadRequestError):
        v2.rerank(model="gpt-5.5", query="q", documents=["a"])
    bad = cohere.ClientV2(api_key="sk-tollgate-nope", base_url=stack.url)
    with pytest.raises(cohere.errors.UnauthorizedError):
        bad.rerank(model="rerank-v3.5", query="q", documents=["a"])


@pytest.mark.parametrize("model", ["gpt-image-2", "gemini-2.5-flash-image"])
def test_openai_sdk_images(stack, model):
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key)
    r = client.images.generate(model=model, prompt="a red apple on marble", n=2)
    assert len(r.data) == 2
    assert all(d.url for d in r.data)
    r = client.images.generate(model=model, prompt="a pear", response_format="b64_json")
    assert r.data[0].b64_json
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model=model, prompt="x", n=11)


def run_node(stack, name, **env_extra):
    """Runs tests/sdk/node/<name> with the npm packages scripts/install-clis.sh puts in .cli/."""
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    modules = repo / ".cli" / "node_modules"
    assert (modules / "@ai-sdk" / "openai").exists(), "bash scripts/install-clis.sh installs the Node SDKs"
    env = dict(os.environ, BASE_URL=stack.url, API_KEY=stack.key, **env_extra)
    # ES modules resolve from the script's own directory: run a copy beside node_modules.
    script = repo / ".cli" / name
    script.write_text((Path(__file__).parent / "node" / name).read_text())
    run = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_node_sdks_on_the_endpoints_besides_chat(stack):
    """The openai and cohere-ai npm packages."""
    assert "node sdks: ok" in run_node(stack, "endpoints.mjs")


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gemini-3-flash-preview"])
def test_vercel_ai_sdk_multi_step_tools_with_item_references(stack, model):
    """The Vercel AI SDK's Responses provider sends earlier turns as item_reference."""
    import uuid

    assert "vercel ai: ok" in run_node(stack, "vercel_ai.mjs", MODEL=model, TAG=uuid.uuid4().hex)


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gemini-3-flash-preview"])
def test_openai_agents_sdk_multi_turn_with_previous_response_id(stack, model):
    """The OpenAI Agents SDK's tool loop, then a second run that names the
    first by previous_response_id: the gateway rebuilds the conversation."""
    import asyncio
    import uuid
    from openai import AsyncOpenAI
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    calls = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    tag = uuid.uuid4().hex
    client = AsyncOpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, default_headers={"x-mock-tag": tag})
    agent = Agent(name="helper", instructions="Use the tool.", tools=[get_weather],
                  model=OpenAIResponsesModel(model=model, openai_client=client))

    async def turns():
        first = await Runner.run(agent, 'call get_weather {"city":"Paris"}')
        second = await Runner.run(agent, "and tomorrow?", previous_response_id=first.last_response_id)
        return first, second

    first, second = asyncio.run(turns())
    assert calls == ["Paris"]
    assert "sunny in Paris" in first.final_output
    assert second.final_output
    import json
    import urllib.request
    received = json.load(urllib.request.urlopen(f"{stack.mock_url}/_mock/requests?tag={tag}"))
    last = json.dumps(received[-1]["body"])
    assert "Paris" in last and "sunny in Paris" in last and "and tomorrow?" in last, last
