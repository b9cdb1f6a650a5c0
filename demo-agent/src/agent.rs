//! The agent's shared state and the read loop that dispatches client messages.
//!
//! The read loop answers `initialize`, `session/new` and `session/load` itself, in order,
//! and starts one task per `session/prompt` (see [`crate::script`]) so that
//! `session/cancel` and the client's answers to our requests keep flowing while a prompt
//! runs. Every outgoing message goes through one bounded queue to the writer loop.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};
use tokio::io::{AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::rpc::{self, Incoming, Line, LineReader, Outgoing, RpcError};
use crate::script::{self, Turn};
use crate::session::{self, HistoryEntry, Role, Store};

/// Messages queued for the writer before senders wait.
pub(crate) const OUTGOING_MESSAGES_MAX: usize = 1024;
/// Sessions one agent process holds at once.
pub(crate) const SESSIONS_MAX: usize = 4096;
/// ACP protocol version this agent speaks.
const PROTOCOL_VERSION: u64 = 1;

/// The answer to one of our agent→client requests.
pub(crate) type Reply = Result<Value, RpcError>;

/// One session known to this process.
#[derive(Debug)]
struct Session {
    cwd: PathBuf,
    history: Vec<HistoryEntry>,
    /// Set while a prompt runs; sending `true` asks it to stop.
    running: Option<watch::Sender<bool>>,
    /// The session's running cost total (`/usage`), in millionths of a dollar; kept in
    /// memory only.
    cost_micros: u64,
    /// The session's mode ([`MODES`]) and model ([`MODELS`]); kept in memory only, so a
    /// new process starts with the defaults.
    mode: String,
    model: String,
    /// The MCP servers the session was given, described for `/mcp`.
    mcp: Vec<String>,
}

/// The session modes offered: `(id, name, description)`; the first is the default.
pub(crate) const MODES: [(&str, &str, &str); 3] = [
    ("code", "Code", "Writes and changes code"),
    ("ask", "Ask", "Answers questions, changes nothing"),
    ("architect", "Architect", "Plans before it writes"),
];
/// The models offered (the `model` config option): `(id, name)`; the first is the default.
pub(crate) const MODELS: [(&str, &str); 2] =
    [("demo-fast", "Demo Fast"), ("demo-smart", "Demo Smart")];
/// The id of the config option that picks the model.
const MODEL_OPTION_ID: &str = "model";

/// The `modes` and `configOptions` of a session with `mode` and `model`.
fn session_settings(mode: &str, model: &str) -> (Value, Value) {
    let modes: Vec<Value> = MODES
        .iter()
        .map(|(id, name, description)| json!({"id": id, "name": name, "description": description}))
        .collect();
    let models: Vec<Value> = MODELS
        .iter()
        .map(|(id, name)| json!({"value": id, "name": name}))
        .collect();
    (
        json!({"currentModeId": mode, "availableModes": modes}),
        json!([{
            "id": MODEL_OPTION_ID,
            "name": "Model",
            "category": "model",
            "type": "select",
            "currentValue": model,
            "options": models,
        }]),
    )
}

/// State shared by the read loop and the prompt tasks.
#[derive(Debug)]
pub(crate) struct Agent {
    out: mpsc::Sender<Outgoing>,
    store: Store,
    sessions: Mutex<BTreeMap<String, Session>>,
    next_session_number: tokio::sync::Mutex<u64>,
    next_request_id: AtomicU64,
    /// Our requests awaiting the client's answer; at most one per running prompt.
    pending: Mutex<BTreeMap<u64, oneshot::Sender<Reply>>>,
    client_can_write_files: AtomicBool,
    client_takes_compactions: AtomicBool,
    last_session: Mutex<Option<String>>,
    /// How long to keep running after the input ends (`/linger`).
    linger_ms: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave these maps half-updated, so keep going.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Agent {
    /// A fresh agent writing to `out`, numbering new sessions from `first_session_number`.
    pub(crate) fn new(
        out: mpsc::Sender<Outgoing>,
        store: Store,
        first_session_number: u64,
    ) -> Self {
        Self {
            out,
            store,
            sessions: Mutex::new(BTreeMap::new()),
            next_session_number: tokio::sync::Mutex::new(first_session_number),
            next_request_id: AtomicU64::new(0),
            pending: Mutex::new(BTreeMap::new()),
            client_can_write_files: AtomicBool::new(false),
            client_takes_compactions: AtomicBool::new(false),
            last_session: Mutex::new(None),
            linger_ms: AtomicU64::new(0),
        }
    }

    /// How long to keep running after the input ends, as set by `/linger`.
    pub(crate) fn linger_ms(&self) -> u64 {
        self.linger_ms.load(Ordering::Relaxed)
    }

    /// Sets [`Self::linger_ms`].
    pub(crate) fn set_linger_ms(&self, ms: u64) {
        self.linger_ms.store(ms, Ordering::Relaxed);
    }

    /// The session most recently created or loaded, for the lifecycle log.
    pub(crate) fn last_session(&self) -> Option<String> {
        lock(&self.last_session).clone()
    }

    /// Whether the client advertised `fs.writeTextFile` in `initialize`.
    pub(crate) fn client_can_write_files(&self) -> bool {
        self.client_can_write_files.load(Ordering::Relaxed)
    }

    /// Whether the client advertised `session.compaction` in `initialize`.
    pub(crate) fn client_takes_compactions(&self) -> bool {
        self.client_takes_compactions.load(Ordering::Relaxed)
    }

    /// Queues a message; if the writer is gone the run is ending, so it is dropped.
    pub(crate) async fn send(&self, outgoing: Outgoing) {
        let _ = self.out.send(outgoing).await;
    }

    /// Sends a `session/update` notification for `session_id`.
    pub(crate) async fn update(&self, session_id: &str, update: Value) {
        let params = json!({"sessionId": session_id, "update": update});
        self.send(Outgoing::Message(rpc::notification(
            "session/update",
            params,
        )))
        .await;
    }

    /// Sends an agent→client request and returns its id and where its answer arrives.
    pub(crate) async fn request(
        &self,
        method: &str,
        params: Value,
    ) -> (u64, oneshot::Receiver<Reply>) {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        lock(&self.pending).insert(id, reply_tx);
        self.send(Outgoing::Message(rpc::request(id, method, params)))
            .await;
        (id, reply_rx)
    }

    /// Forgets request `id`: a later answer to it is ignored.
    pub(crate) fn abandon(&self, id: u64) {
        lock(&self.pending).remove(&id);
    }

    /// Appends to a session's history and persists it; a store failure is only logged.
    pub(crate) async fn record(&self, session_id: &str, role: Role, text: &str) {
        let history = {
            let mut sessions = lock(&self.sessions);
            let Some(session) = sessions.get_mut(session_id) else {
                return;
            };
            let entry = HistoryEntry {
                role,
                text: text.to_owned(),
            };
            session::push_bounded(&mut session.history, entry);
            session.history.clone()
        };
        if let Err(e) = self.store.save(session_id, &history).await {
            eprintln!("shoal-demo-agent: history of {session_id} not saved: {e}");
        }
    }

    /// A session's history as remembered now (empty for an unknown session).
    pub(crate) fn history(&self, session_id: &str) -> Vec<HistoryEntry> {
        lock(&self.sessions)
            .get(session_id)
            .map(|s| s.history.clone())
            .unwrap_or_default()
    }

    /// Adds `micros` to the session's cost and returns its new total.
    pub(crate) fn add_cost(&self, session_id: &str, micros: u64) -> u64 {
        lock(&self.sessions)
            .get_mut(session_id)
            .map_or(micros, |session| {
                session.cost_micros += micros;
                session.cost_micros
            })
    }

    /// The MCP servers the session was given, described (`/mcp`).
    pub(crate) fn mcp(&self, session_id: &str) -> Vec<String> {
        lock(&self.sessions)
            .get(session_id)
            .map(|s| s.mcp.clone())
            .unwrap_or_default()
    }

    /// The session's mode and model (`None` for an unknown session).
    pub(crate) fn settings(&self, session_id: &str) -> Option<(String, String)> {
        lock(&self.sessions)
            .get(session_id)
            .map(|s| (s.mode.clone(), s.model.clone()))
    }

    /// Marks the prompt of `session_id` finished so the next one may start.
    pub(crate) fn finish_prompt(&self, session_id: &str) {
        if let Some(session) = lock(&self.sessions).get_mut(session_id) {
            session.running = None;
        }
    }
}

/// Reads and dispatches client messages until end of input, then stops all prompts.
pub(crate) async fn serve<R: AsyncRead + Unpin>(agent: Arc<Agent>, input: R) -> io::Result<()> {
    let mut lines = LineReader::new(BufReader::new(input), rpc::LINE_BYTES_MAX);
    let mut prompts = JoinSet::new();
    let result = loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        while let Some(finished) = prompts.try_join_next() {
            if let Err(e) = finished {
                eprintln!("shoal-demo-agent: a prompt task failed: {e}");
            }
        }
        let message = match line {
            Line::TooLong { bytes } => Err((
                Value::Null,
                RpcError::new(
                    rpc::PARSE_ERROR,
                    format!(
                        "parse error: line of {bytes}+ bytes is over the {} byte limit",
                        rpc::LINE_BYTES_MAX
                    ),
                ),
            )),
            Line::Text(text) if text.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Text(text) => rpc::parse_message(&text),
        };
        match message {
            Ok(message) => dispatch(&agent, message, &mut prompts).await,
            Err((id, error)) => {
                agent
                    .send(Outgoing::Message(rpc::error_response(id, &error)))
                    .await;
            }
        }
    };
    // Prompts that never finish (`/hang`) must not keep the process alive after EOF.
    prompts.shutdown().await;
    result
}

async fn dispatch(agent: &Arc<Agent>, message: Incoming, prompts: &mut JoinSet<()>) {
    match message {
        Incoming::Request { id, method, params } => {
            let outcome = match method.as_str() {
                "initialize" => Ok(initialize(agent, &params)),
                "session/new" => new_session(agent, &params).await,
                "session/load" => load_session(agent, &params).await,
                "session/set_mode" => set_mode(agent, &params).await,
                "session/set_config_option" => set_config_option(agent, &params),
                "session/prompt" => match start_prompt(agent, id.clone(), &params) {
                    // The prompt task answers when it ends.
                    Ok((turn, text)) => {
                        prompts.spawn(script::run_prompt(turn, text));
                        return;
                    }
                    Err(e) => Err(e),
                },
                other => Err(RpcError::new(
                    rpc::METHOD_NOT_FOUND,
                    format!("method not found: {other}"),
                )),
            };
            let message = match outcome {
                Ok(result) => rpc::response(id, result),
                Err(error) => rpc::error_response(id, &error),
            };
            agent.send(Outgoing::Message(message)).await;
        }
        Incoming::Notification { method, params } => {
            if method == "session/cancel" {
                cancel(agent, &params);
            }
        }
        Incoming::Response { id, outcome } => {
            let waiter = id.as_u64().and_then(|id| lock(&agent.pending).remove(&id));
            match waiter {
                Some(waiter) => {
                    let _ = waiter.send(outcome);
                }
                None => eprintln!("shoal-demo-agent: ignoring answer to unknown request {id}"),
            }
        }
    }
}

fn initialize(agent: &Agent, params: &Value) -> Value {
    let can_write = params
        .pointer("/clientCapabilities/fs/writeTextFile")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    agent
        .client_can_write_files
        .store(can_write, Ordering::Relaxed);
    let compaction = params
        .pointer("/clientCapabilities/session/compaction")
        .is_some_and(Value::is_object);
    agent
        .client_takes_compactions
        .store(compaction, Ordering::Relaxed);
    let auth_methods: Vec<Value> = auth_key_var()
        .map(|var| {
            json!({
                "id": "demo-key",
                "name": "Demo API key",
                "description": format!("Requires setting the `{var}` environment variable"),
            })
        })
        .into_iter()
        .collect();
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "agentCapabilities": {
            "loadSession": true,
            "promptCapabilities": if std::env::var_os(crate::TEXT_ONLY_ENV).is_some() {
                json!({})
            } else {
                json!({"image": true, "embeddedContext": true})
            },
            "mcpCapabilities": {"http": std::env::var_os(crate::NO_HTTP_MCP_ENV).is_none(), "sse": false},
        },
        "agentInfo": {"name": "shoal-demo-agent", "version": env!("CARGO_PKG_VERSION")},
        "authMethods": auth_methods,
    })
}

/// The variable that must hold a key before sessions open ([`crate::REQUIRE_AUTH_ENV`]).
fn auth_key_var() -> Option<String> {
    std::env::var(crate::REQUIRE_AUTH_ENV)
        .ok()
        .filter(|var| !var.is_empty() && !var.contains(['=', '\0']))
}

/// `auth_required` while the key [`auth_key_var`] names is missing.
fn check_auth() -> Result<(), RpcError> {
    match auth_key_var() {
        Some(var) if std::env::var(&var).map_or(true, |key| key.is_empty()) => {
            Err(RpcError::new(rpc::AUTH_REQUIRED, "Authentication required"))
        }
        _ => Ok(()),
    }
}

fn string_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params(format!("`{name}` must be a string")))
}

fn absolute_cwd(params: &Value) -> Result<PathBuf, RpcError> {
    let cwd = string_param(params, "cwd")?;
    if !Path::new(cwd).is_absolute() {
        return Err(RpcError::invalid_params(format!(
            "cwd {cwd:?} must be an absolute path"
        )));
    }
    Ok(PathBuf::from(cwd))
}

fn store_error(e: &session::StoreError) -> RpcError {
    RpcError::new(rpc::INTERNAL_ERROR, e.to_string())
}

fn too_many_sessions() -> RpcError {
    RpcError::new(
        rpc::BUSY,
        format!("this agent already holds {SESSIONS_MAX} sessions; start another agent process"),
    )
}

fn session_not_found() -> RpcError {
    RpcError::new(rpc::SESSION_NOT_FOUND, "session not found")
}

async fn new_session(agent: &Agent, params: &Value) -> Result<Value, RpcError> {
    check_auth()?;
    let cwd = absolute_cwd(params)?;
    if lock(&agent.sessions).len() >= SESSIONS_MAX {
        return Err(too_many_sessions());
    }
    let id = {
        let mut next = agent.next_session_number.lock().await;
        agent
            .store
            .create(&mut next)
            .await
            .map_err(|e| store_error(&e))?
    };
    let session = Session {
        cwd,
        history: Vec::new(),
        running: None,
        cost_micros: 0,
        mode: MODES[0].0.to_owned(),
        model: MODELS[0].0.to_owned(),
        mcp: describe_mcp(params),
    };
    lock(&agent.sessions).insert(id.clone(), session);
    *lock(&agent.last_session) = Some(id.clone());
    let (modes, options) = session_settings(MODES[0].0, MODELS[0].0);
    Ok(json!({"sessionId": id, "modes": modes, "configOptions": options}))
}

async fn load_session(agent: &Agent, params: &Value) -> Result<Value, RpcError> {
    check_auth()?;
    let id = string_param(params, "sessionId")?.to_owned();
    let cwd = absolute_cwd(params)?;
    if !session::is_valid_session_id(&id) {
        return Err(session_not_found());
    }
    let stored = agent.store.load(&id).await.map_err(|e| store_error(&e))?;
    let history = {
        let mut sessions = lock(&agent.sessions);
        let history = match (stored, sessions.get(&id)) {
            (_, Some(session)) if session.running.is_some() => {
                return Err(RpcError::new(rpc::BUSY, "a prompt is already running"));
            }
            (Some(history), _) => history,
            (None, Some(session)) if !agent.store.is_persistent() => session.history.clone(),
            (None, _) => return Err(session_not_found()),
        };
        if !sessions.contains_key(&id) && sessions.len() >= SESSIONS_MAX {
            return Err(too_many_sessions());
        }
        let cost_micros = sessions.get(&id).map_or(0, |s| s.cost_micros);
        let (mode, model) = sessions.get(&id).map_or_else(
            || (MODES[0].0.to_owned(), MODELS[0].0.to_owned()),
            |s| (s.mode.clone(), s.model.clone()),
        );
        let session = Session {
            cwd,
            history: history.clone(),
            running: None,
            cost_micros,
            mode,
            model,
            mcp: describe_mcp(params),
        };
        sessions.insert(id.clone(), session);
        history
    };
    let (mode, model) = agent.settings(&id).unwrap_or_default();
    *lock(&agent.last_session) = Some(id.clone());
    for entry in history {
        let kind = match entry.role {
            Role::User => "user_message_chunk",
            Role::Agent => "agent_message_chunk",
        };
        let update = json!({
            "sessionUpdate": kind,
            "content": {"type": "text", "text": entry.text},
        });
        agent.update(&id, update).await;
    }
    if std::env::var_os(crate::QUIET_LOAD_ENV).is_some() {
        return Ok(Value::Null);
    }
    let (modes, options) = session_settings(&mode, &model);
    Ok(json!({"modes": modes, "configOptions": options}))
}

/// Most MCP servers described per session.
const MCP_SERVERS_DESCRIBED_MAX: usize = 64;

/// `mcpServers` described one each: `name (stdio COMMAND; env: K=<digest>)` or
/// `name (http URL; headers: K=<digest>)`, where a digest is the first 16 hex digits of
/// the value's BLAKE3 hash (the value itself is never shown).
fn describe_mcp(params: &Value) -> Vec<String> {
    let pairs = |list: Option<&Value>| -> String {
        let described: Vec<String> = list
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|pair| {
                let name = pair.get("name").and_then(Value::as_str).unwrap_or("?");
                let value = pair.get("value").and_then(Value::as_str).unwrap_or("");
                let digest = blake3::hash(value.as_bytes()).to_hex();
                format!("{name}={}", &digest[..16])
            })
            .collect();
        described.join(" ")
    };
    params
        .get("mcpServers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(MCP_SERVERS_DESCRIBED_MAX)
        .map(|server| {
            let name = server.get("name").and_then(Value::as_str).unwrap_or("?");
            match server.get("url").and_then(Value::as_str) {
                Some(url) => format!(
                    "{name} (http {url}; headers: {})",
                    pairs(server.get("headers"))
                ),
                None => {
                    let command = server.get("command").and_then(Value::as_str).unwrap_or("?");
                    format!(
                        "{name} (stdio {command}; env: {})",
                        pairs(server.get("env"))
                    )
                }
            }
        })
        .collect()
}

/// `session/set_mode {sessionId, modeId}`: a mode of [`MODES`]; tells the client with a
/// `current_mode_update`, then answers `{}`.
async fn set_mode(agent: &Agent, params: &Value) -> Result<Value, RpcError> {
    let id = string_param(params, "sessionId")?;
    let mode = string_param(params, "modeId")?;
    if !MODES.iter().any(|(m, _, _)| *m == mode) {
        return Err(RpcError::invalid_params(format!("unknown mode `{mode}`")));
    }
    match lock(&agent.sessions).get_mut(id) {
        Some(session) => mode.clone_into(&mut session.mode),
        None => return Err(session_not_found()),
    }
    let update = json!({"sessionUpdate": "current_mode_update", "currentModeId": mode});
    agent.update(id, update).await;
    Ok(json!({}))
}

/// `session/set_config_option {sessionId, configId: "model", value}`: a model of
/// [`MODELS`]; answers with the config options after it.
fn set_config_option(agent: &Agent, params: &Value) -> Result<Value, RpcError> {
    let id = string_param(params, "sessionId")?;
    let config = string_param(params, "configId")?;
    let value = string_param(params, "value")?;
    if config != MODEL_OPTION_ID {
        return Err(RpcError::invalid_params(format!(
            "unknown config option `{config}`"
        )));
    }
    if !MODELS.iter().any(|(m, _)| *m == value) {
        return Err(RpcError::invalid_params(format!("unknown model `{value}`")));
    }
    let mode = match lock(&agent.sessions).get_mut(id) {
        Some(session) => {
            value.clone_into(&mut session.model);
            session.mode.clone()
        }
        None => return Err(session_not_found()),
    };
    let (_, options) = session_settings(&mode, value);
    Ok(json!({"configOptions": options}))
}

/// Most prompt blocks described for `/attachments`.
const ATTACHMENTS_DESCRIBED_MAX: usize = 64;

/// The prompt's `image` and `resource` blocks, one line each: `image MIME N chars
/// blake3:<16 hex of the base64 data>` or `resource URI MIME text|blob N chars
/// blake3:<16 hex of the text or base64 blob>` (the content itself is never repeated).
fn describe_attachments(blocks: &[Value]) -> Vec<String> {
    let digest = |text: &str| blake3::hash(text.as_bytes()).to_hex()[..16].to_owned();
    let field = |value: &Value, name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    blocks
        .iter()
        .filter_map(|block| match block.get("type").and_then(Value::as_str) {
            Some("image") => {
                let data = field(block, "data");
                Some(format!(
                    "image {} {} chars blake3:{}",
                    field(block, "mimeType"),
                    data.len(),
                    digest(&data)
                ))
            }
            Some("resource") => {
                let resource = block.get("resource")?;
                let (kind, content) = match resource.get("text").and_then(Value::as_str) {
                    Some(text) => ("text", text.to_owned()),
                    None => ("blob", field(resource, "blob")),
                };
                Some(format!(
                    "resource {} {} {kind} {} chars blake3:{}",
                    field(resource, "uri"),
                    field(resource, "mimeType"),
                    content.len(),
                    digest(&content)
                ))
            }
            _ => None,
        })
        .take(ATTACHMENTS_DESCRIBED_MAX)
        .collect()
}

/// Checks a prompt request and claims its session's prompt slot.
fn start_prompt(
    agent: &Arc<Agent>,
    request_id: Value,
    params: &Value,
) -> Result<(Turn, String), RpcError> {
    let session_id = string_param(params, "sessionId")?.to_owned();
    let blocks = params
        .get("prompt")
        .and_then(Value::as_array)
        .ok_or_else(|| RpcError::invalid_params("`prompt` must be an array of content blocks"))?;
    let texts: Vec<&str> = blocks
        .iter()
        .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect();
    // A script command is the user's own block, the last one (earlier blocks carry
    // context, such as a new session's conversation so far); anything else is the whole
    // prompt, which the echo repeats.
    let text: String = match texts.last() {
        Some(last) if texts.len() > 1 && last.starts_with('/') => (*last).to_owned(),
        _ => texts.concat(),
    };
    let mut sessions = lock(&agent.sessions);
    let session = sessions
        .get_mut(&session_id)
        .ok_or_else(session_not_found)?;
    if session.running.is_some() {
        return Err(RpcError::new(rpc::BUSY, "a prompt is already running"));
    }
    let (cancel_tx, cancel_rx) = watch::channel(false);
    session.running = Some(cancel_tx);
    let turn = Turn::new(
        Arc::clone(agent),
        session_id,
        request_id,
        session.cwd.clone(),
        cancel_rx,
        describe_attachments(blocks),
    );
    Ok((turn, text))
}

fn cancel(agent: &Agent, params: &Value) {
    let Some(session_id) = params.get("sessionId").and_then(Value::as_str) else {
        return;
    };
    if let Some(running) = lock(&agent.sessions)
        .get(session_id)
        .and_then(|session| session.running.as_ref())
    {
        running.send_replace(true);
    }
}
