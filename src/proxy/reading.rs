//! Reading a provider's stream while watching the caller: the next chunk,
//! or the caller's departure, and the caller's keep-alive written during
//! each silence of `every`.

use super::downstream::{caller_left, write_all};
use super::outcome::{client_gone, Failure};
use bytes::Bytes;
use pingora_core::protocols::http::client::HttpSession;
use pingora_proxy::Session;
use std::time::Duration;

/// The next chunk of the provider's stream. The one read future stays
/// alive across keep-alives (it is never cancelled and restarted), so no
/// byte of the provider's stream can be lost to a cancelled read; the
/// provider read timeout keeps running meanwhile.
pub async fn next_chunk(
    session: &mut Session,
    upstream: &mut HttpSession,
    every: Option<Duration>,
    keepalive: &mut (dyn FnMut(&mut Vec<Bytes>) + Send),
) -> Result<pingora_core::Result<Option<Bytes>>, Failure> {
    let read = upstream.read_response_body();
    tokio::pin!(read);
    let mut out = Vec::new();
    loop {
        tokio::select! {
            biased;
            next = &mut read => return Ok(next),
            gone = caller_left(session) => return Err(client_gone(gone)),
            () = sleep_or_never(every) => {
                keepalive(&mut out);
                // Boxed: a rare write, not to be part of every open
                // stream's memory (this future lives as long as the stream).
                Box::pin(write_all(session, &mut out)).await.map_err(client_gone)?;
            }
        }
    }
}

async fn sleep_or_never(every: Option<Duration>) {
    match every {
        Some(every) => tokio::time::sleep(every).await,
        None => std::future::pending().await,
    }
}
