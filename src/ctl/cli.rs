//! `boltlinkctl`'s command line: the clap command tree and the dispatch to the commands of
//! [`crate::ctl`]. The binary parses the arguments into [`Cli`] and calls [`run()`].
//!
//! Exit status: 0 success, 1 failure (one line on stderr saying what went wrong), 2 a bad
//! command line (clap), 78 a configuration error, 71 when no runtime can be started.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use super::scale::Scale;
use super::{lifecycle, logs, render, run, scale, settings, setup, status};
use crate::config::Config;
use crate::daemon::Exit;

#[derive(Parser)]
#[command(
    name = "boltlinkctl",
    version,
    about = "Operate a BoltLink installation"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every unit of the suite (state, PID, uptime, memory, CPU, restarts, STATUS= line),
    /// click stream, consumer lag and webhook deliveries pending, PostgreSQL and Redis; exits 1
    /// if anything is unhealthy.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Rolling restart: API instances one at a time (the next once the previous serves
    /// again), then worker, aggregator and webhooks; stops at the first failure.
    Restart {
        /// Exit 0 without doing anything when boltlink.target is not active (what the
        /// package runs after an upgrade).
        #[arg(long)]
        if_running: bool,
    },
    /// Stop the whole suite, including the listening socket.
    Stop,
    /// Set the number of API instances (API_INSTANCES in the env file), reload systemd,
    /// start the new instances and stop the surplus ones.
    Scale {
        /// A number from 1 to 256, or "auto" for one per CPU.
        #[arg(value_parser = Scale::parse)]
        instances: Scale,
    },
    /// Show the suite's journal (journalctl underneath).
    Logs {
        /// api, api@N, worker, aggregator, webhooks, socket, target, or a unit name; default:
        /// all.
        unit: Option<String>,
        /// Keep following new entries.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many recent entries to show.
        #[arg(short = 'n', long)]
        lines: Option<u32>,
    },
    /// Print every configuration variable with the value in effect and where it comes from
    /// (default, setup.env, the env file, or the environment), secrets hidden; exits 78 with
    /// one line naming the variable when the configuration is invalid.
    Config {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Apply pending database migrations (safe to run while the suite is up).
    Migrate,
    /// Make this machine's installation ready: with no DATABASE_URL configured, create the
    /// PostgreSQL role and database `boltlink` (local server, as the postgres account) and
    /// write DATABASE_URL to /etc/boltlink/setup.env; then apply migrations and check Redis.
    /// Safe to run again.
    Setup {
        /// Create the role and database on the server this superuser URL points at instead
        /// of the local one (postgres://USER:PASSWORD@HOST:PORT/postgres).
        #[arg(long, value_name = "URL")]
        admin_url: Option<String>,
        /// Name of the role and of the database to create.
        #[arg(long, default_value = setup::DEFAULT_NAME)]
        name: String,
        /// Do nothing when a database is already configured (what the package runs).
        #[arg(long)]
        if_unconfigured: bool,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run the whole suite in the foreground (development): one boltlink-api per core on one
    /// shared socket bound to BIND_ADDR, plus worker, aggregator and webhooks when installed.
    Run {
        /// Number of API processes, or "auto" for one per CPU.
        #[arg(long, default_value = "auto", value_parser = run::parse_instances)]
        instances: usize,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (once) on stdout.
    Create {
        /// An admin key sees and manages every key's links and campaigns.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// List keys (prefix only; secrets are never stored).
    List,
    /// Revoke a key by id or by its 10-character prefix.
    Revoke { key: String },
}

/// Runs one command line.
pub fn run(cli: Cli) -> ExitCode {
    // Commands that only talk to systemd work without a valid configuration: they are what
    // an operator reaches for when the configuration is broken.
    match cli.command {
        Command::Stop => return report(lifecycle::stop(&mut std::io::stdout())),
        Command::Scale { instances } => {
            return report(scale::scale(instances, &mut std::io::stdout()))
        }
        Command::Logs {
            unit,
            follow,
            lines,
        } => return report(logs::logs(unit.as_deref(), follow, lines)),
        Command::Restart { if_running } => {
            return with_runtime(|| async {
                lifecycle::rolling_restart(&mut std::io::stdout(), if_running).await
            })
        }
        Command::Status { json } => return status(json),
        Command::Config { json } => return show_config(json),
        Command::Setup {
            admin_url,
            name,
            if_unconfigured,
        } => return setup(admin_url, name, if_unconfigured),
        Command::Migrate | Command::Keys { .. } | Command::Run { .. } => {}
    }
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("boltlinkctl: {e}");
            return Exit::Config.into();
        }
    };
    crate::telemetry::init(&config.process.log_level, "boltlinkctl");
    match cli.command {
        Command::Run { instances } => run_suite(&config, instances),
        Command::Keys { command } => with_runtime(|| keys(&config, command)),
        _ => with_runtime(|| async {
            super::migrate(&config).await?;
            eprintln!("boltlinkctl: migrations are up to date");
            Ok(())
        }),
    }
}

async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { admin, name, email } => {
            let opts = super::KeyOptions {
                admin,
                name: name.as_deref(),
                email: email.as_deref(),
            };
            let (secret, id) = super::create_key(config, opts).await?;
            println!("{secret}");
            eprintln!(
                "boltlinkctl: created {}key {id}; store it now, it cannot be shown again",
                if admin { "admin " } else { "" }
            );
        }
        KeysCommand::List => print!("{}", super::list_keys(config).await?),
        KeysCommand::Revoke { key } => match super::revoke_key(config, &key).await? {
            0 => anyhow::bail!("no active key matches {key:?}"),
            n => eprintln!("boltlinkctl: revoked {n} key(s)"),
        },
    }
    Ok(())
}

/// Prints an error on one line and maps it to exit status 1.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boltlinkctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn with_runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => report(rt.block_on(f())),
        Err(e) => {
            eprintln!("boltlinkctl: cannot start the runtime: {e}");
            Exit::OsError.into()
        }
    }
}

/// `status`: exit 0 when healthy, 1 when anything is unhealthy or cannot be determined.
fn status(json: bool) -> ExitCode {
    let config = Config::from_process_env().map_err(|e| e.to_string());
    let mut healthy = false;
    let code = with_runtime(|| async {
        let report = status::status(config.as_ref().map_err(Clone::clone)).await?;
        healthy = report.healthy;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!(
                "{}",
                render::render_status(&report, chrono::Utc::now().timestamp())
            );
        }
        Ok(())
    });
    if code == ExitCode::SUCCESS && !healthy {
        ExitCode::FAILURE
    } else {
        code
    }
}

/// `config` reads the env files itself, to say which file each value came from.
fn show_config(json: bool) -> ExitCode {
    match settings::show(std::env::vars().collect(), json, &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(settings::ShowError::Config(line)) => {
            eprintln!("boltlinkctl: {line}");
            Exit::Config.into()
        }
        Err(e) => report(Err(e.into())),
    }
}

/// `setup` runs before a configuration exists, so it reads the env files itself.
fn setup(admin_url: Option<String>, name: String, if_unconfigured: bool) -> ExitCode {
    let mut config_error = false;
    let code = with_runtime(|| async {
        let opts = setup::SetupOptions {
            admin_url,
            name,
            if_unconfigured,
        };
        match setup::setup(opts, &mut std::io::stdout()).await {
            Ok(()) => Ok(()),
            Err(setup::SetupError::Config(e)) => {
                config_error = true;
                Err(e.into())
            }
            Err(setup::SetupError::Failed(e)) => Err(e),
        }
    });
    if config_error {
        Exit::Config.into()
    } else {
        code
    }
}

fn run_suite(config: &Config, instances: usize) -> ExitCode {
    match run::run_until_signalled(config, instances) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("boltlinkctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
