//! What translation costs the gateway, measured with criterion:
//!
//! - per stream event: a provider's stream (the mock upstream's own
//!   200-delta answer, and the golden tool-call streams) decoded, parsed to
//!   canonical events and encoded in the caller's format, for every
//!   (provider, client) pair; reported per provider event;
//! - per request: everything the gateway does to a request body before it
//!   goes upstream (`exchange::plan`: read the top level, resolve the model,
//!   parse to the canonical model, build the provider's body, estimate
//!   tokens), for the golden full requests and the requests the coding CLIs
//!   recorded, next to the same-format pass-through of the same body.
//!
//!   cargo bench --bench translation                 (all of it, ~3 minutes)
//!   cargo bench --bench translation -- stream/      (a filter)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;
use tollgate::config::parse_str;
use tollgate::exchange::plan;
use tollgate::formats::translate::relay::StreamTranslation;
use tollgate::formats::translate::{self, ClientContext};
use tollgate::formats::ClientFormat;
use tollgate::gateway::Gateway;
use tollgate::routing::{Endpoint, Route};
use tollgate::sse::SseDecoder;
use tollgate_mock::conversation::Conversation;
use tollgate_mock::knobs::Knobs;
use tollgate_mock::replies::{Api, Reply};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ctx() -> ClientContext {
    ClientContext {
        model: "client-model".into(),
        created: 1_767_225_600,
        include_usage: true,
        input_estimate: 42,
        gemini_sse: true,
        request_id: "req_bench".into(),
        ..ClientContext::default()
    }
}

/// The mock upstream's streamed answer in `provider`'s format, `deltas` text
/// deltas long: the same bytes the gateway reads from it in the e2e tests.
fn mock_stream(provider: ClientFormat, deltas: usize) -> Bytes {
    let (api, request) = match provider {
        ClientFormat::Openai => (
            Api::OpenaiChat,
            serde_json::json!({"model": "gpt-5.5", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hi"}]}),
        ),
        ClientFormat::Responses => {
            (Api::OpenaiResponses, serde_json::json!({"model": "gpt-5.5", "stream": true, "input": "hi"}))
        }
        ClientFormat::Anthropic => (
            Api::AnthropicMessages,
            serde_json::json!({"model": "claude-sonnet-4-6", "max_tokens": 1024, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        ),
        ClientFormat::Gemini => (
            Api::Gemini { model: "gemini-3-flash-preview".into(), stream: true, sse: true },
            serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
        ),
    };
    let knobs = Knobs { chunks: deltas, ..Knobs::default() };
    let convo = Conversation::read(&api, &request).unwrap();
    let reply = Reply::new(&api, &request, 100, &knobs, &convo);
    let bytes: Vec<u8> = reply.stream_events().into_iter().flat_map(|(b, _)| b.to_vec()).collect();
    Bytes::from(bytes)
}

fn event_count(stream: &Bytes) -> u64 {
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    decoder.feed(stream, &mut events);
    decoder.finish(&mut events);
    events.len() as u64
}

/// The stream as it arrives: one network read per event.
fn as_reads(stream: &Bytes) -> Vec<Bytes> {
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    decoder.feed(stream, &mut events);
    decoder.finish(&mut events);
    events.into_iter().map(|e| e.raw).collect()
}

fn streams(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let ctx = ctx();
    for provider in ClientFormat::ALL {
        let golden =
            std::fs::read(repo().join(format!("tests/golden/provider/{}.tools.sse", provider.as_str())))
                .unwrap();
        for (case, stream) in [("text200", mock_stream(provider, 200)), ("tools", Bytes::from(golden))] {
            let reads = as_reads(&stream);
            group.throughput(Throughput::Elements(event_count(&stream)));
            for client in ClientFormat::ALL {
                let Some(translator) = translate::translator(client, provider) else { continue };
                let id = BenchmarkId::new(format!("{}-to-{}", provider.as_str(), client.as_str()), case);
                group.bench_with_input(id, &reads, |b, reads| {
                    b.iter(|| {
                        let mut t = StreamTranslation::new(translator, &ctx);
                        let mut out = Vec::with_capacity(4);
                        for read in reads {
                            t.on_chunk(read, &mut out);
                            black_box(&out);
                            out.clear();
                        }
                        black_box(t.finish(&mut out))
                    })
                });
            }
        }
    }
    group.finish();
}

fn requests(c: &mut Criterion) {
    let yaml = std::fs::read_to_string(repo().join("conf/every-kind.yaml")).unwrap();
    let config = parse_str(&yaml, &|_| None).or_else(|_| parse_str(&yaml, &|_| Some("1".into()))).unwrap();
    let gateway = Gateway::from_config(&config).unwrap();
    let models = [
        (ClientFormat::Openai, "deepseek-v4"),
        (ClientFormat::Responses, "gpt-5.5-pro"),
        (ClientFormat::Anthropic, "claude-sonnet-4-6"),
        (ClientFormat::Gemini, "gemini-3-flash-preview"),
    ];
    let bodies: Vec<(ClientFormat, String, Vec<u8>)> = [
        ("openai", "golden/client/openai.full.json"),
        ("responses", "golden/client/responses.full.json"),
        ("anthropic", "golden/client/anthropic.full.json"),
        ("gemini", "golden/client/gemini.full.json"),
        ("anthropic", "fixtures/cli/anthropic.claude-code-1.json"),
        ("responses", "fixtures/cli/responses.codex-1.json"),
        ("gemini", "fixtures/cli/gemini.gemini-cli-1.json"),
        ("openai", "fixtures/cli/openai.opencode-2.json"),
    ]
    .into_iter()
    .map(|(f, path)| {
        let format = *ClientFormat::ALL.iter().find(|x| x.as_str() == f).unwrap();
        let name = path.rsplit('/').next().unwrap().trim_end_matches(".json").to_string();
        (format, name, std::fs::read(repo().join("tests").join(path)).unwrap())
    })
    .collect();

    let mut group = c.benchmark_group("request");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for (client, name, body) in &bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        for (provider, model) in models {
            let mut body = body.clone();
            set_model(&mut body, *client, model);
            let body = Bytes::from(body);
            let endpoint = match client {
                ClientFormat::Openai => Endpoint::ChatCompletions,
                ClientFormat::Responses => Endpoint::Responses,
                ClientFormat::Anthropic => Endpoint::Messages,
                ClientFormat::Gemini => Endpoint::GenerateContent { model: model.to_string(), stream: true },
            };
            let route = Route { format: *client, endpoint, style: Default::default() };
            // A pass-through or a translation, as the gateway decides it;
            // pairs the gateway refuses (stop sequences on Responses) are skipped.
            let Ok(planned) = plan(&gateway, &route, body.clone(), None, &http::HeaderMap::new(), "req")
            else {
                continue;
            };
            let kind = if planned.translation.is_some() { "to" } else { "same" };
            let id = BenchmarkId::new(name.as_str(), format!("{kind}-{}", provider.as_str()));
            group.bench_with_input(id, &body, |b, body| {
                b.iter(|| {
                    black_box(
                        plan(&gateway, &route, body.clone(), None, &http::HeaderMap::new(), "req").unwrap(),
                    )
                })
            });
        }
    }
    group.finish();
}

/// Points a recorded request at `model` (Gemini names it in the path).
fn set_model(body: &mut Vec<u8>, format: ClientFormat, model: &str) {
    if format == ClientFormat::Gemini {
        return;
    }
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["model"] = serde_json::json!(model);
    *body = serde_json::to_vec(&v).unwrap();
}

criterion_group!(benches, streams, requests);
criterion_main!(benches);
