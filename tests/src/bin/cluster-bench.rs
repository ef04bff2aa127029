//! Registrations and calls per second through Kamailio's dispatcher to one and to several
//! gateway instances (`docs/benchmarks.md`): the deployment of `docs/deployment.md` on this
//! machine, driven by sipp at fixed rates, step by step.
//!
//! For each count of instances it starts them (release binary, log level from `GATEWAY_LOG`)
//! and the dispatcher with `docs/deployment/kamailio.cfg`, then for each rate loads them for
//! the given seconds: phones of the local domain registering with digest authentication (a new
//! user per registration: REGISTER, 401, REGISTER with credentials, 200; sent by this program
//! from one UDP socket, since sipp 3.6 cannot take a digest user per call from its injection
//! file), then callers of another domain calling the echo test and hanging up at once (sipp,
//! `uac_echo_call.xml`). It reports what completed per second of wall time, what failed (no
//! answer within 5 s of the last request, or a refusal), and the CPU time the instances
//! (together) and Kamailio (all its processes) spent per operation. The load generators' own
//! CPU is not counted.
//!
//! With `--shared`, the instances know each other as peers and share a PostgreSQL database
//! (the harness's server, which runs with fsync off): the local domain's phone bindings are
//! written through to it, and after each registration step the report says how long the
//! store took to hold every binding the step made (the writers' lag).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark prints its report"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use gateway_tests::bench::{Error, cpu_seconds, tree_cpu_seconds};
use gateway_tests::cluster::{Dispatcher, Instance, Settings};
use gateway_tests::peers::{free_port, require};

#[derive(Debug, Parser)]
struct Args {
    /// The counts of instances, each measured in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    instances: Vec<u8>,
    /// Registrations per second asked of sipp, one step each.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,4000,8000")]
    register_rates: Vec<u32>,
    /// Calls per second asked of sipp, one step each.
    #[arg(long, value_delimiter = ',', default_value = "400,800,1600,3200")]
    call_rates: Vec<u32>,
    /// Seconds of load per step.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Peers sharing a PostgreSQL store (phone bindings written through to it).
    #[arg(long)]
    shared: bool,
}

/// What one step measured.
struct Step {
    completed: u64,
    failed: u64,
    wall: Duration,
    gateways_cpu: f64,
    kamailio_cpu: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sipp");
    let dir = gateway_tests::TempDir::new();
    println!("## cluster-bench\n");
    println!(
        "| instances | load | asked per s | completed per s | failed | instances' CPU per op | kamailio CPU per op | instances / kamailio |{}",
        if args.shared {
            " all in the store after |"
        } else {
            ""
        }
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- |{}",
        if args.shared { " --- |" } else { "" }
    );
    let postgres = args.shared.then(gateway_tests::postgres::Postgres::shared);
    for &count in &args.instances {
        let url = postgres.map(gateway_tests::postgres::Postgres::database);
        let settings = Settings {
            registrar: free_port(),
            postgres_url: url.as_deref(),
            peers: args.shared,
            local_extra: "ping_interval = 0\nmax_unauthenticated_calls = 100000\n\
                          trusted_proxies = [\"127.0.0.1\"]",
            rtp_ports: 400,
            // Over UDP a server transaction is held 32 s (64 T1) after its answer: at 2,000
            // registrations a second (4,000 transactions) the default 20,000 runs out in 5 s.
            sip_extra: "max_transactions = 400000",
        };
        let instances = Instance::start_all(count, &settings);
        let dispatcher = Dispatcher::start(&instances);
        for instance in &instances {
            dispatcher.wait_state(instance, "A").await;
        }
        for &rate in &args.register_rates {
            let total = rate * args.seconds;
            let prefix = format!("u{count}x{rate}x");
            settle(&instances, &dispatcher).await;
            let step = measure(&instances, &dispatcher, async {
                register(dispatcher.port, rate, total, &prefix).await
            })
            .await?;
            let stored = match (postgres, &url) {
                (Some(postgres), Some(url)) => {
                    let database = url.rsplit('/').next().unwrap_or_default();
                    Some(stored_after(postgres, database, &prefix, step.completed).await)
                }
                _ => None,
            };
            println!(
                "{}{}",
                row(count, "registrations", rate, &step),
                stored
                    .map(|stored| format!("{stored} |"))
                    .unwrap_or_default()
            );
        }
        for &rate in &args.call_rates {
            let total = rate * args.seconds;
            settle(&instances, &dispatcher).await;
            let step = measure(&instances, &dispatcher, async {
                sipp(
                    &data.join("uac_echo_call.xml"),
                    dispatcher.port,
                    rate,
                    total,
                    dir.path(),
                )
                .await
            })
            .await?;
            let no_store = if args.shared { " |" } else { "" };
            println!("{}{no_store}", row(count, "calls", rate, &step));
        }
    }
    Ok(())
}

/// Lets the last step's transactions end, and waits until the dispatcher has every instance
/// active again (an overloaded instance's 503 makes it mark the instance inactive).
async fn settle(instances: &[Instance], dispatcher: &Dispatcher) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    for instance in instances {
        dispatcher.wait_state(instance, "A").await;
    }
}

/// Runs `load` (which gives what completed and failed) and the CPU spent meanwhile.
async fn measure(
    instances: &[Instance],
    dispatcher: &Dispatcher,
    load: impl std::future::Future<Output = Result<(u64, u64), Error>>,
) -> Result<Step, Error> {
    let pids: Vec<u32> = instances.iter().filter_map(Instance::pid).collect();
    let gateways =
        |pids: &[u32]| -> Result<f64, Error> { pids.iter().map(|pid| cpu_seconds(*pid)).sum() };
    let (gateways_before, kamailio_before) =
        (gateways(&pids)?, tree_cpu_seconds(dispatcher.pid())?);
    let started = Instant::now();
    let (completed, failed) = load.await?;
    let wall = started.elapsed();
    Ok(Step {
        completed,
        failed,
        wall,
        gateways_cpu: gateways(&pids)? - gateways_before,
        kamailio_cpu: tree_cpu_seconds(dispatcher.pid())? - kamailio_before,
    })
}

/// How long after the step the store held a binding for each of its `completed`
/// registrations (users `PREFIX...`), waiting up to a minute.
async fn stored_after(
    postgres: &gateway_tests::postgres::Postgres,
    database: &str,
    prefix: &str,
    completed: u64,
) -> String {
    let started = Instant::now();
    let query = format!("SELECT count(*) FROM phone_bindings WHERE username LIKE '{prefix}%'");
    loop {
        let stored: u64 = postgres.psql(database, &query).trim().parse().unwrap_or(0);
        if stored >= completed {
            return format!(" {:.1} s", started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(60) {
            return format!(" {stored} of {completed} after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The report's row for a step.
fn row(count: u8, load: &str, rate: u32, step: &Step) -> String {
    let done = step.completed.max(1) as f64;
    format!(
        "| {count} | {load} | {rate} | {:.0} | {} | {:.0} µs | {:.0} µs | {:.2} |",
        step.completed as f64 / step.wall.as_secs_f64(),
        step.failed,
        step.gateways_cpu / done * 1e6,
        step.kamailio_cpu / done * 1e6,
        step.gateways_cpu / step.kamailio_cpu.max(1e-9),
    )
}

/// Registers `total` users (`PREFIX0`, `PREFIX1`...) of the local domain through the
/// dispatcher at `rate` per second: how many got their 200, and how many did not.
async fn register(port: u16, rate: u32, total: u32, prefix: &str) -> Result<(u64, u64), Error> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let local = socket.local_addr()?;
    let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let request = |index: u32, cseq: u32, authorization: &str| {
        format!(
            "REGISTER sip:local.test SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{prefix}{index}c{cseq};rport\r\n\
             From: <sip:{prefix}{index}@local.test>;tag=t{index}\r\nTo: <sip:{prefix}{index}@local.test>\r\n\
             Call-ID: {prefix}{index}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{prefix}{index}@{local}>\r\n\
             Expires: 3600\r\nMax-Forwards: 70\r\n{authorization}Content-Length: 0\r\n\r\n"
        )
    };
    let ha2 = sip::ha1("REGISTER", "sip", "local.test");
    let (mut registered, mut refused) = (0u64, 0u64);
    let mut refusals = std::collections::BTreeMap::new();
    let started = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut sent = 0u32;
    let mut buffer = vec![0u8; 65536];
    let mut last_activity = tokio::time::Instant::now();
    while registered + refused < u64::from(total) {
        let due = started + interval * sent;
        tokio::select! {
            () = tokio::time::sleep_until(due), if sent < total => {
                socket.send_to(request(sent, 1, "").as_bytes(), proxy).await?;
                sent += 1;
                last_activity = tokio::time::Instant::now();
            }
            received = socket.recv_from(&mut buffer) => {
                let (length, _) = received?;
                last_activity = tokio::time::Instant::now();
                let Ok(response) = sip::Message::parse_datagram(&buffer[..length], 65535) else {
                    continue;
                };
                let (Some(code), Some(call_id)) = (response.code(), response.call_id()) else {
                    continue;
                };
                let Some(index) = call_id.strip_prefix(prefix).and_then(|i| i.parse::<u32>().ok()) else {
                    continue;
                };
                match code {
                    100..=199 => {}
                    200..=299 => registered += 1,
                    401 => {
                        // The nonce of the challenge (the only one this registrar sends).
                        let text = String::from_utf8_lossy(&buffer[..length]);
                        let Some(nonce) = text
                            .split("nonce=\"")
                            .nth(1)
                            .and_then(|rest| rest.split('"').next())
                        else {
                            refused += 1;
                            continue;
                        };
                        let user = format!("{prefix}{index}");
                        let ha1 = sip::ha1(&user, "local.test", "any");
                        let cnonce = format!("c{index}");
                        let digest = sip::ha1(&ha1, nonce, &format!("00000001:{cnonce}:auth:{ha2}"));
                        let authorization = format!(
                            "Authorization: Digest username=\"{user}\", realm=\"local.test\", \
                             nonce=\"{nonce}\", uri=\"sip:local.test\", response=\"{digest}\", \
                             algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\"\r\n"
                        );
                        socket
                            .send_to(request(index, 2, &authorization).as_bytes(), proxy)
                            .await?;
                    }
                    _ => {
                        refused += 1;
                        *refusals.entry(code).or_insert(0u64) += 1;
                    }
                }
            }
            () = tokio::time::sleep_until(last_activity + Duration::from_secs(5)) => break,
        }
    }
    let unanswered = u64::from(total) - registered - refused;
    if refused + unanswered > 0 {
        eprintln!("registrations at {rate}/s: refused {refusals:?}, unanswered {unanswered}");
    }
    Ok((registered, u64::from(total) - registered))
}

/// Runs sipp's `scenario` against the dispatcher at `rate` per second for `total` calls: how
/// many succeeded and failed (from its statistics file).
async fn sipp(
    scenario: &Path,
    port: u16,
    rate: u32,
    total: u32,
    dir: &Path,
) -> Result<(u64, u64), Error> {
    let binary = require("sipp", "sip-tester");
    let stats = dir.join(format!("stats-{}.csv", free_port()));
    let mut command = tokio::process::Command::new(binary);
    command
        .arg(format!("127.0.0.1:{port}"))
        .arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &free_port().to_string()])
        .args(["-m", &total.to_string(), "-r", &rate.to_string()])
        .args(["-l", "100000", "-nostdin", "-timeout", "120s"])
        .args(["-trace_err", "-trace_stat", "-fd", "1", "-stf"])
        .arg(&stats)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = command.status().await?;
    let text = std::fs::read_to_string(&stats)
        .map_err(|error| format!("sipp ({status}) wrote no statistics: {error}"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty statistics")?.split(';').collect();
    let last: Vec<&str> = lines
        .rfind(|line| !line.trim().is_empty())
        .ok_or("no statistics line")?
        .split(';')
        .collect();
    let column = |name: &str| -> Result<u64, Error> {
        let index = header
            .iter()
            .position(|field| *field == name)
            .ok_or_else(|| format!("no column {name}"))?;
        Ok(last
            .get(index)
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0))
    };
    let failed = column("FailedCall(C)")?;
    if failed > 0 {
        // What went wrong, for the operator: the first lines of sipp's error log.
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with("_errors.log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                eprintln!(
                    "{name}:\n{}",
                    text.lines().take(30).collect::<Vec<_>>().join("\n")
                );
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok((column("SuccessfulCall(C)")?, failed))
}
