//! What is known about one request as it goes, for the access log and metrics.

use crate::billing::{Admission, Billing, Charge, Clock as _, Ending};
use crate::drain::InFlight;
use crate::exchange::idempotency::Idempotent;
use crate::formats::usage::Usage;
use crate::metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct RequestCtx {
    pub started: Instant,
    pub request_id: String,
    pub route: &'static str,
    pub format: &'static str,
    pub key_name: Option<Arc<str>>,
    pub provider: Option<String>,
    pub model: Option<Arc<str>>,
    /// Status the gateway decided on (the written one wins when they differ).
    pub status: u16,
    pub upstream_ttfb: Option<Duration>,
    pub usage: Option<Usage>,
    /// `usage` is the gateway's own count (the provider sends none).
    pub usage_estimated: bool,
    /// Priced units besides tokens the answer used (search units, images).
    pub units: u64,
    /// A translated Responses call to keep once answered (`store`).
    pub keep_response: Option<Box<crate::exchange::stored::Keep>>,
    /// The deployment that served a model with several, and the call's
    /// place in its in-flight count (freed with the context).
    pub deployment: Option<Box<(String, crate::providers::deployment::InFlight)>>,
    /// Why the request did not end cleanly, for the access log.
    pub failure: Option<String>,
    /// The gateway's error code when it refused or failed the call.
    pub error_code: Option<&'static str>,
    pub method: String,
    pub path: String,
    /// The request's query as sent; the URI Pingora keeps has the key masked.
    pub query: Option<String>,
    /// The account billed, and the hold to settle when the request ends.
    pub account: Option<Arc<str>>,
    pub bill: Option<Box<(Arc<Billing>, Admission)>>,
    /// What the settled hold charged.
    pub charge: Option<Charge>,
    pub key_id: Option<u64>,
    /// The model the caller asked for, when a key's fallback served it.
    pub fallback_from: Option<Arc<str>>,
    /// Stream events relayed to the caller, or for a document (or a JSON
    /// array stream) its text at four bytes a token: the output estimate
    /// when the provider's count never arrives or cannot be read.
    pub relayed_events: u64,
    /// The response ended as the provider meant it to (not cut, not left).
    pub completed: bool,
    /// What the call took from the rate limits, to give back when it ends.
    pub permit: Option<Box<crate::hot::Taken>>,
    /// The rate-limit headers its answer carries.
    pub limit_headers: crate::limits::headers::Headers,
    /// A call under an `Idempotency-Key`, capturing what its caller gets.
    pub idempotent: Option<Box<Idempotent>>,
    /// That call ended (its status, whether it completed): the logging
    /// hook settles its key.
    pub idempotent_end: Option<(Box<Idempotent>, u16, bool)>,
    /// When its steps began and ended, when traces are on.
    pub marks: Option<Box<crate::traces::Marks>>,
    /// `finish` ran: the request is accounted for.
    finished: bool,
    /// Keeps a draining process alive until this request is done.
    _in_flight: InFlight,
}

/// How a failure caused by the caller leaving is worded.
pub const CLIENT_GONE: &str = "client went away";

/// Request ids, which also key the request's hold and ledger records: a
/// UUIDv7, unique across restarts and the nodes of a fleet without
/// coordination (a repeated id would be dropped by the store as a
/// duplicate record) and sortable by time. Its 74 bits after the
/// millisecond are a per-process counter and, last, 32 random bits drawn
/// once per process (so the last 8 hex digits name the process, and the
/// hot path draws no random number).
fn new_request_id() -> String {
    static PROCESS: std::sync::OnceLock<[u8; 4]> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| {
        let mut bytes = [0u8; 4];
        if getrandom::getrandom(&mut bytes).is_err() {
            bytes = std::process::id().to_be_bytes();
        }
        bytes
    });
    let counter = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_be_bytes();
    let mut rest = [0u8; 10];
    rest[..6].copy_from_slice(&counter[2..]);
    rest[6..].copy_from_slice(process);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &rest).into_uuid();
    let mut out = String::with_capacity(36);
    out.push_str("req_");
    out.push_str(id.simple().encode_lower(&mut uuid::Uuid::encode_buffer()));
    out
}

impl RequestCtx {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            request_id: new_request_id(),
            route: "unrouted",
            format: "none",
            key_name: None,
            provider: None,
            model: None,
            status: 0,
            upstream_ttfb: None,
            usage: None,
            usage_estimated: false,
            units: 0,
            deployment: None,
            keep_response: None,
            failure: None,
            error_code: None,
            method: String::new(),
            path: String::new(),
            query: None,
            account: None,
            bill: None,
            charge: None,
            key_id: None,
            fallback_from: None,
            relayed_events: 0,
            completed: false,
            idempotent: None,
            idempotent_end: None,
            permit: None,
            limit_headers: Vec::new(),
            marks: crate::traces::Marks::start(),
            finished: false,
            _in_flight: InFlight::enter(),
        }
    }

    pub fn client_went_away(&self) -> bool {
        self.failure.as_deref().is_some_and(|f| f.starts_with(CLIENT_GONE))
    }

    /// The content type of the answer a replay would repeat.
    pub fn answer_type(&mut self, content_type: &str) {
        if let Some(i) = &mut self.idempotent {
            i.content_type(content_type);
        }
    }

    /// What is about to be written to the caller, for a replay.
    pub fn capture<B: AsRef<[u8]>>(&mut self, out: &[B]) {
        if let Some(i) = &mut self.idempotent {
            i.capture(out);
        }
    }

    /// The provider refused the call (an error status): an attempt never
    /// kept for a replay, so its `Idempotency-Key` is let go before the
    /// caller sees the answer, and a retry at once runs anew.
    pub async fn forget_attempt(&mut self, status: u16) {
        if !(200..300).contains(&status) {
            if let Some(i) = self.idempotent.take() {
                // Boxed: a rare step, not to be part of every stream's future.
                Box::pin(i.finish(status, false)).await;
            }
        }
    }

    /// Counts the stream events about to be written to the caller.
    pub fn relayed(&mut self, out: &[bytes::Bytes]) {
        for chunk in out {
            self.relayed_events += memchr::memmem::find_iter(chunk, b"data:").count() as u64;
        }
    }

    /// Settles the hold by how the request ended (once; later calls do
    /// nothing). Called before a response's last bytes are written, and
    /// from `finish` for requests that ended any other way.
    pub fn settle(&mut self) {
        let Some(bill) = self.bill.take() else { return };
        let (billing, admission) = *bill;
        let ending = Ending {
            usage: self.usage,
            usage_estimated: self.usage_estimated,
            relayed_output_tokens: self.relayed_events,
            relayed_any: self.relayed_events > 0,
            completed: self.completed,
            units: self.units,
        };
        let (model, plan) = (admission.model.clone(), admission.account.plan.clone());
        let from = self.marks.as_ref().map(|_| std::time::SystemTime::now());
        self.charge = billing.settle(admission, &ending, &self.request_id);
        if let (Some(marks), Some(from)) = (self.marks.as_mut(), from) {
            marks.settle = Some((from, std::time::SystemTime::now()));
        }
        if let Some(charge) = &self.charge {
            metrics::spend(&model, &plan.name, charge.cost.0);
            if charge.unpaid.0 > 0 {
                metrics::unpaid(&model, &plan.name, charge.unpaid.0);
                log::warn!(
                    target: "tollgate",
                    "{} UNPAID: {model} cost {} nano-USD more than the hold, the wallet and the key's cap could pay",
                    self.request_id,
                    charge.unpaid.0
                );
            }
        }
    }

    /// Called once, from the logging hook (or, for a request whose task
    /// was dropped, from `drop`).
    pub fn finish(&mut self, written_status: Option<u16>, pingora_error: bool) {
        self.finished = true;
        self.settle();
        if let Some(permit) = self.permit.take() {
            let billed = self.charge.is_some_and(|c| c.cost.0 > 0 || c.unpaid.0 > 0);
            let input = self.charge.map(|c| c.usage.input_tokens).or(self.usage.map(|u| u.input_tokens));
            let charged = self.charge.map_or(0, |c| u64::try_from(c.cost.0).unwrap_or(0));
            permit.finish(billed, input, crate::billing::SystemClock.monotonic_ms(), charged);
        }
        if let Some(i) = self.idempotent.take() {
            let status = written_status.unwrap_or(self.status);
            let completed = self.completed && !pingora_error && self.failure.is_none();
            self.idempotent_end = Some((i, status, completed));
        }
        let status = written_status.unwrap_or(if pingora_error { 500 } else { self.status });
        let duration = self.started.elapsed();
        let provider = self.provider.as_deref().unwrap_or("none");
        let model = self.model.as_deref().unwrap_or("none");
        metrics::record(&metrics::RequestRecord {
            route: self.route,
            format: self.format,
            provider,
            model,
            status,
            duration,
            upstream_ttfb: self.upstream_ttfb,
            usage: self.usage,
            error_code: self.error_code,
        });
        if (200..300).contains(&status)
            && self.provider.is_some()
            && self.route != "count_tokens"
            && self.usage.is_none()
        {
            // Whatever the cause, a call without a count must be seen.
            metrics::unmetered(provider, model);
            let billed = match self.charge {
                Some(c) if c.cost.0 > 0 => format!("billed an estimate of {} nano-USD", c.cost.0),
                _ => "nothing billed".to_string(),
            };
            log::warn!(
                target: "tollgate",
                "{} UNMETERED: {} answered {status} for {model} without readable usage; {billed}",
                self.request_id,
                provider,
            );
        }
        let u = self.charge.map_or(self.usage.unwrap_or_default(), |c| c.usage);
        let duration_ms = duration.as_secs_f64() * 1000.0;
        let ttfb_ms = self.upstream_ttfb.map(|t| t.as_secs_f64() * 1000.0);
        let cost = self.charge.map(|c| c.cost.0);
        let estimated = self.charge.is_some_and(|c| c.estimated);
        // The same fields twice: in the text of the line, and as key-values,
        // which the JSON log writes as keys of their own (`log.format: json`).
        log::info!(
            target: "access",
            request_id = self.request_id.as_str(),
            method = self.method.as_str(),
            path = self.path.as_str(),
            status = status,
            route = self.route,
            format = self.format,
            key = self.key_name.as_deref(),
            key_id = self.key_id,
            account = self.account.as_deref(),
            provider = provider,
            model = model,
            fallback_from = self.fallback_from.as_deref(),
            deployment = self.deployment.as_deref().map(|(label, _)| label.as_str()),
            duration_ms = duration_ms,
            upstream_ttfb_ms = ttfb_ms,
            input_tokens = u.input_tokens,
            output_tokens = u.output_tokens,
            cached_tokens = u.cached_input_tokens,
            cache_write_tokens = u.cache_write_tokens,
            reasoning_tokens = u.reasoning_tokens,
            cost_nano_usd = cost,
            estimated = estimated,
            failure = self.failure.as_deref();
            "{} {} {} status={} route={} format={} key={} key_id={} account={} provider={} model={}{}{} ms={:.3} ttfb_ms={} in={} out={} cached={} cache_write={} reasoning={} cost_nano_usd={}{}{}",
            self.request_id,
            self.method,
            self.path,
            status,
            self.route,
            self.format,
            self.key_name.as_deref().unwrap_or("-"),
            self.key_id.map_or("-".to_string(), |id| id.to_string()),
            self.account.as_deref().unwrap_or("-"),
            provider,
            model,
            self.fallback_from.as_ref().map_or(String::new(), |asked| format!(" fallback_from={asked}")),
            self.deployment.as_deref().map_or(String::new(), |(label, _)| format!(" deployment={label}")),
            duration_ms,
            ttfb_ms.map_or("-".to_string(), |t| format!("{t:.3}")),
            u.input_tokens,
            u.output_tokens,
            u.cached_input_tokens,
            u.cache_write_tokens,
            u.reasoning_tokens,
            cost.map_or("-".to_string(), |c| c.to_string()),
            if estimated { " estimated=true" } else { "" },
            self.failure.as_ref().map_or(String::new(), |f| format!(" failure={f:?}")),
        );
        if let Some(marks) = self.marks.take() {
            let metered = self.charge.is_some() || self.usage.is_some();
            crate::traces::export(
                &marks,
                &crate::traces::Ended {
                    route: self.route,
                    provider: self.provider.as_deref(),
                    model: self.model.as_deref(),
                    status,
                    input_tokens: metered.then_some(u.input_tokens),
                    output_tokens: metered.then_some(u.output_tokens),
                    cost_nano_usd: cost,
                    request_id: &self.request_id,
                    failure: self.failure.as_deref(),
                },
            );
        }
    }
}

/// A request whose task is dropped before Pingora's logging hook ran: the
/// runtime's shutdown at the end of the grace period drops the streams
/// still running. It is billed for what its caller received, as any cut,
/// and logged.
impl Drop for RequestCtx {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.failure.is_none() {
            self.failure = Some("cut at shutdown: the grace period ended".into());
        }
        self.completed = false;
        let status = (self.status != 0).then_some(self.status);
        self.finish(status, true);
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn request_ids_are_uuidv7_unique_and_name_their_process() {
        let ids: Vec<String> = (0..10_000).map(|_| new_request_id()).collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id.strip_prefix("req_").unwrap_or_default()).unwrap_or_default();
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(id.len(), 36);
            assert_eq!(id[28..], ids[0][28..], "the same process");
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "sortable by time and counter");
    }
}
