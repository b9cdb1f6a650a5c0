//! In-process tests: the agent runs through `run_with_options` over `tokio::io::duplex`.

use std::io;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_demo_agent::{Options, run_with_options};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::task::JoinHandle;

/// Longest wait for any single message or for the agent to stop.
const STEP_TIMEOUT_MS: u64 = 10_000;
const PIPE_BYTES: usize = 64 * 1024;

/// The test's side of an agent running in a task.
struct Client {
    input: Option<DuplexStream>,
    output: Lines<BufReader<DuplexStream>>,
    agent: JoinHandle<io::Result<()>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.agent.abort();
    }
}

async fn step<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_millis(STEP_TIMEOUT_MS), future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP_TIMEOUT_MS} ms waiting for {what}"))
}

impl Client {
    fn start(options: Options) -> Self {
        let (input, agent_input) = tokio::io::duplex(PIPE_BYTES);
        let (agent_output, output) = tokio::io::duplex(PIPE_BYTES);
        let agent = tokio::spawn(run_with_options(options, agent_input, agent_output));
        Self {
            input: Some(input),
            output: BufReader::new(output).lines(),
            agent,
        }
    }

    fn with_home(home: &Path) -> Self {
        Self::start(Options {
            home: Some(home.to_path_buf()),
            ..Options::default()
        })
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        let input = self.input.as_mut().expect("input already closed");
        step("writing to the agent", async {
            input.write_all(bytes).await.expect("agent input closed");
            input.flush().await.expect("agent input closed");
        })
        .await;
    }

    async fn send(&mut self, message: Value) {
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    async fn recv(&mut self) -> Value {
        let line = step("a message from the agent", self.output.next_line())
            .await
            .expect("reading agent output failed")
            .expect("agent output ended while a message was expected");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("agent wrote invalid JSON {line:?}: {e}"))
    }

    /// Reads until the response to `id`, returning the notifications seen before it.
    async fn response_to(&mut self, id: &Value) -> (Vec<Value>, Value) {
        let mut notes = Vec::new();
        loop {
            let message = self.recv().await;
            if message.get("method").is_none() && message.get("id") == Some(id) {
                return (notes, message);
            }
            notes.push(message);
        }
    }

    async fn call(&mut self, id: Value, method: &str, params: Value) -> (Vec<Value>, Value) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.response_to(&id).await
    }

    async fn initialize(&mut self, can_write: bool) -> Value {
        let params = json!({
            "protocolVersion": 1,
            "clientCapabilities": {"fs": {"readTextFile": false, "writeTextFile": can_write}},
        });
        self.call(json!(1000), "initialize", params).await.1
    }

    async fn new_session(&mut self, cwd: &str) -> String {
        let (_, response) = self
            .call(
                json!(1001),
                "session/new",
                json!({"cwd": cwd, "mcpServers": []}),
            )
            .await;
        response["result"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("session/new failed: {response}"))
            .to_owned()
    }

    async fn prompt(&mut self, id: Value, session: &str, text: &str) -> (Vec<Value>, Value) {
        self.send_prompt(id.clone(), session, text).await;
        self.response_to(&id).await
    }

    async fn send_prompt(&mut self, id: Value, session: &str, text: &str) {
        let params = json!({"sessionId": session, "prompt": [{"type": "text", "text": text}]});
        self.send(
            json!({"jsonrpc": "2.0", "id": id, "method": "session/prompt", "params": params}),
        )
        .await;
    }

    async fn cancel(&mut self, session: &str) {
        self.send(
            json!({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session}}),
        )
        .await;
    }

    /// Closes the agent's input and waits for `run` to return.
    async fn finish(mut self) -> io::Result<()> {
        drop(self.input.take());
        let agent = &mut self.agent;
        step("the agent to stop after end of input", agent)
            .await
            .expect("agent task panicked")
    }
}

fn kinds(notes: &[Value]) -> Vec<&str> {
    notes
        .iter()
        .map(|n| {
            n["params"]["update"]["sessionUpdate"]
                .as_str()
                .unwrap_or("?")
        })
        .collect()
}

fn chunk_texts(notes: &[Value], kind: &str) -> Vec<String> {
    notes
        .iter()
        .filter(|n| n["params"]["update"]["sessionUpdate"] == kind)
        .map(|n| {
            n["params"]["update"]["content"]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn stop_reason(response: &Value) -> &str {
    response["result"]["stopReason"]
        .as_str()
        .unwrap_or_else(|| panic!("not a prompt result: {response}"))
}

#[tokio::test]
async fn initialize_new_session_and_echo_prompt() {
    let home = tempfile::tempdir().expect("temp dir");
    let mut client = Client::with_home(home.path());
    let init = client.initialize(false).await;
    assert_eq!(init["id"], 1000);
    assert_eq!(init["result"]["protocolVersion"], 1);
    assert_eq!(init["result"]["agentCapabilities"]["loadSession"], true);
    assert_eq!(init["result"]["agentInfo"]["name"], "shoal-demo-agent");
    assert_eq!(init["result"]["authMethods"], json!([]));

    let session = client.new_session("/tmp").await;
    assert_eq!(session, "demo-1");
    let (notes, response) = client.prompt(json!(7), &session, "hello   big world").await;
    assert_eq!(stop_reason(&response), "end_turn");
    assert_eq!(
        chunk_texts(&notes, "agent_message_chunk"),
        ["echo: ", "hello ", "big ", "world"]
    );
    assert!(
        notes
            .iter()
            .all(|n| n["method"] == "session/update" && n["params"]["sessionId"] == "demo-1")
    );
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn string_ids_are_echoed_unchanged() {
    let mut client = Client::start(Options::default());
    let (_, init) = client
        .call(json!("init-a"), "initialize", json!({"protocolVersion": 1}))
        .await;
    assert_eq!(init["id"], "init-a");
    let (_, new) = client
        .call(
            json!("0"),
            "session/new",
            json!({"cwd": "/", "mcpServers": []}),
        )
        .await;
    let session = new["result"]["sessionId"]
        .as_str()
        .expect("session id")
        .to_owned();
    let (_, response) = client.prompt(json!("p-1"), &session, "hi").await;
    assert_eq!(response["id"], "p-1");
    assert_eq!(stop_reason(&response), "end_turn");
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn bad_session_requests_get_errors() {
    let mut client = Client::start(Options::default());
    let (_, relative) = client
        .call(
            json!(1),
            "session/new",
            json!({"cwd": "relative/dir", "mcpServers": []}),
        )
        .await;
    assert_eq!(relative["error"]["code"], -32602);
    let (_, missing) = client.prompt(json!(2), "demo-99", "hi").await;
    assert_eq!(missing["error"]["code"], -32002);
    let (_, unknown) = client
        .call(
            json!(3),
            "session/load",
            json!({"sessionId": "../etc/passwd", "cwd": "/", "mcpServers": []}),
        )
        .await;
    assert_eq!(unknown["error"]["code"], -32002);
    assert_eq!(unknown["error"]["message"], "session not found");
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn cancel_stops_a_slow_prompt_and_a_second_prompt_is_refused() {
    let mut client = Client::start(Options::default());
    let session = client.new_session("/tmp").await;
    client.send_prompt(json!(1), &session, "/slow 100000").await;
    let first = client.recv().await;
    assert_eq!(first["params"]["update"]["content"]["text"], "chunk 1 ");

    let (_, busy) = client.prompt(json!(2), &session, "again").await;
    assert_eq!(busy["error"]["code"], -32000);
    assert_eq!(busy["error"]["message"], "a prompt is already running");

    client.cancel(&session).await;
    let (notes, response) = client.response_to(&json!(1)).await;
    assert_eq!(stop_reason(&response), "cancelled");
    assert!(
        notes.len() < 100,
        "cancel was not prompt: {} more chunks",
        notes.len()
    );

    // The slot is free again.
    let (_, next) = client.prompt(json!(3), &session, "after").await;
    assert_eq!(stop_reason(&next), "end_turn");
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn permission_round_trips() {
    let mut client = Client::start(Options::default());
    let session = client.new_session("/tmp").await;
    let cases = [
        (
            json!({"outcome": "selected", "optionId": "allow"}),
            "end_turn",
            Some("permission granted"),
        ),
        (
            json!({"outcome": "selected", "optionId": "reject"}),
            "end_turn",
            Some("permission denied"),
        ),
        (json!({"outcome": "cancelled"}), "cancelled", None),
    ];
    for (index, (outcome, stop, text)) in cases.into_iter().enumerate() {
        let prompt_id = json!(format!("perm-{index}"));
        client
            .send_prompt(prompt_id.clone(), &session, "/permission")
            .await;
        let request = client.recv().await;
        assert_eq!(request["method"], "session/request_permission");
        assert_eq!(request["id"], index, "agent request ids start at 0");
        let params = &request["params"];
        assert_eq!(params["sessionId"], session.as_str());
        assert_eq!(params["toolCall"]["toolCallId"], "call-p");
        assert_eq!(params["toolCall"]["kind"], "execute");
        assert_eq!(params["options"][0]["kind"], "allow_once");
        assert_eq!(params["options"][1]["optionId"], "reject");
        client
            .send(json!({"jsonrpc": "2.0", "id": request["id"], "result": {"outcome": outcome}}))
            .await;
        let (notes, response) = client.response_to(&prompt_id).await;
        assert_eq!(stop_reason(&response), stop);
        let texts = chunk_texts(&notes, "agent_message_chunk");
        assert_eq!(texts.first().map(String::as_str), text);
    }
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn cancel_abandons_a_pending_permission_request() {
    let mut client = Client::start(Options::default());
    let session = client.new_session("/tmp").await;
    client.send_prompt(json!(1), &session, "/permission").await;
    let request = client.recv().await;
    assert_eq!(request["method"], "session/request_permission");
    client.cancel(&session).await;
    let (_, response) = client.response_to(&json!(1)).await;
    assert_eq!(stop_reason(&response), "cancelled");
    // A late answer to the abandoned request is ignored.
    client
        .send(json!({"jsonrpc": "2.0", "id": request["id"], "result": {"outcome": {"outcome": "cancelled"}}}))
        .await;
    let (_, next) = client.prompt(json!(2), &session, "still here").await;
    assert_eq!(stop_reason(&next), "end_turn");
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn write_uses_the_client_only_when_it_can_write() {
    let mut without = Client::start(Options::default());
    without.initialize(false).await;
    let session = without.new_session("/tmp").await;
    let (notes, response) = without.prompt(json!(1), &session, "/write a.txt hi").await;
    assert_eq!(stop_reason(&response), "end_turn");
    assert_eq!(
        chunk_texts(&notes, "agent_message_chunk"),
        ["client cannot write files"]
    );
    without.finish().await.expect("clean stop");

    let mut with = Client::start(Options::default());
    with.initialize(true).await;
    let session = with.new_session("/work/space").await;
    for (answer, expected) in [
        (json!({"result": null}), "wrote notes/a.txt"),
        (
            json!({"error": {"code": -32603, "message": "disk full"}}),
            "write failed: disk full",
        ),
    ] {
        with.send_prompt(json!("w"), &session, "/write notes/a.txt hello there")
            .await;
        let request = with.recv().await;
        assert_eq!(request["method"], "fs/write_text_file");
        assert_eq!(request["params"]["path"], "/work/space/notes/a.txt");
        assert_eq!(request["params"]["content"], "hello there");
        assert_eq!(request["params"]["sessionId"], session.as_str());
        let mut reply = json!({"jsonrpc": "2.0", "id": request["id"]});
        for (key, value) in answer.as_object().expect("object") {
            reply[key] = value.clone();
        }
        with.send(reply).await;
        let (notes, response) = with.response_to(&json!("w")).await;
        assert_eq!(stop_reason(&response), "end_turn");
        assert_eq!(chunk_texts(&notes, "agent_message_chunk"), [expected]);
    }
    with.finish().await.expect("clean stop");
}

#[tokio::test]
async fn unknown_methods_both_ways() {
    let mut client = Client::start(Options::default());
    let (_, response) = client.call(json!(5), "x/nothing", json!({})).await;
    assert_eq!(response["error"]["code"], -32601);
    // Unknown notifications are ignored: the next request is answered normally.
    client
        .send(json!({"jsonrpc": "2.0", "method": "x/whatever"}))
        .await;

    let session = client.new_session("/tmp").await;
    client
        .send_prompt(json!(6), &session, "/unknown-method")
        .await;
    let request = client.recv().await;
    assert_eq!(request["method"], "x/unknown");
    client
        .send(json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "method not found"}}))
        .await;
    let (notes, response) = client.response_to(&json!(6)).await;
    assert_eq!(stop_reason(&response), "end_turn");
    assert_eq!(
        chunk_texts(&notes, "agent_message_chunk"),
        ["x/unknown returned error code -32601"]
    );
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn malformed_lines_get_parse_errors_and_the_agent_keeps_running() {
    let mut client = Client::start(Options::default());
    client.send_raw(b"{this is not json\n").await;
    let error = client.recv().await;
    assert_eq!(error["id"], Value::Null);
    assert_eq!(error["error"]["code"], -32700);
    client.send_raw(b"[1,2,3]\n").await;
    assert_eq!(client.recv().await["error"]["code"], -32600);
    let init = client.initialize(false).await;
    assert_eq!(init["result"]["protocolVersion"], 1);
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn a_final_line_without_newline_is_processed() {
    let mut client = Client::start(Options::default());
    client
        .send_raw(
            br#"{"jsonrpc":"2.0","id":9,"method":"initialize","params":{"protocolVersion":1}}"#,
        )
        .await;
    drop(client.input.take());
    let response = client.recv().await;
    assert_eq!(response["id"], 9);
    assert_eq!(response["result"]["protocolVersion"], 1);
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn session_load_replays_history_after_a_restart() {
    let home = tempfile::tempdir().expect("temp dir");
    let mut first = Client::with_home(home.path());
    let session = first.new_session("/tmp").await;
    first.prompt(json!(1), &session, "hi there").await;
    first.prompt(json!(2), &session, "/think").await;
    first.finish().await.expect("clean stop");

    let mut second = Client::with_home(home.path());
    second.initialize(false).await;
    let params = json!({"sessionId": session, "cwd": "/tmp", "mcpServers": []});
    let (notes, response) = second.call(json!(3), "session/load", params).await;
    // A new process starts the loaded session with the default mode and model.
    assert_eq!(
        response["result"]["modes"]["currentModeId"], "code",
        "load failed: {response}"
    );
    assert_eq!(
        response["result"]["configOptions"][0]["currentValue"],
        "demo-fast"
    );
    assert_eq!(
        kinds(&notes),
        [
            "user_message_chunk",
            "agent_message_chunk",
            "user_message_chunk",
            "agent_message_chunk"
        ]
    );
    assert_eq!(
        chunk_texts(&notes, "user_message_chunk"),
        ["hi there", "/think"]
    );
    assert_eq!(
        chunk_texts(&notes, "agent_message_chunk"),
        ["echo: hi there", "Here is my answer."]
    );

    let missing = json!({"sessionId": "demo-999", "cwd": "/tmp", "mcpServers": []});
    let (_, response) = second.call(json!(4), "session/load", missing).await;
    assert_eq!(response["error"]["code"], -32002);
    // New sessions after a restart do not reuse stored ids.
    assert_eq!(second.new_session("/tmp").await, "demo-2");
    // The loaded session takes prompts again, and remembers the earlier ones.
    let (_, response) = second.prompt(json!(5), &session, "more").await;
    assert_eq!(stop_reason(&response), "end_turn");
    let (notes, _) = second.prompt(json!(6), &session, "/history").await;
    assert_eq!(
        chunk_texts(&notes, "agent_message_chunk"),
        ["history: 3 earlier prompts: hi there | /think | more"]
    );
    second.finish().await.expect("clean stop");
}

#[tokio::test]
async fn scripted_updates_have_the_documented_shapes() {
    let mut client = Client::start(Options::default());
    let session = client.new_session("/tmp").await;

    let (notes, response) = client.prompt(json!(1), &session, "/think").await;
    assert_eq!(stop_reason(&response), "end_turn");
    assert_eq!(
        kinds(&notes),
        [
            "agent_thought_chunk",
            "agent_thought_chunk",
            "agent_message_chunk"
        ]
    );

    let (notes, response) = client.prompt(json!(2), &session, "/tool").await;
    assert_eq!(stop_reason(&response), "end_turn");
    assert_eq!(
        kinds(&notes),
        [
            "tool_call",
            "tool_call_update",
            "tool_call_update",
            "agent_message_chunk"
        ]
    );
    let call = &notes[0]["params"]["update"];
    assert_eq!(call["toolCallId"], "call-1");
    assert_eq!(call["title"], "Read README.md");
    assert_eq!(call["kind"], "read");
    assert_eq!(call["status"], "pending");
    assert_eq!(call["rawInput"], json!({"path": "README.md"}));
    assert_eq!(notes[1]["params"]["update"]["status"], "in_progress");
    let done = &notes[2]["params"]["update"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["content"][0]["content"]["text"], "file contents");
    assert_eq!(chunk_texts(&notes, "agent_message_chunk"), ["done"]);

    let (notes, response) = client.prompt(json!(3), &session, "/plan").await;
    assert_eq!(stop_reason(&response), "end_turn");
    assert_eq!(kinds(&notes), ["plan", "agent_message_chunk"]);
    assert_eq!(
        notes[0]["params"]["update"]["entries"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let (notes, response) = client.prompt(json!(4), &session, "/usage").await;
    assert_eq!(stop_reason(&response), "end_turn");
    assert_eq!(kinds(&notes), ["agent_message_chunk", "usage_update"]);
    let usage = &notes[1]["params"]["update"];
    assert_eq!(usage["used"], 1234);
    assert_eq!(usage["size"], 200_000);
    assert_eq!(usage["cost"], json!({"amount": 0.01, "currency": "USD"}));

    let (_, response) = client.prompt(json!(5), &session, "/error").await;
    assert_eq!(stop_reason(&response), "error");

    let (notes, response) = client.prompt(json!(6), &session, "/slow 3").await;
    assert_eq!(stop_reason(&response), "end_turn");
    assert_eq!(
        chunk_texts(&notes, "agent_message_chunk"),
        ["chunk 1 ", "chunk 2 ", "chunk 3 "]
    );

    let (notes, _) = client
        .prompt(
            json!(7),
            &session,
            "/echo-env SHOAL_DEMO_AGENT_TEST_SURELY_UNSET",
        )
        .await;
    assert_eq!(chunk_texts(&notes, "agent_message_chunk"), ["<unset>"]);
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn hang_ignores_cancel_but_end_of_input_still_stops_the_agent() {
    let mut client = Client::start(Options::default());
    let session = client.new_session("/tmp").await;
    client.send_prompt(json!(1), &session, "/hang").await;
    let chunk = client.recv().await;
    assert_eq!(chunk["params"]["update"]["content"]["text"], "hanging now");
    client.cancel(&session).await;
    let (_, busy) = client.prompt(json!(2), &session, "next").await;
    assert_eq!(
        busy["error"]["code"], -32000,
        "the hung prompt must keep its session busy"
    );
    client
        .finish()
        .await
        .expect("clean stop despite the hung prompt");
}

#[tokio::test]
async fn lifecycle_log_records_start_and_stop_with_the_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("lifecycle.jsonl");
    let mut client = Client::start(Options {
        home: Some(dir.path().to_path_buf()),
        lifecycle_log: Some(log.clone()),
        node_id: Some("node-a".into()),
    });
    let session = client.new_session("/tmp").await;
    client.finish().await.expect("clean stop");
    let text = std::fs::read_to_string(&log).expect("lifecycle log written");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("lifecycle line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "log was {text:?}");
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[0]["node"], "node-a");
    assert_eq!(lines[0]["pid"], std::process::id());
    assert!(lines[0].get("session").is_none());
    assert_eq!(lines[1]["event"], "stop");
    assert_eq!(lines[1]["session"], session.as_str());
    assert!(lines[1]["unix_ms"].as_u64().is_some_and(|ms| ms > 0));
}

#[test]
fn run_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (a, b) = tokio::io::duplex(1);
    let future = run_with_options(Options::default(), a, b);
    assert_send(&future);
}

#[tokio::test]
async fn stream_stamps_each_chunk_with_an_increasing_monotonic_time() {
    let mut client = Client::start(Options::default());
    let session = client.new_session("/tmp").await;
    let (notes, response) = client.prompt(json!(1), &session, "/stream 5 1000").await;
    assert_eq!(stop_reason(&response), "end_turn");
    let chunks = chunk_texts(&notes, "agent_message_chunk");
    let mut stamps = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let (index, stamp) = chunk
            .strip_prefix('#')
            .and_then(|c| c.strip_suffix(';'))
            .and_then(|c| c.split_once('@'))
            .unwrap_or_else(|| panic!("not a stamped chunk: {chunk:?}"));
        assert_eq!(index, (i + 1).to_string());
        stamps.push(stamp.parse::<u64>().expect("nanoseconds"));
    }
    assert_eq!(stamps.len(), 5);
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    let (_, bad) = client.prompt(json!(2), &session, "/stream lots").await;
    assert_eq!(stop_reason(&bad), "end_turn");
    client.finish().await.expect("clean stop");
}

#[tokio::test]
async fn modes_and_models_are_offered_set_and_reported() {
    let home = tempfile::tempdir().expect("temp dir");
    let mut client = Client::with_home(home.path());
    client.initialize(false).await;
    let (_, created) = client
        .call(
            json!(1),
            "session/new",
            json!({"cwd": "/tmp", "mcpServers": []}),
        )
        .await;
    let result = &created["result"];
    assert_eq!(result["modes"]["currentModeId"], "code");
    assert_eq!(result["modes"]["availableModes"][1]["id"], "ask");
    assert_eq!(result["configOptions"][0]["category"], "model");
    assert_eq!(result["configOptions"][0]["currentValue"], "demo-fast");
    let session = result["sessionId"].as_str().unwrap().to_owned();

    let (notes, answer) = client
        .call(
            json!(2),
            "session/set_mode",
            json!({"sessionId": session, "modeId": "ask"}),
        )
        .await;
    assert_eq!(answer["result"], json!({}));
    assert_eq!(kinds(&notes), ["current_mode_update"]);
    assert_eq!(notes[0]["params"]["update"]["currentModeId"], "ask");
    let (_, answer) = client
        .call(
            json!(3),
            "session/set_config_option",
            json!({"sessionId": session, "configId": "model", "value": "demo-smart"}),
        )
        .await;
    assert_eq!(
        answer["result"]["configOptions"][0]["currentValue"],
        "demo-smart"
    );
    for (id, method, params) in [
        (
            4,
            "session/set_mode",
            json!({"sessionId": session, "modeId": "yolo"}),
        ),
        (
            5,
            "session/set_config_option",
            json!({"sessionId": session, "configId": "model", "value": "huge"}),
        ),
        (
            6,
            "session/set_config_option",
            json!({"sessionId": session, "configId": "speed", "value": "demo-fast"}),
        ),
    ] {
        let (_, answer) = client.call(json!(id), method, params).await;
        assert_eq!(answer["error"]["code"], -32602, "{method}: {answer}");
    }
    let (_, answer) = client
        .call(
            json!(7),
            "session/set_mode",
            json!({"sessionId": "demo-99", "modeId": "ask"}),
        )
        .await;
    assert_eq!(answer["error"]["code"], -32002);
    let (notes, _) = client.prompt(json!(8), &session, "/settings").await;
    assert_eq!(
        chunk_texts(&notes, "agent_message_chunk"),
        ["mode: ask, model: demo-smart"]
    );
    client.finish().await.expect("clean stop");
}
