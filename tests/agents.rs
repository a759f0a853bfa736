//! Saved agents (issue #19 item 4, seed 002) through the real binary: the
//! admin API creates, reads, changes and deletes an account's agents; the
//! customer lists its own at `GET /v1/agents`; `agentId` in a Chat request
//! puts the agent's system prompt before the caller's messages and calls
//! the agent's model (translated when it is another provider's), billed as
//! that model; seed 002's `POST /chat` takes `messages` with `model`
//! optional (the agent's, else the plan's default); an unknown agent or
//! another account's is 404 `agent_not_found`, nothing billed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::money::{admin, charge_of, customer, not_charged, DEMO_ACCOUNT};
use common::{client, sse_events, tag, Stack, KEY};
use serde_json::{json, Value};

async fn post(stack: &Stack, key: &str, path: &str, body: Value, t: &str) -> (u16, String, String) {
    let r = client()
        .post(stack.url(path))
        .bearer_auth(key)
        .header("x-mock-tag", t)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    (status, id, r.text().await.unwrap())
}

async fn new_agent(stack: &Stack, account: i64, body: Value) -> Value {
    let (s, agent) = admin(stack, "POST", &format!("/admin/v1/accounts/{account}/agents"), Some(body)).await;
    assert_eq!(s, 201, "{agent}");
    agent
}

#[tokio::test]
async fn the_admin_api_keeps_an_accounts_agents() {
    let stack = Stack::demo();
    let agent = new_agent(
        &stack,
        DEMO_ACCOUNT,
        json!({"name": "Helper", "system_prompt": "You are terse.", "model": "claude-sonnet-4-6"}),
    )
    .await;
    let id = agent["id"].as_str().unwrap();
    assert!(id.starts_with("agt_"));
    assert_eq!(agent["model"], "anthropic/claude-sonnet-4-6", "kept by the model's id");
    let (s, got) = admin(&stack, "GET", &format!("/admin/v1/agents/{id}"), None).await;
    assert_eq!((s, &got), (200, &agent));
    let (s, changed) =
        admin(&stack, "PATCH", &format!("/admin/v1/agents/{id}"), Some(json!({"system_prompt": "Be kind."})))
            .await;
    assert_eq!(s, 200, "{changed}");
    assert_eq!(
        (changed["system_prompt"].as_str(), changed["name"].as_str()),
        (Some("Be kind."), Some("Helper"))
    );
    let (s, list) = admin(&stack, "GET", &format!("/admin/v1/accounts/{DEMO_ACCOUNT}/agents"), None).await;
    assert_eq!((s, list["agents"].as_array().map(Vec::len)), (200, Some(1)));

    for (body, why) in [
        (json!({"name": "x", "system_prompt": "p", "model": "no-such-model"}), "unknown model"),
        (json!({"name": "x", "system_prompt": "p", "model": "text-embedding-3-small"}), "not a chat model"),
        (json!({"name": " ", "system_prompt": "p", "model": "gpt-5.5"}), "empty name"),
        (json!({"name": "x", "model": "gpt-5.5"}), "no system prompt"),
    ] {
        let (s, e) =
            admin(&stack, "POST", &format!("/admin/v1/accounts/{DEMO_ACCOUNT}/agents"), Some(body)).await;
        assert_eq!(s, 400, "{why}: {e}");
    }
    let (s, _) = admin(
        &stack,
        "POST",
        "/admin/v1/accounts/999/agents",
        Some(json!({"name": "x", "system_prompt": "p", "model": "gpt-5.5"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = admin(&stack, "DELETE", &format!("/admin/v1/agents/{id}"), None).await;
    assert_eq!(s, 204);
    for method in ["GET", "DELETE"] {
        let (s, _) = admin(&stack, method, &format!("/admin/v1/agents/{id}"), None).await;
        assert_eq!(s, 404, "{method} after delete");
    }
    let (s, spec) = admin(&stack, "GET", "/admin/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(spec["paths"]["/admin/v1/agents/{id}"].is_object(), "in the OpenAPI document");
}

#[tokio::test]
async fn an_agent_gives_a_chat_call_its_system_prompt_and_model() {
    let stack = Stack::demo();
    let agent = new_agent(
        &stack,
        DEMO_ACCOUNT,
        json!({"name": "Helper", "system_prompt": "You are terse.", "model": "claude-sonnet-4-6"}),
    )
    .await;
    let id = agent["id"].as_str().unwrap();
    let t = tag();
    let body = json!({"agentId": id, "model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]});
    let (s, request_id, text) = post(&stack, KEY, "/v1/chat/completions", body, &t).await;
    assert_eq!(s, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["object"], "chat.completion");
    let sent = &stack.received(&t).await[0];
    assert_eq!(sent["path"], "/anthropic/v1/messages", "the agent's model, translated");
    assert_eq!(sent["body"]["system"][0]["text"], "You are terse.");
    assert_eq!(sent["body"]["messages"][0]["content"], "hi", "a turn of one text block goes as a string");
    assert!(sent["body"].get("agentId").is_none());
    let charge = charge_of(&stack, DEMO_ACCOUNT, &request_id).await.unwrap();
    assert_eq!(charge["model"], "anthropic/claude-sonnet-4-6");

    // The customer sees its own agents, and only those.
    let (_, other, other_key) = customer(&stack, "pro", "5", 1, json!({"name": "other"})).await;
    let theirs =
        new_agent(&stack, other, json!({"name": "Theirs", "system_prompt": "Secret.", "model": "gpt-5.5"}))
            .await;
    let r = client().get(stack.url("/v1/agents")).bearer_auth(KEY).send().await.unwrap();
    let listed: Value = r.json().await.unwrap();
    let ids: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id]);
    // Another account's agent, or none at all: 404 agent_not_found, nothing billed.
    for (key, agent_id) in
        [(KEY, theirs["id"].as_str().unwrap()), (other_key.as_str(), id), (KEY, "agt_nope")]
    {
        let body = json!({"agentId": agent_id, "messages": [{"role": "user", "content": "hi"}]});
        let (s, request_id, text) = post(&stack, key, "/v1/chat", body, &tag()).await;
        assert_eq!(s, 404, "{text}");
        let e: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(e["error"]["code"], "agent_not_found");
        assert!(not_charged(&stack, DEMO_ACCOUNT, &request_id).await);
    }
}

#[tokio::test]
async fn seed_002s_chat_route_takes_messages_with_the_model_optional() {
    let stack = Stack::demo();
    let agent = new_agent(
        &stack,
        DEMO_ACCOUNT,
        json!({"name": "G", "system_prompt": "Rhyme.", "model": "gemini-3-flash-preview"}),
    )
    .await;
    // No model, no agent: the plan's default model.
    let t = tag();
    let (s, _, text) =
        post(&stack, KEY, "/v1/chat", json!({"messages": [{"role": "user", "content": "hi"}]}), &t).await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(stack.received(&t).await[0]["body"]["model"], "gpt-5.5");
    // The agent's model, streamed in OpenAI's format.
    let t = tag();
    let body =
        json!({"agentId": agent["id"], "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (s, _, text) = post(&stack, KEY, "/v1/chat", body, &t).await;
    assert_eq!(s, 200, "{text}");
    let events = sse_events(&text);
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"), "{text}");
    let sent = &stack.received(&t).await[0];
    assert!(
        sent["path"].as_str().unwrap().contains("gemini-3-flash-preview:streamGenerateContent"),
        "{sent}"
    );
    assert_eq!(sent["body"]["systemInstruction"]["parts"][0]["text"], "Rhyme.");
    // `messages` is required.
    for body in [json!({"model": "gpt-5.5"}), json!({"messages": []}), json!({"messages": "hi"})] {
        let (s, _, text) = post(&stack, KEY, "/v1/chat", body.clone(), &tag()).await;
        assert_eq!(s, 400, "{body}: {text}");
    }
    // A plan without a default model needs one named.
    let (_, _, starter) = customer(&stack, "starter", "5", 1, json!({"name": "s"})).await;
    let (s, _, text) =
        post(&stack, &starter, "/v1/chat", json!({"messages": [{"role": "user", "content": "hi"}]}), &tag())
            .await;
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("default model"), "{text}");
}
