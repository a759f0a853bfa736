//! Keeps provider host names resolved off the request path. Pingora's
//! `HttpPeer::new` would resolve with a blocking call (and panic on
//! failure), so peers are built from addresses this task looks up.

use super::Provider;
use std::sync::Arc;
use std::time::Duration;

const REFRESH: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(2);

/// Resolves every named provider now and then every [`REFRESH`]; a failed
/// lookup keeps the last good addresses and is retried sooner.
pub async fn refresh_forever(providers: Vec<Arc<Provider>>) {
    let named: Vec<_> =
        providers.into_iter().filter(|p| p.origin.host.parse::<std::net::IpAddr>().is_err()).collect();
    if named.is_empty() {
        return;
    }
    loop {
        let mut all_ok = true;
        for p in &named {
            match tokio::net::lookup_host((p.origin.host.as_str(), p.origin.port)).await {
                Ok(addrs) => {
                    let addrs: Vec<_> = addrs.collect();
                    if addrs.is_empty() {
                        all_ok = false;
                    } else {
                        p.set_addresses(&addrs);
                    }
                }
                Err(e) => {
                    all_ok = false;
                    log::warn!("provider {}: cannot resolve {}: {e}", p.name, p.origin.host);
                }
            }
        }
        tokio::time::sleep(if all_ok { REFRESH } else { RETRY }).await;
    }
}
