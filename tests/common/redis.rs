//! Redis for the integration tests: the unit tests' harness (a private
//! `redis-server` per test, or `TOLLGATE_TEST_REDIS_URL`), the same file.
#![allow(dead_code)]

#[path = "../../src/hot/testing/redis_server.rs"]
mod server;

pub use server::RedisServer;
