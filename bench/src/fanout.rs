//! fanout: one conversation streaming at `rate` events/s to F followers, each on its own
//! QUIC connection through the SDK, against the seeds' Redis Streams design in the same
//! run (one `XADD MAXLEN` per event, one blocking `XREAD` per follower on its own
//! connection). With `--per-connection K` a further Shoal arm carries K follows on each
//! connection, as a web gateway following for its viewers does (the SDK shares one
//! follow stream among them; with `--separate` another arm gives each its own).
//!
//! Latency is end to end: the demo agent stamps each chunk with CLOCK_MONOTONIC right
//! before it writes it (`/stream N RATE`), and the follower reads the same clock when the
//! event reaches it, so the agent's pipe, the conversation actor and the fan-out all
//! count. The Redis arm's producer stamps right before its `XADD` (it has no agent hop).
//! Every follower checks that it got every chunk exactly once, in order.

use crate::common::{
    CpuMeter, Latency, POLL, STEP_TIMEOUT, append_result, local_cluster, monotonic_ns, node_binary,
    raise_nofile_limit, rss_bytes, spawn,
};
use crate::plot::{self, Distribution};
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use shoal_client::{Client, ConnectOptions, FollowStream, Profile};
use shoal_protocol::transcript::Event;
use std::path::Path;
use std::time::Duration;

/// Connections opened at once while attaching followers.
const CONNECT_CONCURRENCY: usize = 32;
/// Streams per connection the node allows beyond the follows, for the requests beside
/// them.
const SPARE_STREAMS: usize = 16;
/// Most follows one connection may carry (`--per-connection`): the node's stream limit
/// per connection, less the spare streams.
const MAX_PER_CONNECTION: usize =
    shoal_cluster_config::STREAMS_PER_CONNECTION_LIMIT as usize - SPARE_STREAMS;
/// Extra time a run may take beyond its streaming time before it is abandoned.
const DRAIN_GRACE: Duration = Duration::from_secs(60);
/// Entries the Redis stream keeps (`XADD MAXLEN ~`), like the seeds' deployment.
const REDIS_MAXLEN: u64 = 10_000;
/// Most entries one `XREAD` returns.
const REDIS_READ_COUNT: u64 = 1_000;
/// How long one `XREAD` blocks before it asks again, in ms.
const REDIS_BLOCK_MS: u64 = 1_000;
/// Ports tried before the Redis arm is skipped.
const REDIS_START_ATTEMPTS: usize = 3;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Follower counts, one row each.
    pub followers: Vec<usize>,
    /// Events per second.
    pub rate: u64,
    /// Seconds of streaming per row.
    pub secs: u64,
    /// Follows per Shoal connection, one Shoal arm each (1: every follower on its own
    /// connection, the arm the Redis baseline is compared with first).
    pub per_connection: Vec<usize>,
    /// Also runs every arm of K > 1 follows per connection with follows that do not share
    /// a stream (`ConnectOptions::follow_separately`).
    pub separate: bool,
}

/// One Shoal arm: follows per connection, and whether a connection's follows share one
/// follow stream (the SDK's default) or each open their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setup {
    per_connection: usize,
    separate: bool,
}

/// What one arm measured for one follower count.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    /// Followers attached.
    pub followers: usize,
    /// End-to-end latency of every delivered event.
    pub latency: Latency,
    /// Events every follower should get.
    pub expected: u64,
    /// Events delivered (all followers).
    pub delivered: u64,
    /// Events missed.
    pub gaps: u64,
    /// Events delivered twice.
    pub duplicates: u64,
    /// Times a follower was cut over to a snapshot.
    pub resets: u64,
    /// Share of one core the server used while streaming.
    pub server_cores: f64,
    /// Share of one core the followers (this process) used while streaming.
    pub client_cores: f64,
    /// Server memory added per attached follower, bytes.
    pub server_bytes_per_follower: f64,
    /// The distribution of the latencies (for the plot).
    #[serde(skip)]
    pub latency_cdf: Distribution,
}

/// A follower's tally.
#[derive(Debug, Default)]
struct Tally {
    latencies_us: Vec<u32>,
    next: u64,
    delivered: u64,
    gaps: u64,
    duplicates: u64,
    resets: u64,
    error: Option<String>,
}

impl Tally {
    fn new(expected: u64) -> Self {
        Tally {
            latencies_us: Vec::with_capacity(expected as usize),
            next: 1,
            ..Tally::default()
        }
    }

    /// Records every `#<i>@<ns>;` stamp in `text`; with `timed`, their latency too.
    fn observe(&mut self, text: &str, timed: bool) {
        let now = monotonic_ns();
        for stamp in text.split(';').filter(|s| !s.is_empty()) {
            let Some((index, ns)) = stamp
                .strip_prefix('#')
                .and_then(|s| s.split_once('@'))
                .and_then(|(i, ns)| Some((i.parse::<u64>().ok()?, ns.parse::<u64>().ok()?)))
            else {
                continue;
            };
            if index < self.next {
                self.duplicates += 1;
                continue;
            }
            self.gaps += index - self.next;
            self.next = index + 1;
            if timed {
                self.delivered += 1;
                let us = now.saturating_sub(ns) / 1_000;
                self.latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
        }
    }

    /// A follower that failed or never finished: everything counts as missed.
    fn failed(error: String, expected: u64) -> Self {
        let mut tally = Tally::new(0);
        tally.error = Some(error);
        tally.finish(expected);
        tally
    }

    /// The stream ended after `expected` events: whatever did not come is a gap.
    fn finish(&mut self, expected: u64) {
        self.gaps += (expected + 1).saturating_sub(self.next);
    }
}

/// Waits (at most twice [`DRAIN_GRACE`]; readers stop at their own deadline before) for
/// every follower's tally; one still waiting then
/// is aborted and counted as having missed everything.
async fn collect(
    mut readers: tokio::task::JoinSet<Tally>,
    expected: u64,
) -> anyhow::Result<Vec<Tally>> {
    let mut tallies = Vec::with_capacity(readers.len());
    let deadline = tokio::time::Instant::now() + DRAIN_GRACE * 2;
    while let Ok(Some(tally)) = tokio::time::timeout_at(deadline, readers.join_next()).await {
        tallies.push(tally?);
    }
    for _ in 0..readers.len() {
        tallies.push(Tally::failed(
            format!("no end of the stream within {DRAIN_GRACE:?}"),
            expected,
        ));
    }
    readers.abort_all();
    Ok(tallies)
}

fn combine(followers: usize, expected: u64, tallies: Vec<Tally>) -> Arm {
    let mut latencies = Vec::with_capacity(tallies.iter().map(|t| t.latencies_us.len()).sum());
    let mut arm = Arm {
        followers,
        latency: Latency::from_micros(&mut []),
        expected,
        delivered: 0,
        gaps: 0,
        duplicates: 0,
        resets: 0,
        server_cores: 0.0,
        client_cores: 0.0,
        server_bytes_per_follower: 0.0,
        latency_cdf: Distribution::default(),
    };
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for t in tallies {
        if let Some(e) = &t.error {
            *errors.entry(e.clone()).or_default() += 1;
        }
        latencies.extend_from_slice(&t.latencies_us);
        arm.delivered += t.delivered;
        arm.gaps += t.gaps;
        arm.duplicates += t.duplicates;
        arm.resets += t.resets;
    }
    arm.latency = Latency::from_micros(&mut latencies);
    arm.latency_cdf = Distribution::from_sorted_micros(&latencies);
    for (error, count) in errors {
        eprintln!("{count} followers ended with: {error}");
    }
    arm
}

/// Runs every follower count on both arms and prints the table.
pub async fn run(options: &Options, results: &Path) -> anyhow::Result<()> {
    let most = options.followers.iter().copied().max().unwrap_or(1);
    let nofile = raise_nofile_limit();
    // Each follower holds a UDP socket (Shoal) and a TCP socket (Redis) in this process.
    if (nofile as usize) < most + 256 {
        bail!(
            "{most} followers need about {} open files, and this process may open {nofile}: raise `ulimit -n`",
            most + 256
        );
    }
    let widest = options.per_connection.iter().copied().max().unwrap_or(1);
    if options.per_connection.contains(&0) || widest > MAX_PER_CONNECTION {
        bail!("--per-connection takes follows per connection from 1 to {MAX_PER_CONNECTION}");
    }
    let dir = tempfile::tempdir()?;
    let bin = node_binary()?;
    let layout = local_cluster(&dir.path().join("shoal"), 1, &bin, |config| {
        let room = u32::try_from(most + 64).unwrap_or(u32::MAX);
        config.limits.max_connections = room.try_into().expect("non-zero");
        config.limits.followers_per_conversation_max =
            room.min(65_536).try_into().expect("non-zero");
        // Each follow is one stream; a few more for the requests beside them.
        let streams = u32::try_from(widest + SPARE_STREAMS).unwrap_or(u32::MAX);
        config.limits.max_streams_per_connection = streams.try_into().expect("non-zero");
    })?;
    let mut node = spawn(&bin, &layout[0]).await?;
    let node_pid = node.id().context("node pid")?;
    let profile_path = dir.path().join("shoal").join("profile.toml");
    eprintln!("shoal node: profile {}", profile_path.display());
    let profile = Profile::load(&profile_path)?;
    let redis = match RedisServer::start(dir.path()).await {
        Ok(server) => Some(server),
        Err(e) => {
            println!("redis arm skipped: {e:#}");
            None
        }
    };

    println!(
        "fanout: one conversation, {} events/s for {} s; shoal: every follower on its own \
         connection, shoal:K: K follows per connection sharing one stream (shoal:K/sep: a \
         stream each); redis: a connection per follower",
        options.rate, options.secs
    );
    println!(
        "{:>9} {:>14} {:>8} {:>8} {:>9} {:>8} {:>10} {:>5} {:>5} {:>6} {:>8} {:>8} {:>10}",
        "followers",
        "arm",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "delivered",
        "gaps",
        "dups",
        "resets",
        "srv cpu",
        "cli cpu",
        "B/follower"
    );
    let mut rows = Vec::new();
    for &followers in &options.followers {
        let bound = Duration::from_secs(options.secs) + DRAIN_GRACE * 4;
        // An arm that fails (a connection lost under overload, say) is reported as such;
        // the other arms and the other rows still run.
        let mut shoals = Vec::new();
        for setup in setups(options, followers) {
            let arm = shoal_arm(&profile, node_pid, followers, setup, options);
            let arm = bounded(bound, arm).await;
            report_arm(followers, &arm_name(setup), &arm);
            shoals.push((setup, arm));
        }
        let baseline = match &redis {
            Some(server) => {
                let arm = bounded(bound, redis_arm(server, followers, options)).await;
                report_arm(followers, "redis", &arm);
                Some(arm)
            }
            None => None,
        };
        let json = |arm: &anyhow::Result<Arm>| match arm {
            Ok(arm) => serde_json::json!(arm),
            Err(e) => serde_json::json!({"error": format!("{e:#}")}),
        };
        let mut row = serde_json::json!({ "followers": followers });
        let mut shared = Vec::new();
        for (setup, shoal) in &shoals {
            let ratio = match (shoal, &baseline) {
                (Ok(shoal), Some(Ok(redis))) => {
                    println!(
                        "{:>9} {}/redis p99 {:.2}x, p50 {:.2}x",
                        "",
                        arm_name(*setup),
                        shoal.latency.p99_ms / redis.latency.p99_ms,
                        shoal.latency.p50_ms / redis.latency.p50_ms
                    );
                    Some(shoal.latency.p99_ms / redis.latency.p99_ms)
                }
                _ => None,
            };
            if setup.per_connection == 1 {
                row["shoal"] = json(shoal);
                row["p99_ratio"] = serde_json::json!(ratio);
            } else {
                shared.push(serde_json::json!({
                    "per_connection": setup.per_connection,
                    "separate": setup.separate,
                    "shoal": json(shoal),
                    "p99_ratio": ratio,
                }));
            }
        }
        row["shared"] = serde_json::json!(shared);
        row["redis"] = serde_json::json!(baseline.as_ref().map(json));
        plot_row(results, options, followers, &shoals, baseline.as_ref());
        rows.push(row);
    }
    let _ = node.kill().await;
    let path = append_result(
        results,
        "fanout",
        serde_json::json!({
            "rate": options.rate,
            "secs": options.secs,
            "per_connection": options.per_connection,
            "rows": rows,
        }),
    )?;
    println!("results appended to {}", path.display());
    Ok(())
}

/// The latency CDF of one follower count, Shoal and Redis (the arms that finished).
fn plot_row(
    results: &Path,
    options: &Options,
    followers: usize,
    shoals: &[(Setup, anyhow::Result<Arm>)],
    redis: Option<&anyhow::Result<Arm>>,
) {
    let names: Vec<String> = shoals
        .iter()
        .map(|(setup, _)| match setup.per_connection {
            1 => "Shoal".to_string(),
            k if setup.separate => format!("Shoal, {k} separate follows per connection"),
            k => format!("Shoal, {k} follows per connection"),
        })
        .collect();
    let arms = shoals
        .iter()
        .zip(&names)
        .map(|((_, arm), name)| (name.as_str(), Some(arm)))
        .chain([("Redis Streams (baseline)", redis)]);
    let lines: Vec<(&str, &Distribution)> = arms
        .filter_map(|(name, arm)| Some((name, &arm?.as_ref().ok()?.latency_cdf)))
        .collect();
    plot::save(results, &format!("fanout-{followers}"), |path| {
        plot::latency_cdf(
            path,
            &format!(
                "fanout: {followers} follower{}, {} events/s for {} s, end-to-end latency",
                if followers == 1 { "" } else { "s" },
                options.rate,
                options.secs
            ),
            "event written -> received by a follower (ms)",
            &lines,
            &[],
        )
    });
}

async fn bounded(
    bound: Duration,
    arm: impl std::future::Future<Output = anyhow::Result<Arm>>,
) -> anyhow::Result<Arm> {
    tokio::time::timeout(bound, arm)
        .await
        .with_context(|| format!("the arm did not finish within {bound:?}"))?
}

/// The Shoal arms of a row of `followers`: one per `--per-connection` value (a row of one
/// follower runs only one), each K > 1 also with separate follows when asked.
fn setups(options: &Options, followers: usize) -> Vec<Setup> {
    let mut setups = Vec::new();
    for &per_connection in &options.per_connection {
        if per_connection > 1 && followers == 1 && options.per_connection.contains(&1) {
            continue; // the same as one follow per connection
        }
        setups.push(Setup {
            per_connection,
            separate: false,
        });
        if per_connection > 1 && options.separate {
            setups.push(Setup {
                per_connection,
                separate: true,
            });
        }
    }
    setups
}

/// The table's name of a Shoal arm: `shoal`, or `shoal:K` with K follows per connection
/// (`shoal:K/sep` when they do not share a stream).
fn arm_name(setup: Setup) -> String {
    match setup.per_connection {
        1 => "shoal".to_string(),
        k if setup.separate => format!("shoal:{k}/sep"),
        k => format!("shoal:{k}"),
    }
}

fn report_arm(followers: usize, name: &str, arm: &anyhow::Result<Arm>) {
    match arm {
        Ok(arm) => print_row(name, arm),
        Err(e) => println!("{followers:>9} {name:>14} failed: {e:#}"),
    }
}

fn print_row(name: &str, arm: &Arm) {
    println!(
        "{:>9} {:>14} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>10} {:>5} {:>5} {:>6} {:>7.0}% {:>7.0}% {:>10.0}",
        arm.followers,
        name,
        arm.latency.p50_ms,
        arm.latency.p99_ms,
        arm.latency.p999_ms,
        arm.latency.max_ms,
        arm.delivered,
        arm.gaps,
        arm.duplicates,
        arm.resets,
        arm.server_cores * 100.0,
        arm.client_cores * 100.0,
        arm.server_bytes_per_follower,
    );
}

async fn shoal_arm(
    profile: &Profile,
    node_pid: u32,
    followers: usize,
    setup: Setup,
    options: &Options,
) -> anyhow::Result<Arm> {
    let owner = Client::connect(profile).await?;
    let conv = owner
        .create_conversation(Some("fanout".into()), None)
        .await?;
    // Start the agent process before measuring.
    drain(owner.send(conv.id, "/stream 1").await?).await?;
    let rss_before = rss_bytes(node_pid);
    let connections = followers.div_ceil(setup.per_connection);
    eprintln!("shoal: connecting {connections} connections for {followers} followers");
    let connect = ConnectOptions {
        follow_separately: setup.separate,
        ..ConnectOptions::default()
    };
    let clients: Vec<Client> = futures::stream::iter(0..connections)
        .map(|_| Client::connect_with(profile, connect.clone()))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!("shoal: attaching {followers} followers");
    // Attach: each follow starts with a reset (a snapshot).
    let follows: Vec<FollowStream> = futures::stream::iter(clients.iter().cycle().take(followers))
        .map(|client| async move {
            let mut follow = client.follow(conv.id, None);
            match tokio::time::timeout(STEP_TIMEOUT, follow.next()).await {
                Ok(Some(Ok(_reset))) => Ok(follow),
                Ok(Some(Err(e))) => Err(anyhow::anyhow!("follow failed: {e}")),
                Ok(None) => bail!("a follow ended before its first event"),
                Err(_) => bail!("a follow did not start within {STEP_TIMEOUT:?}"),
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    let rss_after = rss_bytes(node_pid);
    let expected = options.rate * options.secs;
    eprintln!("shoal: streaming {expected} events");
    // A follower still short of the end at this deadline stops and reports how far it got.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(options.secs) + DRAIN_GRACE;
    let mut readers = tokio::task::JoinSet::new();
    for follow in follows {
        readers.spawn(read_shoal(follow, expected, deadline));
    }
    let server_cpu = CpuMeter::start(&[node_pid]);
    let client_cpu = CpuMeter::start(&[std::process::id()]);
    drain(
        owner
            .send(conv.id, format!("/stream {expected} {}", options.rate))
            .await?,
    )
    .await?;
    eprintln!("shoal: the turn is done; waiting for the followers");
    let tallies = collect(readers, expected).await?;
    let mut arm = combine(followers, expected, tallies);
    arm.server_cores = server_cpu.cores();
    arm.client_cores = client_cpu.cores();
    arm.server_bytes_per_follower =
        rss_after.saturating_sub(rss_before) as f64 / followers.max(1) as f64;
    futures::stream::iter(&clients)
        .for_each_concurrent(CONNECT_CONCURRENCY, |client| client.close())
        .await;
    Ok(arm)
}

/// Reads a turn's stream to its end.
async fn drain(mut turn: shoal_client::TurnStream) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(3_600), async {
        while let Some(frame) = turn.next().await {
            if matches!(frame?.event, Event::Done { .. }) {
                break;
            }
        }
        anyhow::Ok(())
    })
    .await?
}

async fn read_shoal(
    mut follow: FollowStream,
    expected: u64,
    deadline: tokio::time::Instant,
) -> Tally {
    let mut tally = Tally::new(expected);
    // One timer for the whole follow, not one per event (a timer per event per follower
    // was a twentieth of this process's time at 5 000 followers).
    let deadline = tokio::time::sleep_until(deadline);
    tokio::pin!(deadline);
    loop {
        let frame = tokio::select! {
            biased;
            frame = follow.next() => frame,
            () = &mut deadline => {
                tally.error = Some(format!(
                    "still behind {DRAIN_GRACE:?} after the stream's end"
                ));
                break;
            }
        };
        let Some(frame) = frame else { break };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                tally.error = Some(e.to_string());
                break;
            }
        };
        match frame.event {
            Event::TextChunk { text, .. } => tally.observe(&text, true),
            Event::Reset { snapshot } => {
                // Cut over: what the snapshot holds counts as received, untimed.
                tally.resets += 1;
                let text = snapshot
                    .in_flight
                    .map(|m| m.content)
                    .or_else(|| snapshot.messages.last().map(|m| m.content.clone()))
                    .unwrap_or_default();
                tally.observe(&text, false);
            }
            Event::Done { .. } => break,
            _ => {}
        }
    }
    tally.finish(expected);
    tally
}

/// A `redis-server` this bench started on loopback; killed when dropped.
struct RedisServer {
    url: String,
    _child: tokio::process::Child,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback TCP port, trying another port when it
    /// exits at once (the port was taken between the check and its bind).
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut failures = Vec::new();
        for _ in 0..REDIS_START_ATTEMPTS {
            let port = std::net::TcpListener::bind(("127.0.0.1", 0))
                .and_then(|listener| listener.local_addr())
                .context("no free TCP port on loopback")?
                .port();
            match Self::start_on(dir, port).await {
                Ok(server) => return Ok(server),
                Err(e) => failures.push(format!("port {port}: {e:#}")),
            }
        }
        bail!("redis-server did not start: {}", failures.join("; "))
    }

    async fn start_on(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--maxclients", "60000"])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("redis-server not found (install it with `apt-get install redis-server`)")?;
        let url = format!("redis://127.0.0.1:{port}/");
        let client = redis::Client::open(url.as_str())?;
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("it exited at start ({status})");
            }
            if client.get_multiplexed_async_connection().await.is_ok() {
                return Ok(RedisServer { url, _child: child });
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("it did not accept connections within {STEP_TIMEOUT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn pid(&self) -> u32 {
        self._child.id().unwrap_or(0)
    }
}

async fn redis_connection(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Duration::from_millis(REDIS_BLOCK_MS) + STEP_TIMEOUT);
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

async fn redis_arm(
    server: &RedisServer,
    followers: usize,
    options: &Options,
) -> anyhow::Result<Arm> {
    let key = format!("fanout:{followers}:{}", monotonic_ns());
    eprintln!("redis: connecting {followers} followers");
    let expected = options.rate * options.secs;
    let connections: Vec<_> = futures::stream::iter(0..followers)
        .map(|_| redis_connection(&server.url))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(options.secs) + DRAIN_GRACE;
    let mut readers = tokio::task::JoinSet::new();
    for connection in connections {
        let key = key.clone();
        readers.spawn(async move {
            read_redis(connection, key, expected, deadline)
                .await
                .unwrap_or_else(|e| Tally::failed(format!("{e:#}"), expected))
        });
    }
    let server_cpu = CpuMeter::start(&[server.pid()]);
    let client_cpu = CpuMeter::start(&[std::process::id()]);
    let mut producer = redis_connection(&server.url).await?;
    let interval = Duration::from_nanos(1_000_000_000 / options.rate.max(1));
    let start = tokio::time::Instant::now();
    for index in 1..=expected {
        tokio::time::sleep_until(start + interval * (index - 1) as u32).await;
        let stamp = format!("#{index}@{};", monotonic_ns());
        redis::cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(REDIS_MAXLEN)
            .arg("*")
            .arg("d")
            .arg(stamp)
            .query_async::<String>(&mut producer)
            .await?;
    }
    let tallies = collect(readers, expected).await?;
    let mut arm = combine(followers, expected, tallies);
    arm.server_cores = server_cpu.cores();
    arm.client_cores = client_cpu.cores();
    Ok(arm)
}

async fn read_redis(
    mut connection: redis::aio::MultiplexedConnection,
    key: String,
    expected: u64,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new(expected);
    let mut last_id = "0-0".to_owned();
    while tally.next <= expected {
        if tokio::time::Instant::now() >= deadline {
            tally.error = Some(format!(
                "still behind {DRAIN_GRACE:?} after the stream's end"
            ));
            break;
        }
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(REDIS_READ_COUNT)
            .arg("BLOCK")
            .arg(REDIS_BLOCK_MS)
            .arg("STREAMS")
            .arg(&key)
            .arg(&last_id)
            .query_async(&mut connection)
            .await?;
        let Some(reply) = reply else { continue };
        for stream in reply.keys {
            for entry in stream.ids {
                if let Some(text) = entry.get::<String>("d") {
                    tally.observe(&text, true);
                }
                last_id = entry.id;
            }
        }
    }
    tally.finish(expected);
    Ok(tally)
}
