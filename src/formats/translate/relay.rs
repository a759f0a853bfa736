//! A provider's response translated for the caller: streams event by
//! event as chunks arrive (decode, parse to canonical, encode), documents
//! and errors once whole. Usage is read from the canonical events, so it
//! is the same whichever pair of formats is involved.

use super::{ClientContext, StreamEncoder, StreamParser, Translator};
use crate::error::GatewayError;
use crate::formats::canonical::{BlockKind, Part, Response, StreamEvent};
use crate::formats::framing::Framing;
use crate::formats::usage::Usage;
use crate::formats::{errors, ClientFormat};
use crate::sse::SseEvent;
use bytes::Bytes;

#[derive(Debug)]
pub struct StreamTranslation {
    decoder: Framing,
    parser: Box<dyn StreamParser>,
    encoder: Box<dyn StreamEncoder>,
    events: Vec<SseEvent>,
    canonical: Vec<StreamEvent>,
    buf: String,
    /// The size of the last write to the caller, to size the next one.
    last_write: usize,
    usage: Option<Usage>,
    failed: bool,
    /// A `Finish` or `Error` was encoded: the caller's stream is complete.
    terminated: bool,
}

impl StreamTranslation {
    pub fn new(translator: Translator, ctx: &ClientContext) -> Self {
        Self {
            decoder: Framing::sse(),
            parser: (translator.provider.stream_parser)(ctx),
            encoder: (translator.client.stream_encoder)(ctx),
            events: Vec::new(),
            canonical: Vec::new(),
            buf: String::new(),
            last_write: 0,
            usage: None,
            failed: false,
            terminated: false,
        }
    }

    /// Gives up on a provider event larger than `max` bytes.
    pub fn with_event_limit(mut self, max: usize) -> Self {
        self.decoder = std::mem::replace(&mut self.decoder, Framing::sse()).with_limit(max);
        self
    }

    /// Reads the provider's stream as a JSON array (Gemini without
    /// `alt=sse`) rather than as SSE; call before [`Self::with_event_limit`].
    pub fn with_json_array(mut self) -> Self {
        self.decoder = Framing::json_array();
        self
    }

    /// Translates what `chunk` completes; a partial event waits for the next.
    pub fn on_chunk(&mut self, chunk: &Bytes, out: &mut Vec<Bytes>) {
        if self.terminated {
            return;
        }
        self.decoder.feed(chunk, &mut self.events);
        for event in self.events.drain(..) {
            self.parser.on_event(&event, &mut self.canonical);
        }
        if self.decoder.overflowed() {
            self.canonical.push(StreamEvent::Error {
                status: 502,
                message: "the provider sent a stream event larger than the gateway accepts".into(),
            });
        }
        self.encode(out);
    }

    /// Whether the provider sent an event past the limit: nothing more
    /// of its stream can be read.
    pub fn overflowed(&self) -> bool {
        self.decoder.overflowed()
    }

    /// Whether the caller's format has a keep-alive to send during silences.
    pub fn has_keepalive(&self) -> bool {
        self.encoder.has_keepalive()
    }

    /// The provider has been silent: the caller's format's keep-alive, if it has one.
    pub fn keepalive(&mut self, out: &mut Vec<Bytes>) {
        self.encoder.keepalive(&mut self.buf);
        self.flush(out);
    }

    /// The upstream ended (cleanly or not): flush and close the caller's stream.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Option<Usage> {
        self.decoder.finish(&mut self.events);
        for event in self.events.drain(..) {
            self.parser.on_event(&event, &mut self.canonical);
        }
        self.parser.finish(&mut self.canonical);
        // A parser may end the stream only now (Gemini has no closing
        // event): that end is in `canonical`, not yet in `terminated`.
        let ends = self
            .canonical
            .iter()
            .any(|e| matches!(e, StreamEvent::Finish { .. } | StreamEvent::Error { .. }));
        if !self.terminated && !ends {
            self.canonical.push(StreamEvent::Error {
                status: 502,
                message: "the provider's stream ended early".into(),
            });
        }
        self.encode(out);
        self.encoder.finish(&mut self.buf);
        self.flush(out);
        self.usage
    }

    /// The caller's stream has its closing event (not yet written), with
    /// the usage the provider reported.
    pub fn ended(&self) -> Option<Option<Usage>> {
        self.terminated.then_some(self.usage)
    }

    /// Whether the provider reported an error in the stream.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn encode(&mut self, out: &mut Vec<Bytes>) {
        if !self.canonical.is_empty() && self.buf.capacity() == 0 {
            // Each write leaves with its buffer; growing the next one from
            // nothing cost several reallocations per event.
            self.buf.reserve(self.last_write.clamp(256, 16 * 1024));
        }
        for event in self.canonical.drain(..) {
            match &event {
                StreamEvent::Start { usage: Some(u), .. } => self.usage = Some(*u),
                StreamEvent::Finish { usage, .. } => {
                    // Zeros are a report that could not be read: no count.
                    self.usage = Some(*usage).filter(Usage::is_count);
                    self.terminated = true;
                }
                StreamEvent::Error { .. } => {
                    self.failed = true;
                    self.terminated = true;
                }
                _ => {}
            }
            self.encoder.encode(&event, &mut self.buf);
        }
        self.flush(out);
    }

    fn flush(&mut self, out: &mut Vec<Bytes>) {
        if !self.buf.is_empty() {
            self.last_write = self.buf.len();
            out.push(Bytes::from(std::mem::take(&mut self.buf)));
        }
    }
}

/// A whole upstream body translated: `(status, body, usage)`.
pub fn translate_document(
    translator: Translator,
    ctx: &ClientContext,
    status: u16,
    body: &[u8],
    client_streams: bool,
) -> (u16, Vec<u8>, Option<Usage>) {
    let client = translator.client.format;
    if !(200..300).contains(&status) {
        let err = (translator.provider.parse_error)(status, body);
        return (err.status(), errors::render(&err, client), None);
    }
    match (translator.provider.parse_response)(body) {
        Ok(resp) if client_streams => {
            // The provider answered a stream request with one document:
            // the caller still gets the stream it asked for.
            let mut encoder = (translator.client.stream_encoder)(ctx);
            let mut out = String::new();
            for event in events_from_response(&resp) {
                encoder.encode(&event, &mut out);
            }
            encoder.finish(&mut out);
            (200, out.into_bytes(), Some(resp.usage).filter(Usage::is_count))
        }
        Ok(resp) => {
            (200, (translator.client.build_response)(&resp, ctx), Some(resp.usage).filter(Usage::is_count))
        }
        Err(e) => {
            let err = GatewayError::UpstreamProtocol(format!("unreadable provider response: {e}"));
            (err.status(), errors::render(&err, client), None)
        }
    }
}

/// The content type of a translated response for `client`.
pub fn content_type(client: ClientFormat, stream: bool, gemini_sse: bool) -> &'static str {
    match (client, stream) {
        (ClientFormat::Gemini, true) if !gemini_sse => "application/json",
        (_, true) => "text/event-stream",
        (_, false) => "application/json",
    }
}

/// The canonical events a stream of `resp` would have carried.
pub fn events_from_response(resp: &Response) -> Vec<StreamEvent> {
    let mut events = vec![StreamEvent::Start {
        id: resp.id.clone(),
        model: resp.model.clone(),
        usage: Some(Usage { output_tokens: 0, reasoning_tokens: 0, ..resp.usage }),
    }];
    let mut index = 0;
    for part in &resp.content {
        match part {
            Part::Text(text) => {
                events.push(StreamEvent::BlockStart { index, kind: BlockKind::Text });
                events.push(StreamEvent::TextDelta { index, text: text.clone() });
            }
            Part::Thinking(t) => {
                events.push(StreamEvent::BlockStart { index, kind: BlockKind::Thinking });
                events.push(StreamEvent::ThinkingDelta { index, text: t.text.clone() });
                if let Some(signature) = &t.signature {
                    events.push(StreamEvent::Signature { index, signature: signature.clone() });
                }
            }
            Part::ToolCall(call) => {
                events.push(StreamEvent::BlockStart {
                    index,
                    kind: BlockKind::ToolCall {
                        id: call.id.clone(),
                        name: call.name.clone(),
                        signature: call.signature.clone(),
                    },
                });
                events.push(StreamEvent::ToolArguments { index, json: call.arguments.clone() });
            }
            Part::Media(_) | Part::ToolResult(_) | Part::RedactedThinking(_) => continue,
        }
        events.push(StreamEvent::BlockStop { index });
        index += 1;
    }
    events.push(StreamEvent::Finish {
        stop: resp.stop,
        stop_sequence: resp.stop_sequence.clone(),
        usage: resp.usage,
    });
    events
}
