//! The `tocsin` binary: parses the command line, sets up logging, and calls the library.

/// mimalloc rather than glibc's malloc: with thousands of probes a second spread over the
/// runtime's threads, glibc's per-thread arenas kept ~8 KiB per target of freed memory
/// resident (benches/scale.sh); mimalloc returns it, and is faster on the probe path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in the `mi_option_e` enum of the mimalloc v3 header vendored by
/// libmimalloc-sys 0.1.49 (pinned with `=` in Cargo.toml; the crate exports no constant).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the system at once rather than after a delay (1 s by default)
/// that only runs out on a later allocation by the same thread: threads that go quiet (the main thread
/// after parsing the configuration) would otherwise hold their garbage for good. Costs no
/// measurable CPU per probe (benches/scale.sh: ~1 KiB less RSS per target at 10 000).
///
/// And no transparent huge pages: where the kernel backs the heap with 2 MiB pages (THP
/// `always`, the default of many distributions), memory freed inside one stays resident until
/// the whole 2 MiB is free, so the bursts of an outage storm (page and API renders, incident
/// bodies) left the daemon 5–40 % above its steady size for good (benches/storm.sh at
/// 10 000 targets: back within 5 % of steady in a second without, 5–23 % above it with).
#[allow(unsafe_code)]
fn keep_resident_memory_low() {
    // SAFETY: setting an option has no preconditions; mimalloc reads it on every purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
    // It applies to the mappings made before this call too, and overrides the
    // MADV_HUGEPAGE mimalloc asks for on its arenas. A kernel without it leaves THP as it
    // is, which costs memory, not correctness.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

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
        /// The configuration file (TOML); `TOCSIN__SECTION__KEY` variables override it.
        #[arg(long, default_value = "/etc/tocsin/tocsin.toml")]
        config: PathBuf,
    },
    /// Validate a configuration: exit 0 when valid, else 1 with every error on stderr.
    CheckConfig {
        /// The configuration file to check.
        #[arg(long, default_value = "/etc/tocsin/tocsin.toml")]
        config: PathBuf,
    },
    /// Run the detection and incident engine on recorded results (JSON lines), offline.
    Replay {
        /// The configuration whose topology, thresholds and receivers are replayed.
        #[arg(long)]
        config: PathBuf,
        /// Recorded results, changes and acknowledgements, one JSON object per line.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the events and summary; standard output by default.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Run one probe now and print the result: exit 0 when it succeeds, 1 when it fails.
    Probe {
        /// http | tcp | tls | dns | icmp | sip | imap | smtp
        #[arg(long = "type")]
        kind: String,
        /// What to probe: a URL (http), host:port, a DNS server, a host (icmp), a SIP URI.
        #[arg(long)]
        target: String,
        /// Any probe option, `key=value` (JSON values keep their type: `valid_status=[200,204]`).
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// How long the probe may take (`500ms`, `5s`).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Read a password on standard input (one line) and print its argon2 hash, for a line
    /// `name:role:HASH` of `server.users_file`.
    HashPassword,
    /// Self-contained demo: simulated endpoints, a realistic outage, the status page.
    Demo {
        /// Where the status page and API listen.
        #[arg(long, default_value = "127.0.0.1:9898")]
        listen: SocketAddr,
        /// Time acceleration of the scenario (2 = twice as fast).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
}

fn main() -> ExitCode {
    keep_resident_memory_low();
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref(), cli.log_format);
    match cli.command {
        Command::CheckConfig { config } => check_config(config),
        Command::Replay {
            config,
            input,
            output,
        } => exit(replay(config, input, output)),
        Command::Probe {
            kind,
            target,
            options,
            timeout,
        } => match runtime().and_then(|rt| rt.block_on(probe(kind, target, options, timeout))) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => exit(Err(e)),
        },
        Command::HashPassword => exit(hash_password()),
        Command::Run { config } => exit(runtime().and_then(|rt| rt.block_on(run(config)))),
        Command::Demo { listen, speed } => exit(runtime().and_then(|rt| {
            rt.block_on(async {
                let listener = bind(listen, "--listen ADDR").await?;
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
            // Configuration errors are lines that say where they are, printed as they are.
            if e.downcast_ref::<ConfigError>().is_some() {
                eprintln!("{e}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(1)
        }
    }
}

fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password on standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(
        !password.is_empty(),
        "the password on standard input is empty"
    );
    println!("{}", tocsin::app::hash_password(password));
    Ok(())
}

fn check_config(path: PathBuf) -> ExitCode {
    let source = ConfigSource::File(path);
    match config::load(&source) {
        Ok(settings) => {
            let targets = settings.topology.targets.len();
            println!(
                "{source}: valid ({} services, {} groups, {targets} targets, {} receivers){}",
                settings.topology.services.len(),
                settings.topology.groups.len(),
                settings.receivers.len(),
                // Valid, as an empty file is: say so, for a file emptied by mistake.
                if targets == 0 {
                    "; no target: nothing to probe"
                } else {
                    ""
                }
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

/// `tocsin probe`: prints the result; `Ok(false)` when the probe failed.
async fn probe(
    kind: String,
    target: String,
    options: Vec<String>,
    timeout: std::time::Duration,
) -> anyhow::Result<bool> {
    use tocsin::probe::{Prober, adhoc};
    let mut table = adhoc::parse_options(&options).map_err(anyhow::Error::msg)?;
    table.insert("type".into(), serde_json::Value::String(kind.clone()));
    let spec = adhoc::build("probe", table, &target).map_err(anyhow::Error::msg)?;
    let result = Prober::new()?.run(&spec, timeout).await;
    let ms = |d: std::time::Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    match &result.failure {
        None => println!("ok    {kind} {target}  {}", ms(result.latency)),
        Some(f) => println!(
            "FAIL  {kind} {target}  {}  reason={}{}: {}",
            ms(result.latency),
            f.reason.as_str(),
            f.local
                .map(|c| format!(" (local: {}, not the target)", c.as_str()))
                .unwrap_or_default(),
            f.detail
        ),
    }
    let p = &result.phases;
    let phases: Vec<String> = [
        ("dns", p.dns),
        ("connect", p.connect),
        ("tls", p.tls),
        ("first_byte", p.first_byte),
        ("rtt", p.rtt),
        ("total", p.total),
    ]
    .iter()
    .filter_map(|(name, d)| d.map(|d| format!("{name} {}", ms(d))))
    .collect();
    if !phases.is_empty() {
        println!("      phases: {}", phases.join(", "));
    }
    if let Some(status) = result.http_status {
        println!("      http status: {status}");
    }
    if let Some(identity) = &result.peer.identity {
        println!("      peer: {identity}");
    }
    if let Some(counter) = result.peer.restart_counter {
        println!("      restart counter: {counter}");
    }
    if let Some(why) = &result.degraded {
        println!("      degraded: {why}");
    }
    if let Some(tls) = &result.tls {
        let days = (tls.earliest_expiry - chrono::Utc::now()).num_days();
        println!(
            "      tls: {}, {}, earliest certificate expiry {} ({days} days){}",
            tls.version,
            tls.cipher,
            tls.earliest_expiry.format("%Y-%m-%d"),
            if tls.expiring {
                ", within the warning"
            } else {
                ""
            }
        );
    }
    Ok(result.is_ok())
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
    let listener = bind(
        settings.server.listen,
        "`server.listen` in the configuration (or TOCSIN__SERVER__LISTEN)",
    )
    .await?;
    tocsin::app::run(source, settings, listener, shutdown_on_signal()).await?;
    Ok(())
}

/// Binds the HTTP listener; when the address is taken, says how to choose another.
async fn bind(address: SocketAddr, how_to_change: &str) -> anyhow::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(anyhow::anyhow!(
            "cannot listen on {address}: the address is already in use (another tocsin, or \
             another program); choose another with {how_to_change}"
        )),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot listen on {address}"))),
    }
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

/// Logs go to stderr. Under systemd (stderr is the stream named by `JOURNAL_STREAM`) text
/// lines carry no ANSI colours and no timestamp (journald stamps each line) but a `<N>`
/// syslog priority prefix, so `journalctl -p warning` works without a journald client crate.
fn init_logging(level: Option<&str>, format: LogFormat) {
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text if stderr_is_journal() => builder
            .with_ansi(false)
            .event_format(JournalPriority(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Whether stderr is the journal stream systemd set up: `JOURNAL_STREAM` is
/// `<device>:<inode>` of it, and children inherit the variable, so compare both.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    stream.to_str() == Some(&format!("{}:{}", meta.dev(), meta.ino()))
}

/// Prefixes each line with its sd-daemon(3) priority (`<3>` error … `<7>` debug).
struct JournalPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for JournalPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            tracing::Level::DEBUG | tracing::Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_index_reads_mimallocs_purge_delay_default() {
        // purge_delay defaults to 1000 (ms) in the vendored src/options.c; no other option
        // does, and the next one (use_numa_nodes) defaults to 0.
        // SAFETY: reading an option has no preconditions.
        let get = |option| unsafe { libmimalloc_sys::mi_option_get(option) };
        assert_eq!(get(MI_OPTION_PURGE_DELAY), 1000);
        assert_eq!(get(MI_OPTION_PURGE_DELAY + 1), 0);
    }
}
