//! The summary after the runs: each system's medians, and the ratios of the gateway to each
//! of the others.

use crate::{Args, Run, Setup, Step, median};

pub(crate) fn report(
    runs: &[Run],
    systems: &[&'static str],
    zero_p50: f64,
    zero_p99: f64,
    setups: &[Setup],
    args: &Args,
) {
    println!();
    let second = args
        .steps
        .split(',')
        .nth(1)
        .and_then(|step| step.trim().parse::<usize>().ok());
    println!(
        "medians of {} runs (fixed load = {} calls)",
        args.reps,
        args.steps.split(',').next().unwrap_or("?"),
    );
    let mut table: Vec<(&str, [f64; 9])> = Vec::new();
    for system in systems {
        let runs: Vec<&Run> = runs.iter().filter(|run| run.system == *system).collect();
        let first = |f: &dyn Fn(&Step) -> f64| {
            median(
                runs.iter()
                    .filter_map(|run| run.steps.first().map(f))
                    .collect(),
            )
        };
        let cpu = first(&|step| step.cpu_per_1000_ms);
        let cpu_second = median(
            runs.iter()
                .filter_map(|run| {
                    run.steps
                        .iter()
                        .find(|s| Some(s.calls) == second)
                        .map(|s| s.cpu_per_1000_ms)
                })
                .collect(),
        );
        let memory = first(&|step| step.memory_per_call_kib);
        let generator = first(&|step| step.generator_percent);
        let max = median(runs.iter().map(|run| run.max_calls() as f64).collect());
        let at_80 = |f: &dyn Fn(&Step) -> f64| {
            median(runs.iter().filter_map(|run| run.at_80().map(f)).collect())
        };
        let p50 = (at_80(&|step| step.rtt_p50_ms) - zero_p50).max(0.0) / 2.0;
        let p99 = (at_80(&|step| step.rtt_p99_ms) - zero_p99).max(0.0) / 2.0;
        let generator_at_max = median(
            runs.iter()
                .filter_map(|run| {
                    run.steps
                        .iter()
                        .find(|s| s.calls == run.max_calls())
                        .map(|s| s.generator_percent)
                })
                .collect(),
        );
        let of_setups = |f: &dyn Fn(&Setup) -> f64| {
            median(
                setups
                    .iter()
                    .filter(|s| s.system == *system)
                    .map(f)
                    .collect(),
            )
        };
        let rate = of_setups(&|s| s.rate);
        let connected_rate = of_setups(&|s| args.burst as f64 * 1000.0 / s.connected_ms);
        println!(
            "{system:9}: CPU per 1,000 relayed packets {cpu:.2} ms (second step {cpu_second:.2} ms); \
             max calls (<1% loss, p99 jitter <5 ms) {max:.0}; added one-way latency at 80% of max \
             p50 {p50:.3} ms, p99 {p99:.3} ms; memory per call {memory:.0} KiB; generator CPU \
             {generator:.1}% (at the max {generator_at_max:.1}%); set-up {rate:.0} calls/s answered, \
             {connected_rate:.0} calls/s connected"
        );
        for setup in setups.iter().filter(|s| s.system == *system) {
            println!(
                "           set-up p50 {:.1} ms, p99 {:.1} ms at 20 calls/s; {} at once answered in {:.0} ms, connected in {:.0} ms, {:.2} ms of CPU per call",
                setup.p50_ms,
                setup.p99_ms,
                args.burst,
                setup.burst_ms,
                setup.connected_ms,
                setup.cpu_per_call_ms
            );
        }
        table.push((
            system,
            [
                cpu,
                max,
                p50,
                p99,
                memory,
                generator,
                cpu_second,
                rate,
                connected_rate,
            ],
        ));
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let Some((_, gateway)) = table.iter().find(|(s, _)| *s == "gateway") else {
        return;
    };
    for (other, theirs) in table.iter().filter(|(s, _)| *s != "gateway") {
        println!(
            "gateway / {other}: CPU per packet {:.2} (second step {:.2}), max calls {:.2}, p50 latency {:.2}, \
             p99 latency {:.2}, memory per call {:.2}, set-up rate answered {:.2}, connected {:.2}",
            ratio(gateway[0], theirs[0]),
            ratio(gateway[6], theirs[6]),
            ratio(gateway[1], theirs[1]),
            ratio(gateway[2], theirs[2]),
            ratio(gateway[3], theirs[3]),
            ratio(gateway[4], theirs[4]),
            ratio(gateway[7], theirs[7]),
            ratio(gateway[8], theirs[8]),
        );
        // Each system's own 80% point may be a different load: compare one load as well, the
        // step nearest 80% of the smaller maximum.
        let target = 0.8 * gateway[1].min(theirs[1]);
        let load = args
            .steps
            .split(',')
            .filter_map(|step| step.trim().parse::<usize>().ok())
            .min_by(|a, b| {
                (*a as f64 - target)
                    .abs()
                    .total_cmp(&(*b as f64 - target).abs())
            });
        if let Some(load) = load {
            let added_p99 = |system: &str| {
                let rtts = runs
                    .iter()
                    .filter(|run| run.system == system)
                    .filter_map(|run| run.steps.iter().find(|step| step.calls == load))
                    .map(|step| step.rtt_p99_ms)
                    .collect();
                (median(rtts) - zero_p99).max(0.0) / 2.0
            };
            let (ours, theirs) = (added_p99("gateway"), added_p99(other));
            println!(
                "added one-way latency p99 at {load} calls for both: gateway {ours:.3} ms, {other} {theirs:.3} ms, ratio {:.2}",
                ratio(ours, theirs)
            );
        }
    }
}
