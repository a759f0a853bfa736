//! Reading a configuration file: YAML → tree → `${VAR}` expansion of every
//! string → typed [`Config`], with errors that name the key path and, where
//! the YAML parser knows it, the line.

use super::{interpolate, Config};
use serde_yaml::Value;
use std::fmt;
use std::path::Path;

#[derive(Debug)]
pub struct ConfigError {
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(message: impl Into<String>) -> ConfigError {
    ConfigError { message: message.into() }
}

pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| err(format!("{}: cannot read: {e}", path.display())))?;
    parse_str(&text, &|name| std::env::var(name).ok())
        .map_err(|e| err(format!("{}: {}", path.display(), e.message)))
}

pub fn parse_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut tree: Value = serde_yaml::from_str(text).map_err(|e| err(describe_yaml_error(&e)))?;
    expand_strings(&mut tree, &mut String::new(), env)?;
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let mut message = if path == "." { inner.to_string() } else { format!("{path}: {inner}") };
        if let Some(line) = line_of(text, &inner.to_string(), env) {
            message.push_str(&format!(" (line {line})"));
        }
        err(message)
    })
}

/// The line of a mistake the expanded tree reported (the tree has no
/// lines): the same mistake found by deserializing the text itself. The
/// text is tried with `${...}` expanded in place first, so that a value
/// that is a number only once expanded (`threads: ${THREADS:-2}`) does not
/// stop the search before the mistake; expanded values are not trusted to
/// be YAML-safe, so that is only a way to find the line, never the config.
fn line_of(text: &str, mistake: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<usize> {
    let expanded = interpolate(text, env).ok();
    for candidate in [expanded.as_deref(), Some(text)].into_iter().flatten() {
        if let Err(e) = serde_yaml::from_str::<Config>(candidate) {
            match e.location() {
                Some(loc) if e.to_string().contains(mistake) => return Some(loc.line()),
                _ => {}
            }
        }
    }
    None
}

fn describe_yaml_error(e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(loc) => format!("invalid YAML at line {} column {}: {e}", loc.line(), loc.column()),
        None => format!("invalid YAML: {e}"),
    }
}

/// Expands `${VAR}` in every string scalar. A scalar that was a string only
/// because of `${...}` (e.g. `threads: ${THREADS:-2}`) is re-read as YAML so
/// numbers and booleans keep their type.
fn expand_strings(
    node: &mut Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match node {
        Value::String(s) if s.contains('$') => {
            let expanded = interpolate(s, env).map_err(|e| err(format!("{path}: {e}")))?;
            let whole_expression = s.starts_with("${") && s.ends_with('}');
            *node = match serde_yaml::from_str::<Value>(&expanded) {
                Ok(v @ (Value::Number(_) | Value::Bool(_))) if whole_expression => v,
                _ => Value::String(expanded),
            };
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_strings(item, path, env)?;
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k.as_str().unwrap_or("?"));
                expand_strings(v, path, env)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
listeners:
  - address: "${LISTEN:-127.0.0.1:8080}"
providers:
  - name: p
    kind: openai
    base_url: http://127.0.0.1:1/v1
    api_keys: ["${KEY}"]
models:
  - id: openai/m
    provider: p
mounts:
  - prefix: /
    formats: [openai]
server:
  threads: ${THREADS:-3}
"#;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "secret".to_string())
    }

    #[test]
    fn loads_and_expands() {
        let c = parse_str(MINIMAL, &env).unwrap();
        assert_eq!(c.listeners[0].address, "127.0.0.1:8080");
        assert_eq!(c.providers[0].api_keys[0].expose(), "secret");
        assert_eq!(c.server.threads, 3);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = MINIMAL.replace("    kind: openai", "    kind: openai\n    bsae_url: x");
        let e = parse_str(&text, &env).unwrap_err().message;
        assert!(e.contains("bsae_url"), "{e}");
        assert!(e.contains("providers[0]"), "{e}");
        assert!(e.contains("(line 7)"), "{e}");
    }

    #[test]
    fn a_number_from_the_environment_before_the_mistake_keeps_the_line() {
        let text = format!(
            "server:\n  threads: ${{THREADS:-3}}\n{}",
            MINIMAL.replace("server:\n  threads: ${THREADS:-3}\n", "")
        )
        .replace("    kind: openai", "    kind: openai\n    bsae_url: x");
        let e = parse_str(&text, &env).unwrap_err().message;
        assert!(e.contains("providers[0].bsae_url: unknown field") && e.contains("(line 9)"), "{e}");
    }

    #[test]
    fn unset_variable_is_named_with_its_path() {
        let e = parse_str(MINIMAL, &|_| None).unwrap_err().message;
        assert!(e.contains("KEY") && e.contains("providers[0].api_keys[0]"), "{e}");
    }

    #[test]
    fn bad_yaml_gives_the_line() {
        let e = parse_str("listeners: [\n  a: b: c", &env).unwrap_err().message;
        assert!(e.contains("line"), "{e}");
    }
}
