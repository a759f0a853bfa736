//! Test support: a private Redis per test (`redis_server.rs`, shared with
//! the integration tests).

mod redis_server;

pub use redis_server::RedisServer;
