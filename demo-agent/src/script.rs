//! The scripted prompts: what the agent streams for each prompt text (see README.md).
//!
//! A prompt runs as its own task holding a [`Turn`]. Every step checks the session's
//! cancel flag first, and every wait (pauses, our requests to the client) also ends
//! when the flag is raised, so `session/cancel` stops a prompt within one step.

use std::future::pending;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::agent::{Agent, Reply};
use crate::rpc::{self, Outgoing, RpcError};
use crate::session::Role;

/// Pause between the words of an echo.
const ECHO_CHUNK_INTERVAL_MS: u64 = 5;
/// Pause between the chunks of `/slow`.
const SLOW_CHUNK_INTERVAL_MS: u64 = 50;
/// Longest `/linger`.
const LINGER_MS_MAX: u64 = 60_000;
/// Most chunks `/slow` streams.
const SLOW_CHUNKS_MAX: u64 = 100_000;
/// Chunks `/slow` streams when no count is given.
const SLOW_CHUNKS_DEFAULT: u64 = 10;
/// Chunks per second `/stream` sends when no rate is given.
const STREAM_RATE_DEFAULT: u64 = 200;
/// Highest `/stream` rate, chunks per second.
const STREAM_RATE_MAX: u64 = 10_000;
/// Lines `/stderr` prints before its last one (about 8 KiB).
const STDERR_FILLER_LINES: u64 = 256;
/// Exit code of `/crash`.
const CRASH_EXIT_CODE: i32 = 3;

/// The prompt was cancelled by `session/cancel`.
#[derive(Debug)]
struct Cancelled;

/// How a script ends.
enum Outcome {
    /// Answer the prompt with this `stopReason`.
    Stop(&'static str),
    /// Exit the process without answering.
    Crash,
    /// Never answer and ignore cancellation.
    Hang,
}

/// How the prompt's answer goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// As the protocol says.
    Plain,
    /// Without its trailing newline (`/no-newline`).
    Unterminated,
    /// With its id as the other JSON type: `"1"` for `1` and back (`/string-id`).
    IdRetyped,
}

/// One running prompt: where it streams, its cancel flag and the text it said so far.
pub(crate) struct Turn {
    agent: Arc<Agent>,
    session_id: String,
    request_id: Value,
    cwd: PathBuf,
    cancel: watch::Receiver<bool>,
    agent_text: String,
    /// The `usage` of the prompt's answer, when the script reports one.
    tokens: Option<Value>,
    /// How the answer is written.
    answer: Answer,
    /// The prompt's image and resource blocks, described (`/attachments`).
    attached: Vec<String>,
}

impl Turn {
    /// A turn answering `request_id` in `session_id`, stopped when `cancel` turns true.
    pub(crate) fn new(
        agent: Arc<Agent>,
        session_id: String,
        request_id: Value,
        cwd: PathBuf,
        cancel: watch::Receiver<bool>,
        attached: Vec<String>,
    ) -> Self {
        Self {
            agent,
            session_id,
            request_id,
            cwd,
            cancel,
            agent_text: String::new(),
            tokens: None,
            answer: Answer::Plain,
            attached,
        }
    }

    fn check(&self) -> Result<(), Cancelled> {
        if *self.cancel.borrow() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    async fn update(&mut self, update: Value) -> Result<(), Cancelled> {
        self.check()?;
        self.agent.update(&self.session_id, update).await;
        Ok(())
    }

    async fn text(&mut self, text: &str) -> Result<(), Cancelled> {
        self.update(json!({
            "sessionUpdate": "agent_message_chunk",
            "content": {"type": "text", "text": text},
        }))
        .await?;
        self.agent_text.push_str(text);
        Ok(())
    }

    async fn thought(&mut self, text: &str) -> Result<(), Cancelled> {
        self.update(json!({
            "sessionUpdate": "agent_thought_chunk",
            "content": {"type": "text", "text": text},
        }))
        .await
    }

    async fn pause(&mut self, interval_ms: u64) -> Result<(), Cancelled> {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(interval_ms)) => Ok(()),
            () = cancelled(&mut self.cancel) => Err(Cancelled),
        }
    }

    async fn pause_until(&mut self, deadline: tokio::time::Instant) -> Result<(), Cancelled> {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => Ok(()),
            () = cancelled(&mut self.cancel) => Err(Cancelled),
        }
    }

    /// Sends an agent→client request and waits for its answer; cancel abandons it.
    async fn request(&mut self, method: &str, params: Value) -> Result<Reply, Cancelled> {
        self.check()?;
        let (id, reply) = self.agent.request(method, params).await;
        tokio::select! {
            reply = reply => Ok(reply.unwrap_or_else(|_| {
                Err(RpcError::new(rpc::INTERNAL_ERROR, "the agent dropped the request"))
            })),
            () = cancelled(&mut self.cancel) => {
                self.agent.abandon(id);
                Err(Cancelled)
            }
        }
    }
}

/// Resolves once the flag is raised; never if its session forgot the prompt.
async fn cancelled(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|cancel| *cancel).await.is_err() {
        pending::<()>().await;
    }
}

/// Runs one prompt to its end and answers it (unless the script crashes or hangs).
pub(crate) async fn run_prompt(mut turn: Turn, prompt: String) {
    let agent = Arc::clone(&turn.agent);
    agent.record(&turn.session_id, Role::User, &prompt).await;
    let stop_reason = match run_script(&mut turn, &prompt).await {
        Ok(Outcome::Stop(reason)) => reason,
        Err(Cancelled) => "cancelled",
        Ok(Outcome::Crash) => {
            agent.send(Outgoing::Exit(CRASH_EXIT_CODE)).await;
            return pending().await;
        }
        Ok(Outcome::Hang) => return pending().await,
    };
    if !turn.agent_text.is_empty() {
        agent
            .record(&turn.session_id, Role::Agent, &turn.agent_text)
            .await;
    }
    // Free the slot before answering: a client may send the next prompt at once.
    agent.finish_prompt(&turn.session_id);
    let mut result = json!({"stopReason": stop_reason});
    if let Some(tokens) = turn.tokens.take() {
        result["usage"] = tokens;
    }
    let outgoing = match turn.answer {
        Answer::Plain => Outgoing::Message(rpc::response(turn.request_id, result)),
        Answer::Unterminated => Outgoing::Unterminated(rpc::response(turn.request_id, result)),
        Answer::IdRetyped => Outgoing::Message(rpc::response(retyped(turn.request_id), result)),
    };
    agent.send(outgoing).await;
}

/// A request id as the other JSON type: a number as a string, a string of digits as
/// a number (anything else unchanged).
fn retyped(id: Value) -> Value {
    match &id {
        Value::Number(number) => Value::String(number.to_string()),
        Value::String(text) => text.parse::<u64>().map_or(id, Value::from),
        _ => id,
    }
}

/// The value of environment variable `name`; names the platform cannot look up count
/// as unset rather than reaching libc.
fn env_value(name: &str) -> Option<String> {
    let lookup = !name.is_empty() && !name.contains(['=', '\0']);
    lookup.then(|| std::env::var(name).ok()).flatten()
}

async fn run_script(turn: &mut Turn, prompt: &str) -> Result<Outcome, Cancelled> {
    let trimmed = prompt.trim();
    let (command, args) = match trimmed.split_once(char::is_whitespace) {
        Some((command, args)) => (command, args.trim_start()),
        None => (trimmed, ""),
    };
    match command {
        "/slow" => slow(turn, args).await,
        "/stream" => stream(turn, args).await,
        "/think" => think(turn).await,
        "/tool" => tool(turn).await,
        "/bigtool" => big_tool(turn, args).await,
        "/permission" => permission(turn, args).await,
        "/write" => write(turn, args).await,
        "/plan" => plan(turn).await,
        "/usage" => usage(turn).await,
        "/commands" => {
            // What real agents send when a session starts: the commands they offer.
            turn.update(json!({
                "sessionUpdate": "available_commands_update",
                "availableCommands": [
                    {"name": "review", "description": "Review the changes", "input": {"hint": "what to focus on"}},
                    {"name": "init", "description": "Write an AGENTS.md"},
                ],
            }))
            .await?;
            turn.text("commands sent").await?;
            Ok(Outcome::Stop("end_turn"))
        }
        "/mcp" => {
            let servers = turn.agent.mcp(&turn.session_id);
            let text = if servers.is_empty() {
                "mcp: none".to_owned()
            } else {
                format!("mcp: {}", servers.join(", "))
            };
            turn.text(&text).await?;
            Ok(Outcome::Stop("end_turn"))
        }
        "/attachments" => {
            let text = if turn.attached.is_empty() {
                "attachments: none".to_owned()
            } else {
                format!("attachments: {}", turn.attached.join("; "))
            };
            turn.text(&text).await?;
            Ok(Outcome::Stop("end_turn"))
        }
        "/settings" => {
            let (mode, model) = turn.agent.settings(&turn.session_id).unwrap_or_default();
            turn.text(&format!("mode: {mode}, model: {model}")).await?;
            Ok(Outcome::Stop("end_turn"))
        }
        "/compact" => compact(turn).await,
        "/linger" => linger(turn, args).await,
        "/error" => {
            turn.text("something went wrong").await?;
            Ok(Outcome::Stop("error"))
        }
        "/crash" => {
            turn.text("crashing now").await?;
            Ok(Outcome::Crash)
        }
        "/hang" => {
            turn.text("hanging now").await?;
            Ok(Outcome::Hang)
        }
        "/unknown-method" => unknown_method(turn).await,
        "/stderr" => {
            // A noisy crash: stderr lines, then one quoting a secret, then exit.
            for line in 0..STDERR_FILLER_LINES {
                eprintln!("shoal-demo-agent: log line {line}");
            }
            let value = env_value(args).unwrap_or_else(|| "<unset>".to_owned());
            eprintln!(
                "shoal-demo-agent: fatal: {args}={value} rejected, key sk-ant-api03-0123456789abcdefghij"
            );
            turn.text("crashing with stderr").await?;
            Ok(Outcome::Crash)
        }
        "/no-newline" => {
            turn.text("no newline").await?;
            turn.answer = Answer::Unterminated;
            Ok(Outcome::Stop("end_turn"))
        }
        "/string-id" => {
            let kind = if turn.request_id.is_number() {
                "number"
            } else {
                "string"
            };
            turn.text(&format!("request id was a {kind}")).await?;
            turn.answer = Answer::IdRetyped;
            Ok(Outcome::Stop("end_turn"))
        }
        "/history" => {
            // What this session remembers before this prompt (which is recorded first).
            let user: Vec<String> = turn
                .agent
                .history(&turn.session_id)
                .into_iter()
                .filter(|e| e.role == Role::User)
                .map(|e| e.text)
                .collect();
            let earlier = &user[..user.len().saturating_sub(1)];
            turn.text(&format!(
                "history: {} earlier prompts: {}",
                earlier.len(),
                earlier.join(" | ")
            ))
            .await?;
            Ok(Outcome::Stop("end_turn"))
        }
        // Reads a file straight from disk (not through the client), so tests can see
        // what the agent's own process can reach.
        "/cat" => cat(turn, std::path::Path::new(args)).await,
        // A file in the agent's HOME, as an agent reads its own config there.
        "/cat-home" => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            cat(turn, &std::path::Path::new(&home).join(args)).await
        }
        "/env-digest" => {
            // Like /echo-env, but only the value's BLAKE3 hash goes into the transcript.
            let text = env_value(args)
                .map(|v| format!("blake3:{}", blake3::hash(v.as_bytes()).to_hex()))
                .unwrap_or_else(|| "<unset>".to_owned());
            turn.text(&text).await?;
            Ok(Outcome::Stop("end_turn"))
        }
        "/echo-env" => {
            let value = env_value(args).unwrap_or_else(|| "<unset>".to_owned());
            turn.text(&value).await?;
            Ok(Outcome::Stop("end_turn"))
        }
        _ => echo(turn, prompt).await,
    }
}

/// Answers `cat: <the file's first 256 bytes>` or `cat failed: <error kind>`.
async fn cat(turn: &mut Turn, path: &std::path::Path) -> Result<Outcome, Cancelled> {
    let text = match std::fs::read(path) {
        Ok(bytes) => {
            let shown = &bytes[..bytes.len().min(256)];
            format!("cat: {}", String::from_utf8_lossy(shown))
        }
        Err(e) => format!("cat failed: {:?}", e.kind()),
    };
    turn.text(&text).await?;
    Ok(Outcome::Stop("end_turn"))
}

async fn echo(turn: &mut Turn, prompt: &str) -> Result<Outcome, Cancelled> {
    let words: Vec<&str> = std::iter::once("echo:")
        .chain(prompt.split_whitespace())
        .collect();
    for (index, word) in words.iter().enumerate() {
        if index > 0 {
            turn.pause(ECHO_CHUNK_INTERVAL_MS).await?;
        }
        if index + 1 < words.len() {
            turn.text(&format!("{word} ")).await?;
        } else {
            turn.text(word).await?;
        }
    }
    Ok(Outcome::Stop("end_turn"))
}

async fn slow(turn: &mut Turn, args: &str) -> Result<Outcome, Cancelled> {
    // Only the first word counts: `/slow 3 c1-op7` is a unique prompt that streams 3 chunks.
    let count = match args.split_whitespace().next() {
        None => SLOW_CHUNKS_DEFAULT,
        Some(args) => match args.parse::<u64>() {
            Ok(count) => count.min(SLOW_CHUNKS_MAX),
            Err(_) => {
                turn.text("usage: /slow N (N a whole number)").await?;
                return Ok(Outcome::Stop("end_turn"));
            }
        },
    };
    for index in 1..=count {
        if index > 1 {
            turn.pause(SLOW_CHUNK_INTERVAL_MS).await?;
        }
        turn.text(&format!("chunk {index} ")).await?;
    }
    Ok(Outcome::Stop("end_turn"))
}

/// `/stream N [RATE]`: N chunks `#<i>@<ns>;` at RATE per second, each stamped with
/// CLOCK_MONOTONIC right before it is written, so a reader on the same machine measures
/// the latency from the agent's write to itself.
async fn stream(turn: &mut Turn, args: &str) -> Result<Outcome, Cancelled> {
    let mut words = args.split_whitespace().map(str::parse::<u64>);
    let (count, rate) = match (words.next(), words.next()) {
        (Some(Ok(count)), None) => (count, STREAM_RATE_DEFAULT),
        (Some(Ok(count)), Some(Ok(rate))) if rate > 0 => (count, rate),
        _ => {
            turn.text("usage: /stream N [PER_SECOND]").await?;
            return Ok(Outcome::Stop("end_turn"));
        }
    };
    let count = count.min(SLOW_CHUNKS_MAX);
    let interval = Duration::from_nanos(1_000_000_000 / rate.min(STREAM_RATE_MAX));
    let start = tokio::time::Instant::now();
    for index in 1..=count {
        turn.pause_until(start + interval * (index - 1) as u32)
            .await?;
        let stamp = crate::lifecycle::monotonic_ns();
        turn.text(&format!("#{index}@{stamp};")).await?;
    }
    Ok(Outcome::Stop("end_turn"))
}

async fn think(turn: &mut Turn) -> Result<Outcome, Cancelled> {
    turn.thought("Thinking about the question. ").await?;
    turn.thought("Deciding on an answer.").await?;
    turn.text("Here is my answer.").await?;
    Ok(Outcome::Stop("end_turn"))
}

async fn tool(turn: &mut Turn) -> Result<Outcome, Cancelled> {
    turn.update(json!({
        "sessionUpdate": "tool_call",
        "toolCallId": "call-1",
        "title": "Read README.md",
        "kind": "read",
        "status": "pending",
        "rawInput": {"path": "README.md"},
    }))
    .await?;
    turn.update(json!({
        "sessionUpdate": "tool_call_update",
        "toolCallId": "call-1",
        "status": "in_progress",
    }))
    .await?;
    turn.update(json!({
        "sessionUpdate": "tool_call_update",
        "toolCallId": "call-1",
        "status": "completed",
        "content": [{"type": "content", "content": {"type": "text", "text": "file contents"}}],
    }))
    .await?;
    turn.text("done").await?;
    Ok(Outcome::Stop("end_turn"))
}

/// Largest output of one `/bigtool` call, in KiB.
const BIG_TOOL_KIB_MAX: u64 = 16 * 1024;
/// Most calls of one `/bigtool`.
const BIG_TOOL_CALLS_MAX: u64 = 64;

/// `/bigtool KIB [CALLS]`: CALLS tool calls (default 1), each completing with KIB KiB of
/// output, then text `done`.
async fn big_tool(turn: &mut Turn, args: &str) -> Result<Outcome, Cancelled> {
    let mut words = args.split_whitespace().map(str::parse::<u64>);
    let (kib, calls) = match (words.next(), words.next()) {
        (Some(Ok(kib)), None) => (kib, 1),
        (Some(Ok(kib)), Some(Ok(calls))) => (kib, calls),
        _ => {
            turn.text("usage: /bigtool KIB [CALLS] (whole numbers)")
                .await?;
            return Ok(Outcome::Stop("end_turn"));
        }
    };
    let chunk = "x".repeat(1024);
    let output = chunk.repeat(usize::try_from(kib.min(BIG_TOOL_KIB_MAX)).unwrap_or(0));
    for call in 1..=calls.min(BIG_TOOL_CALLS_MAX) {
        let id = format!("big-{call}");
        turn.update(json!({
            "sessionUpdate": "tool_call",
            "toolCallId": id,
            "title": "Read a big file",
            "kind": "read",
            "status": "pending",
        }))
        .await?;
        turn.update(json!({
            "sessionUpdate": "tool_call_update",
            "toolCallId": id,
            "status": "completed",
            "content": [{"type": "content", "content": {"type": "text", "text": output}}],
        }))
        .await?;
    }
    turn.text("done").await?;
    Ok(Outcome::Stop("end_turn"))
}

async fn linger(turn: &mut Turn, args: &str) -> Result<Outcome, Cancelled> {
    match args.split_whitespace().next().map(str::parse::<u64>) {
        Some(Ok(ms)) => {
            let ms = ms.min(LINGER_MS_MAX);
            turn.agent.set_linger_ms(ms);
            turn.text(&format!("will linger {ms} ms after input ends"))
                .await?;
        }
        _ => {
            turn.text("usage: /linger MS (a whole number)").await?;
        }
    }
    Ok(Outcome::Stop("end_turn"))
}

/// Longest tool kind `/permission KIND` sends, in characters.
const PERMISSION_KIND_CHARS_MAX: usize = 32;

async fn permission(turn: &mut Turn, args: &str) -> Result<Outcome, Cancelled> {
    let (kind, title) = match args.split_whitespace().next() {
        None | Some("execute") => ("execute".to_owned(), "Run rm -rf build".to_owned()),
        Some(kind) => {
            let kind: String = kind.chars().take(PERMISSION_KIND_CHARS_MAX).collect();
            let title = format!("Use a {kind} tool");
            (kind, title)
        }
    };
    let params = json!({
        "sessionId": turn.session_id,
        "toolCall": {"toolCallId": "call-p", "title": title, "kind": kind},
        "options": [
            {"optionId": "allow", "name": "Allow once", "kind": "allow_once"},
            {"optionId": "reject", "name": "Reject", "kind": "reject_once"},
        ],
    });
    let reply = turn.request("session/request_permission", params).await?;
    let outcome = match &reply {
        Ok(result) => result.get("outcome"),
        Err(error) => {
            turn.text(&format!("permission request failed: {}", error.message))
                .await?;
            return Ok(Outcome::Stop("end_turn"));
        }
    };
    let kind = outcome
        .and_then(|o| o.get("outcome"))
        .and_then(Value::as_str);
    let option = outcome
        .and_then(|o| o.get("optionId"))
        .and_then(Value::as_str);
    match (kind, option) {
        (Some("cancelled"), _) => return Ok(Outcome::Stop("cancelled")),
        (Some("selected"), Some("allow")) => turn.text("permission granted").await?,
        (Some("selected"), _) => turn.text("permission denied").await?,
        _ => {
            turn.text("permission request failed: unexpected outcome")
                .await?
        }
    }
    Ok(Outcome::Stop("end_turn"))
}

async fn write(turn: &mut Turn, args: &str) -> Result<Outcome, Cancelled> {
    if args.is_empty() {
        turn.text("usage: /write PATH TEXT").await?;
        return Ok(Outcome::Stop("end_turn"));
    }
    if !turn.agent.client_can_write_files() {
        turn.text("client cannot write files").await?;
        return Ok(Outcome::Stop("end_turn"));
    }
    let (path, content) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    let full_path = turn.cwd.join(path);
    let params = json!({
        "sessionId": turn.session_id,
        "path": full_path.display().to_string(),
        "content": content,
    });
    match turn.request("fs/write_text_file", params).await? {
        Ok(_) => turn.text(&format!("wrote {path}")).await?,
        Err(error) => {
            turn.text(&format!("write failed: {}", error.message))
                .await?
        }
    }
    Ok(Outcome::Stop("end_turn"))
}

async fn plan(turn: &mut Turn) -> Result<Outcome, Cancelled> {
    turn.update(json!({
        "sessionUpdate": "plan",
        "entries": [
            {"content": "Read the code", "priority": "high", "status": "completed"},
            {"content": "Write the fix", "priority": "medium", "status": "pending"},
        ],
    }))
    .await?;
    turn.text("Here is the plan.").await?;
    Ok(Outcome::Stop("end_turn"))
}

async fn usage(turn: &mut Turn) -> Result<Outcome, Cancelled> {
    turn.text("Reporting usage.").await?;
    // Each `/usage` costs 0.01 USD: the session's running total goes up by that.
    let total = turn.agent.add_cost(&turn.session_id, 10_000);
    turn.update(json!({
        "sessionUpdate": "usage_update",
        "used": 1234,
        "size": 200_000,
        "cost": {"amount": total as f64 / 1e6, "currency": "USD"},
    }))
    .await?;
    turn.tokens = Some(json!({
        "totalTokens": 35,
        "inputTokens": 10,
        "outputTokens": 20,
        "cachedReadTokens": 5,
    }));
    Ok(Outcome::Stop("end_turn"))
}

/// A context compaction, as ACP reports one (only to a client that takes them).
async fn compact(turn: &mut Turn) -> Result<Outcome, Cancelled> {
    if !turn.agent.client_takes_compactions() {
        turn.text("compaction not reported: the client did not advertise session.compaction")
            .await?;
        return Ok(Outcome::Stop("end_turn"));
    }
    let id = "cmp-1";
    turn.update(
        json!({"sessionUpdate": "compaction_update", "compactionId": id, "status": "in_progress"}),
    )
    .await?;
    for text in ["Summary: ", "the user asked things."] {
        turn.update(json!({
            "sessionUpdate": "compaction_summary_chunk",
            "compactionId": id,
            "content": {"type": "text", "text": text},
        }))
        .await?;
    }
    turn.update(
        json!({"sessionUpdate": "compaction_update", "compactionId": id, "status": "completed"}),
    )
    .await?;
    turn.text("Compacted.").await?;
    Ok(Outcome::Stop("end_turn"))
}

async fn unknown_method(turn: &mut Turn) -> Result<Outcome, Cancelled> {
    let params = json!({"sessionId": turn.session_id});
    match turn.request("x/unknown", params).await? {
        Ok(_) => turn.text("x/unknown returned a result").await?,
        Err(error) => {
            turn.text(&format!("x/unknown returned error code {}", error.code))
                .await?;
        }
    }
    Ok(Outcome::Stop("end_turn"))
}
