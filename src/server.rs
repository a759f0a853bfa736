//! Assembles the Pingora server from a configuration: the proxy service on
//! its listeners (TCP or TLS with h2), the metrics service, and the
//! background tasks that keep provider addresses resolved and reload the
//! configuration on `SIGHUP`.

use crate::config::Config;
use crate::gateway::Gateway;
use crate::health::Health;
use crate::health::MetricsApp;
use crate::providers;
use crate::proxy::{ConnectionGuard, ConnectionLimits, TollgateProxy};
use crate::reload::Live;
use async_trait::async_trait;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::apps::HttpServerOptions;
use pingora_core::connectors::ConnectorOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use std::sync::Arc;
use std::time::Duration;

/// Command-line switches that Pingora acts on, and the file the
/// configuration came from (read again by a reload).
#[derive(Debug, Default, Clone)]
pub struct RunFlags {
    /// Take the listening sockets over from a running instance.
    pub upgrade: bool,
    pub daemon: bool,
    pub config_path: Option<std::path::PathBuf>,
}

pub fn build(config: &Config, flags: RunFlags) -> Result<Server, String> {
    let mut gateway = Gateway::from_config(config)?;
    gateway.start_billing(config)?;
    crate::exchange::restore::rebuild(&gateway)?;
    if config.tracing.otlp_endpoint.as_deref().is_some_and(|e| !e.is_empty()) {
        let runtime = match &gateway.money {
            Some(money) => money.store.runtime_ref(),
            None => crate::store::StoreHandle::runtime()?,
        };
        crate::traces::start(&config.tracing, runtime)?;
    }
    let health = Arc::new(Health::new(&gateway, config));
    let live = Arc::new(Live::new(Arc::new(gateway), config.clone(), flags.config_path.clone()));

    let mut conf = ServerConf {
        threads: config.server.threads.max(1),
        grace_period_seconds: config.server.grace_period_seconds,
        graceful_shutdown_timeout_seconds: config.server.graceful_shutdown_timeout_seconds,
        daemon: flags.daemon,
        ..ServerConf::default()
    };
    if let Some(pid) = &config.server.pid_file {
        conf.pid_file.clone_from(pid);
    }
    if let Some(sock) = &config.server.upgrade_sock {
        conf.upgrade_sock.clone_from(sock);
    }
    let opt = Opt { upgrade: flags.upgrade, daemon: flags.daemon, ..Opt::default() };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let connector =
        crate::proxy::Upstreams::new(Some(ConnectorOptions::from_server_conf(&server.configuration)));
    let limits = ConnectionLimits {
        max_per_address: config.server.max_connections_per_address,
        head_timeout: Duration::from_millis(config.server.request_head_timeout_ms.max(1)),
        idle_timeout: Duration::from_secs(config.server.keepalive_timeout_seconds.max(1)),
    };
    let mut http = pingora_proxy::http_proxy(
        &server.configuration,
        TollgateProxy::new(
            live.clone(),
            health.clone(),
            connector,
            config.server.keepalive_timeout_seconds,
            Duration::from_millis(config.server.downstream_write_timeout_ms.max(1)),
        ),
    );
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(limits.idle_timeout);
    http.server_options = Some(options);
    let mut proxy = Service::new("tollgate".to_string(), ConnectionGuard::new(http, limits));
    for listener in &config.listeners {
        match &listener.tls {
            None => proxy.add_tcp(&listener.address),
            Some(tls) => {
                let mut settings = TlsSettings::intermediate(&tls.cert, &tls.key)
                    .map_err(|e| format!("listener {}: TLS certificate or key: {e}", listener.address))?;
                if tls.h2 {
                    settings.enable_h2();
                }
                proxy.add_tls_with_settings(&listener.address, None, settings);
            }
        }
    }
    server.add_service(proxy);

    if let Some(admin) = &config.admin {
        let app = crate::admin::AdminApp::new(live.clone(), admin.token.clone())
            .ok_or("admin: the admin API needs billing: configure plans and accounts")?;
        let mut service = Service::new("tollgate admin".to_string(), app);
        service.add_tcp(&admin.listen);
        server.add_service(service);
    }

    if let Some(metrics) = &config.metrics {
        crate::metrics::init();
        let mut service = Service::new(
            "tollgate metrics".to_string(),
            HttpServer::new_app(MetricsApp::new(health.clone())),
        );
        service.add_tcp(&metrics.address);
        server.add_service(service);
    }

    server.add_service(background_service("provider address refresh", ResolveProviders(live.clone())));
    server.add_service(background_service("reload on SIGHUP", ReloadOnHangup(live)));
    server.add_service(background_service("drain", Drain));
    Ok(server)
}

/// Reads the configuration file again on each `SIGHUP` (the signal's
/// default, which ends the process, is replaced when this starts).
struct ReloadOnHangup(Arc<Live>);

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(path) = self.0.path() else { return };
        let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => signal,
            Err(e) => {
                log::error!(target: "tollgate", "SIGHUP cannot reload the configuration: {e}");
                return;
            }
        };
        log::info!(target: "tollgate", "SIGHUP reloads {}", path.display());
        loop {
            tokio::select! {
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    // Refused or not, `reload` logs the outcome.
                    let _ = self.0.reload();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Ends the process once a shutdown has begun and nothing is in flight.
struct Drain;

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, shutdown: ShutdownWatch) {
        crate::drain::exit_when_drained(shutdown).await;
    }
}

struct ResolveProviders(Arc<Live>);

#[async_trait]
impl BackgroundService for ResolveProviders {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = providers::refresh_forever(|| self.0.current().providers.clone()) => {}
            _ = shutdown.changed() => {}
        }
    }
}
