//! Which request headers and query parameters go upstream, and which
//! response headers come back. Both directions are allow-lists: whatever a
//! caller sends reaches the provider under the operator's credentials, so
//! only what each provider kind needs to serve the call passes (no
//! `OpenAI-Organization`, `OpenAI-Project`, `x-goog-user-project`,
//! `X-Goog-FieldMask` or `$fields`, which steer or bill the operator's
//! account, or could strip the usage the gateway meters). Responses keep a
//! short list too, so provider account details never reach customers.

use crate::auth::KEY_HEADERS;
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::providers::Provider;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Forwarded to every provider kind.
const COMMON_REQUEST_HEADERS: &[&str] = &["content-type", "accept", "user-agent"];

/// What each kind adds to [`COMMON_REQUEST_HEADERS`].
fn kind_request_headers(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => &["openai-beta"],
        ProviderKind::Anthropic => &["anthropic-version", "anthropic-beta"],
        ProviderKind::Gemini | ProviderKind::Rerank => &[],
    }
}

/// Never forwarded, whatever a provider's `forward_headers` says: the
/// gateway sets them itself, or they carry a customer's credentials or
/// address. One `match`, which the compiler turns into a switch on the
/// length and a compare or two (a list took ~20 compares for each header
/// a call sends).
fn never_forwarded(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "expect"
            | "accept-encoding"
            | "api-key"
            | "cookie"
            | "forwarded"
            | "x-forwarded-for"
            | "x-real-ip"
    )
}

/// Whether `name` is never forwarded or is a customer's key header.
fn refused(name: &str) -> bool {
    never_forwarded(name) || KEY_HEADERS.contains(&name)
}

/// Query parameters each kind may receive, with the values allowed. Names
/// are matched as sent: a percent-encoded name is not the name it decodes to.
fn kind_query(kind: ProviderKind) -> &'static [(&'static str, &'static [&'static str])] {
    match kind {
        ProviderKind::Gemini => &[("alt", &["sse", "json"])],
        ProviderKind::Anthropic => &[("beta", &["true"])],
        ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::Rerank => &[],
    }
}

pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Whether a request header may go to `provider`.
pub fn forwards(provider: &Provider, name: &HeaderName) -> bool {
    // A header name is lowercase: `http` keeps them so.
    let name = name.as_str();
    // The kinds' own lists first: none of their names is ever refused (a
    // test holds that), and a call's headers are mostly theirs or none.
    if COMMON_REQUEST_HEADERS.contains(&name) || kind_request_headers(provider.kind).contains(&name) {
        return true;
    }
    if provider.forward_headers.is_empty() || refused(name) {
        return false;
    }
    provider.forward_headers.iter().any(|allowed| match allowed.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => *allowed == name,
    })
}

/// The headers for the upstream request: the caller's that `provider` may
/// receive, plus its credentials (and `anthropic-version` when the caller
/// sent none).
///
/// The caller's names and values go on as the request head holds them (a
/// clone shares their bytes): only values that are text, as before.
pub fn upstream_headers(client: &HeaderMap, provider: &Provider) -> Result<UpstreamHeaders, GatewayError> {
    let mut out = UpstreamHeaders::with_capacity(client.len().min(8) + 2);
    for (name, value) in client {
        if forwards(provider, name) && value.to_str().is_ok() {
            out.push((name.clone(), value.clone()));
        }
    }
    if provider.kind == ProviderKind::Anthropic && !out.iter().any(|(k, _)| *k == ANTHROPIC_VERSION) {
        out.push((ANTHROPIC_VERSION.clone(), HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION)));
    }
    if !out.iter().any(|(k, _)| *k == http::header::CONTENT_TYPE) {
        out.push((http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
    }
    // Every configured key was checked when the provider was loaded.
    out.push(credential(provider.auth_header(), GatewayError::Internal)?);
    Ok(out)
}

/// The headers a plan sends upstream.
pub type UpstreamHeaders = Vec<(HeaderName, HeaderValue)>;

pub static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// A provider's authentication header as the plan sends it: its value
/// marked sensitive (HTTP/2 never indexes it). A key that is not a valid
/// header value becomes the error `invalid` makes of a message naming the header.
pub fn credential(
    (name, value): (HeaderName, String),
    invalid: fn(String) -> GatewayError,
) -> Result<(HeaderName, HeaderValue), GatewayError> {
    let mut value = HeaderValue::try_from(value).map_err(|_| {
        invalid(format!("the key for the provider's {name} header is not a valid header value"))
    })?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// The caller's query parameters that `kind` may receive.
pub fn upstream_query(query: Option<&str>, kind: ProviderKind) -> Option<String> {
    let allowed = kind_query(kind);
    let kept: Vec<&str> = query?
        .split('&')
        .filter(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            allowed.iter().any(|(n, values)| *n == name && values.contains(&value))
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Response headers from the provider that reach the caller.
pub fn keep_response_header(name: &str) -> bool {
    ["content-type", "content-length", "content-encoding", "cache-control", "retry-after"]
        .iter()
        .any(|kept| kept.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProviderConfig, Timeouts};
    use crate::secret::Secret;

    fn provider(kind: ProviderKind, extra: &[&str]) -> Provider {
        Provider::from_config(&ProviderConfig {
            name: "p".into(),
            kind,
            base_url: "http://127.0.0.1:1".into(),
            api_keys: vec![Secret::new("provider-key")],
            key_weights: Vec::new(),
            timeouts: Timeouts::default(),
            ca_file: None,
            forward_headers: extra.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    fn names(headers: Result<UpstreamHeaders, GatewayError>) -> Vec<String> {
        headers.unwrap().iter().map(|(k, _)| k.to_string()).collect()
    }

    #[test]
    fn the_refused_names_are_the_hop_by_hop_the_address_and_the_keys() {
        let listed = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "host",
            "content-length",
            "expect",
            "accept-encoding",
            "api-key",
            "cookie",
            "forwarded",
            "x-forwarded-for",
            "x-real-ip",
            "authorization",
            "x-api-key",
            "anthropic-api-key",
            "x-goog-api-key",
        ];
        assert!(listed.iter().all(|name| refused(name)));
        let others =
            ["content-type", "accept", "user-agent", "openai-beta", "x-mock-tag", "hos", "hostt", ""];
        assert!(!others.iter().any(|name| refused(name)));
    }

    #[test]
    fn no_name_a_kind_forwards_is_one_never_forwarded() {
        use ProviderKind::*;
        for kind in [Openai, OpenaiCompatible, Anthropic, Gemini, Rerank] {
            for name in COMMON_REQUEST_HEADERS.iter().chain(kind_request_headers(kind)) {
                assert!(!refused(name), "{name}");
            }
        }
    }

    #[test]
    fn only_the_kinds_allow_list_goes_upstream() {
        let client: HeaderMap = [
            "Content-Type",
            "User-Agent",
            "OpenAI-Organization",
            "OpenAI-Project",
            "OpenAI-Beta",
            "x-goog-user-project",
            "X-Goog-FieldMask",
            "anthropic-beta",
            "Authorization",
            "x-api-key",
            "Cookie",
            "X-Forwarded-For",
            "x-mock-tag",
        ]
        .iter()
        .map(|k| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_static("v")))
        .collect();
        let openai = names(upstream_headers(&client, &provider(ProviderKind::Openai, &[])));
        assert_eq!(openai, ["content-type", "user-agent", "openai-beta", "authorization"]);
        let gemini =
            names(upstream_headers(&client, &provider(ProviderKind::Gemini, &["x-mock-*", "cookie"])));
        assert_eq!(
            gemini,
            ["content-type", "user-agent", "x-mock-tag", "x-goog-api-key"],
            "cookie is never forwarded"
        );
        let anthropic = names(upstream_headers(&client, &provider(ProviderKind::Anthropic, &[])));
        assert_eq!(
            anthropic,
            ["content-type", "user-agent", "anthropic-beta", "anthropic-version", "x-api-key"]
        );
    }

    #[test]
    fn only_known_query_parameters_with_known_values_go_upstream() {
        let q = Some("alt=sse&key=secret&k%65y=secret&$fields=candidates&%61lt=json&alt=media");
        assert_eq!(upstream_query(q, ProviderKind::Gemini).as_deref(), Some("alt=sse"));
        assert_eq!(upstream_query(q, ProviderKind::Openai), None);
        assert_eq!(
            upstream_query(Some("beta=true&x=1"), ProviderKind::Anthropic).as_deref(),
            Some("beta=true")
        );
    }
}
