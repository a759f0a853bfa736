//! Plans: which models an account's calls may use, whether API access is
//! included, how long a trial lasts. The next issue adds their limits.

/// A plan: the models it may call (ids, `prefix/*` globs, `*`), whether it
/// includes API access at all, and how long its trial lasts.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub models: Vec<String>,
    pub api_access: bool,
    pub trial_days: Option<u32>,
    pub limits: crate::limits::PlanLimits,
    /// The catalog id a call without a model gets on the `/chat` route.
    pub default_model: Option<String>,
}

/// Whether a model (its id and class) matches one of `patterns`: ids,
/// `prefix*` globs, or `class:NAME` for every model of a class.
pub fn matches_any(patterns: &[String], model_id: &str, class: Option<&str>) -> bool {
    patterns.iter().any(|pattern| {
        if let Some(wanted) = pattern.strip_prefix("class:") {
            return class == Some(wanted);
        }
        match pattern.strip_suffix('*') {
            Some(prefix) => model_id.starts_with(prefix),
            None => pattern == model_id,
        }
    })
}

impl Plan {
    /// The plan of an account whose plan is no longer configured: it
    /// allows nothing (the account is kept, and refused with 403).
    pub fn none(name: &str) -> Self {
        Self {
            name: name.to_string(),
            models: Vec::new(),
            api_access: false,
            trial_days: None,
            limits: Default::default(),
            default_model: None,
        }
    }

    pub fn allows(&self, model_id: &str, class: Option<&str>) -> bool {
        matches_any(&self.models, model_id, class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_match_ids_globs_and_classes() {
        let patterns: Vec<String> = ["openai/gpt-5.5", "google/*", "class:haiku"].map(String::from).to_vec();
        assert!(matches_any(&patterns, "openai/gpt-5.5", None));
        assert!(!matches_any(&patterns, "openai/gpt-5.5-mini", None));
        assert!(matches_any(&patterns, "google/gemini-3-flash-preview", Some("flash")));
        assert!(matches_any(&patterns, "anthropic/claude-haiku-4-5", Some("haiku")));
        assert!(!matches_any(&patterns, "anthropic/claude-opus-4-7", Some("opus")));
        assert!(matches_any(&["*".to_string()], "anything", None));
    }
}
