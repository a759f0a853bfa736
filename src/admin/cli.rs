//! The `tollgate` commands that wrap the admin API: accounts, top-ups,
//! keys, the ledger, usage and prices, and a configuration reload,
//! printed as JSON. They talk to a
//! running gateway (`--admin-url`, `--token`, or `TOLLGATE_ADMIN_URL` and
//! `TOLLGATE_ADMIN_TOKEN`), never to its database, so what they do goes
//! through the same checks and the same in-memory state as the API.

use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct AdminTarget {
    /// The admin API's address.
    #[arg(long, env = "TOLLGATE_ADMIN_URL", default_value = "http://127.0.0.1:9091", global = true)]
    pub admin_url: String,
    /// The admin token (`admin.token` in the configuration).
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_TOKEN",
        default_value = "tollgate-admin-demo",
        global = true,
        hide_default_value = true
    )]
    pub token: String,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account on a plan.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        plan: String,
        /// RFC 3339 time or Unix seconds; default: the plan's trial length, if any.
        #[arg(long)]
        trial_ends_at: Option<String>,
    },
    /// Show an account with its balance and spend.
    Show { id: i64 },
    /// Change an account's plan or status (`active`, `suspended`).
    Update {
        id: i64,
        #[arg(long)]
        plan: Option<String>,
        #[arg(long)]
        status: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a key for an account; the key is printed this once.
    Create {
        account: i64,
        #[arg(long)]
        name: String,
        #[arg(long)]
        spend_cap_usd: Option<String>,
        /// A model id or `prefix/*` the key may call (repeat for more).
        #[arg(long = "model")]
        models: Vec<String>,
        #[arg(long)]
        fallback_model: Option<String>,
        #[arg(long)]
        expires_at: Option<String>,
    },
    Show {
        id: i64,
    },
    /// Revoke a key: its next request gets 401.
    Revoke {
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    #[command(subcommand)]
    Accounts(AccountsCommand),
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Add paid credit to an account.
    Topup {
        account: i64,
        /// Dollars paid, e.g. 10.00.
        #[arg(long)]
        usd: String,
        /// Credits per dollar bought (1, 4, 6...).
        #[arg(long, default_value_t = 1)]
        multiplier: u32,
        /// Retrying with the same key changes nothing (default: a new one).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// An account's ledger.
    Ledger { account: i64 },
    /// An account's usage by model and day.
    Usage {
        account: i64,
        #[arg(long)]
        day: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        key: Option<i64>,
    },
    /// Models and their prices.
    Models,
    /// Read the gateway's configuration file again (as SIGHUP does); a
    /// file it refuses leaves the one in force, and the reason is printed.
    Reload,
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let enc =
        |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect::<Vec<_>>()
        .join("&")
}

fn fresh_key() -> String {
    let mut bytes = [0u8; 12];
    let _ = getrandom::getrandom(&mut bytes);
    format!("cli-{}", hex::encode(bytes))
}

/// What to send for `command`: method, path, body.
fn request(command: AdminCommand) -> (&'static str, String, Option<Value>) {
    match command {
        AdminCommand::Accounts(AccountsCommand::Create { name, plan, trial_ends_at }) => {
            let mut body = json!({"name": name, "plan": plan});
            if let Some(t) = trial_ends_at {
                body["trial_ends_at"] = json!(t);
            }
            ("POST", "/admin/v1/accounts".into(), Some(body))
        }
        AdminCommand::Accounts(AccountsCommand::Show { id }) => {
            ("GET", format!("/admin/v1/accounts/{id}"), None)
        }
        AdminCommand::Accounts(AccountsCommand::Update { id, plan, status }) => {
            let mut body = json!({});
            if let Some(p) = plan {
                body["plan"] = json!(p);
            }
            if let Some(s) = status {
                body["status"] = json!(s);
            }
            ("PATCH", format!("/admin/v1/accounts/{id}"), Some(body))
        }
        AdminCommand::Keys(KeysCommand::Create {
            account,
            name,
            spend_cap_usd,
            models,
            fallback_model,
            expires_at,
        }) => {
            let mut body = json!({"name": name});
            if let Some(c) = spend_cap_usd {
                body["spend_cap_usd"] = json!(c);
            }
            if !models.is_empty() {
                body["models"] = json!(models);
            }
            if let Some(f) = fallback_model {
                body["fallback_model"] = json!(f);
            }
            if let Some(e) = expires_at {
                body["expires_at"] = json!(e);
            }
            ("POST", format!("/admin/v1/accounts/{account}/keys"), Some(body))
        }
        AdminCommand::Keys(KeysCommand::Show { id }) => ("GET", format!("/admin/v1/keys/{id}"), None),
        AdminCommand::Keys(KeysCommand::Revoke { id }) => ("DELETE", format!("/admin/v1/keys/{id}"), None),
        AdminCommand::Topup { account, usd, multiplier, idempotency_key } => {
            let key = idempotency_key.unwrap_or_else(fresh_key);
            let body = json!({"amount_usd": usd, "multiplier": multiplier, "idempotency_key": key});
            ("POST", format!("/admin/v1/accounts/{account}/topups"), Some(body))
        }
        AdminCommand::Ledger { account } => ("GET", format!("/admin/v1/ledger?account={account}"), None),
        AdminCommand::Usage { account, day, model, key } => {
            let q = query(&[("day", day), ("model", model), ("key", key.map(|k| k.to_string()))]);
            let sep = if q.is_empty() { "" } else { "&" };
            ("GET", format!("/admin/v1/usage?account={account}{sep}{q}"), None)
        }
        AdminCommand::Models => ("GET", "/admin/v1/models".into(), None),
        AdminCommand::Reload => ("POST", "/admin/v1/reload".into(), None),
    }
}

/// Runs `command` against the admin API; prints the answer. The exit
/// status: 0 on success, 1 when the API refused, 2 when it could not be reached.
pub fn run(target: &AdminTarget, command: AdminCommand) -> std::process::ExitCode {
    let (method, path, body) = request(command);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(send(target, method, &path, body)) {
        Ok((status, answer)) => {
            println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
            if (200..300).contains(&status) {
                std::process::ExitCode::SUCCESS
            } else {
                eprintln!("tollgate: the admin API answered {status}");
                std::process::ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("tollgate: {}: {e}", target.admin_url);
            std::process::ExitCode::from(2)
        }
    }
}

async fn send(
    target: &AdminTarget,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let authority = target
        .admin_url
        .strip_prefix("http://")
        .ok_or("the admin URL must be http://host:port (the admin API listens without TLS)")?
        .trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("authorization", format!("Bearer {}", target.token))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(payload)))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let answer = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Ok((status, answer))
}
