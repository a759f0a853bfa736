//! What the benches share: the bare Pingora pass-through they compare
//! against (run by re-executing the bench with `--bare-proxy LISTEN
//! UPSTREAM`), free ports, and child processes killed on drop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};
use std::net::{SocketAddr, TcpListener};
use std::process::Child;
use std::time::{Duration, Instant};

struct BareProxy {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

pub fn run_bare_proxy(listen: &str, upstream: &str) -> ! {
    let conf = ServerConf { threads: 2, ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut svc = pingora_proxy::http_proxy_service(
        &server.configuration,
        BareProxy { upstream: upstream.parse().unwrap() },
    );
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever()
}

/// `tollgate serve` on `config`, listening on `port` (metrics on
/// `metrics_port`), calling the mock on `mock_port`, with the demo key
/// `sk-bench`, its admin API on a free port and its store in a temporary
/// file: the caller adds logging and spawns it.
pub fn tollgate_command(config: &str, port: u16, metrics_port: u16, mock_port: u16) -> std::process::Command {
    tollgate_command_of(env!("CARGO_BIN_EXE_tollgate"), config, port, metrics_port, mock_port)
}

/// [`tollgate_command`] running the binary at `binary` (another build of
/// the gateway, for an A/B in one run).
pub fn tollgate_command_of(
    binary: &str,
    config: &str,
    port: u16,
    metrics_port: u16,
    mock_port: u16,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(binary);
    cmd.args(["serve", "--config", config])
        .env("TOLLGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOLLGATE_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("TOLLGATE_MOCK_URL", format!("http://127.0.0.1:{mock_port}"))
        .env("TOLLGATE_DEMO_KEY", "sk-bench")
        .env("TOLLGATE_ADMIN_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env(
            "TOLLGATE_DB",
            std::env::temp_dir().join(format!("tollgate-bench-{}-{port}.db", std::process::id())),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// Writes the configurations `benches/configs.py` derives from
/// conf/demo.yaml into `dir`: `limits.yaml` (every limit of the plan on)
/// and `unbilled.yaml`.
pub fn write_bench_configs(dir: &std::path::Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/configs.py");
    let written = std::process::Command::new("python3").arg(script).arg(dir).status().unwrap();
    assert!(written.success(), "benches/configs.py failed");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("port {port} did not open");
}

pub struct Procs(pub Vec<Child>);
impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The mock upstream on `port`.
pub fn spawn_mock(port: u16) -> Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-mock"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(port);
    child
}
