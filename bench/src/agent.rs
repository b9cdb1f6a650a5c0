//! agent overhead: prompt → first token through Shoal against the same demo agent driven
//! directly over stdio, in the same run, prompts of the two arms taking turns.
//!
//! * Shoal: a single-replica node (one real process on loopback) running the demo
//!   agent; the SDK's `send` on a conversation whose agent is already running, timed to
//!   the first `TextChunk` event. This includes committing the user message (a flushed
//!   Raft commit on one replica), the conversation actor, the node's ACP client and the
//!   QUIC stream back.
//! * Direct (the baseline): `shoal-node demo-agent`, the program the node runs, as a
//!   child of this process speaking ACP JSON-RPC on its stdin/stdout: `initialize`,
//!   `session/new`, then `session/prompt` timed to the first `session/update` carrying
//!   an `agent_message_chunk`.
//!
//! Both arms send the same prompt, which the demo agent echoes (its first chunk is
//! written as soon as the prompt arrives).
//!
//! Where Shoal's time goes comes from the node's own histograms, read over the admin API
//! before and after the timed prompts ([`Breakdown`]): the turn's start on the node (the
//! user message's commit included), the agent's first update as the node sees it, and
//! the rest (the client's request and the first token's way back, over QUIC).

use crate::common::{Latency, append_result, local_cluster, node_binary, spawn};
use crate::plot::{self, Distribution};
use anyhow::{Context, bail};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use shoal_client::{AdminClient, Client, Profile};
use shoal_protocol::transcript::Event;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The target of the issue: added latency to the first token, in ms.
pub const TARGET_ADDED_MS: f64 = 1.0;
/// The prompt both arms send.
const PROMPT: &str = "hi";
/// Prompts per arm before the timed ones (agent start, caches).
const WARMUP_PROMPTS: usize = 3;
/// Bound of one prompt, either arm.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
struct Figures {
    shoal: Latency,
    direct: Latency,
    added_p50_ms: f64,
    added_p99_ms: f64,
    /// Means over the timed prompts, ms.
    shoal_mean_ms: f64,
    direct_mean_ms: f64,
    breakdown: Breakdown,
}

/// The node's histograms that split a prompt's way through Shoal.
const TURN_START: &str = "shoal_turn_start_seconds";
const COMMIT: &str = "shoal_raft_commit_seconds";
const AGENT_FIRST_UPDATE: &str = "shoal_agent_first_update_seconds";

/// Where a prompt's time goes on the node: means over the timed prompts (ms), from the
/// differences of the node's histogram sums and counts across them.
#[derive(Debug, Clone, Serialize)]
struct Breakdown {
    /// Message in → prompt handed to the agent (`shoal_turn_start_seconds`).
    turn_start_ms: f64,
    /// One Raft commit (`shoal_raft_commit_seconds`: user messages and turn ends alike).
    commit_ms: f64,
    /// Prompt handed to the agent → its first update on the node
    /// (`shoal_agent_first_update_seconds`).
    agent_first_update_ms: f64,
    /// The rest of Shoal's mean: the client's request to the node and the first token's
    /// way back to it.
    rest_ms: f64,
}

/// A reading of the node's OpenMetrics `text`, parsed once (by `prometheus-parse`, as
/// the node's telemetry tests read it); `None` if it does not parse.
fn parse_metrics(text: &str) -> Option<prometheus_parse::Scrape> {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).ok()
}

/// Sum and count of histogram `name` in `scrape`.
fn sum_and_count(scrape: &prometheus_parse::Scrape, name: &str) -> Option<(f64, f64)> {
    let field = |suffix: &str| {
        let metric = format!("{name}_{suffix}");
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric)
            .and_then(|s| match s.value {
                prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) => {
                    Some(v)
                }
                _ => None,
            })
    };
    Some((field("sum")?, field("count")?))
}

/// Mean of histogram `name` between two readings, in ms (NaN when nothing was recorded).
fn mean_between(
    before: Option<&prometheus_parse::Scrape>,
    after: Option<&prometheus_parse::Scrape>,
    name: &str,
) -> f64 {
    let reading = |scrape: Option<&prometheus_parse::Scrape>| sum_and_count(scrape?, name);
    match (reading(before), reading(after)) {
        (Some((s0, c0)), Some((s1, c1))) if c1 > c0 => (s1 - s0) / (c1 - c0) * 1000.0,
        _ => f64::NAN,
    }
}

fn mean_ms(samples_us: &[u32]) -> f64 {
    if samples_us.is_empty() {
        return f64::NAN;
    }
    samples_us.iter().map(|&v| f64::from(v)).sum::<f64>() / samples_us.len() as f64 / 1000.0
}

/// The demo agent as this process's child, spoken to over stdio.
struct DirectAgent {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    session: String,
    next_id: u64,
    _home: tempfile::TempDir,
}

impl DirectAgent {
    async fn start(bin: &Path) -> anyhow::Result<Self> {
        let home = tempfile::tempdir()?;
        let mut child = tokio::process::Command::new(bin)
            .arg("demo-agent")
            .env("HOME", home.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the demo agent")?;
        let stdin = child.stdin.take().context("agent stdin")?;
        let lines = BufReader::new(child.stdout.take().context("agent stdout")?).lines();
        let mut agent = DirectAgent {
            child,
            stdin,
            lines,
            session: String::new(),
            next_id: 0,
            _home: home,
        };
        agent
            .call(
                "initialize",
                json!({"protocolVersion": 1, "clientCapabilities": {}}),
            )
            .await?;
        let session = agent
            .call(
                "session/new",
                json!({"cwd": agent._home.path(), "mcpServers": []}),
            )
            .await?;
        agent.session = session
            .get("sessionId")
            .and_then(Value::as_str)
            .context("session/new answered without a sessionId")?
            .to_owned();
        Ok(agent)
    }

    async fn write(&mut self, method: &str, params: Value) -> anyhow::Result<u64> {
        self.next_id += 1;
        let request =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        let mut line = serde_json::to_vec(&request)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(self.next_id)
    }

    async fn read(&mut self) -> anyhow::Result<Value> {
        let line = self
            .lines
            .next_line()
            .await?
            .context("the demo agent closed its output")?;
        serde_json::from_str(&line).context("the demo agent wrote a line that is not JSON")
    }

    /// A request and its result (notifications before it are skipped).
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.write(method, params).await?;
        loop {
            let message = self.read().await?;
            if message.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(error) = message.get("error") {
                    bail!("{method} failed: {error}");
                }
                return Ok(message.get("result").cloned().unwrap_or(Value::Null));
            }
        }
    }

    /// One prompt: the time to its first text chunk; reads on to its answer.
    async fn prompt(&mut self) -> anyhow::Result<Duration> {
        let params =
            json!({"sessionId": self.session, "prompt": [{"type": "text", "text": PROMPT}]});
        let began = Instant::now();
        let id = self.write("session/prompt", params).await?;
        let mut first = None;
        loop {
            let message = self.read().await?;
            if first.is_none() && is_text_chunk(&message) {
                first = Some(began.elapsed());
            }
            if message.get("id").and_then(Value::as_u64) == Some(id) {
                return first.context("the prompt ended without a text chunk");
            }
        }
    }
}

/// Whether an ACP message is a `session/update` carrying agent text.
fn is_text_chunk(message: &Value) -> bool {
    message.get("method").and_then(Value::as_str) == Some("session/update")
        && message
            .pointer("/params/update/sessionUpdate")
            .and_then(Value::as_str)
            == Some("agent_message_chunk")
}

/// One prompt through Shoal: the time to its first text chunk; reads on to `Done`.
async fn shoal_prompt(
    client: &Client,
    conversation: shoal_protocol::ConversationId,
) -> anyhow::Result<Duration> {
    let began = Instant::now();
    let mut turn = client.send(conversation, PROMPT).await?;
    let mut first = None;
    while let Some(frame) = turn.next().await {
        match frame?.event {
            Event::TextChunk { .. } if first.is_none() => first = Some(began.elapsed()),
            Event::Done { .. } => break,
            _ => {}
        }
    }
    first.context("the turn ended without a text chunk")
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Runs `prompts` prompts per arm and prints both and the difference.
pub async fn run(prompts: usize, results: &Path) -> anyhow::Result<()> {
    let bin = node_binary()?;
    let dir = tempfile::tempdir()?;
    let layout = local_cluster(dir.path(), 1, &bin, |_| {})?;
    let mut node = spawn(&bin, &layout[0]).await?;
    let profile = Profile::load(&dir.path().join("profile.toml"))?;
    let client = Client::connect(&profile).await?;
    let admin = AdminClient::connect(&profile).await?;
    let conversation = client.create_conversation(None, None).await?.id;
    let mut direct = DirectAgent::start(&bin).await?;
    eprintln!("agent: {WARMUP_PROMPTS} warm-up prompts per arm, then {prompts} timed");
    let mut shoal_us = Vec::with_capacity(prompts);
    let mut direct_us = Vec::with_capacity(prompts);
    let mut before = String::new();
    for i in 0..WARMUP_PROMPTS + prompts {
        if i == WARMUP_PROMPTS {
            before = admin.metrics().await?;
        }
        let bounded = |what| format!("{what} prompt {i} took longer than {PROMPT_TIMEOUT:?}");
        let d = tokio::time::timeout(PROMPT_TIMEOUT, direct.prompt())
            .await
            .with_context(|| bounded("a direct"))??;
        let s = tokio::time::timeout(PROMPT_TIMEOUT, shoal_prompt(&client, conversation))
            .await
            .with_context(|| bounded("a Shoal"))??;
        if i >= WARMUP_PROMPTS {
            direct_us.push(micros(d));
            shoal_us.push(micros(s));
        }
    }
    let after = admin.metrics().await?;
    let _ = direct.child.kill().await;
    let _ = node.kill().await;
    let shoal = Latency::from_micros(&mut shoal_us);
    let direct = Latency::from_micros(&mut direct_us);
    let shoal_cdf = Distribution::from_sorted_micros(&shoal_us);
    let direct_cdf = Distribution::from_sorted_micros(&direct_us);
    let shoal_mean_ms = mean_ms(&shoal_us);
    let (before, after) = (parse_metrics(&before), parse_metrics(&after));
    let (before, after) = (before.as_ref(), after.as_ref());
    let turn_start_ms = mean_between(before, after, TURN_START);
    let agent_first_update_ms = mean_between(before, after, AGENT_FIRST_UPDATE);
    let breakdown = Breakdown {
        turn_start_ms,
        commit_ms: mean_between(before, after, COMMIT),
        agent_first_update_ms,
        rest_ms: shoal_mean_ms - turn_start_ms - agent_first_update_ms,
    };
    let figures = Figures {
        added_p50_ms: shoal.p50_ms - direct.p50_ms,
        added_p99_ms: shoal.p99_ms - direct.p99_ms,
        shoal,
        direct,
        shoal_mean_ms,
        direct_mean_ms: mean_ms(&direct_us),
        breakdown,
    };
    println!("agent overhead: prompt -> first token, {prompts} prompts per arm (ms)");
    println!("{:>34} {:>8} {:>8} {:>8}", "", "p50", "p99", "max");
    for (what, l) in [
        ("through Shoal (1 node, 1 replica)", &figures.shoal),
        ("demo agent over stdio (baseline)", &figures.direct),
    ] {
        println!(
            "{what:>34} {:>8.2} {:>8.2} {:>8.2}",
            l.p50_ms, l.p99_ms, l.max_ms
        );
    }
    let verdict = |added: f64| {
        if added <= TARGET_ADDED_MS {
            "met"
        } else {
            "MISSED"
        }
    };
    println!(
        "added by Shoal: p50 {:.2} ms ({}), p99 {:.2} ms ({}); target <= {TARGET_ADDED_MS} ms",
        figures.added_p50_ms,
        verdict(figures.added_p50_ms),
        figures.added_p99_ms,
        verdict(figures.added_p99_ms),
    );
    let path = append_result(
        results,
        "agent",
        serde_json::json!({"prompts": prompts, "figures": figures, "target_added_ms": TARGET_ADDED_MS}),
    )?;
    let b = &figures.breakdown;
    println!(
        "through Shoal, mean {:.2} ms (baseline mean {:.2} ms), from the node's metrics:",
        figures.shoal_mean_ms, figures.direct_mean_ms
    );
    println!(
        "  message in -> prompt to the agent    {:>6.2} ms  (one Raft commit: {:.2} ms)",
        b.turn_start_ms, b.commit_ms
    );
    println!(
        "  prompt to the agent -> first update  {:>6.2} ms  (the agent, its pipes, the node's ACP client)",
        b.agent_first_update_ms
    );
    println!(
        "  the rest                             {:>6.2} ms  (the request to the node, the token's way back)",
        b.rest_ms
    );
    println!("results appended to {}", path.display());
    plot::save(results, "agent", |path| {
        plot::latency_cdf(
            path,
            &format!("agent: prompt -> first token, {prompts} prompts per arm"),
            "prompt -> first text chunk (ms)",
            &[
                ("through Shoal (1 node, 1 replica)", &shoal_cdf),
                ("demo agent over stdio (baseline)", &direct_cdf),
            ],
            &[(
                &format!("target: direct p50 + {TARGET_ADDED_MS} ms"),
                figures.direct.p50_ms + TARGET_ADDED_MS,
            )],
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histograms_mean_is_taken_between_two_readings() {
        let reading = |sum: f64, count: u32| {
            format!(
                "# TYPE shoal_turn_start_seconds histogram\n\
                 shoal_turn_start_seconds_sum {sum}\n\
                 shoal_turn_start_seconds_count {count}\n\
                 shoal_turn_start_seconds_bucket{{le=\"0.001\"}} {count}\n"
            )
        };
        let before = parse_metrics(&reading(0.5, 3));
        let after = parse_metrics(&reading(0.5 + 0.004, 7));
        let (before, after) = (before.as_ref(), after.as_ref());
        assert!((mean_between(before, after, TURN_START) - 1.0).abs() < 1e-9);
        // Nothing recorded in between, or no such histogram: not a number.
        assert!(mean_between(before, before, TURN_START).is_nan());
        assert!(mean_between(before, after, COMMIT).is_nan());
    }

    #[test]
    fn only_agent_text_counts_as_the_first_token() {
        let chunk = |kind: &str| {
            json!({"jsonrpc": "2.0", "method": "session/update",
                   "params": {"sessionId": "s", "update": {"sessionUpdate": kind}}})
        };
        assert!(is_text_chunk(&chunk("agent_message_chunk")));
        assert!(!is_text_chunk(&chunk("agent_thought_chunk")));
        assert!(!is_text_chunk(&json!({"id": 1, "result": {}})));
    }
}
