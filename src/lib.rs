//! Tollgate: an LLM API gateway on Cloudflare's Pingora. One customer key,
//! every API format (OpenAI Chat Completions and Responses, Anthropic
//! Messages, Gemini), every provider, every token metered.
//!
//! Layout: `proxy` is the only module that touches pingora-proxy and only
//! delegates; `formats` and `sse` are pure (no Pingora, Tokio or Redis);
//! `exchange` plans each upstream call; `gateway` is the validated runtime
//! form of `config`, and `reload` swaps it for a new one without dropping
//! a request.

pub mod admin;
pub mod auth;
pub mod billing;
pub mod byok;
pub mod calendar;
pub mod config;
pub mod customer;
pub mod dashboard;
pub mod drain;
pub mod error;
pub mod exchange;
pub mod formats;
pub mod fuzzing;
pub mod gateway;
pub mod health;
pub mod hot;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod providers;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod secret;
pub mod server;
pub mod sse;
pub mod store;
pub mod traces;
pub mod usage_totals;
