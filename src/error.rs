//! The gateway's one error type. Every failure a caller can see is a
//! variant here; [`GatewayError::status`] maps each to its HTTP status
//! (exhaustively, so a new variant cannot ship without one) and
//! [`crate::formats::errors::render`] writes it in the caller's own format.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// No customer key was presented.
    MissingKey,
    /// A key was presented but matches no customer key.
    InvalidKey,
    /// The body is not valid JSON, or a required field is missing or mistyped.
    BadRequest(String),
    /// The request needs a translation this build cannot do yet.
    TranslationUnsupported { from: &'static str, to: &'static str },
    /// The request uses a feature the serving provider has no equivalent for.
    UnsupportedFeature { feature: String, provider_format: &'static str },
    /// The provider answered with an error, translated for the caller.
    Upstream { status: u16, message: String },
    /// The path is not an endpoint of any mount.
    RouteNotFound(String),
    /// The method is not allowed on an existing endpoint.
    MethodNotAllowed,
    /// The model id or alias is not in the catalog.
    ModelNotFound(String),
    /// The model is listed but not yet enabled.
    ModelComingSoon(String),
    /// The request body exceeds the configured maximum.
    PayloadTooLarge { limit: usize },
    /// The provider could not be reached (DNS, connect, TLS, reset before a response).
    UpstreamUnavailable(String),
    /// The provider did not answer within its timeout.
    UpstreamTimeout,
    /// The provider answered something that is not HTTP we can relay.
    UpstreamProtocol(String),
    /// The key was revoked or has expired (401).
    KeyNotUsable(&'static str),
    /// The operator suspended the account (403).
    AccountSuspended,
    /// The account's trial is over (402).
    TrialExpired,
    /// The wallet cannot pay for even a small answer (402).
    InsufficientCredits(String),
    /// The key's spend cap (`cap_nano_usd`) cannot pay for even a small
    /// answer (402).
    SpendCapReached { cap_nano_usd: i64, why: String },
    /// A retry of a request (same `Idempotency-Key`) still running (409).
    IdempotencyConflict,
    /// The `Idempotency-Key` was used by this API key for another request
    /// (method, path or body differ) (422).
    IdempotencyKeyReused,
    /// The call under this `Idempotency-Key` completed and was billed, but
    /// its answer was too large to keep for a replay (409).
    IdempotentAnswerNotKept,
    /// A rate limit refused the call (429): `rate_limit_exceeded` or
    /// `daily_limit`, with the headers that say when to retry.
    RateLimited { code: &'static str, message: String, headers: crate::limits::headers::Headers },
    /// A customer endpoint's object is not there, or not the caller's (404).
    NotFound(String),
    /// The `agentId` names no agent of the caller's account (404).
    AgentNotFound(String),
    /// The plan has no API access or does not include the model (403).
    UpgradeRequired(String),
    /// A limit of the key or its plan is 0: no call is let through (403,
    /// `limit_blocked`), never a 429 inviting retries.
    LimitBlocked(String),
    /// The gateway itself is out of a resource (file descriptors): not the
    /// provider's fault, and worth a retry.
    Overloaded(String),
    /// The shared rate limits (`hot_state`) cannot be reached and
    /// `on_failure` is `closed` (503): nothing went upstream.
    LimitsUnavailable(String),
    /// A bug or an unexpected state in the gateway itself.
    Internal(String),
}

/// The kind of an error, as the OpenAI and Anthropic error documents name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    /// The caller's key is valid but its plan does not allow the call.
    Permission,
    /// The caller's wallet cannot pay.
    Billing,
    NotFound,
    RequestTooLarge,
    RateLimited,
    Overloaded,
    Api,
    Timeout,
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::MissingKey | GatewayError::InvalidKey | GatewayError::KeyNotUsable(_) => 401,
            GatewayError::InsufficientCredits(_)
            | GatewayError::SpendCapReached { .. }
            | GatewayError::TrialExpired => 402,
            GatewayError::UpgradeRequired(_)
            | GatewayError::AccountSuspended
            | GatewayError::LimitBlocked(_) => 403,
            GatewayError::IdempotencyConflict | GatewayError::IdempotentAnswerNotKept => 409,
            GatewayError::IdempotencyKeyReused => 422,
            GatewayError::RateLimited { .. } => 429,
            GatewayError::NotFound(_) | GatewayError::AgentNotFound(_) => 404,
            GatewayError::BadRequest(_)
            | GatewayError::TranslationUnsupported { .. }
            | GatewayError::UnsupportedFeature { .. } => 400,
            // Anthropic's 529 "overloaded" is not a status other SDKs know.
            GatewayError::Upstream { status: 529, .. } => 503,
            GatewayError::Upstream { status, .. } if (400..=599).contains(status) => *status,
            GatewayError::Upstream { .. } => 502,
            GatewayError::RouteNotFound(_) | GatewayError::ModelNotFound(_) => 404,
            GatewayError::MethodNotAllowed => 405,
            GatewayError::PayloadTooLarge { .. } => 413,
            GatewayError::Internal(_) => 500,
            GatewayError::UpstreamUnavailable(_) | GatewayError::UpstreamProtocol(_) => 502,
            GatewayError::ModelComingSoon(_)
            | GatewayError::Overloaded(_)
            | GatewayError::LimitsUnavailable(_) => 503,
            GatewayError::UpstreamTimeout => 504,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            GatewayError::MissingKey | GatewayError::InvalidKey | GatewayError::KeyNotUsable(_) => {
                ErrorKind::Authentication
            }
            GatewayError::InsufficientCredits(_)
            | GatewayError::SpendCapReached { .. }
            | GatewayError::TrialExpired => ErrorKind::Billing,
            GatewayError::UpgradeRequired(_)
            | GatewayError::AccountSuspended
            | GatewayError::LimitBlocked(_) => ErrorKind::Permission,
            GatewayError::IdempotencyConflict
            | GatewayError::IdempotencyKeyReused
            | GatewayError::IdempotentAnswerNotKept => ErrorKind::InvalidRequest,
            GatewayError::RateLimited { .. } => ErrorKind::RateLimited,
            GatewayError::NotFound(_) | GatewayError::AgentNotFound(_) => ErrorKind::NotFound,
            GatewayError::BadRequest(_)
            | GatewayError::TranslationUnsupported { .. }
            | GatewayError::UnsupportedFeature { .. }
            | GatewayError::MethodNotAllowed => ErrorKind::InvalidRequest,
            GatewayError::Upstream { .. } => match self.status() {
                401 | 403 => ErrorKind::Authentication,
                404 => ErrorKind::NotFound,
                413 => ErrorKind::RequestTooLarge,
                429 => ErrorKind::RateLimited,
                503 => ErrorKind::Overloaded,
                504 => ErrorKind::Timeout,
                400..=499 => ErrorKind::InvalidRequest,
                _ => ErrorKind::Api,
            },
            GatewayError::RouteNotFound(_) | GatewayError::ModelNotFound(_) => ErrorKind::NotFound,
            GatewayError::PayloadTooLarge { .. } => ErrorKind::RequestTooLarge,
            GatewayError::ModelComingSoon(_)
            | GatewayError::Overloaded(_)
            | GatewayError::LimitsUnavailable(_) => ErrorKind::Overloaded,
            GatewayError::UpstreamUnavailable(_)
            | GatewayError::UpstreamProtocol(_)
            | GatewayError::Internal(_) => ErrorKind::Api,
            GatewayError::UpstreamTimeout => ErrorKind::Timeout,
        }
    }

    /// A short machine-readable code, stable across releases.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::MissingKey => "missing_api_key",
            GatewayError::InvalidKey | GatewayError::KeyNotUsable(_) => "invalid_api_key",
            GatewayError::AccountSuspended => "account_suspended",
            GatewayError::TrialExpired => "trial_expired",
            GatewayError::InsufficientCredits(_) => "insufficient_credits",
            GatewayError::SpendCapReached { .. } => "spend_cap_reached",
            GatewayError::IdempotencyConflict => "idempotency_conflict",
            GatewayError::IdempotencyKeyReused => "idempotency_key_reused",
            GatewayError::IdempotentAnswerNotKept => "idempotency_answer_not_kept",
            GatewayError::RateLimited { code, .. } => code,
            GatewayError::NotFound(_) => "not_found",
            GatewayError::AgentNotFound(_) => "agent_not_found",
            GatewayError::UpgradeRequired(_) => "upgrade_required",
            GatewayError::LimitBlocked(_) => "limit_blocked",
            GatewayError::BadRequest(_) => "invalid_request",
            GatewayError::TranslationUnsupported { .. } => "translation_unsupported",
            GatewayError::UnsupportedFeature { .. } => "unsupported_feature",
            GatewayError::Upstream { .. } => "upstream_error",
            GatewayError::RouteNotFound(_) => "route_not_found",
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::ModelComingSoon(_) => "model_coming_soon",
            GatewayError::PayloadTooLarge { .. } => "request_too_large",
            GatewayError::UpstreamUnavailable(_) => "upstream_unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::UpstreamProtocol(_) => "upstream_error",
            GatewayError::Overloaded(_) => "gateway_overloaded",
            GatewayError::LimitsUnavailable(_) => "limits_unavailable",
            GatewayError::Internal(_) => "internal_error",
        }
    }
}

impl GatewayError {
    /// Headers the caller's answer carries besides the body.
    pub fn headers(&self) -> &[(http::HeaderName, http::HeaderValue)] {
        match self {
            GatewayError::RateLimited { headers, .. } => headers,
            _ => &[],
        }
    }

    /// What the log gets beyond the caller's message: the cause of a
    /// provider or gateway failure, never shown to callers.
    pub fn detail(&self) -> Option<&str> {
        match self {
            GatewayError::UpstreamUnavailable(why)
            | GatewayError::UpstreamProtocol(why)
            | GatewayError::Overloaded(why)
            | GatewayError::LimitsUnavailable(why)
            | GatewayError::Internal(why) => Some(why),
            _ => None,
        }
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::MissingKey => f.write_str(
                "Missing API key: send it as 'Authorization: Bearer <key>', 'x-api-key', \
                 'anthropic-api-key', 'x-goog-api-key' or '?key='",
            ),
            GatewayError::InvalidKey => f.write_str("Invalid API key"),
            GatewayError::KeyNotUsable(why) => write!(f, "This API key has been {why}"),
            GatewayError::AccountSuspended => f.write_str("This account is suspended"),
            GatewayError::TrialExpired => f.write_str("Account trial has expired. Upgrade to continue."),
            GatewayError::SpendCapReached { why, .. } => write!(f, "Spend cap reached: {why}"),
            GatewayError::IdempotencyConflict => f.write_str(
                "A request with this Idempotency-Key is still in progress; retry once it has finished",
            ),
            GatewayError::IdempotencyKeyReused => f.write_str(
                "This Idempotency-Key was already used with a different request (method, path or body); \
                 use a new key for a new request. Nothing was billed",
            ),
            GatewayError::IdempotentAnswerNotKept => f.write_str(
                "The request with this Idempotency-Key completed and was billed, but its answer was too \
                 large to keep for a replay; use a new key to run it again",
            ),
            GatewayError::NotFound(what) => write!(f, "{what} not found"),
            GatewayError::AgentNotFound(id) => write!(f, "No agent '{id}' on this account"),
            GatewayError::RateLimited { message, .. } => f.write_str(message),
            GatewayError::InsufficientCredits(why) => {
                write!(f, "Insufficient credits: {why}; top up to continue")
            }
            GatewayError::UpgradeRequired(why) => write!(f, "Upgrade required: {why}"),
            GatewayError::LimitBlocked(why) => write!(f, "Blocked: {why}"),
            GatewayError::BadRequest(why) => write!(f, "Invalid request: {why}"),
            GatewayError::TranslationUnsupported { from, to } => write!(
                f,
                "This model is served by a provider that speaks the {to} format, and \
                 translation from the {from} format is not available on this gateway"
            ),
            GatewayError::UnsupportedFeature { feature, provider_format } => write!(
                f,
                "This model is served by a provider that speaks the {provider_format} format, \
                 which has no equivalent for {feature}"
            ),
            GatewayError::Upstream { message, .. } => f.write_str(message),
            GatewayError::RouteNotFound(path) => write!(f, "No endpoint at {path}"),
            GatewayError::MethodNotAllowed => f.write_str("Method not allowed on this endpoint"),
            GatewayError::ModelNotFound(model) => write!(f, "The model '{model}' does not exist"),
            GatewayError::ModelComingSoon(model) => {
                write!(f, "The model '{model}' is coming soon and cannot be called yet; nothing was billed")
            }
            GatewayError::PayloadTooLarge { limit } => {
                write!(f, "Request body is larger than the limit of {limit} bytes")
            }
            // What went wrong with the provider stays in the log (`detail`):
            // its addresses, headers and messages are the operator's business.
            GatewayError::UpstreamUnavailable(_) => f.write_str("The upstream provider could not be reached"),
            GatewayError::UpstreamTimeout => f.write_str("Upstream provider timed out"),
            GatewayError::UpstreamProtocol(_) => {
                f.write_str("The upstream provider sent a response the gateway cannot relay")
            }
            GatewayError::Overloaded(_) => f.write_str("The gateway is overloaded; retry shortly"),
            GatewayError::LimitsUnavailable(_) => {
                f.write_str("The rate limits cannot be checked right now; retry shortly")
            }
            GatewayError::Internal(_) => f.write_str("Internal gateway error"),
        }
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_documented_table() {
        assert_eq!(GatewayError::MissingKey.status(), 401);
        assert_eq!(GatewayError::ModelNotFound("x".into()).status(), 404);
        assert_eq!(GatewayError::ModelComingSoon("x".into()).status(), 503);
        assert_eq!(GatewayError::UpstreamUnavailable("x".into()).status(), 502);
        assert_eq!(GatewayError::UpstreamTimeout.status(), 504);
        assert_eq!(GatewayError::PayloadTooLarge { limit: 1 }.status(), 413);
        assert_eq!(GatewayError::IdempotencyKeyReused.status(), 422);
        assert_eq!(GatewayError::IdempotentAnswerNotKept.status(), 409);
    }

    #[test]
    fn provider_details_stay_out_of_the_message() {
        let secret = "10.0.0.7:443 set-cookie: s=1";
        for err in [
            GatewayError::UpstreamUnavailable(secret.into()),
            GatewayError::UpstreamProtocol(secret.into()),
            GatewayError::Internal(secret.into()),
        ] {
            assert!(!err.to_string().contains("10.0.0.7"), "{err}");
            assert_eq!(err.detail(), Some(secret));
        }
    }
}
