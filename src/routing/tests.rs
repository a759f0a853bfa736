use super::*;
use ClientFormat::*;

fn zenn_layout() -> Router {
    Router::new(&[
        MountConfig {
            prefix: "/".into(),
            formats: ClientFormat::ALL.to_vec(),
            error_style: Default::default(),
        },
        MountConfig { prefix: "/api/v1".into(), formats: vec![Anthropic], error_style: Default::default() },
        MountConfig {
            prefix: "/api/v1/codex".into(),
            formats: vec![Openai, Responses],
            error_style: Default::default(),
        },
        MountConfig {
            prefix: "/api/v1/gemini".into(),
            formats: vec![Gemini, Openai],
            error_style: Default::default(),
        },
    ])
}

fn route(r: &Router, method: &str, path: &str) -> Result<Route, GatewayError> {
    r.route(method, path, FormatHints::default())
}

#[test]
fn root_mount_serves_every_format() {
    let r = zenn_layout();
    assert_eq!(route(&r, "POST", "/v1/chat/completions").unwrap().endpoint, Endpoint::ChatCompletions);
    assert_eq!(route(&r, "POST", "/v1/responses").unwrap().format, Responses);
    assert_eq!(route(&r, "POST", "/v1/messages").unwrap().format, Anthropic);
    assert_eq!(route(&r, "POST", "/v1/messages/count_tokens").unwrap().endpoint, Endpoint::CountTokens);
    let g = route(&r, "POST", "/v1beta/models/gemini-3-flash-preview:streamGenerateContent").unwrap();
    assert_eq!(
        g.endpoint,
        Endpoint::GenerateContent { model: "gemini-3-flash-preview".into(), stream: true }
    );
    let g1 = route(&r, "POST", "/v1/models/gemini-3-flash-preview:generateContent").unwrap();
    assert_eq!(g1.format, Gemini);
}

#[test]
fn openai_model_get_is_not_gemini() {
    let r = zenn_layout();
    let m = route(&r, "GET", "/v1/models/openai/gpt-5.5").unwrap();
    assert_eq!((m.format, m.endpoint), (Openai, Endpoint::GetModel { id: "openai/gpt-5.5".into() }));
    assert_eq!(route(&r, "GET", "/v1/models").unwrap().endpoint, Endpoint::ListModels);
}

#[test]
fn seed_layout_mounts_by_longest_prefix() {
    let r = zenn_layout();
    assert_eq!(route(&r, "POST", "/api/v1/messages").unwrap().format, Anthropic);
    assert_eq!(route(&r, "POST", "/api/v1/v1/messages").unwrap().format, Anthropic);
    assert_eq!(route(&r, "POST", "/api/v1/codex/chat/completions").unwrap().format, Openai);
    assert_eq!(route(&r, "POST", "/api/v1/codex/responses").unwrap().format, Responses);
    assert_eq!(route(&r, "POST", "/api/v1/gemini/chat/completions").unwrap().format, Openai);
    assert_eq!(route(&r, "POST", "/api/v1/gemini/v1beta/models/g:generateContent").unwrap().format, Gemini);
    // The Anthropic-only mount does not serve OpenAI chat.
    assert!(matches!(route(&r, "POST", "/api/v1/chat/completions"), Err(GatewayError::RouteNotFound(_))));
    // A prefix matches on segment boundaries only.
    assert!(route(&r, "POST", "/api/v1codex/responses").is_err());
}

#[test]
fn wrong_method_and_unknown_paths() {
    let r = zenn_layout();
    assert_eq!(route(&r, "GET", "/v1/chat/completions"), Err(GatewayError::MethodNotAllowed));
    assert!(matches!(route(&r, "POST", "/nope"), Err(GatewayError::RouteNotFound(_))));
    assert!(matches!(route(&r, "POST", "/v1beta/models/x:explode"), Err(GatewayError::RouteNotFound(_))));
    assert_eq!(route(&r, "GET", "/health").unwrap().endpoint, Endpoint::Health);
    assert_eq!(route(&r, "GET", "/readyz").unwrap().endpoint, Endpoint::Health);
    assert_eq!(route(&r, "GET", "/livez").unwrap().endpoint, Endpoint::Live);
}

#[test]
fn model_list_format_follows_the_caller() {
    let r = zenn_layout();
    let hints = FormatHints { anthropic: true, gemini: false };
    assert_eq!(r.route("GET", "/v1/models", hints).unwrap().format, Anthropic);
    let hints = FormatHints { anthropic: false, gemini: true };
    assert_eq!(r.route("GET", "/v1/models", hints).unwrap().format, Gemini);
    assert_eq!(route(&r, "GET", "/v1beta/models").unwrap().format, Gemini);
}

/// A charge's kept group reads back as the endpoint's own, so a restart
/// rebuilds each hourly window from its own calls.
#[test]
fn a_kept_group_reads_back_as_its_endpoints() {
    for endpoint in [
        Endpoint::Responses,
        Endpoint::Embeddings,
        Endpoint::Rerank,
        Endpoint::Images,
        Endpoint::ChatCompletions,
    ] {
        let group = endpoint.limit_group();
        assert!(LIMIT_GROUPS.contains(&group), "{endpoint:?}");
        assert_eq!(Endpoint::limit_group_named(Some(group)), group, "{endpoint:?}");
    }
    assert_eq!(Endpoint::limit_group_named(None), "messages");
    assert_eq!(Endpoint::limit_group_named(Some("no-such-group")), "messages");
}
