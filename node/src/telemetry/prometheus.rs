//! The node's metrics: what they are ([`gauges`], [`Histograms`]), their text
//! exposition ([`encode`], OpenMetrics text, which Prometheus scrapes), and the scrape
//! endpoint ([`serve`]: `GET /metrics` on `telemetry.prometheus_listen`).
//!
//! The endpoint is plain HTTP/1.1 on a listener the operator chose: one request per
//! connection, its head at most [`REQUEST_HEAD_BYTES_MAX`] read within
//! [`REQUEST_TIMEOUT_MS`], at most [`SCRAPES_IN_FLIGHT_MAX`] served at once.

use crate::context::{Metrics, NodeContext};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest request head accepted, in bytes.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Longest a scraper may take to send its request.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Most bytes read after the answer before closing, and for how long.
const LINGER_BYTES_MAX: usize = 64 * 1024;
const LINGER_MS: u64 = 1_000;
/// Scrapes served at once; more connections wait.
pub const SCRAPES_IN_FLIGHT_MAX: usize = 8;

/// A value read from [`Metrics`] at each scrape or export.
pub type Read = fn(&Metrics) -> u64;

fn load(counter: &AtomicU64) -> u64 {
    Metrics::get(counter)
}

/// Whether a reading goes up and down or only up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A level (followers now).
    Gauge,
    /// A monotonic count (exposed with `_total` in Prometheus text).
    Counter,
}

/// One value of [`Metrics`] as exported: name, help, kind, and how to read it now.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// The metric name (without `_total`).
    pub name: &'static str,
    /// Its description.
    pub help: &'static str,
    /// Gauge or counter.
    pub kind: Kind,
    /// Reads the value.
    pub read: Read,
}

const fn reading(name: &'static str, help: &'static str, kind: Kind, read: Read) -> Reading {
    Reading {
        name,
        help,
        kind,
        read,
    }
}

/// The node's gauges and counters.
pub const READINGS: [Reading; 11] = [
    reading(
        "shoal_conversations_active",
        "Conversation actors running on this node",
        Kind::Gauge,
        |m| load(&m.conversations_active),
    ),
    reading(
        "shoal_agent_processes",
        "Agent processes running on this node",
        Kind::Gauge,
        |m| load(&m.agent_processes),
    ),
    reading(
        "shoal_followers",
        "Followers attached to conversations on this node",
        Kind::Gauge,
        |m| load(&m.followers),
    ),
    reading(
        "shoal_turns_running",
        "Turns running on this node",
        Kind::Gauge,
        |m| load(&m.turns_running),
    ),
    reading(
        "shoal_connections",
        "Client and admin connections open",
        Kind::Gauge,
        |m| load(&m.connections),
    ),
    reading(
        "shoal_follower_resyncs",
        "Followers cut over to resync because they fell behind",
        Kind::Counter,
        |m| load(&m.follower_resyncs),
    ),
    reading(
        "shoal_checkpoints",
        "Checkpoints of running turns submitted",
        Kind::Counter,
        |m| load(&m.checkpoints),
    ),
    reading(
        "shoal_checkpoint_bytes",
        "Encoded bytes of checkpoints submitted",
        Kind::Counter,
        |m| load(&m.checkpoint_bytes),
    ),
    reading(
        "shoal_bytes_in",
        "UDP payload bytes received (QUIC and gossip)",
        Kind::Counter,
        |m| load(&m.bytes_in),
    ),
    reading(
        "shoal_bytes_out",
        "UDP payload bytes sent (QUIC and gossip)",
        Kind::Counter,
        |m| load(&m.bytes_out),
    ),
    reading(
        "shoal_gossip_events",
        "Membership changes reported by gossip (joins, suspicions, deaths, recoveries, new stores)",
        Kind::Counter,
        |m| load(&m.gossip_events),
    ),
];

/// One histogram, recorded for Prometheus and, once attached, for OTLP.
#[derive(Debug)]
pub struct Hist {
    name: &'static str,
    help: &'static str,
    prometheus: Histogram,
    otlp: OnceLock<opentelemetry::metrics::Histogram<f64>>,
}

impl Hist {
    fn new(name: &'static str, help: &'static str, buckets: impl Iterator<Item = f64>) -> Self {
        Self {
            name,
            help,
            prometheus: Histogram::new(buckets),
            otlp: OnceLock::new(),
        }
    }

    /// Records one value.
    pub fn observe(&self, value: f64) {
        self.prometheus.observe(value);
        if let Some(otlp) = self.otlp.get() {
            otlp.record(value, &[]);
        }
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }
}

/// The node's histograms.
#[derive(Debug)]
pub struct Histograms {
    /// Turn durations, user message committed to final message committed.
    pub turn_seconds: Hist,
    /// Raft commit latency of a proposal: submitted to applied.
    pub raft_commit_seconds: Hist,
    /// Commands per Raft proposal batch (one log entry).
    pub raft_batch_commands: Hist,
    /// Fan-out delay: from an event entering a conversation's replay ring to its
    /// follower's stream write.
    pub fanout_seconds: Hist,
    /// A turn's start on the node: its message reaching the conversation to its prompt
    /// handed to the agent's connection (the user message's commit, the actor hops).
    pub turn_start_seconds: Hist,
    /// The agent's answer time: a prompt handed to its connection to the turn's first
    /// update reaching the node (the agent's own time to first output, and its pipes).
    pub agent_first_update_seconds: Hist,
}

impl Default for Histograms {
    fn default() -> Self {
        Self {
            turn_seconds: Hist::new(
                "shoal_turn_seconds",
                "Turn durations, from the user message committed to the end committed",
                exponential_buckets(0.05, 2.0, 14),
            ),
            raft_commit_seconds: Hist::new(
                "shoal_raft_commit_seconds",
                "Raft commit latency of proposals, submitted to applied",
                exponential_buckets(0.000_5, 2.0, 16),
            ),
            raft_batch_commands: Hist::new(
                "shoal_raft_batch_commands",
                "Commands per Raft log entry (proposal batch)",
                exponential_buckets(1.0, 2.0, 10),
            ),
            fanout_seconds: Hist::new(
                "shoal_fanout_seconds",
                "Delay from an event entering a conversation's replay ring to a follower's stream write",
                exponential_buckets(0.000_1, 2.0, 16),
            ),
            turn_start_seconds: Hist::new(
                "shoal_turn_start_seconds",
                "From a message reaching its conversation to its prompt handed to the agent (the commit of the user message included)",
                exponential_buckets(0.000_1, 2.0, 18),
            ),
            agent_first_update_seconds: Hist::new(
                "shoal_agent_first_update_seconds",
                "From a prompt handed to the agent to the turn's first update from it reaching the node",
                exponential_buckets(0.000_1, 2.0, 20),
            ),
        }
    }
}

impl Histograms {
    fn all(&self) -> [&Hist; 6] {
        [
            &self.turn_seconds,
            &self.raft_commit_seconds,
            &self.raft_batch_commands,
            &self.fanout_seconds,
            &self.turn_start_seconds,
            &self.agent_first_update_seconds,
        ]
    }

    /// Also records every histogram into `meter`'s OTLP export from now on.
    pub fn attach_otlp(&self, meter: &opentelemetry::metrics::Meter) {
        for hist in self.all() {
            let _ = hist.otlp.set(
                meter
                    .f64_histogram(hist.name)
                    .with_description(hist.help)
                    .build(),
            );
        }
    }
}

/// The node's metrics as OpenMetrics text: the gauges, counters and histograms above,
/// and the shards this node leads.
pub fn encode(ctx: &NodeContext) -> String {
    let metrics = &ctx.metrics;
    let mut registry = Registry::default();
    for r in READINGS {
        let value = (r.read)(metrics);
        match r.kind {
            Kind::Gauge => {
                let gauge: Gauge = Gauge::default();
                gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
                registry.register(r.name, r.help, gauge);
            }
            Kind::Counter => {
                let counter: Counter = Counter::default();
                counter.inc_by(value);
                registry.register(r.name, r.help, counter);
            }
        }
    }
    let led: Gauge = Gauge::default();
    led.set(i64::try_from(ctx.cluster.shards_led()).unwrap_or(i64::MAX));
    registry.register("shoal_shards_led", "Shards this node leads", led);
    for hist in metrics.histograms().all() {
        registry.register(hist.name, hist.help, hist.prometheus.clone());
    }
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Serves `GET /metrics` on `listener` until the node stops.
pub async fn serve(listener: tokio::net::TcpListener, ctx: Arc<NodeContext>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(SCRAPES_IN_FLIGHT_MAX));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &ctx).await {
                tracing::debug!(%remote, error = %e, "metrics scrape failed");
            }
            drop(permit);
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, ctx: &NodeContext) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() >= REQUEST_HEAD_BYTES_MAX {
                return Err("request head too large");
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Err("connection closed before the request ended"),
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        Ok(())
    };
    let (status, content_type, body) =
        match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), read).await {
            Err(_) => return Ok(()),
            Ok(Err("request head too large")) => (
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n".to_owned(),
            ),
            Ok(Err(_)) => return Ok(()),
            Ok(Ok(())) => {
                let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
                let mut words = line.split(|b| *b == b' ');
                match (words.next(), words.next()) {
                    (Some(b"GET"), Some(b"/metrics")) => (
                        "200 OK",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        encode(ctx),
                    ),
                    (Some(b"GET"), _) => (
                        "404 Not Found",
                        "text/plain",
                        "not found: the metrics are at /metrics\n".to_owned(),
                    ),
                    _ => (
                        "405 Method Not Allowed",
                        "text/plain",
                        "only GET /metrics is served\n".to_owned(),
                    ),
                }
            }
        };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    // Lingering close: read what the client still sends (bounded), so closing with
    // unread input does not reset the connection before it has read the answer.
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left = LINGER_BYTES_MAX;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(LINGER_MS), drain).await;
    Ok(())
}
