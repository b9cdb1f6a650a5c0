//! A conversation's session settings through the SDK: the mode and model its agent
//! runs with. What the agent offers is in [`ConversationDetail::settings`].
//!
//! [`ConversationDetail::settings`]: shoal_protocol::client::ConversationDetail

use crate::{Client, ClientError, unexpected};
use shoal_protocol::ConversationId;
use shoal_protocol::client::{ClientReply, ClientRequest};
use shoal_protocol::settings::SessionSettings;

impl Client {
    /// Picks the mode and/or model of one of the caller's conversations (`None` leaves
    /// one as it is). Refused with `busy` while a turn runs, with `invalid_argument`
    /// (listing what it offers) when the agent is known not to offer the value, and with
    /// `forbidden` for a viewer or editor. The agent gets the picks at the next turn,
    /// and again whenever it starts anew (a restart, a move). Retried (setting the same
    /// value twice changes nothing).
    pub async fn set_session_settings(
        &self,
        conversation: ConversationId,
        mode: Option<&str>,
        model: Option<&str>,
    ) -> Result<SessionSettings, ClientError> {
        let request = ClientRequest::SetSessionSettings {
            conversation,
            mode: mode.map(str::to_owned),
            model: model.map(str::to_owned),
        };
        match self.unary("set_session_settings", request, true).await? {
            ClientReply::SessionSettings(settings) => Ok(*settings),
            other => Err(unexpected("SessionSettings", &other)),
        }
    }
}
