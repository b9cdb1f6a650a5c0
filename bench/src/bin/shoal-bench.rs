//! `shoal-bench <scenario> [--quick] [options]`: see `bench/README.md`.

use anyhow::{Context, bail};
use std::path::PathBuf;
use std::time::Duration;

/// Upper bound of one whole invocation.
const RUN_TIMEOUT: Duration = Duration::from_secs(3_600);

const USAGE: &str = "usage: shoal-bench <fanout|failover|snapshot|all> [--quick] [--results DIR]
  fanout   [--followers 1,100,1000,5000] [--rate 200] [--secs 10]
  failover [--trials 20]
  snapshot [--files 10000] [--file-bytes 4096]
  all      every scenario (with --quick: fewer followers, trials and seconds)";

struct Args {
    scenario: String,
    quick: bool,
    results: PathBuf,
    followers: Option<Vec<usize>>,
    rate: u64,
    secs: Option<u64>,
    trials: Option<usize>,
    files: Option<usize>,
    file_bytes: usize,
}

fn parse() -> anyhow::Result<Args> {
    let mut raw = std::env::args().skip(1);
    let scenario = raw.next().context(USAGE)?;
    let mut args = Args {
        scenario,
        quick: false,
        results: PathBuf::from("bench/results"),
        followers: None,
        rate: 200,
        secs: None,
        trials: None,
        files: None,
        file_bytes: 4096,
    };
    while let Some(flag) = raw.next() {
        let mut value = || {
            raw.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--quick" => args.quick = true,
            "--results" => args.results = PathBuf::from(value()?),
            "--followers" => {
                args.followers = Some(
                    value()?
                        .split(',')
                        .map(|v| v.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .context("--followers takes numbers separated by commas")?,
                )
            }
            "--rate" => args.rate = value()?.parse().context("--rate takes events per second")?,
            "--secs" => args.secs = Some(value()?.parse().context("--secs takes seconds")?),
            "--trials" => args.trials = Some(value()?.parse().context("--trials takes a number")?),
            "--files" => args.files = Some(value()?.parse().context("--files takes a number")?),
            "--file-bytes" => {
                args.file_bytes = value()?.parse().context("--file-bytes takes a number")?
            }
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    Ok(args)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let fanout = shoal_bench::fanout::Options {
        followers: args.followers.clone().unwrap_or_else(|| {
            if args.quick {
                vec![1, 100, 1000]
            } else {
                vec![1, 100, 1000, 5000]
            }
        }),
        rate: args.rate,
        secs: args.secs.unwrap_or(if args.quick { 5 } else { 10 }),
    };
    let trials = args.trials.unwrap_or(if args.quick { 5 } else { 20 });
    let snapshot = shoal_bench::snapshot::Options {
        files: args
            .files
            .unwrap_or(if args.quick { 2_000 } else { 10_000 }),
        file_bytes: args.file_bytes,
    };
    match args.scenario.as_str() {
        "fanout" => shoal_bench::fanout::run(&fanout, &args.results).await,
        "failover" => shoal_bench::failover::run(trials, &args.results).await,
        "snapshot" => {
            shoal_bench::snapshot::run(&snapshot, &args.results)?;
            shoal_bench::snapshot::run_cluster(snapshot.files, &args.results).await
        }
        "all" => {
            shoal_bench::fanout::run(&fanout, &args.results).await?;
            shoal_bench::failover::run(trials, &args.results).await?;
            shoal_bench::snapshot::run(&snapshot, &args.results)?;
            shoal_bench::snapshot::run_cluster(snapshot.files, &args.results).await
        }
        other => bail!("unknown scenario {other}\n{USAGE}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse()?;
    tokio::time::timeout(RUN_TIMEOUT, run(args))
        .await
        .context("the benchmark exceeded its time bound")?
}
