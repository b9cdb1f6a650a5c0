//! The workload of a real-process run: clients that send turns and followers that follow,
//! both through the SDK, recording what they were told into the history.

use crate::history::committed_up_to;
use crate::history::{FollowerLog, Write, WriteOutcome};
use crate::trace::Trace;
use futures::StreamExt;
use shoal_client::{Client, FollowStream, Profile, ShareWith};
use shoal_protocol::ConversationId;
use shoal_protocol::sharing::Role;
use shoal_protocol::transcript::{Event, EventFrame};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The longest a turn's events may take to finish once the message was accepted.
pub const TURN_TIMEOUT_MS: u64 = 30_000;
/// The longest a send may take to be accepted or refused (the SDK retries within 20 s).
pub const SEND_TIMEOUT_MS: u64 = 40_000;
/// The most events one follower log keeps (a follow past it is restarted).
pub const FOLLOWER_EVENTS_MAX: usize = 200_000;
/// Pause after a failed operation before the next one (not a synchronisation: pacing).
const FAILED_OP_PAUSE_MS: u64 = 200;

/// What the workload recorded.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Every write attempted.
    pub writes: Vec<Write>,
    /// Every follow, one log per follow started.
    pub followers: Vec<FollowerLog>,
    /// Every message a viewer tried to send with its viewer token.
    pub viewer_writes: Vec<Write>,
    /// Turns whose events ended with `Done`.
    pub turns_done: u64,
    /// Turns that failed after their message was accepted.
    pub turns_broken: u64,
    /// Per conversation, the highest message id a running follower has seen committed.
    pub followed_up_to: std::collections::BTreeMap<ConversationId, u64>,
}

/// Shared recording state, with a signal each time a follower sees a new committed
/// message.
#[derive(Debug, Clone)]
pub struct Recorder {
    recorded: Arc<Mutex<Recorded>>,
    followed: Arc<watch::Sender<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            recorded: Arc::default(),
            followed: Arc::new(watch::channel(0).0),
        }
    }
}

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        let mut guard = self
            .recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Resolves once, for every conversation, a follower has seen its last acknowledged
    /// message (the caller bounds the wait).
    pub async fn wait_followed(&self, conversations: &[ConversationId]) {
        let mut changes = self.followed.subscribe();
        loop {
            let done = conversations.iter().all(|id| {
                self.last_acked(*id)
                    .is_none_or(|last| self.followed_up_to(*id) >= Some(last))
            });
            if done || changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Takes everything recorded.
    pub fn take(&self) -> Recorded {
        self.with(std::mem::take)
    }

    /// The highest message id any follower has seen committed in `conversation`.
    pub fn followed_up_to(&self, conversation: ConversationId) -> Option<u64> {
        self.with(|r| r.followed_up_to.get(&conversation).copied())
    }

    /// The highest acknowledged user message id of `conversation`.
    pub fn last_acked(&self, conversation: ConversationId) -> Option<u64> {
        self.with(|r| {
            r.writes
                .iter()
                .filter(|w| w.conversation == conversation)
                .filter_map(|w| match w.outcome {
                    WriteOutcome::Acked { message_id, .. } => Some(message_id.0),
                    WriteOutcome::Failed { .. } => None,
                })
                .max()
        })
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> usize {
        self.with(|r| {
            r.writes
                .iter()
                .filter(|w| matches!(w.outcome, WriteOutcome::Acked { .. }))
                .count()
        })
    }
}

/// The prompt of operation `op` of client `client`: unique text, and a mix of scripts so
/// turns carry reasoning, tool calls and owner-only usage events. The scripts ignore the
/// words after their name; the echo repeats them word by word.
pub fn prompt(client: &str, op: u64) -> String {
    let tag = format!("{client}-op{op}");
    match op % 5 {
        0 => format!("/usage {tag}"),
        1 => format!("/think {tag}"),
        2 => format!("/tool {tag}"),
        _ => format!("{tag} alpha beta gamma delta epsilon zeta eta theta"),
    }
}

/// One client: creates a conversation and a viewer link to it (sent on `created`), then
/// sends turns one after another until `stop`.
pub async fn run_client(
    name: String,
    profile: Profile,
    recorder: Recorder,
    trace: Trace,
    created: tokio::sync::oneshot::Sender<(ConversationId, String)>,
    mut stop: watch::Receiver<bool>,
    mut hush: watch::Receiver<bool>,
) {
    let client = loop {
        match Client::connect(&profile).await {
            Ok(client) => break client,
            Err(e) => {
                trace.event(&name, format!("connect failed: {e}"));
                if pause_or_stop(&mut stop).await {
                    return;
                }
            }
        }
    };
    let conversation = loop {
        match client.create_conversation(Some(name.clone()), None).await {
            Ok(summary) => break summary.id,
            Err(e) => {
                trace.event(&name, format!("create failed: {e}"));
                if pause_or_stop(&mut stop).await {
                    return;
                }
            }
        }
    };
    trace.event(&name, format!("created conversation {conversation}"));
    let link = loop {
        match client
            .share(conversation, Role::Viewer, ShareWith::Link, None)
            .await
        {
            Ok(grant) => break grant.token.unwrap_or_default(),
            Err(e) => {
                trace.event(&name, format!("sharing failed: {e}"));
                if pause_or_stop(&mut stop).await {
                    return;
                }
            }
        }
    };
    let _ = created.send((conversation, link));
    let mut op = 0u64;
    while !*stop.borrow() {
        if *hush.borrow() {
            // Hushed (a fault waits for the shard to go quiet): no writes until it ends.
            tokio::select! {
                _ = hush.wait_for(|h| !*h) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            continue;
        }
        let text = prompt(&name, op);
        op += 1;
        let invoked_ms = trace.elapsed_ms();
        let sent = tokio::time::timeout(
            Duration::from_millis(SEND_TIMEOUT_MS),
            client.send(conversation, text.clone()),
        )
        .await;
        let turn = match sent {
            Ok(Ok(turn)) => turn,
            Ok(Err(e)) => {
                trace.event(&name, format!("send {text:?} failed: {e}"));
                record_write(
                    &recorder,
                    conversation,
                    &name,
                    &text,
                    invoked_ms,
                    WriteOutcome::Failed {
                        error: e.to_string(),
                    },
                );
                if pause_or_stop(&mut stop).await {
                    break;
                }
                continue;
            }
            Err(_) => {
                trace.event(&name, format!("send {text:?} timed out"));
                record_write(
                    &recorder,
                    conversation,
                    &name,
                    &text,
                    invoked_ms,
                    WriteOutcome::Failed {
                        error: format!("no answer within {SEND_TIMEOUT_MS} ms"),
                    },
                );
                continue;
            }
        };
        let acked_ms = trace.elapsed_ms();
        let message_id = turn.user_message();
        record_write(
            &recorder,
            conversation,
            &name,
            &text,
            invoked_ms,
            WriteOutcome::Acked {
                message_id,
                acked_ms,
            },
        );
        trace.event(
            &name,
            format!(
                "acked {text:?} as message {}{}",
                message_id.0,
                if turn.duplicate() { " (duplicate)" } else { "" }
            ),
        );
        match finish_turn(turn).await {
            Ok(()) => recorder.with(|r| r.turns_done += 1),
            Err(e) => {
                recorder.with(|r| r.turns_broken += 1);
                trace.event(&name, format!("turn of {text:?} broke: {e}"));
            }
        }
    }
    client.close().await;
}

fn record_write(
    recorder: &Recorder,
    conversation: ConversationId,
    client: &str,
    text: &str,
    invoked_ms: u64,
    outcome: WriteOutcome,
) {
    recorder.with(|r| {
        r.writes.push(Write {
            conversation,
            client: client.to_owned(),
            text: text.to_owned(),
            invoked_ms,
            outcome,
        });
    });
}

async fn finish_turn(mut turn: shoal_client::TurnStream) -> Result<(), String> {
    let drained = tokio::time::timeout(Duration::from_millis(TURN_TIMEOUT_MS), async {
        while let Some(item) = turn.next().await {
            match item {
                Ok(frame) if matches!(frame.event, Event::Done { .. }) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("the turn stream ended without done".to_owned())
    })
    .await;
    drained.unwrap_or_else(|_| Err(format!("no done within {TURN_TIMEOUT_MS} ms")))
}

/// Waits a moment after a failure; `true` when the run is stopping.
async fn pause_or_stop(stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = stop.wait_for(|s| *s) => true,
        () = tokio::time::sleep(Duration::from_millis(FAILED_OP_PAUSE_MS)) => false,
    };
    stopped || *stop.borrow()
}

/// One viewer of `conversation` (its profile carries a viewer share token of another
/// user): follows twice through one SDK client (which shares one follow stream between
/// the two, and resumes across reconnects and `Moved`) and records every event each
/// delivered. A follow that gives up is recorded as ended and a new
/// one starts, until `stop`. Each follow starts with an attempt to send with the viewer
/// token, recorded for invariant 5 (it must be refused).
pub async fn run_follower(
    name: String,
    profile: Profile,
    conversation: ConversationId,
    recorder: Recorder,
    trace: Trace,
    mut stop: watch::Receiver<bool>,
) {
    let mut generation = 0u32;
    while !*stop.borrow() {
        generation += 1;
        let label = format!("{name}#{generation}");
        let client = match Client::connect(&profile).await {
            Ok(client) => client,
            Err(e) => {
                trace.event(&label, format!("connect failed: {e}"));
                if pause_or_stop(&mut stop).await {
                    break;
                }
                continue;
            }
        };
        let text = format!("viewer-{label}");
        let invoked_ms = trace.elapsed_ms();
        let sent = tokio::time::timeout(
            Duration::from_millis(SEND_TIMEOUT_MS),
            client.send(conversation, text.clone()),
        )
        .await;
        let outcome = match sent {
            Ok(Ok(turn)) => WriteOutcome::Acked {
                message_id: turn.user_message(),
                acked_ms: trace.elapsed_ms(),
            },
            Ok(Err(e)) => WriteOutcome::Failed {
                error: e.to_string(),
            },
            Err(_) => WriteOutcome::Failed {
                error: format!("no answer within {SEND_TIMEOUT_MS} ms"),
            },
        };
        recorder.with(|r| {
            r.viewer_writes.push(Write {
                conversation,
                client: label.clone(),
                text,
                invoked_ms,
                outcome,
            });
        });
        // Two follows on one client: the SDK shares one follow stream between them, and
        // each is checked on its own.
        tokio::join!(
            follow_and_record(
                client.follow(conversation, None),
                label.clone(),
                conversation,
                &recorder,
                &trace,
                stop.clone(),
            ),
            follow_and_record(
                client.follow(conversation, None),
                format!("{label}+"),
                conversation,
                &recorder,
                &trace,
                stop.clone(),
            ),
        );
        client.close().await;
    }
}

/// Reads `follow` until `stop`, an error or [`FOLLOWER_EVENTS_MAX`] events, and records
/// what it delivered as the follower `label`.
async fn follow_and_record(
    mut follow: FollowStream,
    label: String,
    conversation: ConversationId,
    recorder: &Recorder,
    trace: &Trace,
    mut stop: watch::Receiver<bool>,
) {
    let mut events: Vec<EventFrame> = Vec::new();
    let ended = loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => break None,
            next = follow.next() => next,
        };
        match next {
            Some(Ok(frame)) => {
                if matches!(frame.event, Event::Reset { .. }) {
                    trace.event(&label, format!("reset at {}", frame.seq));
                }
                if let Some(id) = committed_up_to(&frame.event) {
                    recorder.with(|r| {
                        let seen = r.followed_up_to.entry(conversation).or_default();
                        *seen = (*seen).max(id);
                    });
                    recorder.followed.send_modify(|n| *n += 1);
                }
                events.push(frame);
                if events.len() >= FOLLOWER_EVENTS_MAX {
                    break Some("event limit reached".to_owned());
                }
            }
            Some(Err(e)) => break Some(e.to_string()),
            None => break Some("the follow ended".to_owned()),
        }
    };
    let shared = if follow.is_shared() { ", shared" } else { "" };
    let why = ended.unwrap_or_else(|| "stopped".to_owned());
    trace.event(
        &label,
        format!("follow ended after {} events{shared}: {why}", events.len()),
    );
    recorder.with(|r| {
        r.followers.push(FollowerLog {
            follower: label,
            conversation,
            owner: false,
            since: None,
            events,
        });
    });
}
