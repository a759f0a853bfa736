//! Assembles the Pingora server from a configuration: the proxy service on
//! its listeners (TCP or TLS with h2), the metrics service, and the
//! background task that keeps provider addresses resolved.

use crate::config::Config;
use crate::gateway::Gateway;
use crate::health::Health;
use crate::metrics::MetricsApp;
use crate::providers;
use crate::proxy::{ConnectionGuard, ConnectionLimits, TollgateProxy};
use async_trait::async_trait;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::apps::HttpServerOptions;
use pingora_core::connectors::http::Connector;
use pingora_core::connectors::ConnectorOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use std::sync::Arc;
use std::time::Duration;

/// Command-line switches that Pingora acts on.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunFlags {
    /// Take the listening sockets over from a running instance.
    pub upgrade: bool,
    pub daemon: bool,
}

pub fn build(config: &Config, flags: RunFlags) -> Result<Server, String> {
    let mut gateway = Gateway::from_config(config)?;
    gateway.start_billing(config)?;
    crate::exchange::restore::rebuild(&gateway)?;
    let health = Arc::new(Health::new(&gateway, config));
    let gateway = Arc::new(gateway);

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

    let connector = Connector::new(Some(ConnectorOptions::from_server_conf(&server.configuration)));
    let limits = ConnectionLimits {
        max_per_address: config.server.max_connections_per_address,
        head_timeout: Duration::from_millis(config.server.request_head_timeout_ms.max(1)),
        idle_timeout: Duration::from_secs(config.server.keepalive_timeout_seconds.max(1)),
    };
    let mut http = pingora_proxy::http_proxy(
        &server.configuration,
        TollgateProxy::new(
            gateway.clone(),
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
        let app = crate::admin::AdminApp::new(gateway.clone(), admin.token.clone())
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

    server.add_service(background_service(
        "provider address refresh",
        ResolveProviders(gateway.providers.clone()),
    ));
    server.add_service(background_service("drain", Drain));
    Ok(server)
}

/// Ends the process once a shutdown has begun and nothing is in flight.
struct Drain;

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, shutdown: ShutdownWatch) {
        crate::drain::exit_when_drained(shutdown).await;
    }
}

struct ResolveProviders(Vec<Arc<providers::Provider>>);

#[async_trait]
impl BackgroundService for ResolveProviders {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = providers::refresh_forever(self.0.clone()) => {}
            _ = shutdown.changed() => {}
        }
    }
}
