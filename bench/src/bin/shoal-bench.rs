//! `shoal-bench <scenario> [--quick] [options]`: see `bench/README.md`.

use anyhow::{Context, bail};
use std::path::PathBuf;
use std::time::Duration;

/// Upper bound of one whole invocation.
const RUN_TIMEOUT: Duration = Duration::from_secs(3_600);

const USAGE: &str = "usage: shoal-bench <scenario|all> [--quick] [--results DIR] [options]
  fanout      [--followers 1,100,1000,5000] [--rate 200] [--secs 10] [--per-connection 1,100] [--separate]
  failover    [--trials 20]
  detection   [--nodes 3,5,9] [--trials 10]
  throughput  [--secs 10] [--users 256] [--concurrency 512]
  activation  [--conversations 1000000] [--samples 1000] [--actors 5000]
  agent       [--trials 200]
  snapshot    [--files 10000] [--file-bytes 4096]
  all         every scenario (with --quick: smaller sizes, fewer trials and seconds)";

struct Args {
    scenario: String,
    quick: bool,
    results: PathBuf,
    followers: Option<Vec<usize>>,
    per_connection: Vec<usize>,
    separate: bool,
    rate: u64,
    secs: Option<u64>,
    trials: Option<usize>,
    files: Option<usize>,
    file_bytes: usize,
    nodes: Option<Vec<u16>>,
    users: usize,
    concurrency: usize,
    conversations: Option<u64>,
    samples: Option<usize>,
    actors: Option<usize>,
}

fn list<T: std::str::FromStr>(value: &str, flag: &str) -> anyhow::Result<Vec<T>> {
    value
        .split(',')
        .map(|v| v.trim().parse::<T>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("{flag} takes numbers separated by commas"))
}

fn parse() -> anyhow::Result<Args> {
    let mut raw = std::env::args().skip(1);
    let scenario = raw.next().context(USAGE)?;
    if matches!(scenario.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}\n\nSee bench/README.md for what each scenario measures.");
        std::process::exit(0);
    }
    let mut args = Args {
        scenario,
        quick: false,
        results: PathBuf::from("bench/results"),
        followers: None,
        per_connection: vec![1, 100],
        separate: false,
        rate: 200,
        secs: None,
        trials: None,
        files: None,
        file_bytes: 4096,
        nodes: None,
        users: 256,
        concurrency: 512,
        conversations: None,
        samples: None,
        actors: None,
    };
    while let Some(flag) = raw.next() {
        let mut value = || {
            raw.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let number = |what: &str| format!("{flag} takes {what}");
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}\n\nSee bench/README.md for what each scenario measures.");
                std::process::exit(0);
            }
            "--quick" => args.quick = true,
            "--separate" => args.separate = true,
            "--results" => args.results = PathBuf::from(value()?),
            "--followers" => args.followers = Some(list(&value()?, &flag)?),
            "--per-connection" => args.per_connection = list(&value()?, &flag)?,
            "--nodes" => args.nodes = Some(list(&value()?, &flag)?),
            "--rate" => args.rate = value()?.parse().context("--rate takes events per second")?,
            "--secs" => args.secs = Some(value()?.parse().with_context(|| number("seconds"))?),
            "--trials" => args.trials = Some(value()?.parse().with_context(|| number("a number"))?),
            "--files" => args.files = Some(value()?.parse().with_context(|| number("a number"))?),
            "--file-bytes" => {
                args.file_bytes = value()?.parse().with_context(|| number("a number"))?
            }
            "--users" => args.users = value()?.parse().with_context(|| number("a number"))?,
            "--concurrency" => {
                args.concurrency = value()?.parse().with_context(|| number("a number"))?
            }
            "--conversations" => {
                args.conversations = Some(value()?.parse().with_context(|| number("a number"))?)
            }
            "--samples" => {
                args.samples = Some(value()?.parse().with_context(|| number("a number"))?)
            }
            "--actors" => args.actors = Some(value()?.parse().with_context(|| number("a number"))?),
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    Ok(args)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let quick = args.quick;
    fn choose<T>(quick: bool, full: T, small: T) -> T {
        if quick { small } else { full }
    }
    let fanout = shoal_bench::fanout::Options {
        followers: args
            .followers
            .clone()
            .unwrap_or_else(|| choose(quick, vec![1, 100, 1000, 5000], vec![1, 100, 1000])),
        rate: args.rate,
        secs: args.secs.unwrap_or(choose(quick, 10, 5)),
        per_connection: args.per_connection.clone(),
        separate: args.separate,
    };
    let trials = args.trials.unwrap_or(choose(quick, 20, 5));
    let snapshot = shoal_bench::snapshot::Options {
        files: args.files.unwrap_or(choose(quick, 10_000, 2_000)),
        file_bytes: args.file_bytes,
    };
    let detection = shoal_bench::detection::Options {
        nodes: args.nodes.clone().unwrap_or_else(|| vec![3, 5, 9]),
        trials: args.trials.unwrap_or(choose(quick, 10, 1)),
    };
    let throughput = shoal_bench::throughput::Options {
        secs: args.secs.unwrap_or(choose(quick, 10, 5)),
        users: args.users,
        concurrency: args.concurrency,
    };
    let activation = shoal_bench::activation::Options {
        conversations: args
            .conversations
            .unwrap_or(choose(quick, 1_000_000, 20_000)),
        samples: args.samples.unwrap_or(choose(quick, 1_000, 200)),
        actors: args.actors.unwrap_or(choose(quick, 5_000, 1_000)),
    };
    let prompts = args.trials.unwrap_or(choose(quick, 200, 50));
    let results = &args.results;
    match args.scenario.as_str() {
        "fanout" => shoal_bench::fanout::run(&fanout, results).await,
        "failover" => shoal_bench::failover::run(trials, results).await,
        "detection" => shoal_bench::detection::run(&detection, results).await,
        "throughput" => shoal_bench::throughput::run(&throughput, results).await,
        "activation" => shoal_bench::activation::run(&activation, results).await,
        "agent" => shoal_bench::agent::run(prompts, results).await,
        "snapshot" => {
            shoal_bench::snapshot::run(&snapshot, results)?;
            shoal_bench::snapshot::run_cluster(snapshot.files, results).await
        }
        "all" => {
            shoal_bench::fanout::run(&fanout, results).await?;
            shoal_bench::failover::run(trials, results).await?;
            shoal_bench::detection::run(&detection, results).await?;
            shoal_bench::throughput::run(&throughput, results).await?;
            shoal_bench::activation::run(&activation, results).await?;
            shoal_bench::agent::run(prompts, results).await?;
            shoal_bench::snapshot::run(&snapshot, results)?;
            shoal_bench::snapshot::run_cluster(snapshot.files, results).await
        }
        other => bail!("unknown scenario {other}\n{USAGE}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse()?;
    // Returning drops the scenario's future and with it every child process it holds
    // (all are `kill_on_drop`): an error, the time bound, Ctrl-C and SIGTERM (`kill`,
    // `timeout`) all end that way.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        outcome = tokio::time::timeout(RUN_TIMEOUT, run(args)) => {
            outcome.context("the benchmark exceeded its time bound")?
        }
        _ = tokio::signal::ctrl_c() => bail!("interrupted: every process started was killed"),
        _ = terminate.recv() => bail!("terminated: every process started was killed"),
    }
}
