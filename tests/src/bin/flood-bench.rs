//! Robustness under a flood: the release gateway (with the shipped configuration's local
//! domain) takes a bounded burst of SIP over UDP (OPTIONS, REGISTER and INVITE to the echo
//! test, from several source addresses) and a thousand idle sockets on its HTTP and SIP TCP
//! ports, while a WebSocket client pings it every 20 ms. It reports the gateway's memory and
//! descriptors before, at the peak and after the flood, and the ping round trips during it.
//! Everything goes to 127.0.0.0/8; the flood is bounded in count and time.
//!
//! Run it with `tests/bench-flood`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use gateway_tests::bench::{Error, GatewayProcess, connect, rss_kib};
use gateway_tests::peers::free_port;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// SIP requests per second during the flood.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of flood.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Idle sockets on each of the HTTP and SIP TCP ports.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// Seconds to wait after the flood before the last measurement (UDP transactions linger
    /// 32 s).
    #[arg(long, default_value_t = 40)]
    settle: u64,
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let (udp, tcp) = (free_port(), free_port());
    let config = format!(
        "[sip]\nlisten = \"127.0.0.1\"\nudp_port = {udp}\ntcp_port = {tcp}\ntls_port = 0\n\
         [media]\nlisten = \"127.0.0.1\"\nbrowser_port = 0\n\
         [local]\ndomain = \"local.test\"\nopen_registration = true\n[log]\nlevel = \"error\"\n"
    );
    let gateway = GatewayProcess::start(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sip = SocketAddr::from(([127, 0, 0, 1], udp));
    let sip_tcp = SocketAddr::from(([127, 0, 0, 1], tcp));
    runtime.block_on(flood(&args, &gateway, sip, sip_tcp))
}

async fn flood(
    args: &Args,
    gateway: &GatewayProcess,
    sip: SocketAddr,
    sip_tcp: SocketAddr,
) -> Result<(), Error> {
    let pid = gateway.pid();
    let mut ws = connect(&gateway.url()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_before, fds_before) = (rss_kib(pid)?, descriptors(pid));

    // Idle sockets, from an address of their own.
    let mut idle = Vec::new();
    for addr in [gateway.addr, sip_tcp] {
        for _ in 0..args.idle {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind("127.0.0.9:0".parse()?)?;
            if let Ok(stream) = socket.connect(addr).await {
                idle.push(stream);
            }
        }
    }

    // The flood, from eight addresses, in the background.
    let rate = args.rate;
    let seconds = args.seconds;
    let sender = tokio::spawn(async move {
        let mut sockets = Vec::new();
        for n in 0..8u8 {
            let address = SocketAddr::from(([127, 0, 1, n + 1], 0));
            sockets.push(tokio::net::UdpSocket::bind(address).await?);
        }
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(seconds) {
            for _ in 0..rate / 100 {
                let socket = &sockets[(sent % 8) as usize];
                let local = socket.local_addr()?;
                let request = request(sent, local);
                let _ = socket.send_to(request.as_bytes(), sip).await;
                sent += 1;
            }
            // Drain what came back, so the sockets' buffers do not fill.
            let mut buffer = [0u8; 4096];
            for socket in &sockets {
                while socket.try_recv(&mut buffer).is_ok() {}
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<u64, std::io::Error>(sent)
    });

    // Pings meanwhile: round trips of the sylkRTC endpoint.
    let mut round_trips = Vec::new();
    let mut peak = (0, 0);
    let started = Instant::now();
    let mut index = 0u64;
    while !sender.is_finished() {
        let sent = Instant::now();
        index += 1;
        ws.send(Message::text(format!(
            r#"{{"sylkrtc":"ping","transaction":"p{index}"}}"#
        )))
        .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) if text.contains(&format!("\"p{index}\"")) => {
                    break;
                }
                Ok(Some(Ok(_))) => {}
                other => return Err(format!("the WebSocket failed: {other:?}").into()),
            }
        }
        round_trips.push(sent.elapsed());
        peak = (peak.0.max(rss_kib(pid)?), peak.1.max(descriptors(pid)));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flood_time = started.elapsed();
    let sent = sender.await??;
    drop(idle);
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let (rss_after, fds_after) = (rss_kib(pid)?, descriptors(pid));
    round_trips.sort();
    let percentile = |p: f64| {
        round_trips[((round_trips.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0
    };

    println!("## flood-bench");
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| SIP requests sent over UDP | {sent} in {:.1} s (OPTIONS, REGISTER, INVITE to echo) |",
        flood_time.as_secs_f64()
    );
    println!(
        "| idle TCP sockets held | {} per port, HTTP and SIP |",
        args.idle
    );
    println!(
        "| gateway RSS before / peak / {} s after | {rss_before} / {} / {rss_after} KiB |",
        args.settle, peak.0
    );
    println!(
        "| gateway descriptors before / peak / after | {fds_before} / {} / {fds_after} |",
        peak.1
    );
    println!(
        "| WebSocket ping round trips during the flood | {} pings: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms |",
        round_trips.len(),
        percentile(0.5),
        percentile(0.99),
        percentile(1.0)
    );
    Ok(())
}

/// The `n`th request of the flood, from `local`.
fn request(n: u64, local: SocketAddr) -> String {
    let (method, uri, body) = match n % 3 {
        0 => ("OPTIONS", format!("sip:user{n}@local.test"), String::new()),
        1 => ("REGISTER", "sip:local.test".to_owned(), String::new()),
        _ => (
            "INVITE",
            "sip:echo@local.test".to_owned(),
            format!(
                "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n",
                ip = local.ip()
            ),
        ),
    };
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKflood{n};rport\r\n\
         From: <sip:flood{n}@elsewhere.test>;tag=f{n}\r\nTo: <sip:user{n}@local.test>\r\n\
         Call-ID: flood-{n}@{local}\r\nCSeq: 1 {method}\r\nContact: <sip:flood@{local}>\r\n\
         Max-Forwards: 70\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}
