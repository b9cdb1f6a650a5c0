//! The JSON shapes `shoalctl --json` prints.
//!
//! Events are flat objects: `seq` (number), `type` ([`Event::type_name`]) and the event's
//! fields in snake_case, e.g. `{"seq":5,"type":"text","message_id":1,"text":"echo: "}`.
//! Ids print as their text form (`c-3-…`), enums as snake_case strings, messages with
//! their `status`, `content` and `parts`. The mapping is written out by hand so the output
//! stays stable when the wire types' serde encoding changes. Cluster members and shards
//! print with the wire types' field names (`node_id`, `applied_index`, …); an unknown
//! leader or applied index is `null`.

use serde_json::{Map, Value, json};
use shoal_protocol::admin::{ClusterActorInfo, FollowerInfo, MemberInfo, NodeStatus, ShardInfo};
use shoal_protocol::client::{ConversationDetail, ConversationSummary};
use shoal_protocol::transcript::{
    Event, EventFrame, Message, MessageStatus, Part, PermissionOption, PlanEntry, Role, Snapshot,
    StopReason, ToolStatus, Usage,
};

/// One event as a flat JSON object.
pub(crate) fn event_json(frame: &EventFrame) -> Value {
    let mut object = Map::new();
    object.insert("seq".into(), json!(frame.seq.0));
    object.insert("type".into(), json!(frame.event.type_name()));
    let fields = match &frame.event {
        Event::Reset { snapshot } => snapshot_fields(snapshot),
        Event::TurnStarted { turn, message_id } => json!({
            "turn": turn.0,
            "message_id": message_id.0,
        }),
        Event::UserMessage { message } => json!({ "message": message_json(message) }),
        Event::TextChunk { message_id, text } | Event::ReasoningChunk { message_id, text } => {
            json!({ "message_id": message_id.0, "text": text })
        }
        Event::ToolCall { message_id, part } => json!({
            "message_id": message_id.0,
            "part": part_json(part),
        }),
        Event::Plan { entries } => json!({
            "entries": entries.iter().map(plan_entry_json).collect::<Vec<_>>(),
        }),
        Event::Status { text } => json!({ "text": text }),
        Event::Done { message, usage } => json!({
            "message": message_json(message),
            "usage": usage.as_ref().map(usage_json),
        }),
        Event::Error { message } | Event::AgentWarning { message } => {
            json!({ "message": message })
        }
        Event::PermissionRequest {
            request,
            title,
            options,
        } => json!({
            "request": request,
            "title": title,
            "options": options.iter().map(permission_option_json).collect::<Vec<_>>(),
        }),
        Event::UsageUpdate { usage } => json!({ "usage": usage_json(usage) }),
    };
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    Value::Object(object)
}

fn snapshot_fields(snapshot: &Snapshot) -> Value {
    json!({
        "conversation": snapshot.conversation.to_string(),
        "messages": snapshot.messages.iter().map(message_json).collect::<Vec<_>>(),
        "omitted_messages": snapshot.omitted_messages,
        "in_flight": snapshot.in_flight.as_ref().map(message_json),
    })
}

/// A message with its status, content and parts.
pub(crate) fn message_json(message: &Message) -> Value {
    json!({
        "id": message.id.0,
        "turn": message.turn.0,
        "role": role_str(message.role),
        "status": status_str(message.status),
        "content": message.content,
        "parts": message.parts.iter().map(part_json).collect::<Vec<_>>(),
        "created_at_ms": message.created_at_ms,
        "stop_reason": message.stop_reason.as_ref().map(stop_reason_str),
        "error": message.error,
    })
}

fn part_json(part: &Part) -> Value {
    match part {
        Part::Text { text } => json!({ "type": "text", "text": text }),
        Part::Reasoning { text } => json!({ "type": "reasoning", "text": text }),
        Part::ToolCall {
            tool_call_id,
            title,
            kind,
            status,
            input,
            output,
        } => json!({
            "type": "tool_call",
            "tool_call_id": tool_call_id,
            "title": title,
            "kind": kind,
            "status": tool_status_str(*status),
            "input": input,
            "output": output,
        }),
        Part::PermissionDecision {
            tool_call_id,
            title,
            kind,
            allowed,
            rule,
        } => json!({
            "type": "permission_decision",
            "tool_call_id": tool_call_id,
            "title": title,
            "kind": kind,
            "allowed": allowed,
            "rule": rule,
        }),
    }
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "used_tokens": usage.used_tokens,
        "size_tokens": usage.size_tokens,
        "cost": usage.cost,
        "currency": usage.currency,
    })
}

fn plan_entry_json(entry: &PlanEntry) -> Value {
    json!({ "content": entry.content, "status": entry.status })
}

fn permission_option_json(option: &PermissionOption) -> Value {
    json!({ "option_id": option.option_id, "name": option.name, "kind": option.kind })
}

/// A conversation's metadata.
pub(crate) fn summary_json(summary: &ConversationSummary) -> Value {
    json!({
        "id": summary.id.to_string(),
        "workspace": summary.workspace.to_string(),
        "owner": summary.owner.0,
        "title": summary.title,
        "agent": summary.agent,
        "created_at_ms": summary.created_at_ms,
        "message_count": summary.message_count,
        "turn_running": summary.turn_running,
    })
}

/// A conversation: its metadata fields plus `messages` and `in_flight`.
pub(crate) fn detail_json(detail: &ConversationDetail) -> Value {
    let mut object = match summary_json(&detail.summary) {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    object.insert(
        "messages".into(),
        Value::Array(detail.messages.iter().map(message_json).collect()),
    );
    object.insert(
        "in_flight".into(),
        detail.in_flight.as_ref().map_or(Value::Null, message_json),
    );
    let commands = detail
        .commands
        .iter()
        .map(|c| json!({"name": c.name, "description": c.description, "hint": c.hint}))
        .collect();
    object.insert("commands".into(), Value::Array(commands));
    object.insert(
        "settings".into(),
        crate::conv_settings::settings_json(&detail.settings),
    );
    Value::Object(object)
}

/// A node's status.
pub(crate) fn status_json(status: &NodeStatus) -> Value {
    json!({
        "node_id": status.node_id,
        "version": status.version,
        "listen_addr": status.listen_addr,
        "uptime_secs": status.uptime_secs,
        "conversations_active": status.conversations_active,
        "agent_processes": status.agent_processes,
        "followers": status.followers,
        "turns_running": status.turns_running,
        "connections": status.connections,
        "follower_resyncs": status.follower_resyncs,
        "checkpoints": status.checkpoints,
        "checkpoint_bytes": status.checkpoint_bytes,
    })
}

/// One running actor somewhere in the cluster; `mailbox` is `null` when unknown.
pub(crate) fn actor_json(actor: &ClusterActorInfo) -> Value {
    json!({
        "node": actor.node,
        "kind": actor.kind,
        "key": actor.key,
        "state": actor.state,
        "followers": actor.followers,
        "mailbox": actor.mailbox,
    })
}

/// One attached follower.
pub(crate) fn follower_json(follower: &FollowerInfo) -> Value {
    json!({
        "conversation": follower.conversation.to_string(),
        "user": follower.user.0,
        "last_seq": follower.last_seq.map(|s| s.0),
        "queued": follower.queued,
    })
}

/// One cluster member.
pub(crate) fn member_json(member: &MemberInfo) -> Value {
    json!({
        "node_id": member.node_id,
        "addr": member.addr,
        "state": member.state,
        "version": member.version,
        "leaders": member.leaders,
        "draining": member.draining,
    })
}

/// One shard; `leader` and `applied_index` are `null` when unknown.
pub(crate) fn shard_json(shard: &ShardInfo) -> Value {
    json!({
        "shard": shard.shard,
        "leader": shard.leader,
        "replicas": shard.replicas,
        "learners": shard.learners,
        "term": shard.term,
        "applied_index": shard.applied_index,
        "hosted_here": shard.hosted_here,
        "quiet": shard.quiet,
    })
}

/// `user` / `assistant`.
pub(crate) fn role_str(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// `complete` / `in_progress` / `interrupted` / `cancelled`.
pub(crate) fn status_str(status: MessageStatus) -> &'static str {
    match status {
        MessageStatus::Complete => "complete",
        MessageStatus::InProgress => "in_progress",
        MessageStatus::Interrupted => "interrupted",
        MessageStatus::Cancelled => "cancelled",
    }
}

/// `pending` / `in_progress` / `completed` / `failed`.
pub(crate) fn tool_status_str(status: ToolStatus) -> &'static str {
    match status {
        ToolStatus::Pending => "pending",
        ToolStatus::InProgress => "in_progress",
        ToolStatus::Completed => "completed",
        ToolStatus::Failed => "failed",
    }
}

/// `end_turn`, `max_tokens`, …; an unknown reason prints as the agent sent it.
pub(crate) fn stop_reason_str(reason: &StopReason) -> String {
    match reason {
        StopReason::EndTurn => "end_turn".to_owned(),
        StopReason::MaxTokens => "max_tokens".to_owned(),
        StopReason::MaxTurnRequests => "max_turn_requests".to_owned(),
        StopReason::Refusal => "refusal".to_owned(),
        StopReason::Cancelled => "cancelled".to_owned(),
        StopReason::Failed => "failed".to_owned(),
        StopReason::Other(other) => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::{ConversationId, MessageId, Seq, ShardId, TurnId, UserId, WorkspaceId};

    fn assistant(parts: Vec<Part>) -> Message {
        let content = shoal_protocol::transcript::content_from_parts(&parts);
        Message {
            id: MessageId(1),
            turn: TurnId(1),
            role: Role::Assistant,
            status: MessageStatus::Complete,
            parts,
            content,
            created_at_ms: 1_700_000_000_000,
            stop_reason: Some(StopReason::EndTurn),
            error: None,
        }
    }

    fn frame(seq: u64, event: Event) -> EventFrame {
        EventFrame {
            seq: Seq(seq),
            event,
        }
    }

    #[test]
    fn text_chunk_is_flat() {
        let value = event_json(&frame(
            5,
            Event::TextChunk {
                message_id: MessageId(1),
                text: "echo: ".into(),
            },
        ));
        assert_eq!(
            value,
            json!({"seq": 5, "type": "text", "message_id": 1, "text": "echo: "})
        );
    }

    #[test]
    fn done_carries_status_content_and_parts() {
        let message = assistant(vec![
            Part::Reasoning {
                text: "think".into(),
            },
            Part::Text {
                text: "echo: hi".into(),
            },
        ]);
        let value = event_json(&frame(
            9,
            Event::Done {
                message,
                usage: None,
            },
        ));
        assert_eq!(value["type"], "done");
        assert_eq!(value["seq"], 9);
        assert_eq!(value["message"]["status"], "complete");
        assert_eq!(value["message"]["content"], "echo: hi");
        assert_eq!(value["message"]["role"], "assistant");
        assert_eq!(value["message"]["stop_reason"], "end_turn");
        assert_eq!(value["message"]["parts"][0]["type"], "reasoning");
        assert_eq!(value["message"]["parts"][1]["text"], "echo: hi");
        assert_eq!(value["usage"], Value::Null);
    }

    #[test]
    fn reset_lists_messages_and_in_flight() {
        let conversation = ConversationId::new(ShardId(3), 0xab);
        let mut in_flight = assistant(vec![Part::Text { text: "par".into() }]);
        in_flight.status = MessageStatus::InProgress;
        let value = event_json(&frame(
            1,
            Event::Reset {
                snapshot: Snapshot {
                    conversation,
                    messages: vec![assistant(vec![])],
                    omitted_messages: 0,
                    in_flight: Some(in_flight),
                },
            },
        ));
        assert_eq!(value["type"], "reset");
        assert_eq!(value["conversation"], conversation.to_string());
        assert_eq!(value["messages"].as_array().map(Vec::len), Some(1));
        assert_eq!(value["in_flight"]["status"], "in_progress");
        assert_eq!(value["in_flight"]["content"], "par");
    }

    #[test]
    fn tool_calls_and_permissions_use_snake_case() {
        let value = event_json(&frame(
            2,
            Event::ToolCall {
                message_id: MessageId(4),
                part: Part::ToolCall {
                    tool_call_id: "call-1".into(),
                    title: "Read file".into(),
                    kind: Some("read".into()),
                    status: ToolStatus::InProgress,
                    input: None,
                    output: None,
                },
            },
        ));
        assert_eq!(value["type"], "tool_call");
        assert_eq!(value["part"]["status"], "in_progress");
        assert_eq!(value["part"]["tool_call_id"], "call-1");

        let value = event_json(&frame(
            3,
            Event::PermissionRequest {
                request: 7,
                title: "rm -rf".into(),
                options: vec![PermissionOption {
                    option_id: "a".into(),
                    name: "Allow".into(),
                    kind: "allow_once".into(),
                }],
            },
        ));
        assert_eq!(value["type"], "permission_request");
        assert_eq!(value["request"], 7);
        assert_eq!(value["options"][0]["kind"], "allow_once");
    }

    #[test]
    fn every_event_type_has_seq_and_type() {
        let usage = Usage {
            used_tokens: 1,
            size_tokens: 2,
            cost: Some(0.5),
            currency: Some("USD".into()),
        };
        let events = vec![
            Event::TurnStarted {
                turn: TurnId(2),
                message_id: MessageId(3),
            },
            Event::UserMessage {
                message: assistant(vec![]),
            },
            Event::ReasoningChunk {
                message_id: MessageId(3),
                text: "r".into(),
            },
            Event::Plan {
                entries: vec![PlanEntry {
                    content: "step".into(),
                    status: "pending".into(),
                }],
            },
            Event::Status { text: "ok".into() },
            Event::Error {
                message: "boom".into(),
            },
            Event::UsageUpdate { usage },
            Event::AgentWarning {
                message: "mcp".into(),
            },
        ];
        for (i, event) in events.into_iter().enumerate() {
            let name = event.type_name();
            let value = event_json(&frame(i as u64, event));
            assert_eq!(value["seq"], i as u64);
            assert_eq!(value["type"], name);
            assert!(value.as_object().is_some_and(|o| o.len() > 2), "{value}");
        }
    }

    #[test]
    fn cluster_shapes_have_stable_snake_case_keys() {
        let member = MemberInfo {
            node_id: "n1".into(),
            addr: "127.0.0.1:7001".into(),
            state: "alive".into(),
            version: "0.1.0".into(),
            leaders: 22,
            draining: false,
        };
        assert_eq!(
            member_json(&member),
            json!({
                "node_id": "n1",
                "addr": "127.0.0.1:7001",
                "state": "alive",
                "version": "0.1.0",
                "leaders": 22,
                "draining": false,
            })
        );
        let shard = ShardInfo {
            shard: 7,
            leader: None,
            replicas: vec!["n1".into(), "n2".into()],
            learners: vec!["n3".into()],
            term: 4,
            applied_index: None,
            hosted_here: false,
            quiet: false,
        };
        assert_eq!(
            shard_json(&shard),
            json!({
                "shard": 7,
                "leader": null,
                "replicas": ["n1", "n2"],
                "learners": ["n3"],
                "term": 4,
                "applied_index": null,
                "hosted_here": false,
                "quiet": false,
            })
        );
    }

    #[test]
    fn detail_flattens_the_summary() {
        let summary = ConversationSummary {
            id: ConversationId::new(ShardId(1), 2),
            workspace: WorkspaceId::new(ShardId(1), 3),
            owner: UserId("dev".into()),
            title: Some("t".into()),
            agent: "demo".into(),
            created_at_ms: 10,
            message_count: 2,
            turn_running: false,
        };
        let detail = ConversationDetail {
            summary,
            messages: vec![assistant(vec![])],
            in_flight: None,
            commands: vec![shoal_protocol::transcript::SlashCommand {
                name: "review".into(),
                description: "Review".into(),
                hint: None,
            }],
            settings: Default::default(),
        };
        let value = detail_json(&detail);
        assert_eq!(value["id"], "c-1-00000000000000000000000000000002");
        assert_eq!(value["owner"], "dev");
        assert_eq!(value["messages"][0]["role"], "assistant");
        assert_eq!(value["in_flight"], Value::Null);
        assert_eq!(value["commands"][0]["name"], "review");
    }
}
