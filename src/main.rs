//! `tollgate serve` runs the gateway; `tollgate check` validates a config.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "tollgate", version, about = "LLM API gateway on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
            tollgate::logging::init(&level);
            tollgate::logging::raise_open_files_limit();
            match tollgate::server::build(&cfg, tollgate::server::RunFlags { upgrade, daemon }) {
                Ok(server) => server.run_forever(),
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn load(path: &std::path::Path) -> Result<tollgate::config::Config, String> {
    let cfg = tollgate::config::load_file(path).map_err(|e| e.to_string())?;
    tollgate::gateway::Gateway::from_config(&cfg).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(cfg)
}
