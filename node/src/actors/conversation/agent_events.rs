//! Agent events into the running turn: display events out, the assistant message's
//! parts built up, and the turn's byte budget (`limits.turn_buffer_bytes_max`) kept.

use super::commits::{Commit, submit};
use super::turn::{fail_turn, finish_turn};
use super::*;
use crate::shard::state_machine::compactions::COMPACTION_SUMMARY_BYTES_MAX;

/// The bytes a tool-call part adds to a turn's message (its strings).
fn part_bytes(part: &Part) -> usize {
    match part {
        Part::ToolCall {
            tool_call_id,
            title,
            kind,
            input,
            output,
            ..
        } => {
            tool_call_id.len()
                + title.len()
                + kind.as_ref().map_or(0, String::len)
                + input.as_ref().map_or(0, String::len)
                + output.as_ref().map_or(0, String::len)
        }
        Part::PermissionDecision {
            tool_call_id,
            title,
            kind,
            rule,
            ..
        } => {
            tool_call_id.as_ref().map_or(0, String::len)
                + title.len()
                + kind.as_ref().map_or(0, String::len)
                + rule.len()
        }
        Part::Text { text } | Part::Reasoning { text } => text.len(),
    }
}

fn tool_status(raw: ToolStatusRaw) -> ToolStatus {
    match raw {
        ToolStatusRaw::Pending => ToolStatus::Pending,
        ToolStatusRaw::InProgress => ToolStatus::InProgress,
        ToolStatusRaw::Completed => ToolStatus::Completed,
        ToolStatusRaw::Failed => ToolStatus::Failed,
    }
}

/// Appends streamed text to the last part of the same kind, or starts a new part.
fn append_text(parts: &mut Vec<Part>, reasoning: bool, chunk: &str) {
    match (parts.last_mut(), reasoning) {
        (Some(Part::Text { text }), false) | (Some(Part::Reasoning { text }), true) => {
            text.push_str(chunk)
        }
        _ if reasoning => parts.push(Part::Reasoning {
            text: chunk.to_owned(),
        }),
        _ => parts.push(Part::Text {
            text: chunk.to_owned(),
        }),
    }
}

pub(super) fn on_agent_event(state: &mut ConversationState, turn_id: TurnId, event: AgentEvent) {
    // The agent's commands belong to its session, not to a turn (agents send them when a
    // session starts).
    if let AgentEvent::Update(AgentUpdate::Commands(commands)) = event {
        state.commands = commands;
        return;
    }
    if let AgentEvent::Update(
        update @ (AgentUpdate::CurrentMode(_) | AgentUpdate::ConfigOptions(_)),
    ) = event
    {
        super::settings::on_offer_changed(state, update);
        return;
    }
    if let AgentEvent::SessionStarted {
        session: session_id,
        credentials,
        offer,
    } = &event
    {
        state.agent_credentials = credentials.clone();
        super::settings::on_session_offer(state, offer.clone());
        if state.record.agent_session.as_deref() != Some(session_id) {
            state.record.agent_session = Some(session_id.clone());
            let cmd = ShardCommand::SetAgentSession {
                conversation: state.record.id,
                session_id: Some(session_id.clone()),
            };
            submit(state, cmd, Commit::AgentSession);
        }
        return;
    }
    let running = state
        .turn
        .as_mut()
        .filter(|t| t.running.turn == turn_id && !t.ending);
    let Some(turn) = running else {
        if let AgentEvent::Update(AgentUpdate::PermissionRequest { request, .. }) = event {
            // Nobody can answer it: refuse so the agent does not wait.
            if let Some(agent) = &state.agent {
                let _ = agent.cast(AgentSessionMsg::RespondPermission {
                    request,
                    option_id: None,
                });
            }
        }
        return;
    };
    turn.last_activity = Instant::now();
    let message_id = turn.message.id;
    let limit = state.ctx.config.limits.turn_buffer_bytes_max.get() as usize;
    let event = match event {
        AgentEvent::SessionStarted { .. } => return,
        AgentEvent::Status(text) => Event::Status { text },
        AgentEvent::Warning(message) => Event::AgentWarning { message },
        AgentEvent::Ended(result) => {
            let (status, reason, error) = match result {
                // Cut short by a message sent "now": interrupted, and saying by what.
                Ok(_) if turn.superseded => (
                    MessageStatus::Interrupted,
                    StopReason::Cancelled,
                    Some("interrupted by a message sent with \"send now\"".to_owned()),
                ),
                // Stopped by the turn timeout's cancel: a failure, saying so.
                Ok(_) if turn.timed_out.is_some() => (
                    MessageStatus::Interrupted,
                    StopReason::Failed,
                    turn.timed_out.clone(),
                ),
                Ok(PromptOutcome::Cancelled) => {
                    (MessageStatus::Cancelled, StopReason::Cancelled, None)
                }
                Ok(outcome) if turn.cancel_requested.is_some() => {
                    tracing::debug!(?outcome, "turn ended after a cancel request");
                    (MessageStatus::Cancelled, StopReason::Cancelled, None)
                }
                Ok(PromptOutcome::EndTurn) => (MessageStatus::Complete, StopReason::EndTurn, None),
                Ok(PromptOutcome::MaxTokens) => {
                    (MessageStatus::Complete, StopReason::MaxTokens, None)
                }
                Ok(PromptOutcome::MaxTurnRequests) => {
                    (MessageStatus::Complete, StopReason::MaxTurnRequests, None)
                }
                Ok(PromptOutcome::Refusal) => (MessageStatus::Complete, StopReason::Refusal, None),
                Ok(PromptOutcome::Other(other)) => (
                    MessageStatus::Interrupted,
                    StopReason::Other(other.clone()),
                    Some(format!(
                        "the agent ended the turn with stop reason `{other}`"
                    )),
                ),
                Err(failure) => {
                    if let Some(output) = failure.agent_output {
                        // Owner-only: followers and the store get Shoal's message alone.
                        emit(
                            state,
                            Event::AgentWarning {
                                message: format!(
                                    "the agent's stderr (its end, credentials redacted):\n{output}"
                                ),
                            },
                        );
                    }
                    (
                        MessageStatus::Interrupted,
                        StopReason::Failed,
                        Some(failure.message),
                    )
                }
            };
            if let Some(message) = &error {
                emit(
                    state,
                    Event::Error {
                        message: message.clone(),
                    },
                );
            }
            finish_turn(state, status, reason, error);
            return;
        }
        AgentEvent::Update(update) => {
            match update {
                AgentUpdate::Text(text) | AgentUpdate::Reasoning(text)
                    if turn.bytes + text.len() > limit =>
                {
                    let message = format!(
                        "the turn's output exceeded {limit} bytes (limits.turn_buffer_bytes_max); the turn was stopped"
                    );
                    let _ = text;
                    stop_over_limit(state, message);
                    return;
                }
                AgentUpdate::Text(text) => {
                    turn.bytes += text.len();
                    append_text(&mut turn.message.parts, false, &text);
                    turn.message.content.push_str(&text);
                    turn.dirty = true;
                    Event::TextChunk { message_id, text }
                }
                AgentUpdate::Reasoning(text) => {
                    turn.bytes += text.len();
                    append_text(&mut turn.message.parts, true, &text);
                    turn.dirty = true;
                    Event::ReasoningChunk { message_id, text }
                }
                AgentUpdate::ToolCall {
                    id,
                    title,
                    kind,
                    status,
                    input,
                    output,
                    ..
                } => {
                    let index = turn.message.parts.iter().position(
                        |p| matches!(p, Part::ToolCall { tool_call_id, .. } if *tool_call_id == id),
                    );
                    let part = match index.map(|i| turn.message.parts[i].clone()) {
                        Some(Part::ToolCall {
                            tool_call_id,
                            title: t,
                            kind: k,
                            status: s,
                            input: i,
                            output: o,
                        }) => Part::ToolCall {
                            tool_call_id,
                            title: title.unwrap_or(t),
                            kind: kind.or(k),
                            status: status.map(tool_status).unwrap_or(s),
                            input: input.or(i),
                            output: output.or(o),
                        },
                        _ => Part::ToolCall {
                            tool_call_id: id.clone(),
                            title: title.unwrap_or_else(|| "tool call".to_owned()),
                            kind,
                            status: status.map(tool_status).unwrap_or(ToolStatus::Pending),
                            input,
                            output,
                        },
                    };
                    // Tool input and output count toward the turn's bytes like text: the
                    // message is committed as one log entry.
                    let before = index.map_or(0, |i| part_bytes(&turn.message.parts[i]));
                    let bytes = turn.bytes - before + part_bytes(&part);
                    if bytes > limit {
                        let message = format!(
                            "the turn's output exceeded {limit} bytes (limits.turn_buffer_bytes_max) with tool call `{id}`; the turn was stopped"
                        );
                        stop_over_limit(state, message);
                        return;
                    }
                    turn.bytes = bytes;
                    match index {
                        Some(i) => {
                            turn.message.parts[i] = part.clone();
                            turn.rewound_to(i);
                        }
                        None => turn.message.parts.push(part.clone()),
                    }
                    turn.dirty = true;
                    Event::ToolCall { message_id, part }
                }
                AgentUpdate::Plan(entries) => Event::Plan { entries },
                AgentUpdate::Usage(usage) => {
                    turn.usage = Some(usage.clone());
                    Event::UsageUpdate { usage }
                }
                AgentUpdate::Tokens(tokens) => {
                    turn.tokens = Some(tokens);
                    return;
                }
                AgentUpdate::PermissionRequest {
                    request,
                    title,
                    options,
                    tool_call_id,
                    kind,
                } => {
                    let decision = super::permissions::decide_for(
                        &state.ctx,
                        &state.record,
                        kind.as_deref(),
                        &options,
                    );
                    if let Some(decision) = decision {
                        if let Some(agent) = &state.agent {
                            let _ = agent.cast(AgentSessionMsg::RespondPermission {
                                request,
                                option_id: decision.option_id,
                            });
                        }
                        let title = crate::shard::state_machine::prefix_within(
                            &title,
                            super::permissions::DECISION_TITLE_BYTES_MAX,
                        )
                        .to_owned();
                        let part = Part::PermissionDecision {
                            tool_call_id,
                            title,
                            kind,
                            allowed: decision.allowed,
                            rule: decision.rule,
                        };
                        // Bounded: the title is cut above, ids and kind by the parser.
                        turn.bytes += part_bytes(&part);
                        turn.message.parts.push(part.clone());
                        turn.dirty = true;
                        Event::ToolCall { message_id, part }
                    } else if turn.initiator.is_none() && turn.orphaned.is_none() {
                        // Only the initiator may answer; without one (and none expected
                        // back within the grace period), refuse at once.
                        if let Some(agent) = &state.agent {
                            let _ = agent.cast(AgentSessionMsg::RespondPermission {
                                request,
                                option_id: None,
                            });
                        }
                        Event::AgentWarning {
                            message: format!("permission request `{title}` refused: nobody to ask"),
                        }
                    } else {
                        turn.permissions.insert(request, Instant::now());
                        Event::PermissionRequest {
                            request,
                            title,
                            options,
                        }
                    }
                }
                AgentUpdate::Compaction {
                    id,
                    status,
                    summary,
                } => {
                    let turn_id = turn.running.turn;
                    let done = compaction_update(&mut turn.compactions, &id, &status, summary);
                    if let Some(summary) = done {
                        record_compaction(state, id, turn_id, summary);
                    }
                    return;
                }
                AgentUpdate::CompactionChunk { id, text } => {
                    compaction_update(&mut turn.compactions, &id, "in_progress", None);
                    if let Some(summary) = turn.compactions.get_mut(&id) {
                        push_bounded(summary, &text);
                    }
                    return;
                }
                AgentUpdate::UserText(_)
                | AgentUpdate::Commands(_)
                | AgentUpdate::CurrentMode(_)
                | AgentUpdate::ConfigOptions(_) => return,
                AgentUpdate::Other(kind) => {
                    tracing::debug!(conversation = %state.record.id, %kind, "agent update not shown");
                    return;
                }
            }
        }
    };
    emit(state, event);
}

/// Compactions followed at once in one turn (more are ignored).
const COMPACTIONS_OPEN_MAX: usize = 8;

/// Appends `text` to a summary, up to the bound (cut at a character boundary).
fn push_bounded(summary: &mut String, text: &str) {
    let room = COMPACTION_SUMMARY_BYTES_MAX.saturating_sub(summary.len());
    summary.push_str(crate::shard::state_machine::prefix_within(text, room));
}

/// Follows a compaction: `Some(summary)` once it completed (and is no longer open).
fn compaction_update(
    open: &mut BTreeMap<String, String>,
    id: &str,
    status: &str,
    summary: Option<String>,
) -> Option<String> {
    if !open.contains_key(id) && open.len() >= COMPACTIONS_OPEN_MAX {
        return None;
    }
    let current = open.entry(id.to_owned()).or_default();
    if let Some(summary) = summary {
        current.clear();
        push_bounded(current, &summary);
    }
    match status {
        "completed" => open.remove(id),
        "failed" | "cancelled" => {
            open.remove(id);
            None
        }
        _ => None,
    }
}

/// Records a completed compaction ([`ShardCommand::RecordCompaction`]).
fn record_compaction(
    state: &mut ConversationState,
    agent_id: String,
    turn: TurnId,
    summary: String,
) {
    let cmd = ShardCommand::RecordCompaction {
        conversation: state.record.id,
        agent_id,
        turn,
        summary,
        at_ms: state.ctx.now_ms(),
    };
    submit(state, cmd, Commit::Compaction);
}

/// Ends a turn whose output went past `limits.turn_buffer_bytes_max`. The agent process
/// is stopped, not just cancelled: ACP updates carry no prompt id, so output it still
/// sends for this prompt would be taken for the next turn's. The next turn starts a new
/// process (resuming the session with `session/load`).
fn stop_over_limit(state: &mut ConversationState, message: String) {
    if let Some(agent) = &state.agent {
        let _ = agent.cast(AgentSessionMsg::Restart);
    }
    fail_turn(state, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_text_merges_into_parts_in_order() {
        let mut parts = Vec::new();
        append_text(&mut parts, true, "think ");
        append_text(&mut parts, true, "more");
        append_text(&mut parts, false, "a");
        append_text(&mut parts, false, "b");
        append_text(&mut parts, true, "again");
        assert_eq!(
            parts,
            vec![
                Part::Reasoning {
                    text: "think more".into()
                },
                Part::Text { text: "ab".into() },
                Part::Reasoning {
                    text: "again".into()
                },
            ]
        );
        assert_eq!(content_from_parts(&parts), "ab");
    }
}
