//! The mock upstream: OpenAI (Chat Completions and Responses), Anthropic
//! Messages and Gemini, served faithfully enough for the official SDKs,
//! for tests, benchmarks and the offline demo (no internet is needed).
//!
//! Paths: `/openai/v1/chat/completions`, `/openai/v1/responses`,
//! `/anthropic/v1/messages` (and `/count_tokens`),
//! `/gemini/{v1beta,v1}/models/{m}:generateContent|streamGenerateContent`.
//! `GET /_mock/requests[?tag=T]` lists what was received, `DELETE` clears it.
//!
//! Knobs, per request, by header: `x-mock-status` (answer this error
//! status), `x-mock-latency-ms` (before the response head),
//! `x-mock-ttfb-ms` (before the first body byte), `x-mock-chunks` (text
//! deltas, default 3), `x-mock-chunk-delay-ms`, `x-mock-cut-after` (drop
//! the connection after that many deltas), `x-mock-tag` (label recordings).

pub mod conversation;
pub mod knobs;
mod record;
pub mod replies;

pub use knobs::Knobs;
pub use record::Recorded;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use replies::Api;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Serves the mock on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let journal = Arc::new(record::Journal::default());
    loop {
        let (stream, _) = listener.accept().await?;
        // Without it every keep-alive request waits out Nagle and delayed ACK.
        let _ = stream.set_nodelay(true);
        let journal = journal.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, journal.clone()));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

type MockBody = http_body_util::Either<Full<Bytes>, ChannelBody>;

async fn handle(
    req: Request<Incoming>,
    journal: Arc<record::Journal>,
) -> Result<Response<MockBody>, Infallible> {
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
    journal.push(Recorded::new(&parts, &body));

    let knobs = Knobs::from_headers(&parts.headers);
    let Some(api) = Api::from_path(parts.method.as_str(), &path, &query) else {
        return Ok(json_response(
            404,
            br#"{"error":{"message":"mock: no such route","type":"invalid_request_error"}}"#.to_vec(),
        ));
    };
    if knobs.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(knobs.latency_ms)).await;
    }
    if let Some(status) = knobs.status {
        return Ok(json_response(status, api.error_body(status, "mock: error requested by x-mock-status")));
    }
    if !api.has_credentials(&parts.headers) {
        return Ok(json_response(401, api.error_body(401, "mock: missing provider credentials")));
    }
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Ok(json_response(400, api.error_body(400, &format!("mock: invalid JSON: {e}")))),
    };
    let convo = match conversation::Conversation::read(&api, &request) {
        Ok(c) => c,
        Err(why) => return Ok(json_response(400, api.error_body(400, &why))),
    };
    let reply = replies::Reply::new(&api, &request, body.len(), &knobs, &convo);
    if api.is_stream(&request) {
        let (tx, rx) = mpsc::channel(16);
        let events = reply.stream_events();
        tokio::spawn(async move {
            knobs.pace(events, tx).await;
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
    let body = reply.whole_body();
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

fn json_response(status: u16, body: Vec<u8>) -> Response<MockBody> {
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
