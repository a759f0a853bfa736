//! `tollgate-mock [--listen ADDR] [--tls-cert PEM --tls-key PEM [--alpn h2,http/1.1]]`:
//! the mock LLM upstream (see the `tollgate-mock` crate).

use std::process::ExitCode;

const USAGE: &str =
    "usage: tollgate-mock [--listen 127.0.0.1:9100] [--tls-cert cert.pem --tls-key key.pem [--alpn h2,http/1.1]]";

fn main() -> ExitCode {
    let mut listen = std::env::var("TOLLGATE_MOCK_LISTEN").unwrap_or_else(|_| "127.0.0.1:9100".to_string());
    let (mut cert, mut key, mut alpn) = (None, None, "h2,http/1.1".to_string());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen" | "-l", Some(addr)) => listen = addr,
            ("--tls-cert", Some(path)) => cert = Some(path),
            ("--tls-key", Some(path)) => key = Some(path),
            ("--alpn", Some(list)) => alpn = list,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let tls = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
            let protocols: Vec<&str> = alpn.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
            match read(&cert)
                .and_then(|c| read(&key).map(|k| (c, k)))
                .and_then(|(c, k)| tollgate_mock::tls::acceptor(&c, &k, &protocols))
            {
                Ok(acceptor) => Some(acceptor),
                Err(e) => {
                    eprintln!("tollgate-mock: TLS: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate-mock: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tollgate-mock: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Tests wait for this line to know the mock is up.
        println!(
            "tollgate-mock listening on {}",
            listener.local_addr().map(|a| a.to_string()).unwrap_or(listen)
        );
        match tollgate_mock::serve(listener, tls).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tollgate-mock: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
