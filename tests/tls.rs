//! The TLS listener (rustls, h2 by ALPN) with a certificate made for the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{free_port, repo, Stack, TempDir, KEY};
use serde_json::json;

#[tokio::test]
async fn tls_listener_serves_http1_and_h2() {
    let dir = TempDir::new();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.0.join("cert.pem");
    let key_path = dir.0.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let tls_port = free_port();
    let yaml = std::fs::read_to_string(repo().join("conf/demo.yaml")).unwrap().replace(
        "listeners:\n",
        &format!(
            "listeners:\n  - address: \"127.0.0.1:{tls_port}\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\n",
            cert_path.display(),
            key_path.display()
        ),
    );
    let config = dir.0.join("tls.yaml");
    std::fs::write(&config, yaml).unwrap();
    let stack = Stack::with_config(&config, None, &[]);
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let c = reqwest::Client::builder().add_root_certificate(root).build().unwrap();
    let r = c
        .post(format!("https://localhost:{tls_port}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    drop(stack);
}
