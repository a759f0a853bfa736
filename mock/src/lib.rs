//! The mock upstream: OpenAI (Chat Completions and Responses), Anthropic
//! Messages and Gemini, served faithfully enough for the official SDKs,
//! for tests, benchmarks and the offline demo (no internet is needed).
//!
//! Paths: `/openai/v1/chat/completions`, `/openai/v1/responses`,
//! `/anthropic/v1/messages` (and `/count_tokens`),
//! `/gemini/{v1beta,v1}/models/{m}:generateContent|streamGenerateContent`;
//! embeddings at `/openai/v1/embeddings` and
//! `/gemini/v1beta/models/{m}:batchEmbedContents|embedContent`; reranking
//! at `/cohere/v2/rerank` and `/jina/v1/rerank`; images at
//! `/openai/v1/images/generations` (queued with `x-mock-image-async-ms`)
//! and Gemini's `generateContent` asked for images.
//! `GET /_mock/requests[?tag=T]` lists what was received, `DELETE` clears it.
//!
//! Knobs, per request, by header: `x-mock-status` (answer this error
//! status), `x-mock-latency-ms` (before the response head),
//! `x-mock-ttfb-ms` (before the first body byte), `x-mock-chunks` (text
//! deltas, default 3), `x-mock-chunk-delay-ms`, `x-mock-cut-after` (drop
//! the connection after that many deltas), `x-mock-tag` (label recordings),
//! `x-mock-retry-after` (sent back as the error's `retry-after`),
//! `x-mock-only-model` (the knobs apply only to calls for that upstream
//! model: one deployment of several fails, the others answer),
//! `x-mock-fault` (see [`knobs::Fault`]), `x-mock-usage` (a usage report
//! of a shape no reader understands: `negative`, `fractional`, `missing`,
//! `wrapped`; see [`broken`]).

pub mod api;
pub mod broken;
pub mod conversation;
pub mod embeddings;
pub mod faults;
pub mod images;
pub mod knobs;
mod record;
pub mod replies;
pub mod rerank;
pub mod tls;
mod wire;

pub use knobs::Knobs;
pub use record::Recorded;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use replies::Api;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// Serves the mock on `listener` until the process ends: plain HTTP/1.1,
/// or TLS with HTTP/2 and HTTP/1.1 as ALPN offers them.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>) -> std::io::Result<()> {
    let journal = Arc::new(record::Journal::default());
    let mut connections = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        connections += 1;
        let conn = connections;
        // Without it every keep-alive request waits out Nagle and delayed ACK.
        let _ = stream.set_nodelay(true);
        let journal = journal.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else { return serve_http1(stream, journal, conn).await };
            let Ok(stream) = acceptor.accept(stream).await else { return };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                let service = service_fn(move |req| handle(req, journal.clone(), conn));
                let _ = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            } else {
                serve_http1(stream, journal, conn).await;
            }
        });
    }
}

/// One HTTP/1.1 connection: by hand when its first request asks for a raw
/// fault ([`faults`]), by hyper otherwise.
async fn serve_http1<S>(mut stream: S, journal: Arc<record::Journal>, conn: u64)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(head) = faults::read_head(&mut stream).await else { return };
    if head.is_empty() {
        return;
    }
    if let Some(fault) = faults::requested(&head) {
        let _ = faults::serve_raw(stream, head, &fault, journal, conn).await;
        return;
    }
    let service = service_fn(move |req| hyper_request(req, journal.clone(), conn));
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(faults::Rewind::new(head, stream)), service)
        .await;
}

/// A request on a connection hyper serves. A raw fault can only be served
/// on a fresh connection: closing this one unanswered makes the gateway
/// retry on a new connection, as it does for any stale pooled connection.
async fn hyper_request<B>(
    req: Request<B>,
    journal: Arc<record::Journal>,
    conn: u64,
) -> Result<Response<MockBody>, std::io::Error>
where
    B: Body,
{
    if req.headers().contains_key(faults::RAW_HEADER) {
        return Err(std::io::Error::other("raw fault on a reused connection"));
    }
    let Ok(response) = handle(req, journal, conn).await;
    Ok(response)
}

pub type MockBody = http_body_util::Either<Full<Bytes>, ChannelBody>;

async fn handle<B>(
    req: Request<B>,
    journal: Arc<record::Journal>,
    conn: u64,
) -> Result<Response<MockBody>, Infallible>
where
    B: Body,
{
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();

    if path == "/_mock/requests" {
        return Ok(match parts.method.as_str() {
            "DELETE" => {
                journal.clear();
                json_response(200, b"{}".to_vec())
            }
            _ => json_response(200, journal.list(record::tag_from_query(&query).as_deref())),
        });
    }
    if path == "/health" {
        return Ok(json_response(200, b"{\"status\":\"ok\"}".to_vec()));
    }
    if parts.version == hyper::Version::HTTP_2 && parts.headers.contains_key(hyper::header::HOST) {
        // As nginx does: an h2 request carries its authority in `:authority`.
        return Ok(json_response(400, b"client sent duplicate host header".to_vec()));
    }
    let seq = journal.push(Recorded::new(&parts, &body, conn));

    let mut knobs = Knobs::from_headers(&parts.headers);
    if let Some(only) = parts.headers.get("x-mock-only-model").and_then(|v| v.to_str().ok()) {
        // The knobs are for one model's calls (one deployment of several).
        if model_of(&path, &body).as_deref() != Some(only) {
            knobs = Knobs::from_headers(&hyper::HeaderMap::new());
        }
    }
    if let Some(endpoint) = embeddings::Endpoint::from_path(parts.method.as_str(), &path) {
        return Ok(embeddings::serve(endpoint, &parts.headers, &body, &knobs).await);
    }
    if let Some(endpoint) = rerank::Endpoint::from_path(parts.method.as_str(), &path) {
        return Ok(rerank::serve(endpoint, &parts.headers, &body, &knobs).await);
    }
    if let Some(endpoint) = images::Endpoint::from_path(parts.method.as_str(), &path) {
        return Ok(images::serve(endpoint, &parts.headers, &body, &knobs).await);
    }
    let Some(api) = Api::from_path(parts.method.as_str(), &path, &query) else {
        return Ok(json_response(
            404,
            br#"{"error":{"message":"mock: no such route","type":"invalid_request_error"}}"#.to_vec(),
        ));
    };
    if knobs.latency_ms > 0 {
        // hyper drops this future if the gateway hangs up meanwhile.
        let watch = record::Abandonment::watch(&journal, seq);
        tokio::time::sleep(std::time::Duration::from_millis(knobs.latency_ms)).await;
        watch.disarm();
    }
    if let Some(status) = knobs.status {
        return Ok(knob_error(&api, status, &parts.headers));
    }
    if !api.has_credentials(&parts.headers) {
        return Ok(json_response(401, api.error_body(401, "mock: missing provider credentials")));
    }
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Ok(json_response(400, api.error_body(400, &format!("mock: invalid JSON: {e}")))),
    };
    if let (Api::Gemini { .. }, Some(doc)) = (&api, images::gemini(&request)) {
        return Ok(json_response(200, serde_json::to_vec(&doc).unwrap_or_default()));
    }
    let convo = match conversation::Conversation::read(&api, &request) {
        Ok(c) => c,
        Err(why) => return Ok(json_response(400, api.error_body(400, &why))),
    };
    let sse_always = knobs.fault == Some(knobs::Fault::SseAlways);
    let api = match api {
        Api::Gemini { model, stream, .. } if sse_always => Api::Gemini { model, stream, sse: true },
        Api::Gemini { model, stream, .. } if knobs.fault == Some(knobs::Fault::GeminiArray) => {
            Api::Gemini { model, stream, sse: false }
        }
        other => other,
    };
    let reply = replies::Reply::new(&api, &request, body.len(), &knobs, &convo);
    if api.is_stream(&request) || sse_always {
        let (tx, rx) = mpsc::channel(16);
        let mut events = reply.stream_events();
        if let Some(shape) = knobs.usage {
            events = shape.events(&api, events);
        }
        match knobs.fault {
            Some(knobs::Fault::LateUsage) => events = broken::late_usage(&api, events),
            Some(knobs::Fault::ErrorAfter) => {
                events = broken::error_after(&api, events, knobs.cut_after.take().unwrap_or(0));
            }
            _ => {}
        }
        tokio::spawn(async move {
            if !knobs.pace(events, tx).await {
                journal.abandoned(seq);
            }
        });
        let mut resp = Response::new(http_body_util::Either::Right(ChannelBody(rx)));
        *resp.status_mut() = hyper::StatusCode::OK;
        let content_type = if api.sse_framing() { "text/event-stream" } else { "application/json" };
        resp.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static(content_type));
        resp.headers_mut().insert("cache-control", hyper::header::HeaderValue::from_static("no-cache"));
        resp.headers_mut()
            .insert("x-mock-upstream-secret", hyper::header::HeaderValue::from_static("provider-internal"));
        return Ok(resp);
    }
    let body = match knobs.usage {
        Some(shape) => shape.whole_body(reply.whole_body()),
        None => reply.whole_body(),
    };
    if let Some(cut) = knobs.cut_after {
        // A document cut short: promise the whole length, send part, drop.
        let (tx, rx) = mpsc::channel(2);
        let partial = Bytes::copy_from_slice(&body[..body.len().min(cut as usize * 8)]);
        tokio::spawn(async move {
            let _ = tx.send(Ok(Frame::data(partial))).await;
            let _ = tx.send(Err(std::io::Error::other("cut"))).await;
        });
        let mut resp = Response::new(http_body_util::Either::Right(ChannelBody(rx)));
        resp.headers_mut()
            .insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
        if let Ok(v) = hyper::header::HeaderValue::from_str(&body.len().to_string()) {
            resp.headers_mut().insert("content-length", v);
        }
        return Ok(resp);
    }
    Ok(json_response(200, body))
}

/// The error `x-mock-status` asks for, with `x-mock-retry-after` as its
/// `retry-after`.
fn knob_error(api: &Api, status: u16, headers: &hyper::HeaderMap) -> Response<MockBody> {
    let mut answer = json_response(status, api.error_body(status, "mock: error requested by x-mock-status"));
    if let Some(after) = headers.get("x-mock-retry-after") {
        answer.headers_mut().insert("retry-after", after.clone());
    }
    answer
}

/// What every endpoint besides chat does first, as its provider would:
/// the latency and status knobs, then the credentials `api` needs. `Some`
/// is the answer to give instead.
pub(crate) async fn preflight(
    api: &Api,
    headers: &hyper::HeaderMap,
    knobs: &Knobs,
) -> Option<Response<MockBody>> {
    if knobs.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(knobs.latency_ms)).await;
    }
    if let Some(status) = knobs.status {
        return Some(knob_error(api, status, headers));
    }
    if !api.has_credentials(headers) {
        return Some(json_response(401, api.error_body(401, "mock: missing provider credentials")));
    }
    None
}

/// The model a request is for: in a Gemini path, else the body's `model`.
fn model_of(path: &str, body: &[u8]) -> Option<String> {
    if let Some(rest) = path.split("/models/").nth(1) {
        return rest.split(':').next().map(str::to_string);
    }
    serde_json::from_slice::<serde_json::Value>(body).ok()?.get("model")?.as_str().map(str::to_string)
}

pub(crate) fn json_response(status: u16, body: Vec<u8>) -> Response<MockBody> {
    let mut resp = Response::new(http_body_util::Either::Left(Full::new(Bytes::from(body))));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    resp
}

/// A response body fed from a channel; an `Err` item drops the connection.
pub struct ChannelBody(mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx)
    }
}
