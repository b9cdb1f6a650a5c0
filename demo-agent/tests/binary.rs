//! Tests of the real `shoal-demo-agent` binary over pipes.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest wait for any single message or for the process to exit.
const STEP_TIMEOUT_MS: u64 = 10_000;

async fn step<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_millis(STEP_TIMEOUT_MS), future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP_TIMEOUT_MS} ms waiting for {what}"))
}

/// A running agent process; dropping it kills the process.
struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Agent {
    fn spawn(dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal-demo-agent"))
            .env("HOME", dir)
            .env("SHOAL_DEMO_AGENT_LOG", dir.join("lifecycle.jsonl"))
            .env("SHOAL_NODE_ID", "node-bin")
            .env("DEMO_AGENT_TEST_VALUE", "from the environment")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn shoal-demo-agent");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    async fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        step("writing to the agent", async {
            stdin.write_all(&line).await.expect("agent stdin closed");
            stdin.flush().await.expect("agent stdin closed");
        })
        .await;
    }

    async fn recv(&mut self) -> Value {
        let line = step("a message from the agent", self.stdout.next_line())
            .await
            .expect("reading agent stdout failed")
            .expect("agent stdout ended while a message was expected");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("agent wrote invalid JSON {line:?}: {e}"))
    }

    async fn call(&mut self, id: u64, method: &str, params: Value) -> (Vec<Value>, Value) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        let mut notes = Vec::new();
        loop {
            let message = self.recv().await;
            if message.get("method").is_none() && message["id"] == id {
                return (notes, message);
            }
            notes.push(message);
        }
    }

    async fn wait(&mut self) -> ExitStatus {
        step("the agent process to exit", self.child.wait())
            .await
            .expect("waiting for the agent failed")
    }
}

fn texts(notes: &[Value]) -> String {
    notes
        .iter()
        .filter_map(|n| n["params"]["update"]["content"]["text"].as_str())
        .collect()
}

fn lifecycle_events(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("lifecycle.jsonl")).expect("lifecycle log written");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("lifecycle line is JSON"))
        .collect()
}

async fn start_session(agent: &mut Agent) -> String {
    let (_, init) = agent
        .call(0, "initialize", json!({"protocolVersion": 1}))
        .await;
    assert_eq!(init["result"]["agentInfo"]["name"], "shoal-demo-agent");
    let (_, new) = agent
        .call(1, "session/new", json!({"cwd": "/tmp", "mcpServers": []}))
        .await;
    new["result"]["sessionId"]
        .as_str()
        .expect("session id")
        .to_owned()
}

fn prompt(session: &str, text: &str) -> Value {
    json!({"sessionId": session, "prompt": [{"type": "text", "text": text}]})
}

#[tokio::test]
async fn binary_answers_a_prompt_then_crashes_with_code_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut agent = Agent::spawn(dir.path());
    let pid = agent.child.id().expect("running child has a pid");
    let session = start_session(&mut agent).await;

    let (notes, response) = agent
        .call(2, "session/prompt", prompt(&session, "hello there"))
        .await;
    assert_eq!(response["result"]["stopReason"], "end_turn");
    assert_eq!(texts(&notes), "echo: hello there");

    let (notes, _) = agent
        .call(
            3,
            "session/prompt",
            prompt(&session, "/echo-env DEMO_AGENT_TEST_VALUE"),
        )
        .await;
    assert_eq!(texts(&notes), "from the environment");

    agent
        .send(json!({"jsonrpc": "2.0", "id": 4, "method": "session/prompt", "params": prompt(&session, "/crash")}))
        .await;
    let chunk = agent.recv().await;
    assert_eq!(chunk["params"]["update"]["content"]["text"], "crashing now");
    let status = agent.wait().await;
    assert_eq!(status.code(), Some(3), "status was {status}");
    let eof = step("agent stdout to close", agent.stdout.next_line()).await;
    assert!(
        matches!(eof, Ok(None)),
        "no response may follow the crash chunk: {eof:?}"
    );

    let events = lifecycle_events(dir.path());
    assert_eq!(events.len(), 1, "a crash leaves no stop line: {events:?}");
    assert_eq!(events[0]["event"], "start");
    assert_eq!(events[0]["node"], "node-bin");
    assert_eq!(events[0]["pid"], pid);
}

#[tokio::test]
async fn binary_exits_0_on_stdin_eof_and_logs_stop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut agent = Agent::spawn(dir.path());
    let pid = agent.child.id().expect("running child has a pid");
    let session = start_session(&mut agent).await;
    drop(agent.stdin.take());
    let status = agent.wait().await;
    assert_eq!(status.code(), Some(0), "status was {status}");

    let events = lifecycle_events(dir.path());
    assert_eq!(events.len(), 2, "events: {events:?}");
    assert_eq!(events[0]["event"], "start");
    assert_eq!(events[1]["event"], "stop");
    assert_eq!(events[1]["pid"], pid);
    assert_eq!(events[1]["session"], session.as_str());
    assert!(
        dir.path()
            .join(".shoal-demo-agent/sessions")
            .join(format!("{session}.json"))
            .is_file()
    );
}
