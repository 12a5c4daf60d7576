//! `boltlinkctl`: operate a BoltLink installation.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use boltlink::config::{Config, EXIT_CONFIG};
use boltlink::ctl;
use boltlink::ctl::setup;
use boltlink::ctl::units::{self, Scale};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "boltlinkctl",
    version,
    about = "Operate a BoltLink installation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every unit of the suite (state, PID, uptime, memory, CPU, restarts, STATUS= line),
    /// click stream and consumer lag, PostgreSQL and Redis; exits 1 if anything is unhealthy.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Rolling restart: API instances one at a time (the next once the previous serves
    /// again), then worker and aggregator; stops at the first failure.
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
        /// api, api@N, worker, aggregator, socket, target, or a unit name; default: all.
        unit: Option<String>,
        /// Keep following new entries.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many recent entries to show.
        #[arg(short = 'n', long)]
        lines: Option<u32>,
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
    /// shared socket bound to BIND_ADDR, plus worker and aggregator when installed.
    Run {
        /// Number of API processes, or "auto" for one per CPU.
        #[arg(long, default_value = "auto", value_parser = ctl::parse_instances)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that only talk to systemd work without a valid configuration: they are what
    // an operator reaches for when the configuration is broken.
    match cli.command {
        Command::Stop => return report(units::stop(&mut std::io::stdout())),
        Command::Scale { instances } => {
            return report(units::scale(instances, &mut std::io::stdout()))
        }
        Command::Logs {
            unit,
            follow,
            lines,
        } => return report(units::logs(unit.as_deref(), follow, lines)),
        Command::Restart { if_running } => {
            return with_runtime(|| async {
                units::rolling_restart(&mut std::io::stdout(), if_running).await
            })
        }
        Command::Status { json } => return status(json),
        Command::Setup {
            admin_url,
            name,
            if_unconfigured,
        } => return setup(admin_url, name, if_unconfigured),
        _ => {}
    }
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("boltlinkctl: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    boltlink::telemetry::init(&config.process.log_level, "boltlinkctl");
    if let Command::Run { instances } = cli.command {
        return run_suite(&config, instances);
    }
    with_runtime(|| async {
        match cli.command {
            Command::Migrate => {
                ctl::migrate(&config).await?;
                eprintln!("boltlinkctl: migrations are up to date");
            }
            Command::Keys { command } => match command {
                KeysCommand::Create { admin, name, email } => {
                    let opts = ctl::KeyOptions {
                        admin,
                        name: name.as_deref(),
                        email: email.as_deref(),
                    };
                    let (secret, id) = ctl::create_key(&config, opts).await?;
                    println!("{secret}");
                    eprintln!(
                        "boltlinkctl: created {}key {id}; store it now, it cannot be shown again",
                        if admin { "admin " } else { "" }
                    );
                }
                KeysCommand::List => print!("{}", ctl::list_keys(&config).await?),
                KeysCommand::Revoke { key } => match ctl::revoke_key(&config, &key).await? {
                    0 => anyhow::bail!("no active key matches {key:?}"),
                    n => eprintln!("boltlinkctl: revoked {n} key(s)"),
                },
            },
            _ => unreachable!("handled above"),
        }
        Ok(())
    })
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
            ExitCode::from(71)
        }
    }
}

/// `status`: exit 0 when healthy, 1 when anything is unhealthy or cannot be determined.
fn status(json: bool) -> ExitCode {
    let config = Config::from_process_env().map_err(|e| e.to_string());
    let mut healthy = false;
    let code = with_runtime(|| async {
        let report = units::status(config.as_ref().map_err(Clone::clone)).await?;
        healthy = report.healthy;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!(
                "{}",
                units::render_status(&report, chrono::Utc::now().timestamp())
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
        ExitCode::from(EXIT_CONFIG as u8)
    } else {
        code
    }
}

fn run_suite(config: &Config, instances: usize) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    // Signals arrive on a small runtime thread; the supervisor loop polls the flag.
    let flag = stop.clone();
    let signals = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                        if flag.load(Ordering::Relaxed) { return; }
                        continue;
                    }
                }
                flag.store(true, Ordering::Relaxed);
                return;
            }
        });
    });
    let result = ctl::run_suite(config, instances, &stop);
    stop.store(true, Ordering::Relaxed);
    let _ = signals.join();
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("boltlinkctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
