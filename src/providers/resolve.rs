//! Keeps provider host names resolved off the request path. Pingora's
//! `HttpPeer::new` would resolve with a blocking call (and panic on
//! failure), so peers are built from addresses this task looks up.

use super::Provider;
use std::sync::Arc;
use std::time::Duration;

const REFRESH: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(2);

/// Resolves every named provider of `providers()` (the gateway in force:
/// a reload may change them) now and then every [`REFRESH`]; a failed
/// lookup keeps the last good addresses and is retried sooner.
pub async fn refresh_forever(providers: impl Fn() -> Vec<Arc<Provider>>) {
    loop {
        let mut all_ok = true;
        for p in providers().iter().filter(|p| p.origin.host.parse::<std::net::IpAddr>().is_err()) {
            if let Err(e) = resolve(p).await {
                all_ok = false;
                log::warn!(target: "tollgate", "provider {}: cannot resolve {}: {e}", p.name, p.origin.host);
            }
        }
        tokio::time::sleep(if all_ok { REFRESH } else { RETRY }).await;
    }
}

/// Looks `provider`'s host up now (without blocking the runtime) and
/// keeps its addresses: for a request that arrives before the background
/// lookup has answered, as the first ones after a start do.
pub async fn resolve(provider: &Provider) -> std::io::Result<()> {
    let addrs: Vec<_> =
        tokio::net::lookup_host((provider.origin.host.as_str(), provider.origin.port)).await?.collect();
    if addrs.is_empty() {
        return Err(std::io::Error::other("no address"));
    }
    provider.set_addresses(&addrs);
    Ok(())
}
