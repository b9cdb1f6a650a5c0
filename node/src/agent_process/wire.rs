//! Lenient parsing of what an ACP agent sends, and the JSON we send back.
//!
//! Plain functions over `serde_json::Value`: no I/O. Real agents send values the
//! schema does not list (a `stopReason` of `"error"`, update kinds from newer
//! protocol drafts), so nothing here rejects a whole message because one field is
//! odd: unknown update kinds become [`AgentUpdate::Other`], unknown stop reasons
//! [`PromptOutcome::Other`], unknown tool statuses `None`.

use super::{AgentUpdate, PromptOutcome, ToolStatusRaw};
use serde_json::{Value, json};
use shoal_protocol::transcript::{PermissionOption, PlanEntry, Usage};

/// The ACP protocol version this client speaks.
pub(crate) const PROTOCOL_VERSION: u64 = 1;

/// What we learned from the agent's `initialize` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InitializeInfo {
    /// `agentCapabilities.loadSession`.
    pub(crate) load_session: bool,
}

/// The `initialize` request parameters: protocol v1, file system capabilities on,
/// no terminal.
pub(crate) fn initialize_params() -> Value {
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "clientCapabilities": {
            "fs": { "readTextFile": true, "writeTextFile": true },
            "terminal": false,
            "session": { "compaction": {} },
        },
        "clientInfo": { "name": "shoal-node", "version": env!("CARGO_PKG_VERSION") },
    })
}

/// Reads the agent's `initialize` answer. A protocol version other than ours is an
/// error (ACP: the client closes the connection when it cannot speak the agent's
/// version); a missing capability is `false`.
pub(crate) fn parse_initialize(result: &Value) -> Result<InitializeInfo, String> {
    match result.get("protocolVersion").and_then(Value::as_u64) {
        Some(PROTOCOL_VERSION) => {}
        Some(other) => {
            return Err(format!(
                "the agent speaks ACP protocol version {other}, Shoal speaks version \
                 {PROTOCOL_VERSION}; use an agent release that supports ACP v{PROTOCOL_VERSION}"
            ));
        }
        None => {
            return Err(format!(
                "the agent's initialize answer has no numeric protocolVersion: {}",
                truncate_for_log(&result.to_string())
            ));
        }
    }
    let load_session = result
        .pointer("/agentCapabilities/loadSession")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(InitializeInfo { load_session })
}

/// `session/new` parameters (`mcp_servers`: [`super::mcp::servers_json`]).
pub(crate) fn new_session_params(cwd: &str, mcp_servers: Value) -> Value {
    json!({ "cwd": cwd, "mcpServers": mcp_servers })
}

/// `session/load` parameters.
pub(crate) fn load_session_params(session_id: &str, cwd: &str, mcp_servers: Value) -> Value {
    json!({ "sessionId": session_id, "cwd": cwd, "mcpServers": mcp_servers })
}

/// Reads the `sessionId` of a `session/new` answer.
pub(crate) fn parse_new_session(result: &Value) -> Result<String, String> {
    match result.get("sessionId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(format!(
            "the agent's session/new answer has no sessionId: {}",
            truncate_for_log(&result.to_string())
        )),
    }
}

/// `session/prompt` parameters: one text block.
/// `session/prompt` parameters: the `context` (a new session's conversation so far) as
/// its own text block before the user's, so the user's text stays whole (an agent that
/// reads commands from the message still finds them).
pub(crate) fn prompt_params(
    session_id: &str,
    context: Option<&str>,
    text: &str,
    attachments: &[shoal_protocol::attachments::Attachment],
) -> Value {
    use base64::Engine as _;
    let mut blocks = Vec::with_capacity(2 + attachments.len());
    if let Some(context) = context {
        blocks.push(json!({ "type": "text", "text": context }));
    }
    blocks.push(json!({ "type": "text", "text": text }));
    let encode = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
    for a in attachments {
        if a.is_image() {
            blocks
                .push(json!({ "type": "image", "mimeType": a.mime_type, "data": encode(&a.data) }));
            continue;
        }
        let uri = format!("attachment:///{}", uri_escape(&a.name));
        let resource = match std::str::from_utf8(&a.data) {
            Ok(text) => json!({ "uri": uri, "mimeType": a.mime_type, "text": text }),
            Err(_) => json!({ "uri": uri, "mimeType": a.mime_type, "blob": encode(&a.data) }),
        };
        blocks.push(json!({ "type": "resource", "resource": resource }));
    }
    json!({ "sessionId": session_id, "prompt": blocks })
}

/// `name` with every byte but URI-unreserved ones percent-encoded.
fn uri_escape(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `session/cancel` parameters.
pub(crate) fn cancel_params(session_id: &str) -> Value {
    json!({ "sessionId": session_id })
}

/// Reads the stop reason of a `session/prompt` answer, leniently.
pub(crate) fn parse_prompt_outcome(result: &Value) -> PromptOutcome {
    match result.get("stopReason") {
        Some(Value::String(reason)) => match reason.as_str() {
            "end_turn" => PromptOutcome::EndTurn,
            "max_tokens" => PromptOutcome::MaxTokens,
            "max_turn_requests" => PromptOutcome::MaxTurnRequests,
            "refusal" => PromptOutcome::Refusal,
            "cancelled" => PromptOutcome::Cancelled,
            other => PromptOutcome::Other(other.to_owned()),
        },
        Some(other) => PromptOutcome::Other(truncate_for_log(&other.to_string())),
        None => PromptOutcome::Other(String::from("missing stopReason")),
    }
}

/// The turn's token counts from a `session/prompt` answer's `usage` (`inputTokens`,
/// `outputTokens`, optional `thoughtTokens`, `cachedReadTokens`, `cachedWriteTokens`);
/// `None` when absent or malformed (an agent's bad field never fails the turn).
pub(crate) fn parse_prompt_tokens(result: &Value) -> Option<super::TokenCounts> {
    let usage = result.get("usage")?.as_object()?;
    let field = |name: &str| usage.get(name).and_then(Value::as_u64);
    Some(super::TokenCounts {
        input: field("inputTokens")?,
        output: field("outputTokens")?,
        thought: field("thoughtTokens").unwrap_or(0),
        cached_read: field("cachedReadTokens").unwrap_or(0),
        cached_write: field("cachedWriteTokens").unwrap_or(0),
    })
}

/// The answer to a permission request: `Some(option)` selects it, `None` cancels.
pub(crate) fn permission_outcome(option_id: Option<&str>) -> Value {
    match option_id {
        Some(option_id) => json!({ "outcome": { "outcome": "selected", "optionId": option_id } }),
        None => json!({ "outcome": { "outcome": "cancelled" } }),
    }
}

/// A `session/request_permission` request as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PermissionAsk {
    /// What the agent wants to do, for a person.
    pub(crate) title: String,
    /// The choices offered.
    pub(crate) options: Vec<PermissionOption>,
    /// `toolCall.toolCallId`, if sent.
    pub(crate) tool_call_id: Option<String>,
    /// `toolCall.kind`, if sent (`read`, `execute`, …).
    pub(crate) kind: Option<String>,
}

/// Reads `session/request_permission` parameters. Options without an id are
/// dropped (they cannot be answered); a missing title falls back to the tool
/// call id.
pub(crate) fn parse_permission_request(params: &Value) -> PermissionAsk {
    let tool_call = params.get("toolCall");
    let title = tool_call
        .and_then(|call| call.get("title"))
        .and_then(Value::as_str)
        .or_else(|| {
            tool_call
                .and_then(|call| call.get("toolCallId"))
                .and_then(Value::as_str)
        })
        .unwrap_or("the agent asks for permission")
        .to_owned();
    let options = params
        .get("options")
        .and_then(Value::as_array)
        .map(|options| {
            options
                .iter()
                .filter_map(|option| {
                    let option_id = option.get("optionId")?.as_str()?.to_owned();
                    let name = option
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or(&option_id)
                        .to_owned();
                    let kind = option
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    Some(PermissionOption {
                        option_id,
                        name,
                        kind,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let field = |name: &str| {
        tool_call
            .and_then(|call| call.get(name))
            .and_then(Value::as_str)
            .map(truncate_for_log)
    };
    PermissionAsk {
        title,
        options,
        tool_call_id: field("toolCallId"),
        kind: field("kind"),
    }
}

/// The `sessionId` of a notification or request, if present.
pub(crate) fn session_id_of(params: &Value) -> Option<&str> {
    params.get("sessionId").and_then(Value::as_str)
}

/// Turns the `update` of a `session/update` notification into an [`AgentUpdate`].
/// Returns `None` only for an update without a `sessionUpdate` kind.
pub(crate) fn parse_session_update(update: &Value) -> Option<AgentUpdate> {
    let kind = update.get("sessionUpdate")?.as_str()?;
    let parsed = match kind {
        "agent_message_chunk" => chunk_text(update).map(AgentUpdate::Text),
        "agent_thought_chunk" => chunk_text(update).map(AgentUpdate::Reasoning),
        "user_message_chunk" => chunk_text(update).map(AgentUpdate::UserText),
        "tool_call" => tool_call(update, false),
        "tool_call_update" => tool_call(update, true),
        "plan" => Some(AgentUpdate::Plan(plan_entries(update))),
        "usage_update" => usage(update).map(AgentUpdate::Usage),
        "available_commands_update" => Some(AgentUpdate::Commands(commands(update))),
        "current_mode_update" => {
            super::offer::parse_current_mode(update).map(AgentUpdate::CurrentMode)
        }
        "config_option_update" => Some(AgentUpdate::ConfigOptions(
            super::offer::parse_config_options(update.get("configOptions")?),
        )),
        "compaction_update" => compaction(update),
        "compaction_summary_chunk" => {
            let id = update.get("compactionId")?.as_str()?.to_owned();
            chunk_text(update).map(|text| AgentUpdate::CompactionChunk { id, text })
        }
        _ => None,
    };
    Some(parsed.unwrap_or_else(|| AgentUpdate::Other(describe_other(kind, update))))
}

/// Longest slash command name and description kept, in bytes (longer ones are cut).
const COMMAND_NAME_BYTES_MAX: usize = 64;
const COMMAND_TEXT_BYTES_MAX: usize = 512;

/// `available_commands_update`: the agent's commands (at most
/// [`shoal_protocol::transcript::SLASH_COMMANDS_MAX`], names and texts bounded); entries
/// without a name are skipped.
fn commands(update: &Value) -> Vec<shoal_protocol::transcript::SlashCommand> {
    let cut =
        |text: &str, max: usize| crate::shard::state_machine::prefix_within(text, max).to_owned();
    update
        .get("availableCommands")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let name = c.get("name")?.as_str()?.trim_start_matches('/');
            if name.is_empty() {
                return None;
            }
            Some(shoal_protocol::transcript::SlashCommand {
                name: cut(name, COMMAND_NAME_BYTES_MAX),
                description: cut(
                    c.get("description").and_then(Value::as_str).unwrap_or(""),
                    COMMAND_TEXT_BYTES_MAX,
                ),
                hint: c
                    .pointer("/input/hint")
                    .and_then(Value::as_str)
                    .map(|h| cut(h, COMMAND_TEXT_BYTES_MAX)),
            })
        })
        .take(shoal_protocol::transcript::SLASH_COMMANDS_MAX)
        .collect()
}

/// The name logged for an update we do not map: the kind, plus the content type
/// for chunks that are not text (images, resources).
fn describe_other(kind: &str, update: &Value) -> String {
    match update.pointer("/content/type").and_then(Value::as_str) {
        Some(content_type) if kind.ends_with("_chunk") => format!("{kind} ({content_type})"),
        _ => kind.to_owned(),
    }
}

/// The text of a `*_chunk` update whose content is a text block.
/// `compaction_update`: its id, status and, when sent, the whole summary (text blocks).
fn compaction(update: &Value) -> Option<AgentUpdate> {
    let id = update.get("compactionId")?.as_str()?.to_owned();
    let status = update.get("status")?.as_str()?.to_owned();
    let summary = update
        .get("summary")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<String>()
        });
    Some(AgentUpdate::Compaction {
        id,
        status,
        summary,
    })
}

fn chunk_text(update: &Value) -> Option<String> {
    let content = update.get("content")?;
    match content.get("type").and_then(Value::as_str) {
        Some("text") | None => content.get("text")?.as_str().map(str::to_owned),
        Some(_) => None,
    }
}

fn tool_call(update: &Value, is_update: bool) -> Option<AgentUpdate> {
    let id = match update.get("toolCallId")? {
        Value::String(id) => id.clone(),
        Value::Number(id) => id.to_string(),
        _ => return None,
    };
    let text_field = |name: &str| update.get(name).and_then(Value::as_str).map(str::to_owned);
    let status = update
        .get("status")
        .and_then(Value::as_str)
        .and_then(|status| match status {
            "pending" => Some(ToolStatusRaw::Pending),
            "in_progress" => Some(ToolStatusRaw::InProgress),
            "completed" => Some(ToolStatusRaw::Completed),
            "failed" => Some(ToolStatusRaw::Failed),
            _ => None,
        });
    let input = update
        .get("rawInput")
        .filter(|input| !input.is_null())
        .map(Value::to_string);
    Some(AgentUpdate::ToolCall {
        id,
        title: text_field("title"),
        kind: text_field("kind"),
        status,
        input,
        output: tool_output(update),
        is_update,
    })
}

/// The output of a tool call: the text of its `content` blocks (diffs rendered as
/// a one-line summary), else its `rawOutput` as JSON text.
fn tool_output(update: &Value) -> Option<String> {
    let mut texts = Vec::new();
    for item in update
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match item.get("type").and_then(Value::as_str) {
            Some("content") => {
                if let Some(text) = item.get("content").and_then(chunk_content_text) {
                    texts.push(text.to_owned());
                }
            }
            Some("diff") => {
                let path = item.get("path").and_then(Value::as_str).unwrap_or("?");
                texts.push(format!("diff of {path}"));
            }
            Some("terminal") => {
                let id = item
                    .get("terminalId")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                texts.push(format!("terminal {id}"));
            }
            _ => {}
        }
    }
    if !texts.is_empty() {
        return Some(texts.join("\n"));
    }
    match update.get("rawOutput") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => Some(other.to_string()),
    }
}

fn chunk_content_text(content: &Value) -> Option<&str> {
    match content.get("type").and_then(Value::as_str) {
        Some("text") | None => content.get("text")?.as_str(),
        Some(_) => None,
    }
}

fn plan_entries(update: &Value) -> Vec<PlanEntry> {
    update
        .get("entries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            Some(PlanEntry {
                content: entry.get("content")?.as_str()?.to_owned(),
                status: entry
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("pending")
                    .to_owned(),
            })
        })
        .collect()
}

fn usage(update: &Value) -> Option<Usage> {
    let cost = update.get("cost").filter(|cost| cost.is_object());
    Some(Usage {
        used_tokens: update.get("used")?.as_u64()?,
        size_tokens: update.get("size")?.as_u64()?,
        cost: cost
            .and_then(|cost| cost.get("amount"))
            .and_then(Value::as_f64),
        currency: cost
            .and_then(|cost| cost.get("currency"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// The longest excerpt of agent output quoted in an error message or log line.
const LOG_EXCERPT_CHARS_MAX: usize = 300;

/// Shortens agent-controlled text before it goes into a message or log line.
pub(crate) fn truncate_for_log(text: &str) -> String {
    match text.char_indices().nth(LOG_EXCERPT_CHARS_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_parse_leniently() {
        let cases = [
            (json!({"stopReason": "end_turn"}), PromptOutcome::EndTurn),
            (
                json!({"stopReason": "max_tokens"}),
                PromptOutcome::MaxTokens,
            ),
            (
                json!({"stopReason": "max_turn_requests"}),
                PromptOutcome::MaxTurnRequests,
            ),
            (json!({"stopReason": "refusal"}), PromptOutcome::Refusal),
            (json!({"stopReason": "cancelled"}), PromptOutcome::Cancelled),
            (
                json!({"stopReason": "error"}),
                PromptOutcome::Other("error".into()),
            ),
            (json!({"stopReason": 7}), PromptOutcome::Other("7".into())),
            (json!({}), PromptOutcome::Other("missing stopReason".into())),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_prompt_outcome(&input), expected, "for {input}");
        }
    }

    #[test]
    fn initialize_requires_version_one_and_reads_load_session() {
        let ok = json!({"protocolVersion": 1, "agentCapabilities": {"loadSession": true}});
        assert_eq!(
            parse_initialize(&ok),
            Ok(InitializeInfo { load_session: true })
        );
        let no_caps = json!({"protocolVersion": 1});
        assert_eq!(
            parse_initialize(&no_caps),
            Ok(InitializeInfo {
                load_session: false
            })
        );
        let newer = json!({"protocolVersion": 2});
        assert!(
            parse_initialize(&newer)
                .err()
                .is_some_and(|e| e.contains("version 2"))
        );
        assert!(parse_initialize(&json!({"protocolVersion": "1"})).is_err());
    }

    #[test]
    fn chunks_map_to_text_reasoning_and_user_text() {
        let text = json!({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "hi "}});
        assert_eq!(
            parse_session_update(&text),
            Some(AgentUpdate::Text("hi ".into()))
        );
        let thought = json!({"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "hmm"}});
        assert_eq!(
            parse_session_update(&thought),
            Some(AgentUpdate::Reasoning("hmm".into()))
        );
        let user = json!({"sessionUpdate": "user_message_chunk", "content": {"type": "text", "text": "q"}, "messageId": "m1"});
        assert_eq!(
            parse_session_update(&user),
            Some(AgentUpdate::UserText("q".into()))
        );
        let image = json!({"sessionUpdate": "agent_message_chunk", "content": {"type": "image", "data": "", "mimeType": "image/png"}});
        assert_eq!(
            parse_session_update(&image),
            Some(AgentUpdate::Other("agent_message_chunk (image)".into()))
        );
    }

    #[test]
    fn tool_calls_keep_input_as_json_and_output_as_text() {
        let call = json!({
            "sessionUpdate": "tool_call", "toolCallId": "call-1", "title": "Read README.md",
            "kind": "read", "status": "pending", "rawInput": {"path": "README.md"}
        });
        assert_eq!(
            parse_session_update(&call),
            Some(AgentUpdate::ToolCall {
                id: "call-1".into(),
                title: Some("Read README.md".into()),
                kind: Some("read".into()),
                status: Some(ToolStatusRaw::Pending),
                input: Some(r#"{"path":"README.md"}"#.into()),
                output: None,
                is_update: false,
            })
        );
        let done = json!({
            "sessionUpdate": "tool_call_update", "toolCallId": "call-1", "status": "completed",
            "content": [{"type": "content", "content": {"type": "text", "text": "file contents"}},
                        {"type": "diff", "path": "/w/a.rs", "oldText": "a", "newText": "b"}]
        });
        assert_eq!(
            parse_session_update(&done),
            Some(AgentUpdate::ToolCall {
                id: "call-1".into(),
                title: None,
                kind: None,
                status: Some(ToolStatusRaw::Completed),
                input: None,
                output: Some("file contents\ndiff of /w/a.rs".into()),
                is_update: true,
            })
        );
        let odd_status = json!({"sessionUpdate": "tool_call_update", "toolCallId": "c", "status": "weird", "rawOutput": {"ok": true}});
        assert!(matches!(
            parse_session_update(&odd_status),
            Some(AgentUpdate::ToolCall { status: None, output: Some(out), .. }) if out == r#"{"ok":true}"#
        ));
        let no_id = json!({"sessionUpdate": "tool_call", "title": "x"});
        assert_eq!(
            parse_session_update(&no_id),
            Some(AgentUpdate::Other("tool_call".into()))
        );
    }

    #[test]
    fn compactions_and_turn_tokens_are_read_leniently() {
        let update = json!({"sessionUpdate": "compaction_update", "compactionId": "c1",
            "status": "completed", "summary": [{"type": "text", "text": "a"},
            {"type": "image", "data": "x"}, {"type": "text", "text": "b"}]});
        assert_eq!(
            parse_session_update(&update),
            Some(AgentUpdate::Compaction {
                id: "c1".into(),
                status: "completed".into(),
                summary: Some("ab".into()),
            })
        );
        let chunk = json!({"sessionUpdate": "compaction_summary_chunk", "compactionId": "c1",
            "content": {"type": "text", "text": "more"}});
        assert_eq!(
            parse_session_update(&chunk),
            Some(AgentUpdate::CompactionChunk {
                id: "c1".into(),
                text: "more".into(),
            })
        );
        let answer = json!({"stopReason": "end_turn", "usage": {"totalTokens": 3,
            "inputTokens": 1, "outputTokens": 2, "cachedWriteTokens": 7}});
        assert_eq!(
            parse_prompt_tokens(&answer),
            Some(super::super::TokenCounts {
                input: 1,
                output: 2,
                cached_write: 7,
                ..Default::default()
            })
        );
        for bad in [
            json!({"stopReason": "end_turn"}),
            json!({"usage": {"inputTokens": "1"}}),
            json!({"usage": 5}),
        ] {
            assert_eq!(parse_prompt_tokens(&bad), None, "{bad}");
        }
    }

    #[test]
    fn plan_usage_and_unknown_kinds() {
        let plan = json!({"sessionUpdate": "plan", "entries": [
            {"content": "a", "priority": "high", "status": "pending"},
            {"content": "b", "priority": "low", "status": "completed"},
            {"priority": "low"}
        ]});
        assert_eq!(
            parse_session_update(&plan),
            Some(AgentUpdate::Plan(vec![
                PlanEntry {
                    content: "a".into(),
                    status: "pending".into()
                },
                PlanEntry {
                    content: "b".into(),
                    status: "completed".into()
                },
            ]))
        );
        let usage = json!({"sessionUpdate": "usage_update", "used": 1234, "size": 200000,
                           "cost": {"amount": 0.01, "currency": "USD"}});
        assert_eq!(
            parse_session_update(&usage),
            Some(AgentUpdate::Usage(Usage {
                used_tokens: 1234,
                size_tokens: 200_000,
                cost: Some(0.01),
                currency: Some("USD".into()),
            }))
        );
        let commands = json!({"sessionUpdate": "available_commands_update", "availableCommands": [
            {"name": "/review", "description": "Review the diff", "input": {"hint": "branch"}},
            {"name": "", "description": "nameless"},
            {"name": "init", "description": "x".repeat(2000)},
        ]});
        let Some(AgentUpdate::Commands(list)) = parse_session_update(&commands) else {
            panic!("commands parse");
        };
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "review");
        assert_eq!(list[0].hint.as_deref(), Some("branch"));
        assert_eq!(list[1].description.len(), COMMAND_TEXT_BYTES_MAX);
        assert_eq!(parse_session_update(&json!({"content": {}})), None);
    }

    #[test]
    fn permission_requests_parse_and_answer() {
        let params = json!({
            "sessionId": "s", "toolCall": {"toolCallId": "call-p", "title": "Run rm -rf build", "kind": "execute"},
            "options": [
                {"optionId": "allow", "name": "Allow", "kind": "allow_once"},
                {"optionId": "reject", "name": "Reject", "kind": "reject_once"},
                {"name": "no id"}
            ]
        });
        let ask = parse_permission_request(&params);
        assert_eq!(ask.title, "Run rm -rf build");
        assert_eq!(
            ask.options
                .iter()
                .map(|o| o.option_id.as_str())
                .collect::<Vec<_>>(),
            ["allow", "reject"]
        );
        assert_eq!(ask.options[0].kind, "allow_once");
        let untitled = parse_permission_request(&json!({"toolCall": {"toolCallId": "c9"}}));
        assert_eq!(untitled.title, "c9");
        assert!(untitled.options.is_empty());
        assert_eq!(
            permission_outcome(Some("allow")),
            json!({"outcome": {"outcome": "selected", "optionId": "allow"}})
        );
        assert_eq!(
            permission_outcome(None),
            json!({"outcome": {"outcome": "cancelled"}})
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let long = "é".repeat(LOG_EXCERPT_CHARS_MAX + 5);
        let cut = truncate_for_log(&long);
        assert_eq!(cut.chars().count(), LOG_EXCERPT_CHARS_MAX + 1);
        assert_eq!(truncate_for_log("short"), "short");
    }
}
