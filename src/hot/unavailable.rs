//! The one error of the hot state: Redis could not be reached, or
//! answered something unexpected (the outage policy decides what then).

/// Redis could not be reached or answered something unexpected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redis: {}", self.0)
    }
}
