//! Sharing conversations through the SDK: grants for viewers and editors (a user, a
//! link, or an invitation bound on first use), revocation and rotation, the lock, the
//! "shared with me" list, and the redacted view a shared caller reads.
//!
//! A viewer or editor acts with a client made by [`Client::connect_shared`] (or
//! [`Client::with_share_token`]); a user grant needs no token.

use crate::{Client, ClientError, unexpected};
use shoal_protocol::client::{ClientReply, ClientRequest, ConversationDetail};
use shoal_protocol::sharing::{GrantId, GrantInfo, Role, SharedListing, SharedView};
use shoal_protocol::{ConversationId, UserId};

/// A new grant and, for a link or invitation, its token (shown once: the node keeps
/// only its hash).
#[derive(Debug, Clone)]
pub struct NewGrant {
    /// The grant.
    pub grant: GrantInfo,
    /// `shoalshare1.…`, for links and invitations.
    pub token: Option<String>,
}

/// A conversation as [`Client::view_conversation`] returns it.
#[derive(Debug, Clone)]
pub enum ConversationView {
    /// The caller owns it.
    Owner(Box<ConversationDetail>),
    /// Shared with the caller (redacted).
    Shared(Box<SharedView>),
}

/// Who a new grant is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareWith {
    /// Whoever presents the link token.
    Link,
    /// A link bound to the first user who presents it.
    Invite,
    /// One user (no token; it appears in their "shared with me").
    User(UserId),
}

impl Client {
    /// Shares `conversation` (owner only) with `role`, optionally expiring `expires_in_ms`
    /// from now. Retried with one request id (a retry answers the first grant, without
    /// its token).
    pub async fn share(
        &self,
        conversation: ConversationId,
        role: Role,
        with: ShareWith,
        expires_in_ms: Option<u64>,
    ) -> Result<NewGrant, ClientError> {
        let (user, invite) = match with {
            ShareWith::Link => (None, false),
            ShareWith::Invite => (None, true),
            ShareWith::User(user) => (Some(user), false),
        };
        let request = ClientRequest::CreateGrant {
            conversation,
            role,
            user,
            invite,
            expires_in_ms,
            request_id: self.request_id(),
        };
        match self.unary("share", request, true).await? {
            ClientReply::Grant { grant, token } => Ok(NewGrant { grant, token }),
            other => Err(unexpected("Grant", &other)),
        }
    }

    /// The grants of one of the caller's conversations, or (`None`) of all of them.
    pub async fn grants(
        &self,
        conversation: Option<ConversationId>,
    ) -> Result<Vec<GrantInfo>, ClientError> {
        let request = ClientRequest::ListGrants { conversation };
        match self.unary("grants", request, true).await? {
            ClientReply::Grants(list) => Ok(list),
            other => Err(unexpected("Grants", &other)),
        }
    }

    /// Revokes a grant: its holders lose access at once, open follows end with
    /// `forbidden`. `true` when it existed.
    pub async fn revoke_grant(&self, grant: GrantId) -> Result<bool, ClientError> {
        match self
            .unary("revoke_grant", ClientRequest::RevokeGrant { grant }, true)
            .await?
        {
            ClientReply::GrantRevoked { existed } => Ok(existed),
            other => Err(unexpected("GrantRevoked", &other)),
        }
    }

    /// Gives a link or invitation a new token (the old one stops working at once).
    /// Not retried: a retry would rotate again.
    pub async fn rotate_grant(&self, grant: GrantId) -> Result<NewGrant, ClientError> {
        match self
            .unary("rotate_grant", ClientRequest::RotateGrant { grant }, false)
            .await?
        {
            ClientReply::Grant { grant, token } => Ok(NewGrant { grant, token }),
            other => Err(unexpected("Grant", &other)),
        }
    }

    /// Locks (editors become read-only) or unlocks sharing of `conversation`.
    pub async fn set_share_lock(
        &self,
        conversation: ConversationId,
        locked: bool,
    ) -> Result<bool, ClientError> {
        let request = ClientRequest::SetShareLock {
            conversation,
            locked,
        };
        match self.unary("set_share_lock", request, true).await? {
            ClientReply::ShareLock { locked } => Ok(locked),
            other => Err(unexpected("ShareLock", &other)),
        }
    }

    /// Conversations shared with the caller (user grants and claimed invitations),
    /// newest first.
    pub async fn shared_with_me(&self) -> Result<Vec<SharedListing>, ClientError> {
        match self
            .unary("shared_with_me", ClientRequest::SharedWithMe, true)
            .await?
        {
            ClientReply::SharedWithMe(list) => Ok(list),
            other => Err(unexpected("SharedWithMe", &other)),
        }
    }

    /// A conversation as the caller may read it: the owner's full view, or a viewer's or
    /// editor's redacted one.
    pub async fn view_conversation(
        &self,
        conversation: ConversationId,
    ) -> Result<ConversationView, ClientError> {
        let request = ClientRequest::GetConversation { conversation };
        match self.unary("view_conversation", request, true).await? {
            ClientReply::Conversation(detail) => Ok(ConversationView::Owner(detail)),
            ClientReply::SharedConversation(view) => Ok(ConversationView::Shared(view)),
            other => Err(unexpected("Conversation", &other)),
        }
    }

    /// A conversation shared with the caller, as a viewer or editor reads it (the owner
    /// gets their own view from [`Client::get_conversation`]).
    pub async fn get_shared(
        &self,
        conversation: ConversationId,
    ) -> Result<SharedView, ClientError> {
        let request = ClientRequest::GetConversation { conversation };
        match self.unary("get_shared", request, true).await? {
            ClientReply::SharedConversation(view) => Ok(*view),
            other => Err(unexpected("SharedConversation", &other)),
        }
    }
}
