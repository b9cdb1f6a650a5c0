//! `shoalctl conv rewind | truncate | fork | rename | rm`: changing a conversation's
//! history. Messages are named by their position as `conv show` prints it (`m3`, or
//! `3`). Rewind, truncate and rm delete messages: on a terminal they ask first, and
//! without one they need `--yes`.

use crate::conv::print_line;
use crate::json::summary_json;
use crate::lookup;
use crate::render::cell;
use anyhow::{Context, anyhow};
use shoal_client::Client;
use shoal_protocol::client::ConversationSummary;
use shoal_protocol::{ConversationId, MessageId};
use std::io::{BufRead, IsTerminal, Write};

/// Parses a message position: `m3` or `3`.
pub(crate) fn parse_message(arg: &str) -> Result<MessageId, String> {
    arg.strip_prefix('m')
        .unwrap_or(arg)
        .parse::<u64>()
        .map(MessageId)
        .map_err(|_| {
            format!("`{arg}` is not a message position; use what `conv show` prints, e.g. m3")
        })
}

/// What to ask before a destructive change, or `Err` when nobody can be asked.
fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(anyhow!(
            "{question}: stdin is not a terminal, so this cannot be confirmed; pass --yes"
        ));
    }
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [y/N] ").context("cannot write the question to stderr")?;
    err.flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer from stdin")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

fn print_summary(what: &str, summary: &ConversationSummary, json: bool) -> anyhow::Result<()> {
    if json {
        print_line(&summary_json(summary).to_string())
    } else {
        print_line(&format!(
            "{what} {}: {} messages{}",
            summary.id,
            summary.message_count,
            summary
                .title
                .as_deref()
                .map(|t| format!(", titled {:?}", cell(t)))
                .unwrap_or_default()
        ))
    }
}

/// `conv rewind` and `conv truncate`.
pub(crate) async fn rewind(
    client: &Client,
    id: ConversationId,
    message: MessageId,
    parts: Option<u32>,
    yes: bool,
    json: bool,
) -> anyhow::Result<()> {
    let what = match parts {
        Some(n) => {
            format!("keep the first {n} parts of {message} of {id} and delete every later message")
        }
        None => format!("keep {id} up to {message} and delete every later message"),
    };
    if !confirm(&what, yes)? {
        return Err(anyhow!("not rewound: not confirmed"));
    }
    let summary = client.rewind(id, message, parts).await?;
    print_summary("rewound", &summary, json)
}

/// `conv fork`.
pub(crate) async fn fork(
    client: &Client,
    id: ConversationId,
    message: MessageId,
    parts: Option<u32>,
    workspace: Option<String>,
    title: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let workspace = match workspace {
        Some(ws) => Some(lookup::workspace_id(client, &ws).await?),
        None => None,
    };
    let summary = client.fork(id, message, parts, workspace, title).await?;
    if json {
        print_line(&summary_json(&summary).to_string())
    } else {
        print_line(&summary.id.to_string())
    }
}

/// `conv rename`: an empty title clears it.
pub(crate) async fn rename(
    client: &Client,
    id: ConversationId,
    title: String,
    json: bool,
) -> anyhow::Result<()> {
    let title = (!title.is_empty()).then_some(title);
    let summary = client.rename_conversation(id, title).await?;
    print_summary("renamed", &summary, json)
}

/// `conv rm`.
pub(crate) async fn remove(
    client: &Client,
    id: ConversationId,
    yes: bool,
    json: bool,
) -> anyhow::Result<()> {
    if !confirm(&format!("delete {id} and all its messages"), yes)? {
        return Err(anyhow!("not deleted: not confirmed"));
    }
    client.delete_conversation(id).await?;
    if json {
        print_line(&serde_json::json!({ "deleted": id.to_string() }).to_string())
    } else {
        print_line(&format!("deleted {id}"))
    }
}

/// Messages shown by `conv show --before` unless `--limit` says otherwise.
const PAGE_DEFAULT: u32 = 100;

/// `conv show ID --before MSG [--limit N]`: a page of older messages.
pub(crate) async fn show_page(
    client: &Client,
    id: ConversationId,
    before: MessageId,
    limit: Option<u32>,
    json: bool,
) -> anyhow::Result<()> {
    let (messages, more) = client
        .get_messages(id, Some(before), limit.unwrap_or(PAGE_DEFAULT))
        .await?;
    if json {
        let values: Vec<_> = messages.iter().map(crate::json::message_json).collect();
        print_line(&serde_json::json!({ "messages": values, "more": more }).to_string())?;
    } else {
        let mut out = std::io::stdout().lock();
        let mut printer = crate::render::TranscriptPrinter::default();
        for message in &messages {
            write!(out, "{} ", message.id).context("cannot write to stdout")?;
            printer
                .message(&mut out, message)
                .context("cannot write to stdout")?;
        }
    }
    if more && let Some(first) = messages.first() {
        let _ = writeln!(
            std::io::stderr(),
            "more: pass --before {} for older messages",
            first.id
        );
    }
    Ok(())
}

/// `conv queue`: the queue as a table (POS ITEM QUEUED TEXT) or a JSON array.
pub(crate) fn print_queue(
    queue: &[shoal_protocol::client::QueuedInfo],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let values: Vec<_> = queue
            .iter()
            .enumerate()
            .map(|(i, q)| {
                serde_json::json!({
                    "position": i + 1,
                    "item": q.item,
                    "text": q.text,
                    "queued_at_ms": q.queued_at_ms,
                })
            })
            .collect();
        return print_line(&serde_json::Value::Array(values).to_string());
    }
    if queue.is_empty() {
        return print_line("the queue is empty");
    }
    print_line("POS  ITEM  QUEUED                TEXT")?;
    for (i, q) in queue.iter().enumerate() {
        print_line(&format!(
            "{:>3}  {:>4}  {}  {}",
            i + 1,
            q.item,
            crate::render::utc_time(q.queued_at_ms),
            cell(&q.text)
        ))?;
    }
    Ok(())
}

/// `conv compactions`: each compaction's number, turn, time and summary.
pub(crate) fn print_compactions(
    list: &[shoal_protocol::client::CompactionInfo],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let values: Vec<_> = list
            .iter()
            .map(|c| {
                serde_json::json!({
                    "seq": c.seq,
                    "turn": c.turn.0,
                    "at_ms": c.at_ms,
                    "summary": c.summary,
                })
            })
            .collect();
        return print_line(&serde_json::Value::Array(values).to_string());
    }
    if list.is_empty() {
        return print_line("no compactions");
    }
    for c in list {
        print_line(&format!(
            "#{}  turn {}  {}",
            c.seq,
            c.turn.0,
            crate::render::utc_time(c.at_ms)
        ))?;
        let summary: String = c
            .summary
            .chars()
            .map(|ch| {
                if ch.is_control() && ch != '\n' {
                    '?'
                } else {
                    ch
                }
            })
            .collect();
        print_line(&format!("  {}", summary.replace('\n', "\n  ")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_positions_parse_as_conv_show_prints_them() {
        assert_eq!(parse_message("m3"), Ok(MessageId(3)));
        assert_eq!(parse_message("12"), Ok(MessageId(12)));
        for bad in ["", "m", "x3", "m-1", "3.5"] {
            assert!(parse_message(bad).is_err(), "{bad}");
        }
    }
}
