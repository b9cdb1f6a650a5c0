//! The handler for what the agent sends us, and the state it shares with
//! [`AgentProcess`](super::AgentProcess): session routing, pending permission
//! requests, the workspace for file requests.

use super::{
    AgentError, AgentUpdate, EARLY_UPDATES_MAX, PERMISSION_REQUESTS_PENDING_MAX, fs, lock, wire,
};
use agent_client_protocol::{Handled, v1};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// State shared between [`AgentProcess`](super::AgentProcess) and the
/// connection's handler.
pub(crate) struct Shared {
    updates: mpsc::Sender<AgentUpdate>,
    route: Mutex<Route>,
    permissions: Mutex<Permissions>,
    workspace: fs::Workspace,
}

/// Which session's updates to forward.
#[derive(Default)]
struct Route {
    /// Ours, once known.
    session_id: Option<String>,
    /// Updates received before our session id was known, with their session id.
    early: VecDeque<(String, AgentUpdate)>,
}

/// Permission requests waiting for the owner's answer.
#[derive(Default)]
struct Permissions {
    next_request: u64,
    pending: BTreeMap<u64, PendingPermission>,
}

struct PendingPermission {
    responder: v1::Responder<Value>,
    option_ids: Vec<String>,
}

impl Shared {
    /// Shared state for a session whose file requests are confined to `workspace`.
    pub(crate) fn new(updates: mpsc::Sender<AgentUpdate>, workspace: fs::Workspace) -> Self {
        Self {
            updates,
            route: Mutex::new(Route::default()),
            permissions: Mutex::new(Permissions::default()),
            workspace,
        }
    }

    /// Handles one message from the agent. Runs inside the dispatch loop: it must
    /// never wait for another message from the agent.
    pub(crate) async fn handle(&self, dispatch: v1::Dispatch) -> Handled<v1::Dispatch> {
        match dispatch {
            v1::Dispatch::Notification(message) => {
                if message.method() == "session/update" {
                    self.on_session_update(message.params()).await;
                } else {
                    tracing::debug!(method = %message.method(), "ignoring a notification from the agent");
                }
            }
            v1::Dispatch::Request(message, responder) => match message.method() {
                "session/request_permission" => {
                    self.on_permission_request(message.params(), responder)
                        .await;
                }
                // Not routed by sessionId: one process serves one session, and the
                // workspace confinement is what protects the node.
                "fs/read_text_file" | "fs/write_text_file" => {
                    self.on_file_request(message.method(), message.params(), responder)
                        .await;
                }
                method => {
                    // ACP pitfall 3: an unanswered request can hang the prompt.
                    tracing::debug!(%method, "answering an unknown agent request with -32601");
                    let error = agent_client_protocol::Error::method_not_found()
                        .data(Value::String(method.to_owned()));
                    report_reply(responder.respond_with_error(error));
                }
            },
            response @ v1::Dispatch::Response(..) => {
                return Handled::No {
                    message: response,
                    retry: false,
                };
            }
        }
        Handled::Yes
    }

    /// Queues an update; drops it silently if the owner stopped listening.
    pub(crate) async fn deliver(&self, update: AgentUpdate) {
        let _ignored = self.updates.send(update).await;
    }

    async fn on_session_update(&self, params: &Value) {
        let Some(session) = wire::session_id_of(params) else {
            tracing::debug!("ignoring a session/update without sessionId");
            return;
        };
        let Some(update) = params.get("update").and_then(wire::parse_session_update) else {
            tracing::debug!("ignoring a session/update without update.sessionUpdate");
            return;
        };
        {
            let mut route = lock(&self.route);
            let ours = route.session_id.as_ref().map(|ours| ours == session);
            match ours {
                Some(true) => {}
                Some(false) => {
                    tracing::debug!(%session, "ignoring an update of another session");
                    return;
                }
                None => {
                    if route.early.len() < EARLY_UPDATES_MAX {
                        route.early.push_back((session.to_owned(), update));
                    } else {
                        tracing::warn!(%session, "dropping an update sent before session/new was answered: too many");
                    }
                    return;
                }
            }
        }
        self.deliver(update).await;
    }

    /// Sets our session id; returns the held updates that belong to it.
    pub(crate) fn set_session(&self, session_id: &str) -> Vec<AgentUpdate> {
        let mut route = lock(&self.route);
        route.session_id = Some(session_id.to_owned());
        std::mem::take(&mut route.early)
            .into_iter()
            .filter_map(|(session, update)| (session == session_id).then_some(update))
            .collect()
    }

    async fn on_permission_request(&self, params: &Value, responder: v1::Responder<Value>) {
        let ask = wire::parse_permission_request(params);
        let request = {
            let mut table = lock(&self.permissions);
            if table.pending.len() >= PERMISSION_REQUESTS_PENDING_MAX || self.updates.is_closed() {
                drop(table);
                tracing::warn!(title = %ask.title, "answering a permission request with cancelled: nobody can answer it");
                answer_permission(responder, None);
                return;
            }
            let request = table.next_request;
            table.next_request += 1;
            let option_ids = ask.options.iter().map(|o| o.option_id.clone()).collect();
            table.pending.insert(
                request,
                PendingPermission {
                    responder,
                    option_ids,
                },
            );
            request
        };
        let update = AgentUpdate::PermissionRequest {
            request,
            title: ask.title,
            options: ask.options,
            tool_call_id: ask.tool_call_id,
            kind: ask.kind,
        };
        if self.updates.send(update).await.is_err() {
            // Nobody will answer: cancel so the agent does not wait forever.
            let pending = lock(&self.permissions).pending.remove(&request);
            if let Some(pending) = pending {
                answer_permission(pending.responder, None);
            }
        }
    }

    pub(crate) fn respond_permission(
        &self,
        request: u64,
        option_id: Option<String>,
    ) -> Result<(), AgentError> {
        let mut table = lock(&self.permissions);
        let Some(pending) = table.pending.remove(&request) else {
            return Err(AgentError::UnknownPermission { request });
        };
        if let Some(option_id) = &option_id
            && !pending.option_ids.contains(option_id)
        {
            let offered = pending.option_ids.join(", ");
            table.pending.insert(request, pending);
            return Err(AgentError::UnknownPermissionOption {
                request,
                option_id: option_id.clone(),
                offered,
            });
        }
        drop(table);
        answer_permission(pending.responder, option_id.as_deref());
        Ok(())
    }

    pub(crate) fn cancel_permissions(&self) {
        let pending = std::mem::take(&mut lock(&self.permissions).pending);
        for (_, pending) in pending {
            answer_permission(pending.responder, None);
        }
    }

    async fn on_file_request(&self, method: &str, params: &Value, responder: v1::Responder<Value>) {
        let result = if method == "fs/read_text_file" {
            fs::read_text_file(&self.workspace, params).await
        } else {
            fs::write_text_file(&self.workspace, params).await
        };
        match result {
            Ok(answer) => report_reply(responder.respond(answer)),
            Err(error) => {
                tracing::warn!(%method, %error, "refused an agent file request");
                let error = agent_client_protocol::Error::new(error.code(), error.to_string());
                report_reply(responder.respond_with_error(error));
            }
        }
    }
}

fn answer_permission(responder: v1::Responder<Value>, option_id: Option<&str>) {
    report_reply(responder.respond(wire::permission_outcome(option_id)));
}

fn report_reply(result: Result<(), agent_client_protocol::Error>) {
    if let Err(error) = result {
        tracing::debug!(%error, "could not answer the agent: the connection is closing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(session: &str, text: &str) -> Value {
        json!({
            "sessionId": session,
            "update": {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
        })
    }

    #[tokio::test]
    async fn updates_are_routed_by_session_and_held_until_it_is_known() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (updates_tx, mut updates_rx) = mpsc::channel(16);
        let shared = Shared::new(updates_tx, fs::Workspace::new(dir.path())?);

        shared.on_session_update(&update("s1", "early")).await;
        shared.on_session_update(&update("other", "not ours")).await;
        assert!(
            updates_rx.try_recv().is_err(),
            "held until the session is known"
        );
        assert_eq!(
            shared.set_session("s1"),
            vec![AgentUpdate::Text("early".into())]
        );

        shared.on_session_update(&update("other", "ignored")).await;
        shared.on_session_update(&update("s1", "late")).await;
        shared.on_session_update(&json!({"update": {}})).await;
        assert_eq!(updates_rx.try_recv()?, AgentUpdate::Text("late".into()));
        assert!(updates_rx.try_recv().is_err());

        // A closed receiver drops updates silently.
        drop(updates_rx);
        shared
            .on_session_update(&update("s1", "nobody listens"))
            .await;
        Ok(())
    }

    #[tokio::test]
    async fn early_updates_are_bounded() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (updates_tx, _updates_rx) = mpsc::channel(16);
        let shared = Shared::new(updates_tx, fs::Workspace::new(dir.path())?);
        for index in 0..EARLY_UPDATES_MAX + 10 {
            shared
                .on_session_update(&update("s1", &index.to_string()))
                .await;
        }
        assert_eq!(shared.set_session("s1").len(), EARLY_UPDATES_MAX);
        Ok(())
    }

    #[test]
    fn answering_an_unknown_permission_request_is_an_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (updates_tx, _updates_rx) = mpsc::channel(1);
        let shared = Shared::new(updates_tx, fs::Workspace::new(dir.path())?);
        assert!(matches!(
            shared.respond_permission(7, None),
            Err(AgentError::UnknownPermission { request: 7 })
        ));
        Ok(())
    }
}
