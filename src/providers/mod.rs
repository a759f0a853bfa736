//! Upstream providers: where each lives (parsed base URL, resolved
//! addresses, pooled-connection peer), how it authenticates, which wire
//! format it speaks, and the upstream path of each endpoint.

pub mod breaker;
pub mod deployment;
mod resolve;

pub use resolve::{refresh_forever, resolve};

use crate::config::{ProviderConfig, ProviderKind, Timeouts};
use crate::formats::ClientFormat;
use crate::routing::Endpoint;
use crate::secret::Secret;
use http::{HeaderName, HeaderValue};
use pingora_core::protocols::tls::CaType;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub origin: Origin,
    pub timeouts: Timeouts,
    api_keys: Vec<Secret>,
    next_key: AtomicUsize,
    /// Key indexes in the order calls take them: each key as often as its
    /// weight, the weights' turns interleaved.
    rotation: Vec<usize>,
    /// Per key: until when (wall ms) it rests after the provider answered
    /// it 429 (its `retry-after`).
    cooling: Vec<std::sync::atomic::AtomicU64>,
    /// Shared, not cloned per call: a peer is 672 bytes, and a stream
    /// keeps the one it was sent to until its connection goes back to the
    /// pool.
    peers: RwLock<Vec<Arc<HttpPeer>>>,
    next_peer: AtomicUsize,
    /// CAs from `ca_file`, checked at load.
    ca: Option<Arc<CaType>>,
    /// Extra request headers to forward (lowercase; a trailing `*` is a prefix).
    pub forward_headers: Vec<String>,
}

/// A parsed base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1` or ``.
    pub base_path: String,
    /// The `Host` header's value, made once (see [`Self::authority`]).
    authority: String,
}

impl Origin {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?}: base_url must start with http:// or https://"));
        };
        // Its path starts every request line: a byte that would end the line
        // or start a fragment is refused here, not on every call.
        if rest.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
            return Err(format!("{url:?}: base_url has a space, a control character or a '#'"));
        }
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: base_url needs a host (and no user info)"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
                Ok(port) => (h, port),
                Err(_) if authority.starts_with('[') && authority.ends_with(']') => (authority, default_port),
                Err(_) => return Err(format!("{url:?}: invalid port {p:?}")),
            },
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let authority = {
            let bracketed = if host.contains(':') { format!("[{host}]") } else { host.clone() };
            if port == default_port {
                bracketed
            } else {
                format!("{bracketed}:{port}")
            }
        };
        Ok(Self { tls, host, port, base_path: path.trim_end_matches('/').to_string(), authority })
    }

    /// The value of the `Host` header for this origin.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

impl Provider {
    pub fn from_config(cfg: &ProviderConfig) -> Result<Self, String> {
        let origin = Origin::parse(&cfg.base_url).map_err(|e| format!("providers '{}': {e}", cfg.name))?;
        if cfg.api_keys.is_empty() {
            return Err(format!("providers '{}': api_keys must list at least one key", cfg.name));
        }
        // A key goes out as a header value: one that cannot (a control
        // character, a line break left by an env file) is refused here,
        // not on every call.
        if let Some(i) = cfg.api_keys.iter().position(|k| HeaderValue::from_str(k.expose()).is_err()) {
            return Err(format!(
                "providers '{}': api_keys[{i}] is not a valid header value (a control character or line break?)",
                cfg.name
            ));
        }
        if !cfg.key_weights.is_empty()
            && (cfg.key_weights.len() != cfg.api_keys.len() || cfg.key_weights.iter().all(|w| *w == 0))
        {
            return Err(format!(
                "providers '{}': key_weights needs one weight per key in api_keys, not all 0",
                cfg.name
            ));
        }
        let provider = Self {
            name: cfg.name.clone(),
            kind: cfg.kind,
            origin,
            timeouts: cfg.timeouts,
            api_keys: cfg.api_keys.clone(),
            next_key: AtomicUsize::new(0),
            rotation: rotation(&cfg.key_weights, cfg.api_keys.len()),
            cooling: cfg.api_keys.iter().map(|_| std::sync::atomic::AtomicU64::new(0)).collect(),
            peers: RwLock::new(Vec::new()),
            next_peer: AtomicUsize::new(0),
            ca: cfg
                .ca_file
                .as_deref()
                .map(load_ca)
                .transpose()
                .map_err(|e| format!("providers '{}': {e}", cfg.name))?,
            forward_headers: cfg.forward_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        };
        // A literal IP needs no lookup; names are resolved by `resolve`.
        if let Ok(ip) = provider.origin.host.parse::<std::net::IpAddr>() {
            provider.set_addresses(&[SocketAddr::new(ip, provider.origin.port)]);
        }
        Ok(provider)
    }

    /// The wire format this provider speaks.
    pub fn format(&self) -> ClientFormat {
        match self.kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::Rerank => {
                ClientFormat::Openai
            }
            ProviderKind::Anthropic => ClientFormat::Anthropic,
            ProviderKind::Gemini => ClientFormat::Gemini,
        }
    }

    /// Whether this provider can serve `format` without translation.
    pub fn speaks(&self, format: ClientFormat) -> bool {
        format == self.format() || (format == ClientFormat::Responses && self.kind == ProviderKind::Openai)
    }

    /// The upstream path (with query) for a call to `endpoint`.
    pub fn upstream_path(&self, endpoint: &Endpoint, upstream_model: &str, query: Option<&str>) -> String {
        let base = &self.origin.base_path;
        let mut path = match endpoint {
            Endpoint::ChatCompletions | Endpoint::AgentChat => format!("{base}/chat/completions"),
            Endpoint::Responses => format!("{base}/responses"),
            Endpoint::Messages => format!("{base}/v1/messages"),
            Endpoint::CountTokens => format!("{base}/v1/messages/count_tokens"),
            Endpoint::Embeddings if self.kind == ProviderKind::Gemini => {
                let model = percent_encoding::utf8_percent_encode(upstream_model, PATH_SEGMENT);
                format!("{base}/v1beta/models/{model}:batchEmbedContents")
            }
            Endpoint::Embeddings => format!("{base}/embeddings"),
            Endpoint::Rerank => format!("{base}/rerank"),
            Endpoint::Images if self.kind == ProviderKind::Gemini => {
                let model = percent_encoding::utf8_percent_encode(upstream_model, PATH_SEGMENT);
                format!("{base}/v1beta/models/{model}:generateContent")
            }
            Endpoint::Images => format!("{base}/images/generations"),
            Endpoint::GenerateContent { stream, .. } => {
                let action = if *stream { "streamGenerateContent" } else { "generateContent" };
                let model = percent_encoding::utf8_percent_encode(upstream_model, PATH_SEGMENT);
                format!("{base}/v1beta/models/{model}:{action}")
            }
            Endpoint::ListModels
            | Endpoint::GetModel { .. }
            | Endpoint::Agents
            | Endpoint::ImageModels
            | Endpoint::StoredResponse { .. }
            | Endpoint::Whoami
            | Endpoint::Requests
            | Endpoint::DailyUsage
            | Endpoint::Dashboard
            | Endpoint::DashboardSetup
            | Endpoint::Usage
            | Endpoint::Generation
            | Endpoint::Health
            | Endpoint::Live => base.clone(),
        };
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            path.push('?');
            path.push_str(q);
        }
        path
    }

    /// The provider's own authentication header, with the next key in
    /// rotation that is not resting after a 429 (when every key rests,
    /// the next in rotation anyway: the provider decides).
    pub fn auth_header(&self) -> (HeaderName, String) {
        let n = self.rotation.len().max(1);
        let start = self.next_key.fetch_add(1, Ordering::Relaxed);
        // The clock is read only when a key rests (a 429 set its time).
        let now = std::cell::OnceCell::new();
        let free = |until: u64| {
            until == 0
                || until <= *now.get_or_init(|| crate::billing::Clock::now_ms(&crate::billing::SystemClock))
        };
        let key_at = |turn: usize| self.rotation.get(turn % n).copied().unwrap_or(0);
        let i = (0..n)
            .map(|k| key_at(start + k))
            .find(|&k| self.cooling.get(k).is_none_or(|c| free(c.load(Ordering::Relaxed))))
            .unwrap_or_else(|| key_at(start));
        self.header_for(i)
    }

    fn header_for(&self, i: usize) -> (HeaderName, String) {
        self.auth_header_with(self.api_keys[i].expose())
    }

    /// The provider's authentication header carrying `key` (a customer's own).
    pub fn auth_header_with(&self, key: &str) -> (HeaderName, String) {
        match self.kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::Rerank => {
                // `concat` sizes the value once; `format!` cost four times as much.
                (http::header::AUTHORIZATION, ["Bearer ", key].concat())
            }
            ProviderKind::Anthropic => (crate::auth::X_API_KEY.clone(), key.to_string()),
            ProviderKind::Gemini => (crate::auth::X_GOOG_API_KEY.clone(), key.to_string()),
        }
    }

    /// The key a request was sent with (found by its header among
    /// `headers`) rests until `until_ms`: the provider answered it 429.
    pub fn rest_key(&self, headers: &[(HeaderName, HeaderValue)], until_ms: u64) {
        for (i, cooling) in self.cooling.iter().enumerate() {
            let (name, value) = self.header_for(i);
            if headers.iter().any(|(n, v)| *n == name && *v == value) {
                cooling.fetch_max(until_ms, Ordering::Relaxed);
            }
        }
    }

    /// A peer for the next connection, or `None` while the host is unresolved.
    pub fn peer(&self) -> Option<Arc<HttpPeer>> {
        let peers = self.peers.read().ok()?;
        if peers.is_empty() {
            return None;
        }
        let i = self.next_peer.fetch_add(1, Ordering::Relaxed) % peers.len();
        peers.get(i).cloned()
    }

    /// The addresses its peers are built from (last resolved).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.peers.read().map_or_else(
            |_| Vec::new(),
            |peers| peers.iter().filter_map(|p| p._address.as_inet().copied()).collect(),
        )
    }

    pub fn set_addresses(&self, addrs: &[SocketAddr]) {
        let peers = addrs.iter().map(|a| Arc::new(self.build_peer(*a))).collect();
        if let Ok(mut slot) = self.peers.write() {
            *slot = peers;
        }
    }

    fn build_peer(&self, addr: SocketAddr) -> HttpPeer {
        // Built from a resolved address: `HttpPeer::new` with a host name
        // would resolve it with a blocking call on the runtime.
        let mut peer = HttpPeer::new(addr, self.origin.tls, self.origin.host.clone());
        let t = self.timeouts;
        peer.options.connection_timeout = Some(Duration::from_millis(t.connect_ms));
        peer.options.total_connection_timeout = Some(Duration::from_millis(t.connect_ms.saturating_mul(2)));
        peer.options.idle_timeout = Some(Duration::from_millis(t.idle_ms));
        peer.options.read_timeout = Some(Duration::from_millis(t.read_ms));
        peer.options.write_timeout = Some(Duration::from_millis(t.write_ms));
        if self.origin.tls {
            peer.options.alpn = ALPN::H2H1;
            peer.options.max_h2_streams = 100;
            peer.options.ca.clone_from(&self.ca);
        }
        peer
    }
}

/// The certificates of a PEM CA bundle, each checked to parse: Pingora's
/// own parser panics on one that does not.
fn load_ca(path: &str) -> Result<Arc<CaType>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("ca_file {path}: {e}"))?;
    let mut certs = Vec::new();
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = der.map_err(|e| format!("ca_file {path}: {e}"))?;
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("ca_file {path}: a certificate does not parse: {e}"))?;
        certs.push(WrappedX509::new(der.to_vec(), parse_x509));
    }
    if certs.is_empty() {
        return Err(format!("ca_file {path}: no certificate in the file"));
    }
    Ok(Arc::from(certs))
}

const PATH_SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'/').add(b'?').add(b':');

/// The order keys of `weights` take calls in (equal weights when none are
/// given): smooth weighted round robin, so a key of weight 3 beside one of
/// weight 1 takes three calls of four, never four in a row at the start.
fn rotation(weights: &[u32], keys: usize) -> Vec<usize> {
    let weights: Vec<i64> =
        if weights.is_empty() { vec![1; keys] } else { weights.iter().map(|w| i64::from(*w)).collect() };
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let Some(best) = (0..current.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i))) else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_take_calls_by_weight_and_a_resting_key_is_passed_over() {
        assert_eq!(rotation(&[], 2), [0, 1]);
        assert_eq!(rotation(&[3, 1], 2), [0, 0, 1, 0]);
        assert_eq!(rotation(&[1, 0, 2], 3), [2, 0, 2]);
        let cfg: ProviderConfig = serde_yaml::from_str(
            "{name: w, kind: openai, base_url: 'http://h/v1', api_keys: [a, b], key_weights: [3, 1]}",
        )
        .unwrap();
        let p = Provider::from_config(&cfg).unwrap();
        let used: Vec<String> = (0..8).map(|_| p.auth_header().1).collect();
        assert_eq!(used.iter().filter(|k| *k == "Bearer b").count(), 2, "{used:?}");
        let headers = vec![(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer a"))];
        p.rest_key(&headers, u64::MAX);
        assert!((0..8).all(|_| p.auth_header().1 == "Bearer b"), "a rests: b takes every call");
        let bad: ProviderConfig = serde_yaml::from_str(
            "{name: w, kind: openai, base_url: 'http://h/v1', api_keys: [a, b], key_weights: [1]}",
        )
        .unwrap();
        assert!(Provider::from_config(&bad).is_err());
    }

    #[test]
    fn a_key_that_cannot_be_a_header_value_is_refused_at_load() {
        let cfg: ProviderConfig = serde_yaml::from_str(
            "{name: w, kind: anthropic, base_url: 'http://h/v1', api_keys: [good, \"bad\\n\"]}",
        )
        .unwrap();
        let err = Provider::from_config(&cfg).err().unwrap();
        assert!(err.contains("api_keys[1]"), "{err}");
    }

    #[test]
    fn parses_base_urls() {
        let o = Origin::parse("https://api.openai.com/v1/").unwrap();
        assert_eq!(
            (o.tls, o.host.as_str(), o.port, o.base_path.as_str()),
            (true, "api.openai.com", 443, "/v1")
        );
        assert_eq!(o.authority(), "api.openai.com");
        let o = Origin::parse("http://127.0.0.1:9100/openai/v1").unwrap();
        assert_eq!((o.port, o.base_path.as_str(), o.authority()), (9100, "/openai/v1", "127.0.0.1:9100"));
        let o = Origin::parse("http://[::1]:9100").unwrap();
        assert_eq!((o.host.as_str(), o.port, o.authority()), ("::1", 9100, "[::1]:9100"));
        assert!(Origin::parse("ftp://x").is_err());
        assert!(Origin::parse("http://x:notaport/").is_err());
        for bad in ["http://x/v1#frag", "http://x/v1 x", "http://x/v1\r\nx: y", "http://x\t/v1"] {
            assert!(Origin::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn provider(kind: ProviderKind, url: &str) -> Provider {
        Provider::from_config(&ProviderConfig {
            name: "p".into(),
            kind,
            base_url: url.into(),
            api_keys: vec![Secret::new("k1"), Secret::new("k2")],
            key_weights: Vec::new(),
            timeouts: Timeouts::default(),
            ca_file: None,
            forward_headers: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn builds_upstream_paths_per_kind() {
        let o = provider(ProviderKind::Openai, "http://127.0.0.1:1/openai/v1");
        assert_eq!(o.upstream_path(&Endpoint::ChatCompletions, "m", None), "/openai/v1/chat/completions");
        let a = provider(ProviderKind::Anthropic, "http://127.0.0.1:1/anthropic");
        assert_eq!(
            a.upstream_path(&Endpoint::Messages, "m", Some("beta=true")),
            "/anthropic/v1/messages?beta=true"
        );
        let g = provider(ProviderKind::Gemini, "http://127.0.0.1:1/gemini");
        let ep = Endpoint::GenerateContent { model: "x".into(), stream: true };
        assert_eq!(
            g.upstream_path(&ep, "gemini-3-flash", Some("alt=sse")),
            "/gemini/v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn rotates_keys_in_the_providers_own_header() {
        let a = provider(ProviderKind::Anthropic, "http://127.0.0.1:1");
        assert_eq!(a.auth_header(), (crate::auth::X_API_KEY.clone(), "k1".to_string()));
        assert_eq!(a.auth_header(), (crate::auth::X_API_KEY.clone(), "k2".to_string()));
        let o = provider(ProviderKind::OpenaiCompatible, "http://127.0.0.1:1");
        assert_eq!(o.auth_header().1, "Bearer k1");
        assert!(o.peer().is_some(), "a literal IP needs no lookup");
    }
}
