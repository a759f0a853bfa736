"""Each official SDK against every provider kind through translation:
text, streaming, and a full tool round trip (the model calls a tool, the
client sends the result, the model answers with it)."""

import json

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

MODELS = ["gpt-5.5", "gpt-5.5-pro", "deepseek-v4", "claude-sonnet-4-6", "gemini-3-flash-preview"]
ASK = 'call get_weather {"city": "Paris"}'
RESULT = "sunny, 21C"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def oai(stack):
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.key, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_tool_round_trip(every_kind, model, stream):
    client = oai(every_kind)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": ASK}]
    if stream:
        with client.chat.completions.stream(model=model, messages=messages, tools=tools) as s:
            first = s.get_final_completion()
    else:
        first = client.chat.completions.create(model=model, messages=messages, tools=tools)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": choice.message.content, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": RESULT},
    ]
    second = client.chat.completions.create(model=model, messages=messages, tools=tools)
    assert RESULT in second.choices[0].message.content
    assert second.choices[0].finish_reason == "stop"
    assert second.usage.prompt_tokens > 0 and second.usage.completion_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_openai_chat_stream_usage_only_when_asked(every_kind, model):
    client = oai(every_kind)
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the"
    assert all(c.usage is None for c in chunks)
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_responses_tool_round_trip(every_kind, model, stream):
    client = oai(every_kind)
    tools = [{"type": "function", "name": "get_weather", "parameters": SCHEMA, "strict": False}]
    items = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": ASK}]
    if stream:
        with client.responses.stream(model=model, input=items, tools=tools, store=False) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(model=model, input=items, tools=tools, store=False)
    calls = [o for o in first.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather", first.output
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    items += [o.model_dump(exclude_none=True) for o in first.output]
    items.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": RESULT})
    second = client.responses.create(model=model, input=items, tools=tools, store=False)
    assert RESULT in second.output_text
    assert second.usage.input_tokens > 0 and second.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_round_trip(every_kind, model, stream):
    client = anthropic.Anthropic(base_url=every_kind.url, api_key=every_kind.key, max_retries=0)
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}]
    messages = [{"role": "user", "content": ASK}]
    kwargs = dict(model=model, max_tokens=256, system="Be brief.", tools=tools)
    if stream:
        with client.messages.stream(messages=messages, **kwargs) as s:
            events = [e.type for e in s]
            first = s.get_final_message()
        assert events[0] == "message_start" and "content_block_start" in events
    else:
        first = client.messages.create(messages=messages, **kwargs)
    assert first.stop_reason == "tool_use", first
    use = [b for b in first.content if b.type == "tool_use"][0]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": RESULT}]},
    ]
    second = client.messages.create(messages=messages, **kwargs)
    assert RESULT in second.content[0].text
    assert second.stop_reason == "end_turn"
    assert second.usage.input_tokens > 0 and second.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["gpt-5.5", "gemini-3-flash-preview"])
def test_anthropic_stream_with_pings_during_silences(pinging, model):
    """A provider silent before its first byte and between deltas: the SDK
    sees pings (which it skips) and the whole answer."""
    client = anthropic.Anthropic(base_url=pinging.url, api_key=pinging.key, max_retries=0)
    quiet = {"x-mock-ttfb-ms": "500", "x-mock-chunk-delay-ms": "300"}
    with client.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}],
                                extra_headers=quiet) as s:
        events = [e.type for e in s]
        final = s.get_final_message()
    assert events[0] == "message_start"
    assert final.content[0].text == "Hello from the"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_thinking_survives_a_tool_turn(every_kind, model):
    """Thinking on, a tool turn after it: the provider must not reject the replay."""
    client = anthropic.Anthropic(base_url=every_kind.url, api_key=every_kind.key, max_retries=0)
    tools = [{"name": "get_weather", "input_schema": SCHEMA}]
    kwargs = dict(model=model, max_tokens=4096, tools=tools, thinking={"type": "enabled", "budget_tokens": 2048})
    messages = [{"role": "user", "content": ASK}]
    first = client.messages.create(messages=messages, **kwargs)
    use = [b for b in first.content if b.type == "tool_use"][0]
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": RESULT}]},
    ]
    second = client.messages.create(messages=messages, **kwargs)
    assert RESULT in "".join(b.text for b in second.content if b.type == "text")


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_count_tokens_is_never_zero(every_kind, model):
    client = anthropic.Anthropic(base_url=every_kind.url, api_key=every_kind.key, max_retries=0)
    count = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hello " * 50}])
    assert count.input_tokens > 50


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_gemini_tool_round_trip(every_kind, model, stream):
    client = genai.Client(api_key=every_kind.key, http_options=types.HttpOptions(base_url=every_kind.url))
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather", parameters_json_schema=SCHEMA)])
    config = types.GenerateContentConfig(tools=[tool], system_instruction="Be brief.",
                                         automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    contents = [types.Content(role="user", parts=[types.Part(text=ASK)])]
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=contents, config=config))
        parts = [p for c in chunks for p in c.candidates[0].content.parts]
        assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    else:
        first = client.models.generate_content(model=model, contents=contents, config=config)
        parts = first.candidates[0].content.parts
    calls = [p for p in parts if p.function_call]
    assert calls and calls[0].function_call.name == "get_weather"
    assert calls[0].function_call.args == {"city": "Paris"}
    contents.append(types.Content(role="model", parts=[p for p in parts if p.function_call or p.text]))
    contents.append(types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        id=calls[0].function_call.id, name="get_weather", response={"result": RESULT}))]))
    second = client.models.generate_content(model=model, contents=contents, config=config)
    assert RESULT in second.text
    assert second.usage_metadata.prompt_token_count > 0


@pytest.mark.parametrize("model", ["gpt-5.5", "claude-sonnet-4-6", "gemini-3-flash-preview"])
def test_provider_errors_are_typed_in_each_sdk(every_kind, model):
    headers = {"x-mock-status": "429"}
    with pytest.raises(openai.RateLimitError):
        oai(every_kind).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                extra_headers=headers)
    client = anthropic.Anthropic(base_url=every_kind.url, api_key=every_kind.key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                               extra_headers=headers)


def test_reasoning_callers_keep_claude_tool_turns_valid(every_kind):
    """Claude rejects a tool turn whose thinking was not replayed. A Responses
    caller carries the signed thinking in reasoning items; a Chat caller,
    which cannot, gets the turn without thinking rather than a 400."""
    client = oai(every_kind)
    tools = [{"type": "function", "name": "get_weather", "parameters": SCHEMA}]
    items = [{"role": "user", "content": ASK}]
    kwargs = dict(model="claude-sonnet-4-6", tools=tools, store=False,
                  reasoning={"effort": "low", "summary": "auto"}, include=["reasoning.encrypted_content"])
    first = client.responses.create(input=items, **kwargs)
    reasoning = [o for o in first.output if o.type == "reasoning"]
    assert reasoning and reasoning[0].encrypted_content, first.output
    call = [o for o in first.output if o.type == "function_call"][0]
    items += [o.model_dump(exclude_none=True) for o in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": RESULT})
    assert RESULT in client.responses.create(input=items, **kwargs).output_text

    chat_tools = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    messages = [{"role": "user", "content": ASK}]
    first = client.chat.completions.create(model="claude-sonnet-4-6", messages=messages, tools=chat_tools,
                                           reasoning_effort="low")
    msg = first.choices[0].message
    messages += [{"role": "assistant", "content": msg.content, "tool_calls": [msg.tool_calls[0].model_dump()]},
                 {"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": RESULT}]
    second = client.chat.completions.create(model="claude-sonnet-4-6", messages=messages, tools=chat_tools,
                                            reasoning_effort="low")
    assert RESULT in second.choices[0].message.content
