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
