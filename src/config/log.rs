//! `log:`: how the process writes its log lines. `text` (the default) is
//! env_logger's own line; `json` makes every line one JSON object, for a
//! log pipeline that indexes fields (the access line's fields as keys).

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `[time LEVEL target] message`, as env_logger writes it.
    #[default]
    Text,
    /// `{"timestamp":…,"level":…,"target":…,"message":…}`, one a line.
    Json,
}
