//! Optional traces over OTLP/HTTP (`tracing.otlp_endpoint`; off unless
//! set): one span per request, named and attributed after OpenTelemetry's
//! GenAI conventions (`gen_ai.operation.name`, `gen_ai.provider.name`,
//! `gen_ai.request.model`, `gen_ai.usage.input_tokens` and
//! `output_tokens`), with a child span for each step it took: `admit`
//! (the limits and the hold), `upstream` (the provider's answer, relayed)
//! and `settle` (the bill). A request keeps only the times of its steps;
//! the spans are made from them when it ends (the access log's moment),
//! and the SDK's batch processor sends them from a thread of its own, in
//! OTLP's JSON encoding, through hyper on the store's runtime.

use crate::config::TracingSection;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

static TRACING: OnceLock<(SdkTracerProvider, SdkTracer)> = OnceLock::new();

/// How long an export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from the collector.
const MAX_ANSWER: usize = 64 * 1024;

/// Whether spans are made at all.
pub fn enabled() -> bool {
    TRACING.get().is_some()
}

/// Starts the exporter (once per process).
pub fn start(section: &TracingSection, runtime: &'static tokio::runtime::Runtime) -> Result<(), String> {
    let Some(endpoint) = section.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) else { return Ok(()) };
    let client = OnRuntime {
        runtime,
        client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(section.export_every_ms.max(10)))
        .build();
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name(section.service_name.clone()).build())
        .build();
    let tracer = provider.tracer("tollgate");
    let _ = TRACING.set((provider, tracer));
    log::info!(target: "tollgate", "traces sent to {endpoint} (OTLP/HTTP, JSON)");
    Ok(())
}

/// Sends what is left (at exit).
pub fn flush() {
    if let Some((provider, _)) = TRACING.get() {
        let _ = provider.force_flush();
    }
}

/// When each step of a request began and ended (wall clock).
#[derive(Debug, Clone)]
pub struct Marks {
    pub started: SystemTime,
    pub admit: Option<(SystemTime, SystemTime)>,
    pub upstream: Option<SystemTime>,
    pub settle: Option<(SystemTime, SystemTime)>,
}

impl Marks {
    /// Marks for a request starting now, when traces are on.
    pub fn start() -> Option<Box<Self>> {
        enabled()
            .then(|| Box::new(Self { started: SystemTime::now(), admit: None, upstream: None, settle: None }))
    }
}

/// What the request's span says of it.
pub struct Ended<'a> {
    pub route: &'a str,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub status: u16,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_nano_usd: Option<i64>,
    pub request_id: &'a str,
    pub failure: Option<&'a str>,
}

/// Makes the request's spans from its marks, ending now.
pub fn export(marks: &Marks, ended: &Ended<'_>) {
    let Some((_, tracer)) = TRACING.get() else { return };
    let now = SystemTime::now();
    let operation = if ended.route.contains("embedding") { "embeddings" } else { "chat" };
    let name = match ended.model {
        Some(model) => format!("{operation} {model}"),
        None => format!("{operation} {}", ended.route),
    };
    let mut attributes = vec![
        KeyValue::new("gen_ai.operation.name", operation),
        KeyValue::new("http.response.status_code", i64::from(ended.status)),
        KeyValue::new("tollgate.route", ended.route.to_string()),
        KeyValue::new("tollgate.request_id", ended.request_id.to_string()),
    ];
    if let Some(provider) = ended.provider {
        attributes.push(KeyValue::new("gen_ai.provider.name", provider.to_string()));
    }
    if let Some(model) = ended.model {
        attributes.push(KeyValue::new("gen_ai.request.model", model.to_string()));
    }
    for (key, value) in [
        ("gen_ai.usage.input_tokens", ended.input_tokens),
        ("gen_ai.usage.output_tokens", ended.output_tokens),
    ] {
        if let Some(v) = value {
            attributes.push(KeyValue::new(key, i64::try_from(v).unwrap_or(i64::MAX)));
        }
    }
    if let Some(cost) = ended.cost_nano_usd {
        attributes.push(KeyValue::new("tollgate.cost_nano_usd", cost));
    }
    let mut root = tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .with_start_time(marks.started)
        .with_attributes(attributes)
        .start(tracer);
    if ended.status >= 500 || ended.failure.is_some() {
        root.set_status(Status::error(ended.failure.unwrap_or("failed").to_string()));
    }
    let parent = Context::new().with_span(root);
    let child = |name: &'static str, from: SystemTime, to: SystemTime, kind: SpanKind| {
        let mut span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_start_time(from)
            .start_with_context(tracer, &parent);
        span.end_with_timestamp(to);
    };
    if let Some((from, to)) = marks.admit {
        child("admit", from, to, SpanKind::Internal);
    }
    if let Some(from) = marks.upstream {
        let to = marks.settle.map_or(now, |(settled, _)| settled);
        child("upstream", from, to, SpanKind::Client);
    }
    if let Some((from, to)) = marks.settle {
        child("settle", from, to, SpanKind::Internal);
    }
    parent.span().end_with_timestamp(now);
}

/// The exporter's HTTP client: hyper, run on the store's runtime (the
/// batch processor's thread has none of its own).
#[derive(Debug)]
struct OnRuntime {
    runtime: &'static tokio::runtime::Runtime,
    client:
        hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

#[async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        self.runtime
            .spawn(async move {
                let answer = tokio::time::timeout(EXPORT_TIMEOUT, client.request(request)).await??;
                let (parts, body) = answer.into_parts();
                let body = http_body_util::Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            })
            .await?
    }
}
