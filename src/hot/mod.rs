//! Hot state shared by a fleet (issue #18 item 2): the rate limits on
//! Redis (`redis`), with the same semantics as the in-memory limiter of
//! `crate::limits`, which stays pure (no Tokio, no Redis) and serves a
//! single node and a fleet whose Redis is down with `on_failure: open`.

pub mod redis;

#[cfg(test)]
pub(crate) mod testing;
