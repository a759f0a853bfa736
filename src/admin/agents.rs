//! Saved agents (seed 002, issue #19 item 4): an account's system prompt
//! and model, which its calls name by `agentId`. Created, read, changed and
//! deleted here; kept in the store (so every node of a fleet sees them);
//! their model must be a chat model of the catalog, kept by its id.

use super::extract::{Body, Id};
use super::handlers::account_of;
use super::{AdminError, AdminState};
use crate::store::{Agent, AgentPatch};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    pub name: String,
    pub system_prompt: String,
    /// A chat model's id or alias.
    pub model: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchAgent {
    pub name: Option<String>,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    pub id: String,
    pub account_id: i64,
    pub name: String,
    pub system_prompt: String,
    pub model: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentsView {
    pub agents: Vec<AgentView>,
}

fn view(a: Agent) -> AgentView {
    AgentView {
        id: a.id,
        account_id: a.account_id,
        name: a.name,
        system_prompt: a.system_prompt,
        model: a.model,
        created_at: a.created_at,
        updated_at: a.updated_at,
    }
}

/// The catalog id of the chat model `name` (an id or an alias).
fn chat_model(state: &AdminState, name: &str) -> Result<String, AdminError> {
    let gateway = state.live.current();
    match gateway.catalog.resolve(name) {
        Some(m) if m.kind == crate::config::ModelKind::Chat => Ok(m.id.to_string()),
        Some(m) => Err(AdminError::bad(format!("'{}' is not a chat model", m.id))),
        None => Err(AdminError::bad(format!("no model named '{name}'"))),
    }
}

fn named(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AdminError::bad("'name' cannot be empty"));
    }
    Ok(name.to_string())
}

async fn agent_of(state: &AdminState, id: String) -> Result<Agent, AdminError> {
    state
        .store
        .run(move |s| async move { s.agent(&id).await })
        .await?
        .ok_or_else(|| AdminError::not_found("agent"))
}

#[utoipa::path(post, path = "/admin/v1/accounts/{id}/agents", params(("id" = i64, Path)), request_body = CreateAgent,
    responses((status = 201, body = AgentView), (status = 400), (status = 404)))]
pub async fn create_agent(
    State(state): State<AdminState>,
    Id(id): Id,
    Body(body): Body<CreateAgent>,
) -> Result<(StatusCode, Json<AgentView>), AdminError> {
    let account = account_of(&state, id).await?;
    let now = state.billing.now_ms() as i64;
    let agent = Agent {
        id: format!("agt_{}", uuid::Uuid::now_v7().simple()),
        account_id: account.id as i64,
        name: named(&body.name)?,
        system_prompt: body.system_prompt,
        model: chat_model(&state, &body.model)?,
        created_at: now,
        updated_at: now,
    };
    let kept = agent.clone();
    state.store.run(move |s| async move { s.insert_agent(&kept).await }).await?;
    Ok((StatusCode::CREATED, Json(view(agent))))
}

#[utoipa::path(get, path = "/admin/v1/accounts/{id}/agents", params(("id" = i64, Path)),
    responses((status = 200, body = AgentsView), (status = 404)))]
pub async fn list_agents(
    State(state): State<AdminState>,
    Id(id): Id,
) -> Result<Json<AgentsView>, AdminError> {
    let account = account_of(&state, id).await?.id as i64;
    let agents = state.store.run(move |s| async move { s.agents(account).await }).await?;
    Ok(Json(AgentsView { agents: agents.into_iter().map(view).collect() }))
}

#[utoipa::path(get, path = "/admin/v1/agents/{id}", params(("id" = String, Path)),
    responses((status = 200, body = AgentView), (status = 404)))]
pub async fn get_agent(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<AgentView>, AdminError> {
    Ok(Json(view(agent_of(&state, id).await?)))
}

#[utoipa::path(patch, path = "/admin/v1/agents/{id}", params(("id" = String, Path)), request_body = PatchAgent,
    responses((status = 200, body = AgentView), (status = 400), (status = 404)))]
pub async fn patch_agent(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    Body(body): Body<PatchAgent>,
) -> Result<Json<AgentView>, AdminError> {
    let patch = AgentPatch {
        name: body.name.as_deref().map(named).transpose()?,
        system_prompt: body.system_prompt,
        model: body.model.as_deref().map(|m| chat_model(&state, m)).transpose()?,
    };
    let now = state.billing.now_ms() as i64;
    let changed = state.store.run(move |s| async move { s.update_agent(&id, &patch, now).await }).await?;
    changed.map(|a| Json(view(a))).ok_or_else(|| AdminError::not_found("agent"))
}

#[utoipa::path(delete, path = "/admin/v1/agents/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404)))]
pub async fn delete_agent(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    let gone = state.store.run(move |s| async move { s.delete_agent(&id).await }).await?;
    if gone {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError::not_found("agent"))
    }
}
