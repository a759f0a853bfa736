//! `tracing:`: optional traces over OTLP/HTTP (see `crate::traces`). Off
//! unless `otlp_endpoint` is set (an empty value, as an unset variable
//! gives, is off too).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSection {
    /// The collector's traces URL, `http://host:4318/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of every span.
    pub service_name: String,
    /// How often the batch of ended spans is sent.
    pub export_every_ms: u64,
}

impl Default for TracingSection {
    fn default() -> Self {
        Self { otlp_endpoint: None, service_name: "tollgate".into(), export_every_ms: 1_000 }
    }
}

impl TracingSection {
    pub fn validate(&self) -> Result<(), String> {
        match self.otlp_endpoint.as_deref() {
            None | Some("") => Ok(()),
            Some(url) if url.starts_with("http://") => Ok(()),
            Some(_) => Err("tracing.otlp_endpoint: an http:// URL (a collector beside the node)".into()),
        }
    }
}
