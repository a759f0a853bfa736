//! PostgreSQL for the integration tests: the unit tests' harness (a
//! private server per test binary, or `TOLLGATE_TEST_PG_URL`; a database
//! per test), the same file.
#![allow(dead_code)]

#[path = "../../src/store/testing/pg_server.rs"]
mod server;

#[allow(unused_imports)]
pub use server::{pg_server, PgDatabase};
