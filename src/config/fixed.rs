//! What a configuration reload cannot change: the keys read once, at
//! start. Listeners, the metrics and admin listeners and Pingora's own
//! settings belong to sockets and runtimes already running; the store and
//! `hot_state` are where the money is; the logger is installed once;
//! `billing`'s options live in the wallets; the YAML's accounts (and,
//! with them, its keys) are a bootstrap written into the store at start,
//! which is authoritative after. A file that changes any of them is
//! refused whole, naming each: applying the rest would leave the node
//! running a configuration that is in no file.

use super::Config;
use crate::secret::Secret;

/// The keys `next` changes that only a restart applies; empty when it
/// may replace `current`.
pub fn changed_at_start_only(current: &Config, next: &Config) -> Vec<&'static str> {
    let (a, b) = (&current.server, &next.server);
    let secret = |s: &Secret| s.expose().to_string();
    let store = |c: &Config| {
        let s = &c.store;
        (s.path.clone(), s.url.as_ref().map(secret), s.pool_size, s.journal_dir.clone(), s.batch_ms)
    };
    let hot = |c: &Config| c.hot_state.as_ref().map(|h| (secret(&h.redis_url), h.on_failure));
    let admin = |c: &Config| c.admin.as_ref().map(|a| (a.listen.clone(), secret(&a.token)));
    // With accounts, keys are bootstrapped into the store like them;
    // without, they are the key ring a reload rebuilds.
    let billed_keys = |c: &Config| {
        if c.accounts.is_empty() {
            return Vec::new();
        }
        let keys = c.keys.iter();
        keys.map(|k| (k.name.clone(), k.key.as_ref().map(secret), k.key_sha256.clone(), k.account.clone()))
            .collect()
    };
    let fields = [
        ("listeners", current.listeners == next.listeners),
        ("metrics", current.metrics == next.metrics),
        ("admin", admin(current) == admin(next)),
        ("store", store(current) == store(next)),
        ("hot_state", hot(current) == hot(next)),
        ("log", current.log == next.log),
        ("tracing", current.tracing == next.tracing),
        ("billing", current.billing == next.billing),
        ("accounts", current.accounts == next.accounts),
        ("keys", billed_keys(current) == billed_keys(next)),
        ("server.threads", a.threads == b.threads),
        ("server.grace_period_seconds", a.grace_period_seconds == b.grace_period_seconds),
        (
            "server.graceful_shutdown_timeout_seconds",
            a.graceful_shutdown_timeout_seconds == b.graceful_shutdown_timeout_seconds,
        ),
        ("server.pid_file", a.pid_file == b.pid_file),
        ("server.upgrade_sock", a.upgrade_sock == b.upgrade_sock),
        ("server.log_level", a.log_level == b.log_level),
        ("server.keepalive_timeout_seconds", a.keepalive_timeout_seconds == b.keepalive_timeout_seconds),
        ("server.request_head_timeout_ms", a.request_head_timeout_ms == b.request_head_timeout_ms),
        (
            "server.downstream_write_timeout_ms",
            a.downstream_write_timeout_ms == b.downstream_write_timeout_ms,
        ),
        (
            "server.max_connections_per_address",
            a.max_connections_per_address == b.max_connections_per_address,
        ),
        (
            "server.invalid_keys_per_minute_per_address",
            a.invalid_keys_per_minute_per_address == b.invalid_keys_per_minute_per_address,
        ),
        ("server.invalid_key_addresses_kept", a.invalid_key_addresses_kept == b.invalid_key_addresses_kept),
        ("server.customer_endpoint_rpm", a.customer_endpoint_rpm == b.customer_endpoint_rpm),
        ("server.count_tokens_rpm", a.count_tokens_rpm == b.count_tokens_rpm),
    ];
    fields.into_iter().filter(|(_, same)| !same).map(|(name, _)| name).collect()
}

/// The refusal of a reload that changes `fields`, saying what to do instead.
pub fn refusal(fields: &[&str]) -> String {
    let mut out = format!(
        "{}: read only at start; restart the node (or upgrade it in place) to change {}",
        fields.join(", "),
        if fields.len() == 1 { "it" } else { "them" }
    );
    if fields.iter().any(|f| matches!(*f, "accounts" | "keys")) {
        out.push_str(
            "; accounts and their keys are written into the store once: the admin API (tollgate \
             accounts, keys) manages them",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    const BASE: &str = r#"
listeners: [{address: "127.0.0.1:8080"}]
providers: [{name: p, kind: openai, base_url: "http://127.0.0.1:1/v1", api_keys: [k]}]
models: [{id: openai/m, provider: p, price: {input: "1", output: "2"}}]
mounts: [{prefix: /, formats: [openai]}]
plans: [{name: pro}]
accounts: [{name: a, plan: pro}]
keys: [{name: k, key: sk-1, account: a}]
store: {path: x.db}
"#;

    fn config(extra: &str) -> Config {
        let text = format!("{BASE}{extra}");
        parse_str(&text, &|_| None).unwrap()
    }

    fn replaced(from: &str, to: &str) -> Config {
        parse_str(&BASE.replace(from, to), &|_| None).unwrap()
    }

    #[test]
    fn what_a_reload_carries_is_not_in_the_list() {
        let current = config("");
        let next = replaced("input: \"1\"", "input: \"5\"");
        assert!(changed_at_start_only(&current, &next).is_empty());
        let next = config("server: {max_request_body_bytes: 10, stream_ping_ms: 5}");
        assert!(changed_at_start_only(&current, &next).is_empty());
        let next = replaced("plans: [{name: pro}]", "plans: [{name: pro, limits: {rpm: 3}}, {name: b}]");
        assert!(changed_at_start_only(&current, &next).is_empty());
    }

    #[test]
    fn each_key_read_at_start_is_named() {
        let current = config("");
        let cases = [
            (replaced("127.0.0.1:8080", "127.0.0.1:8081"), "listeners"),
            (replaced("x.db", "y.db"), "store"),
            (config("server: {threads: 7}"), "server.threads"),
            (config("hot_state: {redis_url: \"redis://h/\"}"), "hot_state"),
            (config("log: {format: json}"), "log"),
            (config("metrics: {address: \"127.0.0.1:1\"}"), "metrics"),
            (replaced("sk-1", "sk-2"), "keys"),
            (replaced("{name: a, plan: pro}", "{name: a, plan: pro}, {name: b, plan: pro}"), "accounts"),
        ];
        for (next, field) in cases {
            assert_eq!(changed_at_start_only(&current, &next), vec![field]);
        }
        let e = refusal(&["listeners", "server.threads"]);
        assert!(e.starts_with("listeners, server.threads: read only at start"), "{e}");
        assert!(refusal(&["keys"]).contains("admin API"));
    }

    #[test]
    fn without_accounts_the_key_ring_reloads() {
        let unbilled = |key: &str| {
            let text = BASE
                .replace("accounts: [{name: a, plan: pro}]\n", "")
                .replace(", account: a", "")
                .replace("sk-1", key);
            parse_str(&text, &|_| None).unwrap()
        };
        assert!(changed_at_start_only(&unbilled("sk-1"), &unbilled("sk-2")).is_empty());
    }
}
