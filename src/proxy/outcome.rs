//! How a request that did not end cleanly ended: refused before anything
//! was sent (answered in the caller's format), or aborted once the
//! response had started or the caller had left.

use super::context::CLIENT_GONE;
use crate::error::GatewayError;
use pingora_core::Error;

pub enum Failure {
    /// Nothing was sent yet: answer with this error in the caller's format.
    Refused(GatewayError),
    /// The response had started (or the caller left): close the connection.
    Aborted(String),
}

/// The caller's connection failed under a write: it went away.
pub fn client_gone(e: Box<Error>) -> Failure {
    Failure::Aborted(format!("{CLIENT_GONE}: {e}"))
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Refused(e)
    }
}
