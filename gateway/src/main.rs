//! The `sylkrtc-gateway` binary: reads the configuration, sets up logging and runs the gateway
//! until SIGINT, or until SIGTERM's drain is over.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use gateway::Config;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// A WebRTC-to-SIP gateway speaking the sylkRTC WebSocket protocol.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file [default: ./config.toml, or built-in defaults when it is absent]
    #[arg(short, long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Check the configuration (and the TLS files it names), print the result and exit.
    #[arg(long)]
    check_config: bool,
    /// Print the Matrix application service's registration file (from `[matrix]`), for the
    /// homeserver, and exit.
    #[arg(long)]
    matrix_registration: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sylkrtc-gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let (config, source) = Config::load(args.config.as_deref())?;
    let source = source.map_or_else(
        || "built-in defaults".to_owned(),
        |path| path.display().to_string(),
    );
    if args.matrix_registration {
        let registration = gateway::matrix_registration(&config)
            .map_err(|error| anyhow::anyhow!("matrix registration: {error}"))?;
        // The file itself goes to standard output, to be redirected into place.
        std::io::Write::write_all(&mut std::io::stdout(), registration.as_bytes())
            .context("cannot write the registration")?;
        return Ok(());
    }
    if args.check_config {
        // Loading the TLS files is part of the check: a bad path or key is caught before deploying.
        gateway::check(&config)?;
        eprintln!("configuration OK ({source})");
        return Ok(());
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .with_context(|| format!("invalid log.level {:?}", config.log.level))?;
    tracing_subscriber::fmt()
        .with_env_filter(without_payloads(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    info!(config = %source, version = env!("CARGO_PKG_VERSION"), "starting sylkrtc-gateway");
    raise_descriptor_limit();

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let server = gateway::Server::bind(&config).await?;
        tokio::spawn(stop_on_signal(shutdown.clone(), server.drain()));
        server.run(shutdown).await?;
        anyhow::Ok(())
    })
}

/// The WebSocket library logs every frame's payload, as text and as hex, at trace level: the
/// passwords and HA1s of `account-add` with them. No filter a user sets may show those (the
/// gateway's own `trace_client` masks the secrets instead), so when the filter reaches trace
/// level, the WebSocket library is held at debug. Its debug lines carry no payloads.
fn without_payloads(filter: EnvFilter) -> EnvFilter {
    if filter
        .max_level_hint()
        .is_some_and(|level| level < LevelFilter::TRACE)
    {
        return filter;
    }
    ["tungstenite=debug", "tokio_tungstenite=debug"]
        .into_iter()
        .filter_map(|directive| directive.parse().ok())
        .fold(filter, EnvFilter::add_directive)
}

/// Every connection, call port and WebSocket takes a file descriptor, and the usual soft limit
/// (1,024) is far below what a gateway holds: raise it to the hard limit, and say what it is.
fn raise_descriptor_limit() {
    let before = match rlimit::Resource::NOFILE.get() {
        Ok((soft, _)) => soft,
        Err(error) => {
            warn!(%error, "cannot read the file descriptor limit");
            return;
        }
    };
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(
            limit,
            was = before,
            "file descriptors: connections, calls and WebSockets share this limit"
        ),
        Err(error) => warn!(%error, limit = before, "cannot raise the file descriptor limit"),
    }
}

/// SIGTERM drains the gateway (its calls go on, up to `[instance] drain_timeout`, while new
/// ones go to other instances); SIGINT, or a second SIGTERM, shuts it down at once.
async fn stop_on_signal(shutdown: CancellationToken, drain: gateway::Drain) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("cannot install signal handlers: stop the gateway with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = interrupt.recv() => {
                info!("SIGINT: shutting down");
                break;
            }
            _ = terminate.recv() => {
                if drain.begin() {
                    info!("SIGTERM: draining (a second SIGTERM, or SIGINT, stops at once)");
                    continue;
                }
                info!("SIGTERM again: shutting down");
                break;
            }
        }
    }
    shutdown.cancel();
}
