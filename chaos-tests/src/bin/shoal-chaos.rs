//! `shoal-chaos`: the long chaos profile. Runs many seeded scenarios, in the deterministic
//! simulation (every fault scenario per seed) and on real processes, and prints a summary
//! table (scenarios, operations, faults injected, violations). A failing seed is printed
//! with the command that replays it.

use clap::{Parser, ValueEnum};
use shoal_chaos_tests::check::check_all;
use shoal_chaos_tests::history::WriteOutcome;
use shoal_chaos_tests::real::{FaultKind, RealOptions};
use shoal_chaos_tests::sim::{Scenario, SimOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Runs seeded chaos scenarios against real `shoal-node` processes on loopback.
#[derive(Parser)]
#[command(name = "shoal-chaos", version)]
struct Cli {
    /// Which level to run per seed: the deterministic simulation (all eight fault
    /// scenarios), real processes (one scenario drawing from every fault kind), or both.
    #[arg(long, value_enum, default_value_t = Level::Both)]
    level: Level,
    /// Number of seeds to run (seeds `--first-seed`, `--first-seed + 1`, …).
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Run scenarios until this much time has passed (e.g. `30m`, `90s`), whatever
    /// `--seeds` says.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Fault-injection time per scenario, in seconds.
    #[arg(long, default_value_t = 60)]
    scenario_secs: u64,
    /// Clients per scenario (one conversation each).
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Followers per conversation.
    #[arg(long, default_value_t = 2)]
    followers: usize,
    /// Comma-separated fault kinds (kill, pause, partition, one-way, isolate-leader, loss,
    /// delay, wipe, stall-storage, wipe-lagging, stop, drain, quiet-isolate); all by default.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// The node executable; by default `shoal-chaos-node` next to this program.
    #[arg(long)]
    node_exe: Option<PathBuf>,
    /// Print each scenario's trace as it happens.
    #[arg(long)]
    trace: bool,
    /// Write each failing scenario's history and trace as JSON into this directory.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Level {
    Sim,
    Real,
    Both,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: use e.g. 90s, 30m or 2h"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("`{text}`: unknown unit `{unit}`; use s, m or h")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let faults = if cli.faults.is_empty() {
        FaultKind::ALL.to_vec()
    } else {
        let mut kinds = Vec::new();
        for name in &cli.faults {
            match FaultKind::parse(name) {
                Some(kind) => kinds.push(kind),
                None => {
                    eprintln!(
                        "shoal-chaos: unknown fault `{name}` in --faults; known: {}",
                        FaultKind::ALL.map(FaultKind::name).join(", ")
                    );
                    return ExitCode::from(2);
                }
            }
        }
        kinds
    };
    let exe = match cli.node_exe.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|me| me.parent().map(|dir| dir.join("shoal-chaos-node")))
    }) {
        Some(exe) if exe.exists() => exe,
        other => {
            eprintln!(
                "shoal-chaos: the node executable {} does not exist; build it with `cargo build -p shoal-chaos-tests` or pass --node-exe",
                other.map(|p| p.display().to_string()).unwrap_or_default()
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("shoal-chaos: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli, exe, faults))
}

async fn run(cli: Cli, exe: PathBuf, faults: Vec<FaultKind>) -> ExitCode {
    let started = std::time::Instant::now();
    println!(
        "{:>6} {:>8} {:>8} {:>7} {:>9} {:>8} {:>7} {:>10}  faults",
        "seed", "acked", "failed", "agents", "followed", "fault-s", "wall-s", "violations"
    );
    let mut totals = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut failing = Vec::new();
    let mut seed = cli.first_seed;
    loop {
        let done = match cli.duration {
            Some(limit) => started.elapsed() >= limit,
            None => seed >= cli.first_seed + cli.seeds,
        };
        if done {
            break;
        }
        if cli.level != Level::Real {
            for scenario in Scenario::ALL {
                let start = std::time::Instant::now();
                // The simulation builds its own runtimes: run it off this one.
                let ran = tokio::task::spawn_blocking(move || {
                    shoal_chaos_tests::sim::run(seed, scenario, &SimOptions::default())
                })
                .await;
                totals.0 += 1;
                let line = match ran {
                    Ok(Ok(outcome)) => {
                        let mut violations: Vec<String> = check_all(&outcome.history)
                            .iter()
                            .map(ToString::to_string)
                            .collect();
                        if let Some(error) = &outcome.error {
                            violations.push(format!("the simulation stopped: {error}"));
                        }
                        let h = &outcome.history;
                        let acked = h
                            .writes
                            .iter()
                            .filter(|w| matches!(w.outcome, WriteOutcome::Acked { .. }))
                            .count() as u64;
                        let followed: usize = h.followers.iter().map(|f| f.events.len()).sum();
                        totals.1 += acked;
                        totals.2 += u64::from(scenario != Scenario::Calm);
                        totals.4 += violations.len() as u64;
                        for v in &violations {
                            eprintln!("sim seed {seed} {}: {v}", scenario.name());
                        }
                        if !violations.is_empty() {
                            failing.push(outcome.replay_command());
                        }
                        format!(
                            "{seed:>6} {:>8} {:>8} {:>7} {:>9} {:>8} {:>7.1} {:>10}  sim {} ({:.1} s simulated)",
                            acked,
                            h.writes.len() as u64 - acked,
                            h.agents.len(),
                            followed,
                            "-",
                            start.elapsed().as_secs_f64(),
                            violations.len(),
                            scenario.name(),
                            outcome.sim_ms as f64 / 1000.0
                        )
                    }
                    Ok(Err(e)) => {
                        failing.push(shoal_chaos_tests::sim::replay_command(seed, scenario));
                        format!("{seed:>6} sim {}: could not run: {e}", scenario.name())
                    }
                    Err(e) => {
                        failing.push(shoal_chaos_tests::sim::replay_command(seed, scenario));
                        format!("{seed:>6} sim {}: panicked: {e}", scenario.name())
                    }
                };
                println!("{line}");
            }
        }
        if cli.level == Level::Sim {
            seed += 1;
            continue;
        }
        let options = RealOptions {
            exe: exe.clone(),
            seed,
            duration: Duration::from_secs(cli.scenario_secs),
            clients: cli.clients,
            followers: cli.followers,
            faults: faults.clone(),
            echo_trace: cli.trace,
        };
        let scenario_start = std::time::Instant::now();
        let line = match shoal_chaos_tests::real::run(&options).await {
            Ok(outcome) => {
                let s = &outcome.stats;
                totals.0 += 1;
                totals.1 += s.writes_acked;
                totals.2 += s.faults.values().sum::<u64>();
                totals.3 += s.fault_ms;
                totals.4 += outcome.violations.len() as u64;
                let faults: Vec<String> =
                    s.faults.iter().map(|(k, n)| format!("{k}×{n}")).collect();
                let line = format!(
                    "{seed:>6} {:>8} {:>8} {:>7} {:>9} {:>8.1} {:>7.1} {:>10}  {}",
                    s.writes_acked,
                    s.writes_failed,
                    s.agent_processes,
                    s.follower_events,
                    s.fault_ms as f64 / 1000.0,
                    scenario_start.elapsed().as_secs_f64(),
                    outcome.violations.len(),
                    faults.join(" ")
                );
                if !outcome.violations.is_empty() {
                    for v in &outcome.violations {
                        eprintln!("seed {seed}: {v}");
                    }
                    if let Some(dir) = &cli.out_dir {
                        save(dir, &outcome);
                    }
                    failing.push(replay(&cli, seed));
                }
                line
            }
            Err(e) => {
                totals.0 += 1;
                failing.push(replay(&cli, seed));
                format!("{seed:>6} the scenario could not run: {e:#}")
            }
        };
        println!("{line}");
        seed += 1;
    }
    println!(
        "\n{} scenarios, {} acknowledged writes, {} faults injected ({:.1} fault-minutes on real processes), {} violations, {:.1} min wall",
        totals.0,
        totals.1,
        totals.2,
        totals.3 as f64 / 60_000.0,
        totals.4,
        started.elapsed().as_secs_f64() / 60.0
    );
    if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        for command in &failing {
            println!("replay: {command}");
        }
        ExitCode::FAILURE
    }
}

fn replay(cli: &Cli, seed: u64) -> String {
    format!(
        "shoal-chaos --level real --first-seed {seed} --seeds 1 --scenario-secs {} --clients {} --followers {} --trace",
        cli.scenario_secs, cli.clients, cli.followers
    )
}

fn save(dir: &std::path::Path, outcome: &shoal_chaos_tests::real::RealOutcome) {
    let _ = std::fs::create_dir_all(dir);
    let history = dir.join(format!("seed-{}.history.json", outcome.seed));
    let trace = dir.join(format!("seed-{}.trace", outcome.seed));
    let mut text = outcome.trace.join("\n");
    for v in &outcome.violations {
        text.push_str(&format!("\n{v}"));
    }
    let written = outcome
        .history
        .save(&history)
        .map_err(|e| e.to_string())
        .and_then(|()| std::fs::write(&trace, text).map_err(|e| e.to_string()));
    match written {
        Ok(()) => eprintln!(
            "seed {}: history in {}, trace in {}",
            outcome.seed,
            history.display(),
            trace.display()
        ),
        Err(e) => eprintln!(
            "seed {}: cannot write to {}: {e}",
            outcome.seed,
            dir.display()
        ),
    }
}
