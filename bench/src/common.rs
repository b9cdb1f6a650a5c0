//! What every scenario shares: finding and starting `shoal-node`, polling, CPU and memory
//! of processes, percentiles, and the results file.

use anyhow::{Context, bail};
use serde_json::Value;
use shoal_node::dev::LocalNode;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Bound of one wait (a node start, an election, a catch-up).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the bench asks the nodes again while waiting for a state it measures.
pub const POLL: Duration = Duration::from_millis(20);

/// `shoal-node`, next to the running bench binary.
pub fn node_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("shoal-node");
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p shoal-node -p shoal-bench`",
            bin.display()
        );
    }
    Ok(bin)
}

/// The first of `n` free consecutive ports on loopback.
pub fn free_base(n: u16) -> anyhow::Result<u16> {
    shoal_node::dev::free_port_range(n).context("no free port range on loopback")
}

/// Lays out `nodes` local nodes under `dir` on free loopback ports, running the demo
/// agent, with `edit` applied to every node's config.
pub fn local_cluster(
    dir: &Path,
    nodes: u16,
    bin: &Path,
    edit: impl Fn(&mut shoal_cluster_config::NodeConfig),
) -> anyhow::Result<Vec<LocalNode>> {
    Ok(shoal_node::dev::prepare_cluster(
        dir,
        nodes,
        free_base(nodes)?,
        bin.to_owned(),
        vec!["demo-agent".into()],
        edit,
    )?)
}

/// Asks `probe` every [`POLL`] until it yields a value, within [`STEP_TIMEOUT`]. The
/// states measured live in other processes and the admin API has no push.
pub async fn poll_until<T, F, Fut>(what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let mut tick = tokio::time::interval(POLL);
    tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            tick.tick().await;
            if let Some(value) = probe().await {
                return value;
            }
        }
    })
    .await
    .with_context(|| format!("{what}: not within {STEP_TIMEOUT:?}"))
}

/// Starts `node` and waits for its ready line. The child is killed when dropped.
pub async fn spawn(bin: &Path, node: &LocalNode) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::File::create(node.data_dir.join("node.log"))?;
    let mut child = tokio::process::Command::new(bin)
        .arg("start")
        .arg("--config")
        .arg(&node.config_path)
        .env(
            "SHOAL_LOG",
            std::env::var("SHOAL_BENCH_NODE_LOG").unwrap_or_else(|_| "warn,openraft=error".into()),
        )
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    tokio::time::timeout(STEP_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("shoal-node ready") {
                return Ok(());
            }
        }
        bail!("{} exited before it was ready", node.name)
    })
    .await
    .context("node start timed out")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

/// CPU time (user + system) of a process, in seconds (the node's own reading).
pub use shoal_node::dev::apply_alone::cpu_secs;

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// CPU used by processes over a window: start it, then read the share of one core.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Instant,
    before: f64,
}

impl CpuMeter {
    /// Starts measuring `pids` together.
    pub fn start(pids: &[u32]) -> Self {
        CpuMeter {
            pids: pids.to_vec(),
            start: Instant::now(),
            before: pids.iter().map(|p| cpu_secs(*p)).sum(),
        }
    }

    /// Share of one core used since the start (1.0 = one core busy).
    pub fn cores(&self) -> f64 {
        let after: f64 = self.pids.iter().map(|p| cpu_secs(*p)).sum();
        (after - self.before) / self.start.elapsed().as_secs_f64()
    }
}

/// The processes whose parent is `pid` (read from `/proc`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // Fields after the command: state, then the parent's pid.
            let after = stat.rsplit(") ").next().unwrap_or("");
            after.split_whitespace().nth(1) == Some(pid.to_string().as_str())
        })
        .collect()
}

/// The value at percentile `p` (0..=100) of sorted `values`.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarizes latencies given in microseconds (sorts them).
    pub fn from_micros(samples: &mut [u32]) -> Self {
        samples.sort_unstable();
        let ms = |v: Option<u32>| v.map_or(f64::NAN, |v| f64::from(v) / 1000.0);
        Latency {
            count: samples.len(),
            p50_ms: ms(percentile(samples, 50.0)),
            p99_ms: ms(percentile(samples, 99.0)),
            p999_ms: ms(percentile(samples, 99.9)),
            max_ms: ms(samples.last().copied()),
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the clock the demo agent stamps `/stream` chunks with.
pub use shoal_node::watchdog::monotonic_ns;

/// Raises this process's open-file limit to its hard limit (thousands of connections).
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        limit.current = Some(max);
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Appends one JSON record to `<dir>/<scenario>.jsonl`, with the time and machine.
pub fn append_result(dir: &Path, scenario: &str, mut record: Value) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{scenario}.jsonl"));
    if let Value::Object(map) = &mut record {
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        map.insert("unix_secs".into(), unix_secs.into());
        map.insert("machine".into(), machine().into());
        map.insert("scenario".into(), scenario.into());
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{record}")?;
    Ok(path)
}

/// The CPU model and core count, for the results.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}

/// Bytes of the files under `dir` (0 where unreadable).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
