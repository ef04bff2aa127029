//! The media relay benchmark: the gateway side by side with rtpengine and Janus.
//!
//! The generator plays browsers: peers on one thread (see `peers.rs`; lean audio peers by
//! default, `lean.rs`, or str0m's full WebRTC stack with `--peers str0m`), each sending
//! 160-byte packets at 50 per second with a send time and a sequence number. The system under
//! test relays them (DTLS-SRTP and ICE toward the peers, plain RTP toward the far end) to the
//! generator's RTP reflector, which sends them back. The gateway is set up over sylkRTC and
//! Janus over its WebSocket API (its SIP plugin; sipp answers both systems' INVITEs with the
//! reflector's address), rtpengine over its ng protocol; the far end is the same for all.
//!
//! For each system, alternating `--reps` times, with the system pinned to core 0 and the
//! generator (and sipp) to core 1, it ramps up the calls in `--steps` and measures, at each
//! step, over `--seconds`: loss, the peers' p99 interarrival jitter, the round trip, the
//! system's CPU per 1,000 relayed packets and its memory per call. The ramp stops at the first
//! step with 1% loss or more, or p99 jitter of 5 ms or more. Then it measures call set-up on
//! each system: the time per call at 20 calls per second, and the calls per second of a burst
//! placed at once. It prints the medians and the ratios of the gateway to each other system;
//! `--svg FILE` draws CPU and loss against calls.
//!
//! Run it with `tests/bench-relay`. Everything goes to 127.0.0.0/8.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod control;
mod janus;
mod lean;
mod peers;
mod report;
mod svg;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use clap::Parser;
use gateway_tests::bench::{Error, GatewayProcess, cpu_seconds, rss_kib};
use gateway_tests::peers::{data_dir, free_port, require};
use mio::Waker;

use control::{GatewayControl, RtpengineControl};
use janus::{JanusControl, JanusProcess};
use peers::{Command, Report};

#[derive(Debug, Parser)]
struct Args {
    /// The ramp: concurrent calls at each step (the first is the fixed load).
    #[arg(long, default_value = "100,200,300,400,500,600,700,800")]
    steps: String,
    /// Seconds measured at each step (after 3 s of settling).
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Repetitions (gateway, rtpengine, gateway, rtpengine...).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Systems: any of gateway, rtpengine and janus.
    #[arg(long, default_value = "gateway,rtpengine,janus")]
    systems: String,
    /// Calls for the set-up time measurement, placed at 20 per second.
    #[arg(long, default_value_t = 50)]
    setup_calls: usize,
    /// Calls placed at once for the set-up rate (calls per second completed in a burst).
    #[arg(long, default_value_t = 200)]
    burst: usize,
    /// Where to draw CPU and loss against calls.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Video calls: each peer sends VP8-sized packets on a video m-line (about 1 Mbit/s, a
    /// keyframe burst every 3 s) instead of audio.
    #[arg(long)]
    video: bool,
    /// The generator's audio peers: `lean` (what a browser puts on the wire, on the gateway's
    /// own DTLS-SRTP and SRTP: cheaper per packet than the systems it measures) or `str0m`
    /// (a full WebRTC stack per peer). Video calls always use str0m.
    #[arg(long, default_value = "lean", value_parser = ["lean", "str0m"])]
    peers: String,
}

/// One measured step.
#[derive(Debug, Clone)]
struct Step {
    calls: usize,
    connected: usize,
    loss: f64,
    jitter_p99_ms: f64,
    rtt_p50_ms: f64,
    rtt_p99_ms: f64,
    /// The system's CPU, in % of a core.
    cpu_percent: f64,
    /// The system's CPU per 1,000 relayed packets, in ms.
    cpu_per_1000_ms: f64,
    /// The generator's CPU, in % of a core.
    generator_percent: f64,
    memory_per_call_kib: f64,
    /// RTP and RTCP datagrams that reached the peers.
    datagrams: u64,
}

impl Step {
    fn passes(&self) -> bool {
        self.connected == self.calls && self.loss < 0.01 && self.jitter_p99_ms < 5.0
    }
}

/// One run of one system.
#[derive(Debug, Clone)]
struct Run {
    system: &'static str,
    steps: Vec<Step>,
}

impl Run {
    fn max_calls(&self) -> usize {
        self.steps
            .iter()
            .take_while(|step| step.passes())
            .map(|step| step.calls)
            .last()
            .unwrap_or(0)
    }

    /// The step nearest to 80% of the maximum load.
    fn at_80(&self) -> Option<&Step> {
        let target = self.max_calls() as f64 * 0.8;
        self.steps
            .iter()
            .filter(|step| step.passes())
            .min_by(|a, b| {
                (a.calls as f64 - target)
                    .abs()
                    .total_cmp(&(b.calls as f64 - target).abs())
            })
    }
}

struct Generator {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl Generator {
    fn send(&self, command: Command) {
        let _ = self.commands.send(command);
        let _ = self.waker.wake();
    }

    /// `count` new peers' offers; `with_audio`: in video mode, an audio m-line beside the video
    /// (the gateway relays no call without audio; rtpengine, which does not bundle, gets the
    /// video m-line alone).
    fn offers(&self, count: usize, with_audio: bool) -> Vec<(usize, String)> {
        let (reply, offers) = channel();
        for _ in 0..count {
            self.send(Command::Create(reply.clone(), with_audio));
        }
        (0..count).filter_map(|_| offers.recv().ok()).collect()
    }

    fn report(&self) -> Report {
        let (reply, report) = channel();
        self.send(Command::Report(reply));
        report.recv().unwrap_or_default()
    }
}

fn percentile(values: &mut [u32], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * p).round() as usize;
    f64::from(values[index])
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A system under test, running.
#[allow(
    clippy::large_enum_variant,
    reason = "two of them at most exist, one at a time"
)]
enum System {
    Gateway(GatewayProcess, Option<GatewayControl>),
    Rtpengine(Child, RtpengineControl),
    Janus(JanusProcess, Option<JanusControl>),
}

impl System {
    fn pid(&self) -> u32 {
        match self {
            System::Gateway(process, _) => process.pid(),
            System::Rtpengine(child, _) => child.id(),
            System::Janus(process, _) => process.pid(),
        }
    }

    /// Readies what each call needs before it is placed, as a user's client does when it
    /// connects (Janus: a SIP plugin handle registered as a guest); not counted in set-up.
    async fn prepare(&mut self, calls: usize) -> Result<(), Error> {
        match self {
            System::Janus(_, Some(control)) => control.prepare(calls).await,
            _ => Ok(()),
        }
    }

    async fn calls(&mut self, offers: &[String]) -> Result<(Vec<String>, Vec<Duration>), Error> {
        match self {
            System::Gateway(_, Some(control)) => Ok(control.calls(offers).await?),
            System::Gateway(_, None) => Err("not connected".into()),
            System::Rtpengine(_, control) => Ok(control.calls(offers)?),
            System::Janus(_, Some(control)) => control.calls(offers).await,
            System::Janus(_, None) => Err("not connected".into()),
        }
    }

    async fn stop(self) {
        match self {
            System::Gateway(process, control) => {
                if let Some(control) = control {
                    control.close().await;
                }
                drop(process);
            }
            System::Rtpengine(mut child, mut control) => {
                match child.try_wait() {
                    Ok(Some(status)) => println!("  rtpengine: the process had exited ({status})"),
                    _ => control.close(),
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            System::Janus(mut process, control) => {
                if let Some(control) = control {
                    control.close().await;
                }
                if !process.alive() {
                    println!("  janus: the process had exited");
                }
                drop(process);
            }
        }
    }
}

/// Whether the run is in video mode (the `--video` flag; read by the systems' set-up).
static VIDEO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn start(system: &str, sip_port: u16, echo: SocketAddr) -> Result<System, Error> {
    match system {
        "gateway" => {
            let config = format!(
                "max_connections_per_source = 1000\n[websocket]\nmax_connections = 100\n\
                 [sip]\nlisten = \"127.0.0.1\"\nudp_port = 0\ntcp_port = 0\n\
                 outbound_proxy = \"sip:127.0.0.1:{sip_port}\"\nsession_expires = 0\n\
                 [media]\nlisten = \"127.0.0.1\"\nbrowser_port = 0\nrtp_port_min = 30000\nrtp_port_max = 39999\nsrtp = \"never\"\n\
                 [log]\nlevel = \"warn\"\n"
            );
            let process = GatewayProcess::start_pinned(&config, Some(0))?;
            let control = GatewayControl::connect(&process.url()).await?;
            Ok(System::Gateway(process, Some(control)))
        }
        "janus" => {
            let process = JanusProcess::start(0)?;
            let control =
                JanusControl::connect(&process.url, SocketAddr::from(([127, 0, 0, 1], sip_port)))
                    .await?;
            Ok(System::Janus(process, Some(control)))
        }
        _ => {
            let ng = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let child = Process::new(require("taskset", "util-linux"))
                .args(["-c", "0"])
                .arg(require("rtpengine", "rtpengine-daemon"))
                .args([
                    "--interface=127.0.0.1",
                    "--table=-1",
                    "--foreground",
                    "--log-stderr",
                ])
                .arg(format!("--listen-ng={ng}"))
                .args(["--port-min=40000", "--port-max=49999", "--no-fallback"])
                .arg(format!(
                    "--log-level={}",
                    if std::env::var_os("RTPENGINE_LOG").is_some() {
                        7
                    } else {
                        3
                    }
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                // A crash dumps its core in the working directory: not in the checkout.
                .current_dir(std::env::temp_dir())
                // Errors (level 3) show, so that a crash under load says why.
                .stderr(Stdio::inherit())
                .spawn()?;
            let video = VIDEO.load(std::sync::atomic::Ordering::Relaxed);
            let control = RtpengineControl::new(ng, echo, video)?;
            // Wait until it answers the control protocol.
            let probe = UdpSocket::bind("127.0.0.1:0")?;
            probe.set_read_timeout(Some(Duration::from_millis(200)))?;
            let started = Instant::now();
            let mut buffer = [0u8; 256];
            loop {
                let _ = probe.send_to(b"p d7:command4:pinge", ng);
                if probe.recv_from(&mut buffer).is_ok() {
                    break;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    return Err("rtpengine did not start".into());
                }
            }
            Ok(System::Rtpengine(child, control))
        }
    }
}

/// Ramps one system up through the steps.
async fn ramp(
    name: &'static str,
    generator: &Generator,
    steps: &[usize],
    seconds: u64,
    sip_port: u16,
    echo: SocketAddr,
) -> Result<Run, Error> {
    let mut system = start(name, sip_port, echo).await?;
    let pid = system.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib(pid)?;
    let mut run = Run {
        system: name,
        steps: Vec::new(),
    };
    let mut calls = 0;
    for &target in steps {
        let offers = generator.offers(target.saturating_sub(calls), name != "rtpengine");
        let sdps: Vec<String> = offers.iter().map(|(_, sdp)| sdp.clone()).collect();
        if let Err(error) = system.prepare(sdps.len()).await {
            println!("  {name}: could not prepare {} calls: {error}", sdps.len());
            break;
        }
        let (answers, _) = match system.calls(&sdps).await {
            Ok(answers) => answers,
            Err(error) => {
                println!("  {name}: set-up failed at {target} calls: {error}");
                break;
            }
        };
        for ((id, _), answer) in offers.iter().zip(answers) {
            generator.send(Command::Answer(*id, answer));
        }
        calls = target;
        // Until every peer is connected (or 20 s).
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let report = generator.report();
            if report.connected >= calls {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        generator.send(Command::Sending(true));
        // A system that dies under load ends its ramp; the steps it passed still count.
        let step = match measure(generator, pid, calls, seconds, rss_idle).await {
            Ok(step) => step,
            Err(error) => {
                println!("  {name}: stopped at {calls} calls: {error}");
                break;
            }
        };
        println!(
            "  {name:9} {:4} calls ({} up): loss {:.2}%, jitter p99 {:.2} ms, rtt p50/p99 {:.2}/{:.2} ms, CPU {:.1}% ({:.1} ms per 1,000 packets), generator {:.1}%, {:.0} KiB/call",
            step.calls,
            step.connected,
            100.0 * step.loss,
            step.jitter_p99_ms,
            step.rtt_p50_ms,
            step.rtt_p99_ms,
            step.cpu_percent,
            step.cpu_per_1000_ms,
            step.generator_percent,
            step.memory_per_call_kib
        );
        if step.loss > 0.5 {
            println!(
                "    ({} RTP/RTCP datagrams reached the peers)",
                step.datagrams
            );
        }
        let passes = step.passes();
        run.steps.push(step);
        generator.send(Command::Sending(false));
        if !passes {
            break;
        }
    }
    generator.send(Command::Clear);
    system.stop().await;
    Ok(run)
}

/// Measures one step: `seconds` of traffic after 3 s of settling.
async fn measure(
    generator: &Generator,
    pid: u32,
    calls: usize,
    seconds: u64,
    rss_idle: u64,
) -> Result<Step, Error> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = generator.report();
    let cpu_before = cpu_seconds(pid)?;
    let measured = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let mut report = generator.report();
    let cpu = cpu_seconds(pid)? - cpu_before;
    let wall = measured.elapsed().as_secs_f64();
    let relayed = 2.0 * report.received as f64;
    Ok(Step {
        calls,
        connected: report.connected,
        loss: 1.0 - report.received as f64 / (report.sent.max(1)) as f64,
        jitter_p99_ms: percentile(&mut report.jitters, 0.99) / 1000.0,
        rtt_p50_ms: percentile(&mut report.rtts, 0.50) / 1000.0,
        rtt_p99_ms: percentile(&mut report.rtts, 0.99) / 1000.0,
        cpu_percent: 100.0 * cpu / wall,
        cpu_per_1000_ms: 1e6 * cpu / relayed.max(1.0),
        generator_percent: 100.0 * report.cpu / wall,
        memory_per_call_kib: (rss_kib(pid)?.saturating_sub(rss_idle)) as f64 / calls as f64,
        datagrams: report.datagrams,
    })
}

/// The round trip through sipp's echo port alone: the zero line of latency.
fn zero_line(echo: SocketAddr) -> Result<(f64, f64), Error> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let started = Instant::now();
    let mut rtts = Vec::new();
    let mut buffer = [0u8; 256];
    for seq in 0..250u32 {
        let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.resize(172, 0xff);
        let sent = Instant::now();
        socket.send_to(&packet, echo)?;
        if socket.recv_from(&mut buffer).is_ok() {
            rtts.push(sent.elapsed().as_micros() as u32);
        }
        std::thread::sleep(Duration::from_millis(20).saturating_sub(sent.elapsed()));
    }
    let _ = started;
    Ok((
        percentile(&mut rtts, 0.5) / 1000.0,
        percentile(&mut rtts, 0.99) / 1000.0,
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let steps: Vec<usize> = args
        .steps
        .split(',')
        .filter_map(|step| step.trim().parse().ok())
        .collect();
    let systems: Vec<&'static str> = ["gateway", "rtpengine", "janus"]
        .into_iter()
        .filter(|system| args.systems.contains(system))
        .collect();

    // The far end: sipp answering the gateway's INVITEs with the reflector's address, and the
    // generator's reflector sending the RTP back (for both systems).
    let sip_port = free_port();
    let reflector = UdpSocket::bind("127.0.0.1:0")?;
    let echo = reflector.local_addr()?;
    let mut sipp = Process::new(require("taskset", "util-linux"))
        .args(["-c", "1"])
        .arg(require("sipp", "sip-tester"))
        .arg("-sf")
        .arg(data_dir().join(if args.video {
            "sipp/uas_answer_video.xml"
        } else {
            "sipp/uas_answer.xml"
        }))
        .args(["-i", "127.0.0.1", "-p", &sip_port.to_string()])
        .args([
            "-mp",
            &gateway_tests::peers::free_ports(4).to_string(),
            "-nostdin",
            "-m",
            "1000000",
        ])
        .args([
            "-key",
            "echo_ip",
            "127.0.0.1",
            "-key",
            "echo_port",
            &echo.port().to_string(),
        ])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));

    let (commands, receiver) = channel();
    let (waker_tx, waker_rx) = channel();
    let zero_socket = reflector.try_clone()?;
    let video = args.video;
    let lean = args.peers == "lean";
    VIDEO.store(video, std::sync::atomic::Ordering::Relaxed);
    let loop_thread = std::thread::spawn(move || {
        peers::run(
            Ipv4Addr::LOCALHOST.into(),
            reflector,
            receiver,
            waker_tx,
            video,
            lean,
        )
    });
    let waker = waker_rx.recv().map_err(|_| "the generator did not start")?;
    let generator = Generator { commands, waker };

    drop(zero_socket);
    let (zero_p50, zero_p99) = zero_line(echo)?;
    println!(
        "zero line (the reflector alone): round trip p50 {zero_p50:.3} ms, p99 {zero_p99:.3} ms"
    );

    let mut runs: Vec<Run> = Vec::new();
    for rep in 0..args.reps {
        for system in &systems {
            println!("run {} of {system}", rep + 1);
            match ramp(system, &generator, &steps, args.seconds, sip_port, echo).await {
                Ok(run) => runs.push(run),
                Err(error) => println!("  {system}: {error}"),
            }
        }
    }

    // Call set-up: time per call at 20 calls per second, then the rate of a burst.
    let mut setups = Vec::new();
    for rep in 0..args.reps {
        for system in &systems {
            match setup(system, &generator, &args, sip_port, echo).await {
                Ok(result) => {
                    println!(
                        "set-up {} of {system}: p50 {:.1} ms, p99 {:.1} ms at 20 calls/s; {} calls at once answered in {:.0} ms ({:.0} calls/s), connected in {:.0} ms, {:.2} ms of CPU per call",
                        rep + 1,
                        result.p50_ms,
                        result.p99_ms,
                        args.burst,
                        result.burst_ms,
                        result.rate,
                        result.connected_ms,
                        result.cpu_per_call_ms
                    );
                    setups.push(result);
                }
                Err(error) => println!("  set-up of {system}: {error}"),
            }
        }
    }

    report::report(&runs, &systems, zero_p50, zero_p99, &setups, &args);
    if let Some(path) = &args.svg {
        svg::write(
            path,
            &runs
                .iter()
                .map(|run| {
                    (
                        run.system,
                        run.steps
                            .iter()
                            .map(|s| (s.calls, s.cpu_percent, 100.0 * s.loss))
                            .collect(),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        println!("plot: {}", path.display());
    }
    generator.send(Command::Quit);
    let _ = loop_thread.join();
    let _ = sipp.kill();
    let _ = sipp.wait();
    Ok(())
}

/// Call set-up on one system.
#[derive(Debug, Clone)]
struct Setup {
    system: &'static str,
    /// Time per call (request to answer) at 20 calls per second.
    p50_ms: f64,
    p99_ms: f64,
    /// `--burst` calls placed at once: until the last answer, and calls per second.
    burst_ms: f64,
    rate: f64,
    /// Until every call of the burst had ICE and DTLS up, in ms.
    connected_ms: f64,
    /// The system's CPU per call of the burst (until connected), in ms.
    cpu_per_call_ms: f64,
}

/// Measures call set-up on a fresh `system`: `--setup-calls` calls at 20 per second, then
/// `--burst` calls at once. What a call needs before it is placed (Janus's handles) is readied
/// first, as the sylkRTC account is added when the gateway's connection opens.
async fn setup(
    system: &'static str,
    generator: &Generator,
    args: &Args,
    sip_port: u16,
    echo: SocketAddr,
) -> Result<Setup, Error> {
    let mut running = start(system, sip_port, echo).await?;
    let result = async {
        running.prepare(args.setup_calls + args.burst).await?;
        let mut times = Vec::new();
        for _ in 0..args.setup_calls {
            let offers = generator.offers(1, system != "rtpengine");
            let sdps: Vec<String> = offers.iter().map(|(_, sdp)| sdp.clone()).collect();
            let started = Instant::now();
            let (answers, took) = running.calls(&sdps).await?;
            // The peers take their answers, so that every call connects as a real one does
            // (ICE and DTLS run beside the next set-ups).
            for ((id, _), answer) in offers.iter().zip(answers) {
                generator.send(Command::Answer(*id, answer));
            }
            times.extend(took.iter().map(|t| t.as_micros() as u32));
            tokio::time::sleep(Duration::from_millis(50).saturating_sub(started.elapsed())).await;
        }
        if std::env::var_os("BENCH_SETUP_TIMES").is_some() {
            // Each call's time in order, to tell a warm-up from a periodic stall.
            println!("  {system} set-up times (µs, in order): {times:?}");
        }
        let offers = generator.offers(args.burst, system != "rtpengine");
        let sdps: Vec<String> = offers.iter().map(|(_, sdp)| sdp.clone()).collect();
        let connected_before = generator.report().connected;
        let cpu_before = cpu_seconds(running.pid())?;
        let started = Instant::now();
        let (answers, _) = running.calls(&sdps).await?;
        let burst = started.elapsed().as_secs_f64();
        let answered = answers.len();
        for ((id, _), answer) in offers.iter().zip(answers) {
            generator.send(Command::Answer(*id, answer));
        }
        // Until every call of the burst has ICE and DTLS up (or 30 s).
        while generator.report().connected < connected_before + answered
            && started.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let connected = started.elapsed().as_secs_f64();
        let connected_calls = generator.report().connected - connected_before;
        let cpu = cpu_seconds(running.pid())? - cpu_before;
        if answered < sdps.len() || connected_calls < sdps.len() {
            return Err(format!(
                "{answered} of {} calls answered, {connected_calls} connected",
                sdps.len()
            )
            .into());
        }
        Ok::<_, Error>(Setup {
            system,
            p50_ms: percentile(&mut times, 0.5) / 1000.0,
            p99_ms: percentile(&mut times, 0.99) / 1000.0,
            burst_ms: 1000.0 * burst,
            rate: sdps.len() as f64 / burst,
            connected_ms: 1000.0 * connected,
            cpu_per_call_ms: 1000.0 * cpu / sdps.len() as f64,
        })
    }
    .await;
    generator.send(Command::Clear);
    running.stop().await;
    result
}
