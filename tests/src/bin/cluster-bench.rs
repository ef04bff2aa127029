//! Registrations and calls per second through Kamailio's dispatcher to one and to several
//! gateway instances (`docs/benchmarks.md`): the deployment of `docs/deployment.md` on this
//! machine, driven by sipp at fixed rates, step by step.
//!
//! For each count of instances it starts them (release binary, log level from `GATEWAY_LOG`)
//! and the dispatcher with `docs/deployment/kamailio.cfg`, then for each rate runs sipp for
//! the given seconds: phones of the local domain registering with digest authentication
//! (`uac_register_auth.xml`, a new user per registration), then callers of another domain
//! calling the echo test and hanging up at once (`uac_echo_call.xml`). It reports what
//! completed per second of wall time, what failed, and the CPU time the instances (together)
//! and Kamailio (all its processes) spent per operation. sipp's own CPU is not counted.

use std::io::Write as _;
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
    #[arg(long, value_delimiter = ',', default_value = "500,1000,2000,4000")]
    register_rates: Vec<u32>,
    /// Calls per second asked of sipp, one step each.
    #[arg(long, value_delimiter = ',', default_value = "100,200,400,800")]
    call_rates: Vec<u32>,
    /// Seconds of load per step.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
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
        "| instances | load | asked per s | completed per s | failed | instances' CPU per op | kamailio CPU per op | instances / kamailio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for &count in &args.instances {
        let settings = Settings {
            registrar: free_port(),
            postgres_url: None,
            peers: false,
            local_extra: "ping_interval = 0\nmax_unauthenticated_calls = 100000\n\
                          trusted_proxies = [\"127.0.0.1\"]",
            rtp_ports: 400,
        };
        let instances = Instance::start_all(count, &settings);
        let dispatcher = Dispatcher::start(&instances);
        for instance in &instances {
            dispatcher.wait_state(instance, "A").await;
        }
        for &rate in &args.register_rates {
            let total = rate * args.seconds;
            let users = dir.path().join(format!("users-{count}-{rate}.csv"));
            let mut file = std::fs::File::create(&users)?;
            writeln!(file, "SEQUENTIAL")?;
            for index in 0..total {
                writeln!(file, "u{count}x{rate}x{index};any")?;
            }
            drop(file);
            let step = measure(&instances, &dispatcher, async {
                sipp(
                    &data.join("uac_register_auth.xml"),
                    dispatcher.port,
                    rate,
                    total,
                    Some(&users),
                    dir.path(),
                )
                .await
            })
            .await?;
            report(count, "registrations", rate, &step);
        }
        for &rate in &args.call_rates {
            let total = rate * args.seconds;
            let step = measure(&instances, &dispatcher, async {
                sipp(
                    &data.join("uac_echo_call.xml"),
                    dispatcher.port,
                    rate,
                    total,
                    None,
                    dir.path(),
                )
                .await
            })
            .await?;
            report(count, "calls", rate, &step);
        }
    }
    Ok(())
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

fn report(count: u8, load: &str, rate: u32, step: &Step) {
    let done = step.completed.max(1) as f64;
    println!(
        "| {count} | {load} | {rate} | {:.0} | {} | {:.0} µs | {:.0} µs | {:.2} |",
        step.completed as f64 / step.wall.as_secs_f64(),
        step.failed,
        step.gateways_cpu / done * 1e6,
        step.kamailio_cpu / done * 1e6,
        step.gateways_cpu / step.kamailio_cpu.max(1e-9),
    );
}

/// Runs sipp's `scenario` against the dispatcher at `rate` per second for `total` calls: how
/// many succeeded and failed (from its statistics file).
async fn sipp(
    scenario: &Path,
    port: u16,
    rate: u32,
    total: u32,
    injection: Option<&Path>,
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
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&stats)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(injection) = injection {
        command.arg("-inf").arg(injection);
    }
    let status = command.status().await?;
    let text = std::fs::read_to_string(&stats)
        .map_err(|error| format!("sipp ({status}) wrote no statistics: {error}"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty statistics")?.split(';').collect();
    let last: Vec<&str> = lines
        .filter(|line| !line.trim().is_empty())
        .last()
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
    Ok((column("SuccessfulCall(C)")?, column("FailedCall(C)")?))
}
