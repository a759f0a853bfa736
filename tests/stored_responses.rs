//! Stored responses (issue #19 item 5) through the real binary and the
//! mock: a Responses call to a model served through translation (Claude,
//! Gemini) is kept (`store`, true by default); `GET /v1/responses/{id}`,
//! its `input_items` and `DELETE` work, unbilled, for its own account
//! only; `previous_response_id` and `item_reference` rebuild the
//! conversation on every provider kind, tool calls included, streamed or
//! not; each response's id is its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, customer, DEMO_ACCOUNT};
use common::{client, sse_events, tag, Stack, KEY};
use serde_json::{json, Value};

async fn respond(stack: &Stack, key: &str, body: Value, t: &str) -> (u16, Value) {
    let r = client()
        .post(stack.url("/v1/responses"))
        .bearer_auth(key)
        .header("x-mock-tag", t)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    if body["stream"] == json!(true) && status == 200 {
        let done = sse_events(&text)
            .into_iter()
            .filter_map(|(_, d)| serde_json::from_str::<Value>(&d).ok())
            .find(|e| e["type"] == "response.completed");
        return (status, done.map(|e| e["response"].clone()).unwrap_or(Value::Null));
    }
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(stack: &Stack, key: &str, path: &str, method: &str) -> (u16, Value) {
    let r = client().request(method.parse().unwrap(), stack.url(path)).bearer_auth(key).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn charges(stack: &Stack) -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let (_, ledger) = admin(stack, "GET", &format!("/admin/v1/ledger?account={DEMO_ACCOUNT}"), None).await;
    ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "charge").count()
}

fn tool() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
}

#[tokio::test]
async fn a_kept_response_is_read_listed_and_deleted_unbilled_by_its_own_account_only() {
    let stack = Stack::demo();
    let (s, first) =
        respond(&stack, KEY, json!({"model": "claude-sonnet-4-6", "input": "hello there"}), &tag()).await;
    assert_eq!(s, 200, "{first}");
    let (_, again) =
        respond(&stack, KEY, json!({"model": "claude-sonnet-4-6", "input": "hello there"}), &tag()).await;
    let id = first["id"].as_str().unwrap();
    assert!(id.len() > "resp_".len() && again["id"] != first["id"], "each response its own id");
    let billed = charges(&stack).await;

    let (s, got) = get(&stack, KEY, &format!("/v1/responses/{id}"), "GET").await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(
        (got["id"].as_str(), &got["output"], &got["store"]),
        (Some(id), &first["output"], &json!(true))
    );
    let (s, items) = get(&stack, KEY, &format!("/v1/responses/{id}/input_items"), "GET").await;
    assert_eq!(s, 200, "{items}");
    assert_eq!(items["object"], "list");
    assert_eq!(items["data"][0]["content"], "hello there");
    assert!(items["data"][0]["id"].is_string());
    assert_eq!(charges(&stack).await, billed, "reading is never billed");

    let (_, _, other) = customer(&stack, "pro", "5", 1, json!({"name": "nosy"})).await;
    assert_eq!(get(&stack, &other, &format!("/v1/responses/{id}"), "GET").await.0, 404, "another account's");
    let (s, gone) = get(&stack, KEY, &format!("/v1/responses/{id}"), "DELETE").await;
    assert_eq!((s, &gone["deleted"]), (200, &json!(true)));
    assert_eq!(get(&stack, KEY, &format!("/v1/responses/{id}"), "GET").await.0, 404);
    let (s, e) = respond(
        &stack,
        KEY,
        json!({"model": "claude-sonnet-4-6", "previous_response_id": id, "input": "more"}),
        &tag(),
    )
    .await;
    assert_eq!(s, 404, "{e}");

    // store: false keeps nothing.
    let (_, unkept) = respond(
        &stack,
        KEY,
        json!({"model": "gemini-3-flash-preview", "input": "x", "store": false}),
        &tag(),
    )
    .await;
    let unkept_id = unkept["id"].as_str().unwrap();
    assert_eq!(get(&stack, KEY, &format!("/v1/responses/{unkept_id}"), "GET").await.0, 404);
}

#[tokio::test]
async fn previous_response_id_and_item_reference_carry_a_tool_conversation_on_every_provider_kind() {
    let stack = Stack::demo();
    for (model, stream) in
        [("claude-sonnet-4-6", false), ("gemini-3-flash-preview", true), ("claude-sonnet-4-6", true)]
    {
        let first_body = json!({"model": model, "stream": stream, "tools": tool(), "input": "call get_weather {\"city\":\"Paris\"}"});
        let (s, first) = respond(&stack, KEY, first_body, &tag()).await;
        assert_eq!(s, 200, "{model}: {first}");
        let call = first["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .cloned()
            .unwrap_or_else(|| panic!("{model}: {first}"));
        // Turn two names the first: only the tool's output is sent.
        let t = tag();
        let second_body = json!({"model": model, "stream": stream, "tools": tool(), "previous_response_id": first["id"],
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]});
        let (s, second) = respond(&stack, KEY, second_body, &t).await;
        assert_eq!(s, 200, "{model}: {second}");
        let text = second["output"].to_string();
        assert!(
            text.contains("Tool said") && text.contains("sunny"),
            "{model}: the provider saw the call and its result: {text}"
        );
        let sent = stack.received(&t).await[0]["body"].to_string();
        assert!(
            sent.contains("Paris") && sent.contains("sunny"),
            "{model}: the whole conversation went: {sent}"
        );
        // Turn three names the call by item_reference, with no previous response.
        let third_body = json!({"model": model, "stream": stream, "tools": tool(), "input": [
            {"role": "user", "content": "call get_weather {\"city\":\"Paris\"}"},
            {"type": "item_reference", "id": call["id"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "rainy"}]});
        let (s, third) = respond(&stack, KEY, third_body, &tag()).await;
        assert_eq!(s, 200, "{model}: {third}");
        let text = third["output"].to_string();
        assert!(text.contains("Tool said") && text.contains("rainy"), "{model}: {third}");
        let (s, e) = respond(
            &stack,
            KEY,
            json!({"model": model, "input": [{"type": "item_reference", "id": "fc_nope"}]}),
            &tag(),
        )
        .await;
        assert_eq!(s, 404, "{e}");
    }
}
