//! Media relay benchmark: `--calls` concurrent calls, each from a browser stand-in (webrtc-rs)
//! sending G.711 at 50 packets per second through the release gateway to sipp, which echoes
//! the RTP back; so every packet a browser gets back was relayed twice by the gateway (browser
//! to SIP, SIP to browser). Reported: the packets relayed per second and the gateway's CPU time
//! per 1,000 relayed packets, measured over `--seconds` once every call is up.
//!
//! Run it with `tests/bench-media`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use gateway_tests::Client;
use gateway_tests::bench::{Error, GatewayProcess, cpu_seconds, rss_kib};
use gateway_tests::browser::{AudioCodec, Browser};
use gateway_tests::peers::{data_dir, free_port, free_ports, require};
use protocol::{Event, ServerMessage, SessionEvent, SessionState};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Concurrent calls.
    #[arg(long, default_value_t = 50)]
    calls: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Set the calls up but send nothing: the cost of calls at rest (timers, RTCP, ICE).
    #[arg(long)]
    silent: bool,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let sip_port = free_port();
    let echo_port = free_ports(4);
    let mut sipp = tokio::process::Command::new(require("sipp", "sip-tester"))
        .arg("-sf")
        .arg(data_dir().join("sipp/uas_answer.xml"))
        .args(["-i", "127.0.0.1", "-p", &sip_port.to_string()])
        .args(["-mp", &echo_port.to_string(), "-rtp_echo", "-nostdin"])
        .args([
            "-key",
            "echo_ip",
            "127.0.0.1",
            "-key",
            "echo_port",
            &echo_port.to_string(),
        ])
        .args(["-m", &args.calls.to_string()])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let config = format!(
        "[sip]\nlisten = \"127.0.0.1\"\nudp_port = 0\ntcp_port = 0\n\
         outbound_proxy = \"sip:127.0.0.1:{sip_port}\"\n\
         [media]\nlisten = \"127.0.0.1\"\nbrowser_port = 0\n[log]\nlevel = \"warn\"\n"
    );
    let gateway = GatewayProcess::start(&config)?;
    let pid = gateway.pid();
    let rss_before = rss_kib(pid)?;
    let mut client = Client::connect(&gateway.url(), &["sylkRTC-2"], None)
        .await
        .map_err(|refused| format!("{refused:?}"))?;
    client.expect_ready().await;
    let ha1 = sip::ha1("alice", "127.0.0.1", "alicepw");
    client
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": "alice@127.0.0.1", "password": ha1}),
        )
        .await;

    let started = Instant::now();
    let mut browsers = Vec::with_capacity(args.calls);
    for index in 0..args.calls {
        let browser = Browser::new(&[AudioCodec::Pcmu]).await;
        let offer = browser.offer().await;
        let session = format!("bench-{index}");
        client
            .expect_ack(
                json!({"sylkrtc": "session-create", "account": "alice@127.0.0.1",
                "session": session, "uri": "echo@127.0.0.1", "sdp": offer}),
            )
            .await;
        let answer = loop {
            match client.recv().await {
                ServerMessage::Event(Event::Session {
                    event: SessionEvent::State(SessionState::Accepted { sdp: Some(sdp), .. }),
                    ..
                }) => break sdp,
                ServerMessage::Event(Event::Session {
                    event: SessionEvent::State(SessionState::Terminated { reason }),
                    ..
                }) => return Err(format!("call {index} ended: {reason:?}").into()),
                _ => {}
            }
        };
        browser.accept_answer(&answer).await;
        browsers.push(browser);
    }
    for browser in &mut browsers {
        if !browser.connected(Duration::from_secs(10)).await {
            return Err("a browser leg did not connect".into());
        }
        if !args.silent {
            browser.send_pcmu_tone(0, 440.0);
        }
    }
    let setup = started.elapsed();
    // Let every stream settle, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = |browsers: &[Browser]| -> usize {
        browsers
            .iter()
            .map(|browser| browser.received().len())
            .sum()
    };
    let (cpu_before, packets_before, measure) =
        (cpu_seconds(pid)?, received(&browsers), Instant::now());
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let cpu = cpu_seconds(pid)? - cpu_before;
    let wall = measure.elapsed().as_secs_f64();
    let returned = received(&browsers) - packets_before;
    let relayed = 2 * returned;
    let rss_after = rss_kib(pid)?;
    let sent = if args.silent {
        0.0
    } else {
        args.calls as f64 * 50.0 * wall
    };

    println!("calls                      {}", args.calls);
    println!("set-up (offer to answer)   {:.1} s", setup.as_secs_f64());
    println!("measured                   {wall:.1} s");
    println!("packets sent by browsers   {sent:.0} (50/s per call)");
    println!(
        "packets back at browsers   {returned} ({:.1}%)",
        100.0 * returned as f64 / sent
    );
    println!(
        "packets relayed            {relayed} ({:.0}/s)",
        relayed as f64 / wall
    );
    println!(
        "gateway CPU                {cpu:.2} s ({:.1}% of a core)",
        100.0 * cpu / wall
    );
    println!(
        "gateway CPU per packet     {:.1} us",
        1e6 * cpu / relayed.max(1) as f64
    );
    println!(
        "gateway CPU per 1,000      {:.1} ms",
        1e3 * cpu / (relayed.max(1) as f64 / 1000.0)
    );
    println!(
        "gateway memory per call    {:.0} KiB (RSS growth / calls)",
        (rss_after.saturating_sub(rss_before)) as f64 / args.calls as f64
    );
    for browser in browsers {
        browser.close().await;
    }
    let _ = sipp.kill().await;
    Ok(())
}
