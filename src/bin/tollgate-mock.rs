//! `tollgate-mock [--listen ADDR]`: the mock LLM upstream (see `tollgate::mock`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut listen = std::env::var("TOLLGATE_MOCK_LISTEN").unwrap_or_else(|_| "127.0.0.1:9100".to_string());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen" | "-l", Some(addr)) => listen = addr,
            _ => {
                eprintln!("usage: tollgate-mock [--listen 127.0.0.1:9100]");
                return ExitCode::from(2);
            }
        }
    }
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
        match tollgate::mock::serve(listener).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tollgate-mock: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
