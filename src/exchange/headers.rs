//! Which request headers go upstream and which response headers come back.
//! Requests: everything but hop-by-hop headers, every place a customer key
//! can hide, cookies, client addresses and compression (the gateway reads
//! the response to meter it). Responses: a short allow-list, so provider
//! account details (organisation ids, the operator's own rate limits,
//! cookies) never reach customers.

use crate::auth::{KEY_HEADERS, KEY_QUERY_PARAM};
use crate::config::ProviderKind;
use crate::providers::Provider;

const DROPPED_REQUEST_HEADERS: &[&str] = &[
    // hop-by-hop (RFC 9110 §7.6.1)
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // set by the gateway
    "host",
    "content-length",
    "expect",
    "accept-encoding",
    // customer credentials beyond KEY_HEADERS
    "api-key",
    "cookie",
    // who the customer is, network-wise
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "cf-connecting-ip",
    "true-client-ip",
];

pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// The headers for the upstream request: the caller's, filtered, plus the
/// provider's credentials (and `anthropic-version` when the caller sent none).
pub fn upstream_headers(client: &[(String, String)], provider: &Provider) -> Vec<(String, String)> {
    let named_by_connection: Vec<String> = client
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    let mut out: Vec<(String, String)> = client
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !DROPPED_REQUEST_HEADERS.contains(&k.as_str())
                && !KEY_HEADERS.contains(&k.as_str())
                && !named_by_connection.contains(&k)
        })
        .cloned()
        .collect();
    if provider.kind == ProviderKind::Anthropic
        && !out.iter().any(|(k, _)| k.eq_ignore_ascii_case("anthropic-version"))
    {
        out.push(("anthropic-version".into(), DEFAULT_ANTHROPIC_VERSION.into()));
    }
    if !out.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        out.push(("content-type".into(), "application/json".into()));
    }
    let (name, value) = provider.auth_header();
    out.push((name.into(), value));
    out
}

/// Headers for a translated request: as [`upstream_headers`], without the
/// caller's format-specific headers the provider would not understand.
pub fn translated_headers(client: &[(String, String)], provider: &Provider) -> Vec<(String, String)> {
    let mut out = upstream_headers(client, provider);
    if provider.kind != ProviderKind::Anthropic {
        out.retain(|(k, _)| !k.to_ascii_lowercase().starts_with("anthropic-"));
    }
    out
}

/// The caller's query string without the customer key (`?key=`).
pub fn upstream_query(query: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = query?
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(KEY_QUERY_PARAM))
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Response headers from the provider that reach the caller.
pub fn keep_response_header(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "content-type" | "content-length" | "content-encoding" | "cache-control" | "retry-after"
    )
}
