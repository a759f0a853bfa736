//! `tollgate serve` runs the gateway; `tollgate check` validates a config;
//! `accounts`, `keys`, `topup`, `ledger`, `usage` and `models` drive a
//! running gateway through its admin API.

use clap::{Parser, Subcommand};

/// glibc's malloc took a quarter of the gateway's CPU under load (its
/// arenas, and frees on another thread than the allocation's): mimalloc's
/// thread-local free lists take a fraction of that (BENCHMARKS.md). Called
/// through `tollgate_alloc`, not the `mimalloc` crate, whose every call
/// took mimalloc's aligned path (see alloc/src/lib.rs).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tollgate_alloc::Mimalloc = tollgate_alloc::Mimalloc;
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate::admin::cli::{AdminCommand, AdminTarget};

#[derive(Parser)]
#[command(name = "tollgate", version, about = "LLM API gateway on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    admin: AdminTarget,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(short, long)]
        config: PathBuf,
        /// Take over the listeners of a running instance (zero-downtime upgrade).
        #[arg(short, long)]
        upgrade: bool,
        /// Run in the background.
        #[arg(short, long)]
        daemon: bool,
    },
    /// Validate a configuration file and exit.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Accounts, keys, top-ups, the ledger, usage and prices of a running
    /// gateway, through its admin API.
    #[command(flatten)]
    Admin(AdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Admin(command) => tollgate::admin::cli::run(&cli.admin, command),
        Command::Check { config } => match load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Serve { config, upgrade, daemon } => {
            let cfg = match load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let level = cfg.server.log_level.clone().unwrap_or_else(|| "info".to_string());
            tollgate::logging::init(&level, cfg.log.format);
            tollgate::logging::raise_open_files_limit();
            let flags = tollgate::server::RunFlags { upgrade, daemon, config_path: Some(absolute(&config)) };
            match tollgate::server::build(&cfg, flags) {
                Ok(server) => server.run_forever(),
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// The file as a reload will find it again, wherever `--daemon` moved the
/// working directory to.
fn absolute(path: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn load(path: &std::path::Path) -> Result<tollgate::config::Config, String> {
    let cfg = tollgate::config::load_file(path).map_err(|e| e.to_string())?;
    tollgate::gateway::Gateway::from_config(&cfg).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(cfg)
}
