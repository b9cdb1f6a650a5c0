//! Requests Shoal sends to the agent: numbered on the wire, their answers awaited
//! (or the process's exit), errors made into [`AgentError`]s with credentials
//! redacted.

use super::{AgentError, AgentProcess, EXIT_AFTER_DISCONNECT_MS, lock, redact, wire};
use agent_client_protocol::{
    UntypedMessage, is_connection_terminated, is_incoming_transport_closed,
};
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use tokio::sync::oneshot;

/// The `agent.call` span of a request `method`: a child of the current span (the
/// process's start, or the turn it runs).
pub(super) fn call_span(method: &'static str) -> tracing::Span {
    tracing::info_span!("agent.call", method, outcome = tracing::field::Empty)
}

/// Records how a request ended on its span: `ok`, `error` (the agent answered with an
/// error) or `failed` (no answer: the process exited, the connection broke).
pub(super) fn record_outcome<T>(span: &tracing::Span, result: &Result<T, AgentError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(AgentError::Rpc { .. } | AgentError::AuthRequired { .. }) => "error",
        Err(_) => "failed",
    };
    span.record("outcome", outcome);
}

impl AgentProcess {
    /// Sends a request and waits for its answer or the process's exit, inside its
    /// `agent.call` span.
    pub(super) async fn call(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<Value, AgentError> {
        let span = call_span(method);
        let call = async {
            let (answer_tx, answer_rx) = oneshot::channel();
            self.send_ordered(method, params, move |result| async move {
                // The caller may have stopped waiting (dropped prompt future).
                let _delivered = answer_tx.send(result);
                Ok(())
            })?;
            self.await_answer(method, answer_rx).await
        };
        let answer = tracing::Instrument::instrument(call, span.clone()).await;
        record_outcome(&span, &answer);
        answer
    }

    /// Sends a request whose answer is handed to `on_answer` inside the dispatch
    /// loop, before the next incoming message. Dropping the caller's future
    /// does not cancel the request on the agent.
    pub(super) fn send_ordered<F, Fut>(
        &self,
        method: &'static str,
        params: Value,
        on_answer: F,
    ) -> Result<(), AgentError>
    where
        F: FnOnce(Result<Value, agent_client_protocol::Error>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), agent_client_protocol::Error>> + Send + 'static,
    {
        let message = UntypedMessage::new(method, params).map_err(|error| {
            AgentError::Protocol(format!("could not encode `{method}`: {error}"))
        })?;
        self.connection
            .prepare_request(message)
            .on_receiving_result(on_answer)
            .map_err(|error| {
                AgentError::Protocol(format!(
                    "could not send `{method}` to the agent: {error}; shut it down and start a new one"
                ))
            })
    }

    /// Waits for an answer delivered by [`Self::send_ordered`], or the exit.
    pub(super) async fn await_answer(
        &self,
        method: &'static str,
        answer: oneshot::Receiver<Result<Value, agent_client_protocol::Error>>,
    ) -> Result<Value, AgentError> {
        tokio::select! {
            biased;
            answer = answer => match answer {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) if !self.is_local_failure(&error) => Err(self.rpc_error(&error)),
                Ok(Err(error)) => Err(self.connection_lost(method, &error.to_string()).await),
                Err(_) => Err(self.connection_lost(method, "no answer before the connection closed").await),
            },
            status = self.child.wait_exit() => Err(self.exited_error(status)),
        }
    }

    /// Whether an error was produced locally because the connection ended,
    /// rather than sent by the agent.
    pub(super) fn is_local_failure(&self, error: &agent_client_protocol::Error) -> bool {
        is_incoming_transport_closed(error)
            || is_connection_terminated(error)
            || self.connection.termination().is_some()
    }

    /// The error for a request whose connection broke: [`AgentError::Exited`] if
    /// the process exits soon, else [`AgentError::Protocol`].
    pub(super) async fn connection_lost(&self, method: &str, detail: &str) -> AgentError {
        let grace = Duration::from_millis(EXIT_AFTER_DISCONNECT_MS);
        match self.child.wait_exit_timeout(grace).await {
            Some(status) => self.exited_error(status),
            None => {
                let ended = lock(&self.connection_end)
                    .clone()
                    .unwrap_or_else(|| String::from("still open"));
                AgentError::Protocol(format!(
                    "the connection to the agent broke while waiting for the answer to `{method}` \
                     ({detail}; connection: {ended}) but the process is still running; shut it \
                     down and start a new one"
                ))
            }
        }
    }

    pub(super) fn exited_error(&self, status: String) -> AgentError {
        AgentError::Exited {
            status,
            stderr_excerpt: self.stderr_excerpt(),
        }
    }

    /// The owner's excerpt of the agent's stderr ([`AgentError::agent_output`]).
    pub(super) fn stderr_excerpt(&self) -> String {
        redact::stderr_excerpt(&self.child.stderr_tail(), &self.secrets)
    }

    /// An error answer from the agent, with its data (shortened) in the message, and
    /// credentials redacted from both.
    pub(super) fn rpc_error(&self, error: &agent_client_protocol::Error) -> AgentError {
        let message = match &error.data {
            Some(data) => format!(
                "{} ({})",
                error.message,
                wire::truncate_for_log(&data.to_string())
            ),
            None => error.message.clone(),
        };
        AgentError::Rpc {
            code: i64::from(i32::from(error.code)),
            message: redact::redact(&message, &self.secrets),
        }
    }
}
