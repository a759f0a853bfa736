//! The process's logger: `env_logger` behind a guard that keeps secrets
//! out of the log whatever `RUST_LOG` asks for, and that counts the
//! failures Pingora only logs; its lines as text or, with `log.format:
//! json`, one JSON object each (`json`).
//!
//! Pingora's debug and trace output prints whole request heads (customer
//! keys in `Authorization`, `x-api-key` or `?key=`) and the gateway's own
//! upstream requests (the provider's key). So only this crate's targets
//! log below `info`; every other crate stops at `info`, where none of
//! them prints a head.

mod json;

use crate::config::LogFormat;
use log::{Level, Log, Metadata, Record};

/// Starts logging at `default_level` unless `RUST_LOG` says otherwise,
/// each line in `format`.
pub fn init(default_level: &str, format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level));
    if format == LogFormat::Json {
        builder.format(json::format);
        json::log_panics();
    }
    let inner = builder.build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Guarded { inner })).is_ok() {
        log::set_max_level(max);
    }
}

struct Guarded {
    inner: env_logger::Logger,
}

/// Whether a record of `target` at `level` may be written.
pub fn allowed(target: &str, level: Level) -> bool {
    level <= Level::Info || target == "access" || target == "tollgate" || target.starts_with("tollgate::")
}

impl Log for Guarded {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        allowed(metadata.target(), metadata.level()) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if record.level() == Level::Error && record.target().starts_with("pingora_core::services::listening")
        {
            let message = record.args().to_string();
            if message.starts_with("Accept() failed") {
                crate::metrics::accept_failed(crate::metrics::os_error_cause(&message));
            }
        }
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Raises the soft limit on open files to the hard limit: every stream
/// holds a caller's socket and (over HTTP/1.1) a provider's, and the
/// usual soft default of 1024 runs out near 500 streams.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::info!(target: "tollgate", "open files limit: {limit}"),
        Err(e) => log::warn!(target: "tollgate", "could not raise the open files limit: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tollgate_logs_below_info() {
        assert!(allowed("tollgate::proxy", Level::Trace));
        assert!(allowed("access", Level::Info));
        assert!(!allowed("pingora_proxy", Level::Debug));
        assert!(!allowed("pingora_core::protocols::http::v1::client", Level::Trace));
        assert!(!allowed("tollgatex", Level::Debug));
        assert!(allowed("pingora_core::services::listening", Level::Error));
    }
}
