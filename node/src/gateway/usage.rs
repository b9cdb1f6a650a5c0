//! `GetUsage`: the caller's recorded turn usage ([`crate::shard::state_machine::usage`]),
//! filtered and summed, from the caller's shard (served by its leader).

use super::Peer;
use crate::context::NodeContext;
use crate::shard::state_machine::usage::{TurnUsage, user_usage};
use shoal_protocol::client::{UsageBy, UsageRow};
use shoal_protocol::{WireError, WorkspaceId};
use std::collections::BTreeMap;

fn add(row: &mut UsageRow, turn: &TurnUsage) {
    row.turns += 1;
    row.input_tokens += turn.tokens.input;
    row.output_tokens += turn.tokens.output;
    row.thought_tokens += turn.tokens.thought;
    row.cached_read_tokens += turn.tokens.cached_read;
    row.cached_write_tokens += turn.tokens.cached_write;
    if let Some((micros, currency)) = &turn.cost {
        match row.cost.iter_mut().find(|(c, _)| c == currency) {
            Some((_, sum)) => *sum += micros,
            None => row.cost.push((currency.clone(), *micros)),
        }
    }
}

/// The rows (largest output first) and their total.
pub(super) fn usage(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
    agent: Option<String>,
    since_ms: Option<u64>,
    by: UsageBy,
) -> Result<(Vec<UsageRow>, UsageRow), WireError> {
    let shard = ctx.default_workspace(&peer.user).shard;
    let view = ctx
        .store
        .view(shard)
        .map_err(|e| ctx.internal_error("read usage", e))?;
    let turns = user_usage(view, &peer.user).map_err(|e| ctx.internal_error("read usage", e))?;
    let mut rows: BTreeMap<String, UsageRow> = BTreeMap::new();
    let mut total = UsageRow {
        key: "total".to_owned(),
        ..UsageRow::default()
    };
    for turn in turns.iter().filter(|t| {
        workspace.is_none_or(|w| w == t.workspace)
            && agent.as_ref().is_none_or(|a| *a == t.agent)
            && since_ms.is_none_or(|since| t.at_ms >= since)
    }) {
        let keys = match by {
            UsageBy::Conversation => vec![turn.conversation.to_string()],
            UsageBy::Agent => vec![turn.agent.clone()],
            UsageBy::Workspace => vec![turn.workspace.to_string()],
            UsageBy::Credential if turn.credentials.is_empty() => vec!["(none)".to_owned()],
            UsageBy::Credential => turn.credentials.clone(),
        };
        for key in keys {
            let row = rows.entry(key.clone()).or_insert_with(|| UsageRow {
                key,
                ..UsageRow::default()
            });
            add(row, turn);
        }
        add(&mut total, turn);
    }
    let mut rows: Vec<UsageRow> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        b.output_tokens
            .cmp(&a.output_tokens)
            .then(a.key.cmp(&b.key))
    });
    Ok((rows, total))
}
