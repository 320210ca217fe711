//! The `tocsin` binary: parses the command line, sets up logging, and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use tocsin::config::{self, ConfigError, ConfigSource};

#[derive(Parser)]
#[command(
    name = "tocsin",
    version,
    about = "Tells the truth about outages, fast."
)]
struct Cli {
    /// Log level or filter (e.g. `debug`, `tocsin=debug,info`); RUST_LOG when unset.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log format; human on a terminal by default.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, default_value = "/etc/tocsin/tocsin.toml")]
        config: PathBuf,
    },
    /// Validate a configuration: exit 0 when valid, else 1 with every error on stderr.
    CheckConfig {
        #[arg(long, default_value = "/etc/tocsin/tocsin.toml")]
        config: PathBuf,
    },
    /// Run the detection and incident engine on recorded results (JSON lines), offline.
    Replay {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        input: PathBuf,
        /// Where to write the events and summary; standard output by default.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Self-contained demo: simulated endpoints, a realistic outage, the status page.
    Demo {
        #[arg(long, default_value = "127.0.0.1:9898")]
        listen: SocketAddr,
        /// Time acceleration of the scenario (2 = twice as fast).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref(), cli.log_format);
    match cli.command {
        Command::CheckConfig { config } => check_config(config),
        Command::Replay {
            config,
            input,
            output,
        } => exit(replay(config, input, output)),
        Command::Run { config } => exit(runtime().and_then(|rt| rt.block_on(run(config)))),
        Command::Demo { listen, speed } => exit(runtime().and_then(|rt| {
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                tocsin::demo::run(listener, speed, shutdown_on_signal()).await?;
                Ok(())
            })
        })),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ConfigError::Invalid(_) | ConfigError::Load(_)) = e.downcast_ref() {
                eprintln!("{e}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(1)
        }
    }
}

fn check_config(path: PathBuf) -> ExitCode {
    let source = ConfigSource::File(path);
    match config::load(&source) {
        Ok(settings) => {
            println!(
                "{source}: valid ({} services, {} groups, {} targets, {} receivers)",
                settings.topology.services.len(),
                settings.topology.groups.len(),
                settings.topology.targets.len(),
                settings.receivers.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{source}: invalid configuration");
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn replay(config: PathBuf, input: PathBuf, output: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = config::load(&ConfigSource::File(config))?;
    let file =
        std::fs::File::open(&input).with_context(|| format!("cannot open {}", input.display()))?;
    let input = std::io::BufReader::with_capacity(1 << 20, file);
    let totals = match &output {
        None => tocsin::replay::run(settings, input, std::io::stdout().lock())?,
        Some(path) => {
            // Written next to the target and renamed into place: a failed replay never
            // leaves a file that looks complete.
            let partial = path.with_extension("partial");
            let file = std::fs::File::create(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let totals = tocsin::replay::run(settings, input, std::io::BufWriter::new(file))
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&partial);
                })?;
            std::fs::rename(&partial, path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            totals
        }
    };
    tracing::info!(
        lines = totals.lines,
        events = totals.events,
        incidents = totals.incidents,
        "replay complete"
    );
    Ok(())
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let source = ConfigSource::File(path);
    let settings = config::load(&source)?;
    let listener = tokio::net::TcpListener::bind(settings.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
    tocsin::app::run(source, settings, listener, shutdown_on_signal()).await?;
    Ok(())
}

/// A token cancelled on SIGINT or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}

fn init_logging(level: Option<&str>, format: LogFormat) {
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
