//! Sending while a turn runs: a message sent then is queued by the node (replicated, so it
//! survives a failover) and runs after the turn; "send now" cuts the running turn short and
//! runs first. Also the queue's listing and editing, and reattaching to a running turn.

use crate::connection::FrameReader;
use crate::retry::with_retries;
use crate::{Client, ClientError, Opened, TurnStream, unexpected};
use shoal_protocol::ConversationId;
use shoal_protocol::client::{ClientReply, ClientRequest, QueuedInfo, ServerFrame};

/// What [`Client::send_or_queue`] and [`Client::send_now`] got.
pub enum Sent {
    /// The turn started.
    Started(TurnStream),
    /// The message waits behind the running turn.
    Queued(QueuedSend),
}

/// A message queued behind a running turn, with its send stream still open.
pub struct QueuedSend {
    reader: FrameReader,
    item: u64,
    position: u32,
}

impl QueuedSend {
    pub(crate) fn new(reader: FrameReader, item: u64, position: u32) -> Self {
        Self {
            reader,
            item,
            position,
        }
    }

    /// Its id in the queue (for [`Client::remove_queued`], [`Client::move_queued`]).
    pub fn item(&self) -> u64 {
        self.item
    }

    /// Its 0-based position when it was queued.
    pub fn position(&self) -> u32 {
        self.position
    }

    /// Waits (without a time limit: a turn can be long) until the message's turn starts,
    /// and returns its stream. If the connection breaks meanwhile the message stays queued
    /// and still runs; follow the conversation to see it.
    pub async fn started(mut self) -> Result<TurnStream, ClientError> {
        loop {
            match self.reader.next::<ServerFrame>().await? {
                Some(ServerFrame::Accepted {
                    turn,
                    user_message,
                    duplicate,
                }) => return Ok(TurnStream::new(self.reader, turn, user_message, duplicate)),
                Some(ServerFrame::Queued { position, .. }) => self.position = position,
                Some(ServerFrame::Error(err)) => return Err(ClientError::Server(err)),
                Some(other) => {
                    return Err(ClientError::Protocol(format!(
                        "expected `Accepted`, got a `{}` frame",
                        crate::frame_name(&other)
                    )));
                }
                None => {
                    return Err(ClientError::ConnectionLost(
                        "the node ended the stream of a queued message before it started"
                            .to_owned(),
                    ));
                }
            }
        }
    }
}

impl Client {
    /// Sends a message; when a turn is running it is queued and this returns at once with
    /// [`Sent::Queued`] (see [`QueuedSend::started`]). [`Client::send`] waits instead.
    pub async fn send_or_queue(
        &self,
        conversation: ConversationId,
        text: impl Into<String>,
    ) -> Result<Sent, ClientError> {
        let request = ClientRequest::SendMessage {
            conversation,
            text: text.into(),
            request_id: self.request_id(),
        };
        self.open_turn("send", request).await
    }

    /// Sends a message "now": a running turn is cut short (saved as interrupted with what
    /// it streamed) and this message runs next, ahead of queued ones.
    pub async fn send_now(
        &self,
        conversation: ConversationId,
        text: impl Into<String>,
    ) -> Result<Sent, ClientError> {
        let request = ClientRequest::SendNow {
            conversation,
            text: text.into(),
            request_id: self.request_id(),
        };
        self.open_turn("send_now", request).await
    }

    /// Reattaches to the running turn as its initiator — after losing the connection,
    /// within the node's `conversation.initiator_grace_ms` — to get its events from now
    /// and answer its permission requests. `not_found` when no turn runs.
    pub async fn attach_turn(
        &self,
        conversation: ConversationId,
    ) -> Result<TurnStream, ClientError> {
        let request = ClientRequest::AttachTurn { conversation };
        match self.open_turn("attach_turn", request).await? {
            Sent::Started(turn) => Ok(turn),
            Sent::Queued(_) => Err(ClientError::Protocol(
                "the node answered an attach with `Queued`".to_owned(),
            )),
        }
    }

    async fn open_turn(
        &self,
        what: &'static str,
        request: ClientRequest,
    ) -> Result<Sent, ClientError> {
        Ok(
            match with_retries(what, || self.start_turn(request.clone())).await? {
                Opened::Accepted(turn) => Sent::Started(turn),
                Opened::Queued(queued) => Sent::Queued(queued),
            },
        )
    }

    /// The messages queued behind the running turn, in the order they will run.
    pub async fn list_queue(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<QueuedInfo>, ClientError> {
        self.queue_request(
            "list_queue",
            ClientRequest::ListQueue { conversation },
            true,
        )
        .await
    }

    /// Removes a queued message; returns the queue after it. Not retried.
    pub async fn remove_queued(
        &self,
        conversation: ConversationId,
        item: u64,
    ) -> Result<Vec<QueuedInfo>, ClientError> {
        let request = ClientRequest::RemoveQueued { conversation, item };
        self.queue_request("remove_queued", request, false).await
    }

    /// Moves a queued message to `position` (0-based); returns the queue after it.
    pub async fn move_queued(
        &self,
        conversation: ConversationId,
        item: u64,
        position: u32,
    ) -> Result<Vec<QueuedInfo>, ClientError> {
        let request = ClientRequest::MoveQueued {
            conversation,
            item,
            position,
        };
        self.queue_request("move_queued", request, true).await
    }

    async fn queue_request(
        &self,
        what: &'static str,
        request: ClientRequest,
        retry: bool,
    ) -> Result<Vec<QueuedInfo>, ClientError> {
        match self.unary(what, request, retry).await? {
            ClientReply::Queue(queue) => Ok(queue),
            other => Err(unexpected("Queue", &other)),
        }
    }
}
