//! `shoalctl conv …`: conversations through the client SDK.

use crate::conv_history;
use crate::json::{detail_json, event_json, status_str, summary_json};
use crate::lookup;
use crate::render::{self, TranscriptPrinter, side_line};
use anyhow::{Context, anyhow};
use clap::Subcommand;
use futures::StreamExt;
use shoal_client::{Client, ConversationView, Profile, Sent, TurnStream};
use shoal_protocol::transcript::{Event, EventFrame, Message, MessageStatus, PermissionOption};
use shoal_protocol::{ConversationId, MessageId, Seq};
use std::io::{self, Write};
use std::process::ExitCode;

/// Conversations listed by `conv list` unless `--limit` says otherwise.
const LIST_LIMIT_DEFAULT: u32 = 50;

/// `shoalctl conv …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConvCommand {
    /// Create a conversation; prints its id alone.
    New {
        /// Title of the conversation.
        #[arg(long)]
        title: Option<String>,
        /// Agent id: a built-in (`demo`, `opencode`, `claude`, `gemini`) or one from the
        /// node config, enabled and ready (`shoalctl agents`); default: the node's default.
        #[arg(long)]
        agent: Option<String>,
        /// The workspace to create it in, by id (`w-…`) or name (default: your default
        /// workspace).
        #[arg(long, value_name = "WS")]
        workspace: Option<String>,
        /// The agent's mode (an id its session offers, e.g. `ask`), applied when its
        /// session starts.
        #[arg(long, value_name = "M")]
        mode: Option<String>,
        /// The agent's model (an id its session offers), applied when its session starts.
        #[arg(long, value_name = "X")]
        model: Option<String>,
    },
    /// Pick the mode and/or model of a conversation between turns (`conv show` lists
    /// what its agent offers); the agent gets them at the next turn.
    Set {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// The mode's id.
        #[arg(long, value_name = "M")]
        mode: Option<String>,
        /// The model's id.
        #[arg(long, value_name = "X")]
        model: Option<String>,
        /// Print the settings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a message and stream the reply: text on stdout, everything else on stderr.
    ///
    /// Exits 0 when the turn completes, 1 when it was interrupted, cancelled or failed.
    /// Permission requests are denied unless --allow is given.
    Send {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// The message text.
        text: String,
        /// Print one JSON object per event on stdout instead of the text.
        #[arg(long)]
        json: bool,
        /// Answer permission requests with their first allow option instead of denying.
        #[arg(long)]
        allow: bool,
        /// Cut the running turn short (saved as interrupted) and run this message next,
        /// ahead of the queue.
        #[arg(long, conflicts_with = "attach")]
        now: bool,
        /// Attach a file (repeat for several): an image (png, jpeg, gif, webp) or any
        /// other file as an embedded resource, if the agent takes them; at most 8, 2 MiB
        /// each. Not queued behind a running turn.
        #[arg(long, value_name = "FILE")]
        attach: Vec<std::path::PathBuf>,
    },
    /// Reattach to the running turn after losing its stream (within the node's
    /// `conversation.initiator_grace_ms`): streams it from now, like `send`.
    Attach {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// Print one JSON object per event on stdout instead of the text.
        #[arg(long)]
        json: bool,
        /// Answer permission requests with their first allow option instead of denying.
        #[arg(long)]
        allow: bool,
    },
    /// List the messages queued behind the running turn; `--rm ITEM` removes one,
    /// `--move ITEM --to POS` reorders (positions from 1).
    Queue {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// Remove this queued item.
        #[arg(long, value_name = "ITEM", conflicts_with = "move_item")]
        rm: Option<u64>,
        /// Move this queued item (with --to).
        #[arg(long = "move", value_name = "ITEM", requires = "to")]
        move_item: Option<u64>,
        /// The position to move it to, from 1.
        #[arg(long, value_name = "POS", requires = "move_item")]
        to: Option<u32>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Follow a conversation's events live (resumes across reconnects).
    Follow {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// Start after this sequence number instead of with a snapshot.
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// Print one JSON object per line per event (`seq`, `type` and the event's fields).
        #[arg(long)]
        json: bool,
        /// Exit 0 after the first `done` event.
        #[arg(long)]
        until_done: bool,
    },
    /// Show a conversation and its transcript.
    Show {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// Print the conversation as one JSON object.
        #[arg(long)]
        json: bool,
        /// Page back: only messages before this one (`m500`), from the node's store.
        #[arg(long, value_name = "MSG", value_parser = crate::conv_history::parse_message)]
        before: Option<MessageId>,
        /// With --before: at most this many messages (at most 500).
        #[arg(long, value_name = "N", requires = "before")]
        limit: Option<u32>,
    },
    /// List your conversations, most recently active first, a page at a time.
    List {
        /// At most this many.
        #[arg(long, default_value_t = LIST_LIMIT_DEFAULT)]
        limit: u32,
        /// Only the conversations of this workspace, by id (`w-…`) or name.
        #[arg(long, value_name = "WS")]
        workspace: Option<String>,
        /// Continue after the previous page (the cursor it printed on stderr).
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
        /// Print a JSON array of conversations.
        #[arg(long)]
        json: bool,
    },
    /// Cancel the running turn of a conversation.
    Cancel {
        /// The conversation id (`c-…`).
        id: ConversationId,
    },
    /// Rewind in place: keep MSG and delete every later message. The agent's next turn
    /// starts a new session given what is kept. Refused while a turn runs.
    Rewind {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// The last message kept, as `conv show` prints it (`m3`).
        #[arg(value_parser = crate::conv_history::parse_message)]
        message: MessageId,
        /// Keep only the first N parts of MSG (an assistant message).
        #[arg(long, value_name = "N")]
        parts: Option<u32>,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        /// Print the conversation after it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cut an assistant message to its first N parts and delete every later message.
    Truncate {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// The assistant message, as `conv show` prints it (`m3`).
        #[arg(value_parser = crate::conv_history::parse_message)]
        message: MessageId,
        /// How many of its parts to keep.
        #[arg(long, value_name = "N")]
        parts: u32,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        /// Print the conversation after it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fork: a new conversation with the messages up to and including MSG; prints its id.
    /// The original is untouched.
    Fork {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// The last message copied, as `conv show` prints it (`m3`).
        #[arg(value_parser = crate::conv_history::parse_message)]
        message: MessageId,
        /// Keep only the first N parts of MSG (an assistant message).
        #[arg(long, value_name = "N")]
        parts: Option<u32>,
        /// The fork's workspace, by id or name (default: the original's).
        #[arg(long, value_name = "WS")]
        workspace: Option<String>,
        /// The fork's title (default: "Fork of …").
        #[arg(long)]
        title: Option<String>,
        /// Print the fork as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Switch a conversation to another agent between turns: its next turn starts a
    /// session given the transcript, or resumes the agent's own earlier session of this
    /// conversation (`session/load`). Clears the mode and model picks.
    Switch {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// The agent id (`shoalctl agents` lists the ready ones).
        agent: String,
        /// Print the conversation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a conversation's title ("" clears it).
    Rename {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// The new title.
        title: String,
        /// Print the conversation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the context compactions the conversation's agent reported (their summaries).
    Compactions {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// A new conversation seeded with one compaction's summary; prints its id.
    CloneSummary {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// The compaction's number, as `conv compactions` lists it.
        compaction: u64,
        /// The new conversation's title (default: "Summary of …").
        #[arg(long)]
        title: Option<String>,
        /// Print the new conversation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a conversation and all its messages. Refused while a turn runs.
    Rm {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        /// Print `{"deleted": ID}`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `conv` command.
pub(crate) async fn run(profile: &Profile, command: ConvCommand) -> anyhow::Result<ExitCode> {
    let client = Client::connect(profile).await?;
    let result = match command {
        ConvCommand::New {
            title,
            agent,
            workspace,
            mode,
            model,
        } => {
            let summary = match workspace {
                Some(workspace) => {
                    let workspace = lookup::workspace_id(&client, &workspace).await?;
                    client
                        .create_conversation_in(workspace, title, agent)
                        .await?
                }
                None => client.create_conversation(title, agent).await?,
            };
            if mode.is_some() || model.is_some() {
                client
                    .set_session_settings(summary.id, mode.as_deref(), model.as_deref())
                    .await
                    .with_context(|| {
                        format!(
                            "conversation {} was created, but its mode and model were not set; set them with `shoalctl conv set {} --mode M --model X`",
                            summary.id, summary.id
                        )
                    })?;
            }
            print_line(&summary.id.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        ConvCommand::Set {
            id,
            mode,
            model,
            json,
        } => crate::conv_settings::set(&client, id, mode, model, json)
            .await
            .map(|()| ExitCode::SUCCESS),
        ConvCommand::Send {
            id,
            text,
            json,
            allow,
            now,
            attach,
        } => {
            if attach.is_empty() {
                send(&client, id, text, json, allow, now).await
            } else {
                let attachments = read_attachments(&attach)?;
                let turn = client.send_with_attachments(id, text, attachments).await?;
                stream_turn(&client, id, turn, json, allow).await
            }
        }
        ConvCommand::Attach { id, json, allow } => {
            let turn = client.attach_turn(id).await?;
            stream_turn(&client, id, turn, json, allow).await
        }
        ConvCommand::Queue {
            id,
            rm,
            move_item,
            to,
            json,
        } => {
            let queue = match (rm, move_item, to) {
                (Some(item), _, _) => client.remove_queued(id, item).await?,
                (None, Some(item), Some(to)) => {
                    let position = to
                        .checked_sub(1)
                        .ok_or_else(|| anyhow!("--to counts from 1"))?;
                    client.move_queued(id, item, position).await?
                }
                _ => client.list_queue(id).await?,
            };
            conv_history::print_queue(&queue, json)?;
            Ok(ExitCode::SUCCESS)
        }
        ConvCommand::Follow {
            id,
            since,
            json,
            until_done,
        } => follow(&client, id, since.map(Seq), json, until_done).await,
        ConvCommand::Show {
            id,
            json,
            before: Some(before),
            limit,
        } => {
            conv_history::show_page(&client, id, before, limit, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        ConvCommand::Show { id, json, .. } => {
            match client.view_conversation(id).await? {
                ConversationView::Owner(detail) if json => {
                    print_line(&detail_json(&detail).to_string())?
                }
                ConversationView::Owner(detail) => {
                    render::detail(&mut io::stdout().lock(), &detail).context(STDOUT_ERROR)?
                }
                ConversationView::Shared(view) => crate::share::show_shared(&view, json)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        ConvCommand::List {
            limit,
            json,
            workspace,
            cursor,
        } => {
            let workspace = match workspace {
                Some(workspace) => Some(lookup::workspace_id(&client, &workspace).await?),
                None => None,
            };
            let (page, next) = client
                .list_conversations_page(limit, cursor, workspace)
                .await?;
            if json {
                let values = page
                    .iter()
                    .map(|listing| {
                        let mut value = summary_json(&listing.summary);
                        value["last_activity_ms"] = listing.last_activity_ms.into();
                        value
                    })
                    .collect::<Vec<_>>();
                print_line(&serde_json::Value::Array(values).to_string())?;
            } else {
                for listing in &page {
                    print_line(&render::summary_line(&listing.summary))?;
                }
            }
            if let Some(next) = next {
                note(&format!("more: pass --cursor {next} for the next page"));
            }
            Ok(ExitCode::SUCCESS)
        }
        ConvCommand::Rewind {
            id,
            message,
            parts,
            yes,
            json,
        } => conv_history::rewind(&client, id, message, parts, yes, json)
            .await
            .map(|()| ExitCode::SUCCESS),
        ConvCommand::Truncate {
            id,
            message,
            parts,
            yes,
            json,
        } => conv_history::rewind(&client, id, message, Some(parts), yes, json)
            .await
            .map(|()| ExitCode::SUCCESS),
        ConvCommand::Fork {
            id,
            message,
            parts,
            workspace,
            title,
            json,
        } => conv_history::fork(&client, id, message, parts, workspace, title, json)
            .await
            .map(|()| ExitCode::SUCCESS),
        ConvCommand::Switch { id, agent, json } => {
            let summary = client
                .switch_agent(id, &agent)
                .await
                .with_context(|| format!("cannot switch {id} to agent `{agent}`"))?;
            if json {
                print_line(&summary_json(&summary).to_string())?;
            } else {
                print_line(&format!(
                    "{id} now runs agent {}; its next turn starts it",
                    summary.agent
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ConvCommand::Rename { id, title, json } => conv_history::rename(&client, id, title, json)
            .await
            .map(|()| ExitCode::SUCCESS),
        ConvCommand::Compactions { id, json } => {
            let list = client.list_compactions(id).await?;
            conv_history::print_compactions(&list, json)?;
            Ok(ExitCode::SUCCESS)
        }
        ConvCommand::CloneSummary {
            id,
            compaction,
            title,
            json,
        } => {
            let summary = client.clone_from_compaction(id, compaction, title).await?;
            if json {
                print_line(&summary_json(&summary).to_string())?;
            } else {
                print_line(&summary.id.to_string())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ConvCommand::Rm { id, yes, json } => conv_history::remove(&client, id, yes, json)
            .await
            .map(|()| ExitCode::SUCCESS),
        ConvCommand::Cancel { id } => {
            if client.cancel(id).await? {
                print_line("cancelled the running turn")?;
            } else {
                print_line("no turn was running")?;
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    client.close().await;
    result
}

pub(crate) const STDOUT_ERROR: &str = "cannot write to stdout; check where the output goes";

pub(crate) fn print_line(line: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}").context(STDOUT_ERROR)?;
    out.flush().context(STDOUT_ERROR)
}

fn note(line: &str) {
    // Diagnostics are best effort: a closed stderr must not fail the command.
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// How a turn ended, from its events.
#[derive(Debug, Default)]
struct TurnOutcome {
    /// The message of the last `Error` event.
    error: Option<String>,
    /// The committed assistant message of `Done`.
    done: Option<Message>,
}

impl TurnOutcome {
    /// `Ok` when the turn completed, otherwise the error line (what happened; what to do).
    fn verdict(&self) -> Result<(), String> {
        let Some(message) = &self.done else {
            return Err(
                "the turn ended without a done event; check the node's log and `shoalctl conv show`"
                    .to_owned(),
            );
        };
        let reason = message.error.as_ref().or(self.error.as_ref());
        match (message.status, reason) {
            (MessageStatus::Complete, None) => Ok(()),
            (MessageStatus::Cancelled, _) => {
                Err("the turn was cancelled; send the message again to retry".to_owned())
            }
            (status, Some(reason)) => Err(format!(
                "the turn ended {}: {}; check the agent and the node's log, then send again",
                status_str(status),
                render::one_line(reason, 300)
            )),
            (status, None) => Err(format!(
                "the turn ended {}; check the agent and the node's log, then send again",
                status_str(status)
            )),
        }
    }
}

/// The option a permission request is answered with: the first `allow_*` option when
/// `allow`, otherwise none (deny).
fn permission_choice(options: &[PermissionOption], allow: bool) -> Option<&PermissionOption> {
    if !allow {
        return None;
    }
    options.iter().find(|o| o.kind.starts_with("allow"))
}

/// Reads `--attach` files (bounded before reading), typed by their extension.
fn read_attachments(
    paths: &[std::path::PathBuf],
) -> anyhow::Result<Vec<shoal_protocol::attachments::Attachment>> {
    use shoal_protocol::attachments::{ATTACHMENT_BYTES_MAX, Attachment, mime_for_name};
    paths
        .iter()
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| anyhow!("--attach {}: not a file name", path.display()))?
                .to_owned();
            let size = std::fs::metadata(path)
                .with_context(|| format!("--attach {}: cannot read it", path.display()))?
                .len();
            if size > ATTACHMENT_BYTES_MAX as u64 {
                return Err(anyhow!(
                    "--attach {}: it is {size} bytes, the limit is {ATTACHMENT_BYTES_MAX}",
                    path.display()
                ));
            }
            let data = std::fs::read(path)
                .with_context(|| format!("--attach {}: cannot read it", path.display()))?;
            Ok(Attachment {
                mime_type: mime_for_name(&name).to_owned(),
                name,
                data,
            })
        })
        .collect()
}

async fn send(
    client: &Client,
    id: ConversationId,
    text: String,
    json: bool,
    allow: bool,
    now: bool,
) -> anyhow::Result<ExitCode> {
    let sent = if now {
        client.send_now(id, text).await?
    } else {
        client.send_or_queue(id, text).await?
    };
    let turn = match sent {
        Sent::Started(turn) => turn,
        Sent::Queued(queued) => {
            note(&format!(
                "[queued] as item {} at position {}; it runs after the running turn (conv queue {id} lists the queue)",
                queued.item(),
                queued.position() + 1
            ));
            queued.started().await?
        }
    };
    stream_turn(client, id, turn, json, allow).await
}

/// Streams a turn's events (text on stdout, the rest on stderr) and answers its
/// permission requests; the exit code says how it ended.
async fn stream_turn(
    client: &Client,
    id: ConversationId,
    mut turn: TurnStream,
    json: bool,
    allow: bool,
) -> anyhow::Result<ExitCode> {
    if turn.duplicate() {
        note("[note] the node had already accepted this message; showing its turn");
    }
    let mut outcome = TurnOutcome::default();
    // Whether stdout is after streamed text that did not end with a newline.
    let mut mid_line = false;
    while let Some(frame) = turn.next().await {
        let frame = frame?;
        if json {
            print_line(&event_json(&frame).to_string())?;
        }
        match &frame.event {
            Event::TextChunk { text, .. } if !json => {
                let mut out = io::stdout().lock();
                write!(out, "{text}").context(STDOUT_ERROR)?;
                out.flush().context(STDOUT_ERROR)?;
                if !text.is_empty() {
                    mid_line = !text.ends_with('\n');
                }
            }
            Event::PermissionRequest {
                request,
                title,
                options,
            } => {
                let choice = permission_choice(options, allow);
                client
                    .respond_permission(id, *request, choice.map(|o| o.option_id.clone()))
                    .await?;
                let title = render::one_line(title, 120);
                match choice {
                    Some(option) => {
                        note(&format!("[permission] {title}: allowed ({})", option.name))
                    }
                    None if allow => note(&format!(
                        "[permission] {title}: denied (no allow option offered)"
                    )),
                    None => note(&format!(
                        "[permission] {title}: denied (pass --allow to allow)"
                    )),
                }
            }
            Event::Error { message } => outcome.error = Some(message.clone()),
            Event::Done { message, .. } => outcome.done = Some(message.clone()),
            event if !json => {
                if let Some(line) = side_line(event) {
                    note(&line);
                }
            }
            _ => {}
        }
    }
    if mid_line {
        print_line("")?;
    }
    match outcome.verdict() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(line) => Err(anyhow!(line)),
    }
}

async fn follow(
    client: &Client,
    id: ConversationId,
    since: Option<Seq>,
    json: bool,
    until_done: bool,
) -> anyhow::Result<ExitCode> {
    let mut stream = client.follow(id, since);
    let mut printer = TranscriptPrinter::default();
    while let Some(frame) = stream.next().await {
        let frame: EventFrame = frame?;
        if json {
            print_line(&event_json(&frame).to_string())?;
        } else {
            printer
                .event(&mut io::stdout().lock(), &frame.event)
                .context(STDOUT_ERROR)?;
        }
        if until_done && matches!(frame.event, Event::Done { .. }) {
            return Ok(ExitCode::SUCCESS);
        }
    }
    Err(anyhow!(
        "the follow stream of {id} ended; run the command again (with --since {} to resume)",
        stream.last_seq().map_or(0, |s| s.0)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::transcript::{Part, Role, StopReason};
    use shoal_protocol::{MessageId, TurnId};

    fn done(status: MessageStatus, error: Option<&str>) -> Message {
        Message {
            id: MessageId(1),
            turn: TurnId(1),
            role: Role::Assistant,
            status,
            parts: vec![Part::Text { text: "x".into() }],
            content: "x".into(),
            created_at_ms: 0,
            stop_reason: Some(StopReason::EndTurn),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn only_a_complete_turn_without_error_succeeds() {
        let ok = TurnOutcome {
            error: None,
            done: Some(done(MessageStatus::Complete, None)),
        };
        assert!(ok.verdict().is_ok());

        let interrupted = TurnOutcome {
            error: Some("agent crashed".into()),
            done: Some(done(MessageStatus::Interrupted, None)),
        };
        let line = interrupted.verdict().unwrap_err();
        assert!(line.contains("interrupted: agent crashed;"), "{line}");

        let cancelled = TurnOutcome {
            error: None,
            done: Some(done(MessageStatus::Cancelled, None)),
        };
        assert!(cancelled.verdict().unwrap_err().contains("cancelled"));

        let error_event = TurnOutcome {
            error: Some("boom".into()),
            done: Some(done(MessageStatus::Complete, None)),
        };
        assert!(error_event.verdict().unwrap_err().contains("boom"));

        assert!(TurnOutcome::default().verdict().is_err());
    }

    #[test]
    fn permissions_are_denied_unless_allowed() {
        let options = vec![
            PermissionOption {
                option_id: "no".into(),
                name: "Reject".into(),
                kind: "reject_once".into(),
            },
            PermissionOption {
                option_id: "yes".into(),
                name: "Allow once".into(),
                kind: "allow_once".into(),
            },
            PermissionOption {
                option_id: "always".into(),
                name: "Allow always".into(),
                kind: "allow_always".into(),
            },
        ];
        assert_eq!(permission_choice(&options, false), None);
        assert_eq!(
            permission_choice(&options, true).map(|o| o.option_id.as_str()),
            Some("yes")
        );
        assert_eq!(permission_choice(&options[..1], true), None);
    }
}
