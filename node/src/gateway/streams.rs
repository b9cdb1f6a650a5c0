//! The request streams that carry a turn or a follow: `SendMessage` / `SendNow` (the
//! initiator's stream: `Queued` while it waits, then `Accepted` and the turn's events),
//! `AttachTurn` (an initiator coming back) and `Follow`.

use super::client_api::{answer_error, call, lookup};
use super::frames::{FrameIoError, write_frame};
use super::tail::{Follows, TailEnd};
use crate::actors::conversation::{ConversationMsg, SendTicket};
use crate::actors::follow::Sink;
use crate::actors::shard_host::ShardHostMsg;
use crate::context::NodeContext;
use crate::sharing::Caller;
use ractor::ActorRef;
use shoal_protocol::client::ServerFrame;
use shoal_protocol::{ConversationId, TurnId, WireError};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Writes queued frames to the stream until the queue closes. Returns `false` if the
/// client went away first.
async fn pump(send: &mut quinn::SendStream, rx: &mut mpsc::Receiver<ServerFrame>) -> bool {
    let stopped = send.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => {
                    if write_frame(send, &frame).await.is_err() {
                        return false;
                    }
                }
                None => return true,
            },
            _ = &mut stopped => return false,
        }
    }
}

/// The initiator's queue: a shared caller's leaves out owner-only events.
fn sink_for(caller: &Caller, tx: mpsc::Sender<ServerFrame>) -> Sink {
    if caller.is_owner() {
        Sink::new(tx)
    } else {
        Sink::shared(tx)
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn send_message(
    mut send: quinn::SendStream,
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
    caller: Caller,
    conversation: ConversationId,
    text: String,
    request_id: shoal_protocol::RequestId,
    now: bool,
    attachments: Vec<shoal_protocol::attachments::Attachment>,
) -> Result<(), FrameIoError> {
    let capacity = ctx.config.limits.follower_queue_frames.get() as usize;
    let mut rx_slot = None;
    // The turn joins this request's trace.
    let trace = crate::telemetry::TraceParent::current();
    let result: Result<SendTicket, WireError> = call(host, conversation, |reply| {
        let (tx, rx) = mpsc::channel(capacity);
        rx_slot = Some(rx);
        ConversationMsg::Send {
            caller: caller.clone(),
            text: text.clone(),
            request_id,
            sink: sink_for(&caller, tx),
            reply,
            now,
            attachments: attachments.clone(),
            trace: trace.clone(),
        }
    })
    .await;
    let taken = match (result, rx_slot) {
        (Ok(ticket), Some(rx)) => (ticket, rx),
        (Err(e), _) => {
            return answer_error(&mut send, e).await;
        }
        (Ok(_), None) => unreachable!("the sink is created before the call"),
    };
    let (ticket, mut rx) = taken;
    if !pump(&mut send, &mut rx).await {
        // The sender went away: its queued message still runs; its running turn waits
        // for a reattach for the grace period, then is cancelled.
        if let Ok(actor) = lookup(host, conversation).await {
            let _ = actor.cast(ConversationMsg::SendGone { ticket });
        }
        return Ok(());
    }
    let _ = send.finish();
    Ok(())
}

/// `AttachTurn`: the caller's stream becomes the running turn's initiator again.
pub(super) async fn attach_turn(
    mut send: quinn::SendStream,
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
    caller: Caller,
    conversation: ConversationId,
) -> Result<(), FrameIoError> {
    let capacity = ctx.config.limits.follower_queue_frames.get() as usize;
    let mut rx_slot = None;
    let result: Result<TurnId, WireError> = call(host, conversation, |reply| {
        let (tx, rx) = mpsc::channel(capacity);
        rx_slot = Some(rx);
        ConversationMsg::Attach {
            caller: caller.clone(),
            sink: sink_for(&caller, tx),
            reply,
        }
    })
    .await;
    let (turn, mut rx) = match (result, rx_slot) {
        (Ok(turn), Some(rx)) => (turn, rx),
        (Err(e), _) => return answer_error(&mut send, e).await,
        (Ok(_), None) => unreachable!("the sink is created before the call"),
    };
    if !pump(&mut send, &mut rx).await {
        if let Ok(actor) = lookup(host, conversation).await {
            let _ = actor.cast(ConversationMsg::SendGone {
                ticket: SendTicket::Started(turn),
            });
        }
        return Ok(());
    }
    let _ = send.finish();
    Ok(())
}

pub(super) async fn follow(
    mut send: quinn::SendStream,
    follows: &Follows,
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
    caller: Caller,
    conversation: ConversationId,
    since: Option<shoal_protocol::Seq>,
) -> Result<(), FrameIoError> {
    let result = call(host, conversation, |reply| ConversationMsg::Follow {
        caller: caller.clone(),
        since,
        reply,
    })
    .await;
    match result {
        Ok(attached) => {
            // A shared follower's stream ends when its grant is revoked, rotated or
            // expires.
            let mut tailing = follows.tail(send, ctx, attached).await;
            let lost = tokio::select! {
                ended = tailing.ended() => {
                    match ended {
                        Some((mut send, Ok(TailEnd::Closed | TailEnd::CutOver))) => {
                            let _ = send.finish();
                        }
                        Some((_, Ok(TailEnd::Gone))) | None => {}
                        Some((_, Err(e))) => return Err(e),
                    }
                    return Ok(());
                }
                lost = super::sharing::lost_access(ctx, conversation, &caller) => lost,
            };
            if let Some((mut send, _)) = tailing.cancel().await {
                write_frame(&mut send, &ServerFrame::Error(lost)).await?;
                let _ = send.finish();
            }
        }
        Err(e) => {
            write_frame(&mut send, &ServerFrame::Error(e)).await?;
            let _ = send.finish();
        }
    }
    Ok(())
}
