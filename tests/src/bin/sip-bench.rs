//! Registration benchmark: `--accounts` accounts registered through kamailio at once.
//!
//! It starts kamailio (digest auth, a subscriber table of generated users) and the release
//! gateway as child processes on free loopback ports, opens `--connections` WebSocket
//! connections that add the accounts between them, then sends every `account-register` at
//! once and waits for every `registered` event. Each registration is two SIP transactions
//! (REGISTER, 401, REGISTER with credentials, 200). Reported: registrations per second of wall
//! time, the CPU time of the gateway and of kamailio (all its processes) for the same
//! registrations, and the growth of the gateway's resident memory per registered account.
//!
//! Run it with `tests/bench-sip`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use gateway_tests::bench::{
    Error, GatewayProcess, Ws, connect, cpu_seconds, rss_kib, tree_cpu_seconds,
};
use gateway_tests::peers::{Kamailio, KamailioOptions};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Accounts to register.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// WebSocket connections the accounts are spread over.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// `udp` or `tcp`.
    #[arg(long, default_value = "udp")]
    transport: String,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let db = gateway_tests::bench::subscribers(args.accounts)?;
    let kamailio = Kamailio::start(KamailioOptions {
        db: Some(db.path().to_path_buf()),
        ..KamailioOptions::default()
    });
    let config = format!(
        "max_connections_per_source = {0}\n[websocket]\nmax_connections = {0}\n[sip]\nlisten = \"127.0.0.1\"\nudp_port = 0\ntcp_port = 0\n\
         outbound_proxy = \"sip:127.0.0.1:{1};transport={2}\"\n[log]\nlevel = \"warn\"\n",
        args.connections + 16,
        kamailio.port,
        args.transport
    );
    let gateway = GatewayProcess::start(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(&args, &gateway, &kamailio))
}

async fn bench(args: &Args, gateway: &GatewayProcess, kamailio: &Kamailio) -> Result<(), Error> {
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        clients.push(connect(&gateway.url()).await?);
    }
    // Add every account first, so that the measurement covers registration only.
    let accounts: Vec<Vec<usize>> = (0..args.connections)
        .map(|client| (client..args.accounts).step_by(args.connections).collect())
        .collect();
    for (ws, mine) in clients.iter_mut().zip(&accounts) {
        for index in mine {
            let ha1 = sip::ha1(&format!("u{index}"), "127.0.0.1", &format!("pw{index}"));
            ws.feed(Message::text(format!(
                r#"{{"sylkrtc":"account-add","transaction":"a{index}","account":"u{index}@127.0.0.1","password":"{ha1}"}}"#
            )))
            .await?;
        }
        ws.flush().await?;
        for _ in mine {
            expect(ws, "\"ack\"").await?;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_kib(gateway.pid())?;
    let gateway_cpu = cpu_seconds(gateway.pid())?;
    let kamailio_cpu = tree_cpu_seconds(kamailio.pid())?;
    let started = Instant::now();
    for (ws, mine) in clients.iter_mut().zip(&accounts) {
        for index in mine {
            ws.feed(Message::text(format!(
                r#"{{"sylkrtc":"account-register","transaction":"r{index}","account":"u{index}@127.0.0.1"}}"#
            )))
            .await?;
        }
        ws.flush().await?;
    }
    let waits = clients
        .into_iter()
        .zip(accounts.iter().map(Vec::len))
        .map(|(ws, count)| wait_registered(ws, count));
    let results = futures_util::future::join_all(waits).await;
    let wall = started.elapsed().as_secs_f64();
    let gateway_cpu = cpu_seconds(gateway.pid())? - gateway_cpu;
    let kamailio_cpu = tree_cpu_seconds(kamailio.pid())? - kamailio_cpu;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after = rss_kib(gateway.pid())?;
    let mut clients = Vec::new();
    for result in results {
        clients.push(result?);
    }
    // kamailio's control socket cannot dump a thousand bindings in one reply; its log has a
    // line for each binding it saved (more than one for a retransmitted REGISTER).
    let saved = kamailio.log.text();
    let bindings = saved
        .lines()
        .filter_map(|line| line.split("REGISTER ok sip:").nth(1))
        .filter_map(|rest| rest.split('@').next())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let registers = saved
        .lines()
        .filter(|line| line.contains("REGISTER sip:u") || line.contains("REGISTER ok sip:u"))
        .count();
    let n = args.accounts as f64;
    println!("## sip-bench");
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| accounts registered ({}) | {} over {} connections |",
        args.transport, args.accounts, args.connections
    );
    println!("| accounts kamailio saved a binding for | {bindings} |");
    println!("| REGISTERs kamailio handled (2 per registration without loss) | {registers} |");
    println!("| wall time, first REGISTER to last registered | {wall:.2} s |");
    println!("| registrations per second (wall) | {:.0} |", n / wall);
    println!(
        "| gateway CPU | {gateway_cpu:.2} s ({:.0} µs per registration) |",
        gateway_cpu / n * 1e6
    );
    println!(
        "| kamailio CPU (all processes) | {kamailio_cpu:.2} s ({:.0} µs per registration) |",
        kamailio_cpu / n * 1e6
    );
    println!(
        "| gateway CPU / kamailio CPU | {:.2} |",
        gateway_cpu / kamailio_cpu.max(0.01)
    );
    println!("| gateway RSS before / after | {rss_before} KiB / {rss_after} KiB |");
    println!(
        "| memory per registered account | {:.1} KiB |",
        rss_after.saturating_sub(rss_before) as f64 / n
    );
    if bindings != args.accounts {
        return Err(format!("{bindings} bindings for {} accounts", args.accounts).into());
    }
    drop(clients);
    Ok(())
}

/// Reads until the next message containing `needle`.
async fn expect(ws: &mut Ws, needle: &str) -> Result<(), Error> {
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) if text.contains(needle) => Ok(()),
        other => Err(format!("expected {needle}, got {other:?}").into()),
    }
}

/// Waits until `count` accounts of this connection are registered (acks and `registering`
/// events are skipped; `failed` is an error).
async fn wait_registered(mut ws: Ws, count: usize) -> Result<Ws, Error> {
    let mut registered = 0;
    while registered < count {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                if text.contains("\"state\":\"registered\"") {
                    registered += 1;
                } else if text.contains("\"state\":\"failed\"") || text.contains("\"error\"") {
                    return Err(format!("registration failed: {text}").into());
                }
            }
            other => return Err(format!("connection ended: {other:?}").into()),
        }
    }
    Ok(ws)
}
