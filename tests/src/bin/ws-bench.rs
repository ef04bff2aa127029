//! WebSocket benchmark of the gateway: memory per idle connection, and requests per second per
//! core under ping and account-add/remove churn.
//!
//! It starts the release binary `sylkrtc-gateway` (next to this program in `target/release`)
//! as a child process on a free loopback port, then:
//! 1. opens `--idle` connections that each read the ready event and do one ping, and reports
//!    the growth of the gateway's resident memory (VmRSS) divided by their number;
//! 2. runs `--connections` clients, each sending batches of `--window` pipelined requests
//!    (account-add, ping, account-remove, ping, ...) for `--seconds`, and reports requests per
//!    second of wall time and per second of the gateway's CPU time (user + system, from
//!    /proc), which is the figure per core.
//!
//! Run it with `tests/bench-ws` (which builds both in release mode first).

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use gateway_tests::bench::{Error, GatewayProcess, Ws, connect, cpu_seconds, rss_kib};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Idle connections for the memory measurement.
    #[arg(long, default_value_t = 5000)]
    idle: usize,
    /// Concurrent connections for the throughput measurement.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Duration of the throughput measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let config = format!(
        // All the clients come from one address: the per-source limit must not count them.
        "max_connections_per_source = {0}\n[websocket]\nmax_connections = {0}\n[sip]\nlisten = \"127.0.0.1\"\nudp_port = 0\ntcp_port = 0\n[log]\nlevel = \"warn\"\n",
        args.idle + args.connections + 16
    );
    // The client runs on one thread, so that it takes at most one of the machine's cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The other signalling endpoints' idle connections, each in a gateway of its own (freed
    // memory stays with the process, so one gateway would measure only the first endpoint).
    let mut seeds = Vec::new();
    for path in ["/signaling", "/webrtcsink"] {
        let gateway = GatewayProcess::start(&config)?;
        let url = gateway.url().replace("/webrtcgateway/ws", path);
        let kib = runtime.block_on(idle_seed_connections(&url, gateway.pid(), args.idle))?;
        seeds.push((path, kib));
    }
    let gateway = GatewayProcess::start(&config)?;
    runtime.block_on(bench(&args, &gateway.url(), gateway.pid(), &seeds))
}

/// KiB of gateway memory per idle connection to a signalling endpoint at `url` (no
/// subprotocol, nothing sent).
async fn idle_seed_connections(url: &str, pid: u32, count: usize) -> Result<f64, Error> {
    let (warm, _) = tokio_tungstenite::connect_async(url).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid)?;
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        idle.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;
    drop((warm, idle));
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

async fn bench(args: &Args, url: &str, pid: u32, seeds: &[(&str, f64)]) -> Result<(), Error> {
    // Warm up: the first connection allocates the runtime's and allocator's per-thread state.
    let mut warm = connect(url).await?;
    ping(&mut warm, "warm").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid)?;
    let mut idle = Vec::with_capacity(args.idle);
    for index in 0..args.idle {
        let mut ws = connect(url).await?;
        ping(&mut ws, &format!("i{index}")).await?;
        idle.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;
    let per_connection = (after.saturating_sub(before)) as f64 * 1024.0 / args.idle as f64;
    drop(idle);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        clients.push(connect(url).await?);
    }
    let cpu_before = cpu_seconds(pid)?;
    let own_before = cpu_seconds(std::process::id())?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, ws)| tokio::spawn(churn(ws, index, args.window, deadline)))
        .collect();
    let (mut requests, mut errors) = (0u64, 0u64);
    for task in tasks {
        let (done, failed) = task.await??;
        requests += done;
        errors += failed;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu_before;
    let own = cpu_seconds(std::process::id())? - own_before;

    println!("## ws-bench");
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| idle connections | {} |", args.idle);
    println!("| gateway RSS before / after | {before} KiB / {after} KiB |");
    println!(
        "| memory per idle connection | {:.1} KiB |",
        per_connection / 1024.0
    );
    for (path, kib) in seeds {
        println!("| memory per idle connection at {path} | {kib:.1} KiB |");
    }
    println!(
        "| churn connections x window | {} x {} |",
        args.connections, args.window
    );
    println!("| requests answered (errors) | {requests} ({errors}) |");
    println!("| wall time | {wall:.2} s |");
    println!(
        "| requests per second (wall) | {:.0} |",
        requests as f64 / wall
    );
    println!(
        "| gateway CPU time | {cpu:.2} s ({:.0}% of one core) |",
        cpu / wall * 100.0
    );
    println!(
        "| requests per second per gateway core | {:.0} |",
        requests as f64 / cpu
    );
    println!("| client CPU time | {own:.2} s |");
    if errors > 0 {
        return Err(format!("{errors} requests got errors").into());
    }
    Ok(())
}

async fn ping(ws: &mut Ws, transaction: &str) -> Result<(), Error> {
    ws.send(Message::text(format!(
        r#"{{"sylkrtc":"ping","transaction":"{transaction}"}}"#
    )))
    .await?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.contains("\"ack\"") => Ok(()),
        other => Err(format!("expected an ack, got {other:?}").into()),
    }
}

/// Sends batches of `window` pipelined requests until `deadline`; returns (answered, errors).
async fn churn(
    mut ws: Ws,
    index: usize,
    window: usize,
    deadline: Instant,
) -> Result<(u64, u64), String> {
    let (mut answered, mut errors, mut serial) = (0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        for _ in 0..window {
            let account = format!("user{index}x{}@example.com", serial / 4);
            let text = match serial % 4 {
                0 => format!(
                    r#"{{"sylkrtc":"account-add","transaction":"{serial}","account":"{account}","password":"884edfee38ed471b8a15006700139485"}}"#
                ),
                2 => format!(
                    r#"{{"sylkrtc":"account-remove","transaction":"{serial}","account":"{account}"}}"#
                ),
                _ => format!(r#"{{"sylkrtc":"ping","transaction":"{serial}"}}"#),
            };
            ws.feed(Message::text(text))
                .await
                .map_err(|e| e.to_string())?;
            serial += 1;
        }
        ws.flush().await.map_err(|e| e.to_string())?;
        for _ in 0..window {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    answered += 1;
                    errors += u64::from(!text.contains("\"ack\""));
                }
                other => return Err(format!("connection {index}: {other:?}")),
            }
        }
    }
    Ok((answered, errors))
}
