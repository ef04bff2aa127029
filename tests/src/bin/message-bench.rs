//! Message benchmark: `account-message` from browsers through kamailio to a SIP recipient, and
//! a sync of the stored conversation, on SQLite or PostgreSQL; kamailio relaying the same
//! MESSAGEs from sipp is the anchor, in the same run.
//!
//! It starts kamailio (digest auth), the release gateway (its store in SQLite, or with
//! `--postgres` in a throwaway PostgreSQL server), and a recipient: a UDP socket bound in
//! kamailio's location as `sink`, answering 200 to every MESSAGE. `--connections` WebSocket
//! connections register one account (`u0`: one user's devices), then send `--messages` messages
//! between them, all at once, each stored, acked, told to the account's other connections as a
//! `sync`, sent as CPIM through kamailio (407, then the authenticated MESSAGE, then 200) and
//! reported back to every connection as a `disposition-notification`. Reported: messages per
//! second (first send to last notification), the CPU of the gateway (and of PostgreSQL) and of
//! kamailio per message; then the time a new connection (registered) takes to sync the account's stored
//! conversation (`--messages` messages, at most 5,000); then sipp sending as many MESSAGEs
//! through the same kamailio to the same recipient (with the same challenge), its rate and
//! kamailio's CPU per message.
//!
//! Run it with `tests/bench-messages`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use gateway_tests::bench::{Error, GatewayProcess, Ws, connect, cpu_seconds, tree_cpu_seconds};
use gateway_tests::peers::{Kamailio, KamailioOptions, data_dir, free_port, require};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Messages to send (and then to sync, up to 5,000).
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// WebSocket connections sending them (each registers the account).
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// The store in PostgreSQL (a server the benchmark starts) instead of SQLite.
    #[arg(long)]
    postgres: bool,
    /// Browser to browser within the local domain instead of browser to SIP.
    #[arg(long)]
    local: bool,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let db = gateway_tests::bench::subscribers(1)?;
    let kamailio = Kamailio::start(KamailioOptions {
        db: Some(db.path().to_path_buf()),
        ..KamailioOptions::default()
    });
    let storage = if args.postgres {
        format!(
            "postgres_url = {:?}\n",
            gateway_tests::postgres::Postgres::shared().database()
        )
    } else {
        String::new()
    };
    let mut config = format!(
        "[sip]\nlisten = \"127.0.0.1\"\nudp_port = 0\ntcp_port = 0\ntls_port = 0\n\
         outbound_proxy = \"sip:127.0.0.1:{}\"\n[log]\nlevel = \"warn\"\n",
        kamailio.port
    );
    if args.local {
        config.push_str("[local]\ndomain = \"local.test\"\nopen_registration = true\n");
    }
    let gateway = GatewayProcess::start_with_storage(&config, &storage)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(&args, &gateway, &kamailio))
}

/// The recipient: answers 200 to every request, counting them.
async fn sink(socket: tokio::net::UdpSocket, count: Arc<AtomicUsize>) {
    let mut buffer = vec![0u8; 65_536];
    while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
        let text = String::from_utf8_lossy(&buffer[..length]);
        if !text.starts_with("MESSAGE ") {
            continue;
        }
        count.fetch_add(1, Ordering::Relaxed);
        let mut response = String::from("SIP/2.0 200 OK\r\n");
        for line in text.lines().take_while(|line| !line.is_empty()) {
            let name = line.split(':').next().unwrap_or_default().trim();
            match name.to_ascii_lowercase().as_str() {
                "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                    response.push_str(line);
                    response.push_str("\r\n");
                }
                "to" | "t" => {
                    response.push_str(line);
                    response.push_str(";tag=sink\r\n");
                }
                _ => {}
            }
        }
        response.push_str("Content-Length: 0\r\n\r\n");
        let _ = socket.send_to(response.as_bytes(), from).await;
    }
}

async fn bench(args: &Args, gateway: &GatewayProcess, kamailio: &Kamailio) -> Result<(), Error> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let sink_port = socket.local_addr()?.port();
    let received = Arc::new(AtomicUsize::new(0));
    tokio::spawn(sink(socket, received.clone()));
    kamailio.add_binding("sink", &format!("sip:sink@127.0.0.1:{sink_port}"));
    if args.local {
        let run = bench_local(args, gateway).await?;
        let anchor = anchor(args, kamailio, &received).await?;
        return report_local(args, &run, &anchor);
    }

    let ha1 = sip::ha1("u0", "127.0.0.1", "pw0");
    let mut clients = Vec::with_capacity(args.connections);
    for index in 0..args.connections {
        let mut ws = connect(&gateway.url()).await?;
        ws.send(Message::text(format!(
            r#"{{"sylkrtc":"account-add","transaction":"a{index}","account":"u0@127.0.0.1","password":"{ha1}"}}"#
        )))
        .await?;
        ws.send(Message::text(format!(
            r#"{{"sylkrtc":"account-register","transaction":"r{index}","account":"u0@127.0.0.1"}}"#
        )))
        .await?;
        until(&mut ws, "\"state\":\"registered\"").await?;
        clients.push(ws);
    }

    // Sending: every message at once, spread over the connections.
    let per_client: Vec<usize> = (0..args.connections)
        .map(|client| (client..args.messages).step_by(args.connections).count())
        .collect();
    let gateway_cpu = cpu_seconds(gateway.pid())?;
    let kamailio_cpu = tree_cpu_seconds(kamailio.pid())?;
    let postgres_before = postgres_cpu()?;
    let started = Instant::now();
    for (client, ws) in clients.iter_mut().enumerate() {
        for index in (client..args.messages).step_by(args.connections) {
            ws.feed(Message::text(format!(
                r#"{{"sylkrtc":"account-message","transaction":"m{index}","account":"u0@127.0.0.1","uri":"sink@127.0.0.1","message_id":"id-{index}","content":"message {index} of the benchmark","content_type":"text/plain"}}"#
            )))
            .await?;
        }
        ws.flush().await?;
    }
    let waits = clients
        .into_iter()
        .zip(per_client)
        .enumerate()
        .map(|(client, (ws, count))| notifications(ws, client, args.connections, count));
    let results = futures_util::future::join_all(waits).await;
    let wall = started.elapsed().as_secs_f64();
    let gateway_cpu = cpu_seconds(gateway.pid())? - gateway_cpu;
    let kamailio_cpu = tree_cpu_seconds(kamailio.pid())? - kamailio_cpu;
    let postgres_cpu = postgres_cpu()? - postgres_before;
    let mut failed = 0;
    for result in results {
        failed += result?;
    }
    let n = args.messages as f64;

    // Syncing: a new connection asks for the account's conversation.
    let mut ws = connect(&gateway.url()).await?;
    ws.send(Message::text(format!(
        r#"{{"sylkrtc":"account-add","transaction":"s0","account":"u0@127.0.0.1","password":"{ha1}"}}"#
    )))
    .await?;
    ws.send(Message::text(
        r#"{"sylkrtc":"account-register","transaction":"s2","account":"u0@127.0.0.1"}"#,
    ))
    .await?;
    until(&mut ws, "\"state\":\"registered\"").await?;
    let sync_started = Instant::now();
    ws.send(Message::text(
        r#"{"sylkrtc":"account-sync-conversations","transaction":"s1","account":"u0@127.0.0.1","limit":5000}"#,
    ))
    .await?;
    let synced = until(&mut ws, "\"sync-conversations\"").await?;
    let sync_time = sync_started.elapsed().as_secs_f64();
    let synced_count = synced.matches("\"message_id\"").count();
    let sync_kib = synced.len() as f64 / 1024.0;

    let before = received.load(Ordering::Relaxed);
    let anchor = anchor(args, kamailio, &received).await?;
    let (anchor_received, anchor_wall, anchor_kamailio, anchor_note) = (
        anchor.received,
        anchor.wall,
        anchor.kamailio_cpu,
        anchor.note,
    );

    let store = if args.postgres {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("## message-bench ({store})");
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| messages sent | {} over {} connections of one account, {failed} failed |",
        args.messages, args.connections
    );
    println!("| MESSAGEs the recipient got (gateway) | {} |", before);
    println!("| wall time, first request to last notification | {wall:.2} s |");
    println!("| messages per second (gateway) | {:.0} |", n / wall);
    println!(
        "| gateway CPU | {gateway_cpu:.2} s ({:.0} µs per message) |",
        gateway_cpu / n * 1e6
    );
    if args.postgres {
        println!(
            "| PostgreSQL CPU (all processes) | {postgres_cpu:.2} s ({:.0} µs per message) |",
            postgres_cpu / n * 1e6
        );
    }
    println!(
        "| kamailio CPU relaying them | {kamailio_cpu:.2} s ({:.0} µs per message) |",
        kamailio_cpu / n * 1e6
    );
    println!(
        "| sync of the conversation | {synced_count} messages, {sync_kib:.0} KiB, in {:.0} ms |",
        sync_time * 1e3
    );
    println!(
        "| anchor: sipp through kamailio | {anchor_received} MESSAGEs in {anchor_wall:.2} s ({:.0} per second), kamailio CPU {:.0} µs per message{anchor_note} |",
        anchor_received as f64 / anchor_wall,
        anchor_kamailio / anchor_received.max(1) as f64 * 1e6
    );
    println!(
        "| gateway messages per second / anchor's | {:.2} |",
        (n / wall) / (anchor_received as f64 / anchor_wall)
    );
    println!(
        "| gateway CPU per message / kamailio's in the anchor | {:.2} |",
        (gateway_cpu / n) / (anchor_kamailio / anchor_received.max(1) as f64)
    );
    // A retransmitted MESSAGE reaches the recipient twice: fewer is a loss.
    if failed > 0 || before < args.messages {
        return Err(format!("{failed} failed, {before} of {} received", args.messages).into());
    }
    Ok(())
}

/// The anchor's run.
struct Anchor {
    received: usize,
    wall: f64,
    kamailio_cpu: f64,
    note: String,
}

/// The anchor: sipp sends as many MESSAGEs through kamailio to the recipient (challenged the
/// same way).
async fn anchor(
    args: &Args,
    kamailio: &Kamailio,
    received: &Arc<AtomicUsize>,
) -> Result<Anchor, Error> {
    let anchor_kamailio = tree_cpu_seconds(kamailio.pid())?;
    let before = received.load(Ordering::Relaxed);
    let anchor_started = Instant::now();
    let output = tokio::process::Command::new(require("sipp", "sip-tester"))
        .arg(format!("127.0.0.1:{}", kamailio.port))
        .arg("-sf")
        .arg(data_dir().join("sipp/uac_message_auth.xml"))
        .args(["-s", "sink", "-au", "u0", "-ap", "pw0", "-i", "127.0.0.1"])
        .args(["-p", &free_port().to_string()])
        .args(["-m", &args.messages.to_string(), "-r", "5000", "-l", "500"])
        .args(["-nostdin", "-recv_timeout", "5000", "-timeout", "60"])
        .current_dir(std::env::temp_dir())
        .output()
        .await?;
    let anchor_wall = anchor_started.elapsed().as_secs_f64();
    let anchor_kamailio = tree_cpu_seconds(kamailio.pid())? - anchor_kamailio;
    let anchor_received = received.load(Ordering::Relaxed) - before;
    // Calls sipp gave up on (a lost datagram) are reported, not fatal: the rate counts what
    // reached the recipient.
    let anchor_note = if output.status.success() {
        String::new()
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().nth(1).unwrap_or_default().to_owned();
        format!(" (sipp: {first})")
    };

    Ok(Anchor {
        received: anchor_received,
        wall: anchor_wall,
        kamailio_cpu: anchor_kamailio,
        note: anchor_note,
    })
}

/// The CPU seconds of every process of the benchmark's PostgreSQL server (none: 0).
fn postgres_cpu() -> Result<f64, Error> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let program = command.split(|byte| *byte == 0).next().unwrap_or_default();
        let name = program
            .rsplit(|byte| *byte == b'/')
            .next()
            .unwrap_or_default();
        if name.starts_with(b"postgres") {
            total += cpu_seconds(pid).unwrap_or(0.0);
        }
    }
    Ok(total)
}

/// Reads until a message containing `needle`; returns it. An `error` is an error.
async fn until(ws: &mut Ws, needle: &str) -> Result<String, Error> {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains(needle) => {
                return Ok(text.to_string());
            }
            Ok(Some(Ok(Message::Text(text)))) if text.contains("\"sylkrtc\":\"error\"") => {
                return Err(format!("an error: {text}").into());
            }
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("waiting for {needle}: {other:?}").into()),
        }
    }
}

/// Waits for `count` disposition notifications on this connection; returns how many were not
/// `accepted`.
async fn notifications(
    mut ws: Ws,
    client: usize,
    connections: usize,
    count: usize,
) -> Result<usize, Error> {
    let (mut seen, mut failed) = (0, 0);
    while seen < count {
        let text = until(&mut ws, "\"disposition-notification\"").await?;
        // Every connection of the account hears of every message's outcome: only its own
        // count here.
        let own = text
            .split("\"message_id\":\"id-")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|index| index.parse::<usize>().ok())
            .is_some_and(|index| index % connections == client);
        if !own {
            continue;
        }
        seen += 1;
        if !text.contains("\"state\":\"accepted\"") {
            failed += 1;
        }
    }
    Ok(failed)
}

/// The local domain's benchmark: `--connections` browsers of distinct users of the local
/// domain send `--messages` messages, all at once, to one more user's browser; each is stored
/// for both, delivered to the recipient's browser and acked, its outcome reported to its
/// sender. Measured: messages per second, first request until the last message and the last
/// outcome arrived; the gateway's CPU per message; then the recipient's sync.
async fn bench_local(args: &Args, gateway: &GatewayProcess) -> Result<LocalRun, Error> {
    let mut recipient = connect(&gateway.url()).await?;
    register_local(&mut recipient, "r").await?;
    let mut clients = Vec::with_capacity(args.connections);
    for index in 0..args.connections {
        let mut ws = connect(&gateway.url()).await?;
        register_local(&mut ws, &format!("s{index}")).await?;
        clients.push(ws);
    }
    let per_client: Vec<usize> = (0..args.connections)
        .map(|client| (client..args.messages).step_by(args.connections).count())
        .collect();
    let gateway_cpu = cpu_seconds(gateway.pid())?;
    let postgres_before = postgres_cpu()?;
    let started = Instant::now();
    for (client, ws) in clients.iter_mut().enumerate() {
        let from = format!("s{client}@local.test");
        for index in (client..args.messages).step_by(args.connections) {
            ws.feed(Message::text(format!(
                r#"{{"sylkrtc":"account-message","transaction":"m{index}","account":"{from}","uri":"r@local.test","message_id":"id-{index}","content":"message {index} of the benchmark","content_type":"text/plain"}}"#
            )))
            .await?;
        }
        ws.flush().await?;
    }
    let messages = args.messages;
    let receiving = async move {
        for _ in 0..messages {
            until(&mut recipient, "\"event\":\"message\"").await?;
        }
        Ok::<Ws, Error>(recipient)
    };
    let waits = clients
        .into_iter()
        .zip(per_client)
        .enumerate()
        .map(|(client, (ws, count))| notifications(ws, client, args.connections, count));
    let (results, recipient) = tokio::join!(futures_util::future::join_all(waits), receiving);
    let mut recipient = recipient?;
    let wall = started.elapsed().as_secs_f64();
    let gateway_cpu = cpu_seconds(gateway.pid())? - gateway_cpu;
    let postgres_cpu = postgres_cpu()? - postgres_before;
    let mut failed = 0;
    for result in results {
        failed += result?;
    }
    let sync_started = Instant::now();
    recipient
        .send(Message::text(
            r#"{"sylkrtc":"account-sync-conversations","transaction":"s1","account":"r@local.test","limit":5000}"#,
        ))
        .await?;
    let synced = until(&mut recipient, "\"sync-conversations\"").await?;
    Ok(LocalRun {
        wall,
        gateway_cpu,
        postgres_cpu,
        failed,
        sync_time: sync_started.elapsed().as_secs_f64(),
        synced: synced.matches("\"message_id\"").count(),
        sync_kib: synced.len() as f64 / 1024.0,
    })
}

/// Prints the local domain's run beside the anchor.
fn report_local(args: &Args, run: &LocalRun, anchor: &Anchor) -> Result<(), Error> {
    let n = args.messages as f64;
    let store = if args.postgres {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let anchor_rate = anchor.received as f64 / anchor.wall;
    let anchor_cpu = anchor.kamailio_cpu / anchor.received.max(1) as f64;
    println!("## message-bench --local ({store})");
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| messages sent | {} from {} browsers of distinct users to one user's browser, {} failed |",
        args.messages, args.connections, run.failed
    );
    println!(
        "| wall time, first request to the last message and outcome | {:.2} s |",
        run.wall
    );
    println!("| messages per second (gateway) | {:.0} |", n / run.wall);
    println!(
        "| gateway CPU | {:.2} s ({:.0} µs per message) |",
        run.gateway_cpu,
        run.gateway_cpu / n * 1e6
    );
    if args.postgres {
        println!(
            "| PostgreSQL CPU (all processes) | {:.2} s ({:.0} µs per message) |",
            run.postgres_cpu,
            run.postgres_cpu / n * 1e6
        );
    }
    println!(
        "| sync of the recipient's conversations | {} messages, {:.0} KiB, in {:.0} ms |",
        run.synced,
        run.sync_kib,
        run.sync_time * 1e3
    );
    println!(
        "| anchor: sipp through kamailio | {} MESSAGEs in {:.2} s ({anchor_rate:.0} per second), kamailio CPU {:.0} µs per message{} |",
        anchor.received,
        anchor.wall,
        anchor_cpu * 1e6,
        anchor.note
    );
    println!(
        "| gateway messages per second / anchor's | {:.2} |",
        (n / run.wall) / anchor_rate
    );
    println!(
        "| gateway CPU per message / kamailio's in the anchor | {:.2} |",
        (run.gateway_cpu / n) / anchor_cpu
    );
    if run.failed > 0 {
        return Err(format!("{} failed", run.failed).into());
    }
    Ok(())
}

/// Adds and registers `user` of the local domain (open registration) on `ws`.
async fn register_local(ws: &mut Ws, user: &str) -> Result<(), Error> {
    let ha1 = sip::ha1(user, "local.test", "any");
    ws.send(Message::text(format!(
        r#"{{"sylkrtc":"account-add","transaction":"a","account":"{user}@local.test","password":"{ha1}"}}"#
    )))
    .await?;
    ws.send(Message::text(format!(
        r#"{{"sylkrtc":"account-register","transaction":"r","account":"{user}@local.test"}}"#
    )))
    .await?;
    until(ws, "\"state\":\"registered\"").await.map(|_| ())
}

/// What the local domain's run measured.
struct LocalRun {
    wall: f64,
    gateway_cpu: f64,
    postgres_cpu: f64,
    failed: usize,
    sync_time: f64,
    synced: usize,
    sync_kib: f64,
}
