//! Error documents in each client format, for errors the gateway raises
//! itself. Upstream errors in the caller's own format pass through as sent.

use super::ClientFormat;
use crate::error::{ErrorKind, GatewayError};
use serde_json::json;

/// The shape of a mount's error documents on its OpenAI-format routes:
/// OpenAI's own (`{"error": {...}}`), or `{"detail": "..."}` (seed 004's
/// API, FastAPI's convention), with the same status codes and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorStyle {
    #[default]
    Native,
    Detail,
}

/// [`render_answer`] in a mount's `style` (which only changes the OpenAI
/// formats' documents).
pub fn render_styled(
    err: &GatewayError,
    format: ClientFormat,
    style: ErrorStyle,
    request_id: &str,
) -> Vec<u8> {
    match (style, format) {
        (ErrorStyle::Detail, ClientFormat::Openai | ClientFormat::Responses) => {
            serde_json::to_vec(&json!({ "detail": detail_message(err, request_id) })).unwrap_or_default()
        }
        _ => render_answer(err, format, request_id),
    }
}

/// The one-line `detail` of an error: the short forms seed 004 documents
/// for a bad key, a spent cap and a rate limit, else the full message.
fn detail_message(err: &GatewayError, request_id: &str) -> String {
    match err {
        GatewayError::InvalidKey => "Invalid API key".into(),
        GatewayError::MissingKey => "Missing API key".into(),
        GatewayError::SpendCapReached { cap_nano_usd, .. } => {
            format!("Spend cap reached: {} USD", usd_with_cents(*cap_nano_usd))
        }
        GatewayError::RateLimited { code: "rate_limit_exceeded", .. } => "Rate limit exceeded".into(),
        other if other.status() >= 500 => format!("{other} (request id {request_id})"),
        other => other.to_string(),
    }
}

/// Dollars with at least two decimals (`5.00`, `0.125`).
fn usd_with_cents(nanos: i64) -> String {
    let shown = crate::billing::NanoUsd(nanos).to_string();
    match shown.split_once('.') {
        None => format!("{shown}.00"),
        Some((_, frac)) if frac.len() == 1 => format!("{shown}0"),
        Some(_) => shown,
    }
}

/// Renders `err` as the JSON body the caller's SDK expects for an error.
pub fn render(err: &GatewayError, format: ClientFormat) -> Vec<u8> {
    render_message(err, format, err.to_string())
}

/// [`render`] for an answer the gateway gives itself: a failure on its
/// side names the request id, which finds the details in the log.
pub fn render_answer(err: &GatewayError, format: ClientFormat, request_id: &str) -> Vec<u8> {
    if err.status() >= 500 {
        render_message(err, format, format!("{err} (request id {request_id})"))
    } else {
        render(err, format)
    }
}

fn render_message(err: &GatewayError, format: ClientFormat, message: String) -> Vec<u8> {
    let doc = match format {
        ClientFormat::Openai | ClientFormat::Responses => json!({
            "error": {
                "message": message,
                "type": openai_type(err.kind()),
                "param": null,
                "code": err.code(),
            }
        }),
        ClientFormat::Anthropic => json!({
            "type": "error",
            "error": { "type": anthropic_type(err.kind()), "message": message },
        }),
        ClientFormat::Gemini => json!({
            "error": {
                "code": err.status(),
                "message": message,
                "status": gemini_status(err.status()),
            }
        }),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// The error as an event in the caller's stream, for failures after the
/// response has started: each SDK raises it as an API error.
pub fn stream_error_event(format: ClientFormat, err: &GatewayError) -> bytes::Bytes {
    match format {
        ClientFormat::Openai | ClientFormat::Gemini => {
            crate::sse::encode(None, &String::from_utf8_lossy(&render(err, format)))
        }
        ClientFormat::Anthropic => {
            crate::sse::encode(Some("error"), &String::from_utf8_lossy(&render(err, format)))
        }
        ClientFormat::Responses => responses_error_event(err, None),
    }
}

/// The `error` event a Responses stream ends with; `sequence` continues the
/// stream's `sequence_number`s, which the SDKs' event types carry.
pub fn responses_error_event(err: &GatewayError, sequence: Option<u64>) -> bytes::Bytes {
    let mut doc = json!({ "type": "error", "code": err.code(), "message": err.to_string(), "param": null });
    if let Some(n) = sequence {
        doc["sequence_number"] = json!(n);
    }
    crate::sse::encode(Some("error"), &doc.to_string())
}

/// [`stream_error_event`] appended to a stream being written as text.
pub fn push_stream_error(format: ClientFormat, err: &GatewayError, out: &mut String) {
    out.push_str(&String::from_utf8_lossy(&stream_error_event(format, err)));
}

fn openai_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::RequestTooLarge => {
            "invalid_request_error"
        }
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::Billing => "insufficient_quota",
        ErrorKind::RateLimited => "rate_limit_exceeded",
        ErrorKind::Overloaded => "service_unavailable",
        ErrorKind::Api => "api_error",
        ErrorKind::Timeout => "timeout",
    }
}

fn anthropic_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::Billing => "billing_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RequestTooLarge => "request_too_large",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Api => "api_error",
        ErrorKind::Timeout => "timeout_error",
    }
}

/// Google's canonical status names, by HTTP status.
pub fn gemini_status(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        402 | 429 => "RESOURCE_EXHAUSTED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 => "UNIMPLEMENTED",
        409 => "ABORTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(v: Vec<u8>) -> Value {
        serde_json::from_slice(&v).unwrap()
    }

    #[test]
    fn each_format_has_its_own_shape() {
        let err = GatewayError::InvalidKey;
        let o = parse(render(&err, ClientFormat::Openai));
        assert_eq!(o["error"]["type"], "authentication_error");
        assert_eq!(o["error"]["code"], "invalid_api_key");
        let a = parse(render(&err, ClientFormat::Anthropic));
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "authentication_error");
        let g = parse(render(&err, ClientFormat::Gemini));
        assert_eq!(g["error"]["code"], 401);
        assert_eq!(g["error"]["status"], "UNAUTHENTICATED");
    }

    #[test]
    fn a_reused_idempotency_key_is_an_invalid_request_in_each_format() {
        let err = GatewayError::IdempotencyKeyReused;
        let o = parse(render(&err, ClientFormat::Openai));
        assert_eq!(
            (o["error"]["type"].as_str(), o["error"]["code"].as_str()),
            (Some("invalid_request_error"), Some("idempotency_key_reused"))
        );
        let a = parse(render(&err, ClientFormat::Anthropic));
        assert_eq!(a["error"]["type"], "invalid_request_error");
        let g = parse(render(&err, ClientFormat::Gemini));
        assert_eq!(
            (g["error"]["code"].as_u64(), g["error"]["status"].as_str()),
            (Some(422), Some("INVALID_ARGUMENT"))
        );
    }

    #[test]
    fn a_detail_is_one_line_and_dollars_show_cents() {
        assert_eq!(usd_with_cents(5_000_000_000), "5.00");
        assert_eq!(usd_with_cents(2_500_000_000), "2.50");
        assert_eq!(usd_with_cents(125_000_000), "0.125");
        let cap = GatewayError::SpendCapReached { cap_nano_usd: 5_000_000_000, why: "x".into() };
        let doc: serde_json::Value =
            serde_json::from_slice(&render_styled(&cap, ClientFormat::Openai, ErrorStyle::Detail, "r"))
                .unwrap();
        assert_eq!(doc, json!({"detail": "Spend cap reached: 5.00 USD"}));
        // Anthropic and Gemini callers keep their own shapes on any mount.
        let anthropic = render_styled(&cap, ClientFormat::Anthropic, ErrorStyle::Detail, "r");
        assert_eq!(anthropic, render_answer(&cap, ClientFormat::Anthropic, "r"));
    }
}
