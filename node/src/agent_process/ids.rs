//! Request ids on the wire: the ids of our requests as the agent sees them, and
//! answers matched back to them even when the agent changed the id's JSON type.
//!
//! `agent-client-protocol` names its requests with UUID strings and matches an answer
//! to its request only by an id equal in value and type. Agents are written against
//! clients that count requests (`"id": 1`), and some echo the id back as `"1"` (or
//! parse it as a number and fail on a UUID). So each request we send goes out with the
//! next number, and an answer is mapped back to the crate's id — by the number, or,
//! with a warning, by the same number written as a string. Plain functions over lines
//! (no I/O); the stdio tasks in `framing.rs` call them.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Our requests awaiting an answer whose ids are renumbered; past this, requests keep
/// the crate's own id (they still work with agents that echo ids unchanged).
pub(crate) const RENUMBERED_PENDING_MAX: usize = 1024;

/// The method the crate cancels a request with; its `requestId` names one of ours.
const CANCEL_REQUEST_METHOD: &str = "$/cancel_request";

/// The renumbering of our requests on one connection.
#[derive(Debug)]
pub(crate) struct RequestIds {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The number the next request gets (never 0: some agents take 0 for "no id").
    next: u64,
    /// Wire number → the crate's id, for requests not answered yet.
    pending: BTreeMap<u64, Value>,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                next: 1,
                pending: BTreeMap::new(),
            }),
        }
    }
}

/// The top level of a JSON-RPC message, without building its (maybe large) params
/// or result.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
}

impl RequestIds {
    /// A line we send, with a request's id replaced by its wire number (and a
    /// `$/cancel_request` naming the same number). Anything else is unchanged.
    pub(crate) fn outgoing(&self, line: String) -> String {
        let Ok(envelope) = serde_json::from_str::<Envelope>(&line) else {
            return line;
        };
        let (id, method) = match (envelope.id, envelope.method) {
            (Some(id), Some(method)) => (id, method),
            (None, Some(method)) if method == CANCEL_REQUEST_METHOD => {
                return self.outgoing_cancel(line);
            }
            _ => return line,
        };
        let Ok(mut message) = serde_json::from_str::<Value>(&line) else {
            return line;
        };
        let number = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if inner.pending.len() >= RENUMBERED_PENDING_MAX {
                tracing::warn!(
                    %method,
                    "{RENUMBERED_PENDING_MAX} requests to the agent are unanswered; sending this one with its own id"
                );
                return line;
            }
            let number = inner.next;
            inner.next += 1;
            inner.pending.insert(number, id);
            number
        };
        message["id"] = Value::from(number);
        message.to_string()
    }

    /// A line the agent sent, with the id of an answer to one of our requests put
    /// back as the crate sent it. Requests and notifications are unchanged.
    pub(crate) fn incoming(&self, line: String) -> String {
        let Ok(Envelope {
            id: Some(id),
            method: None,
        }) = serde_json::from_str::<Envelope>(&line)
        else {
            return line;
        };
        let (number, retyped) = match &id {
            Value::Number(number) => match number.as_u64() {
                Some(number) => (number, false),
                None => return line,
            },
            Value::String(text) => match text.trim().parse::<u64>() {
                Ok(number) => (number, true),
                Err(_) => return line,
            },
            _ => return line,
        };
        let original = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.pending.remove(&number)
        };
        let Some(original) = original else {
            return line;
        };
        if retyped {
            tracing::warn!(
                id = %id,
                "the agent answered request {number} with its id as a string; matched it to request {number}"
            );
        }
        let Ok(mut message) = serde_json::from_str::<Value>(&line) else {
            return line;
        };
        message["id"] = original;
        message.to_string()
    }

    /// `$/cancel_request {requestId}` for a renumbered request names its number.
    fn outgoing_cancel(&self, line: String) -> String {
        let Ok(mut message) = serde_json::from_str::<Value>(&line) else {
            return line;
        };
        let Some(request) = message.pointer("/params/requestId").cloned() else {
            return line;
        };
        let number = {
            let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner
                .pending
                .iter()
                .find(|(_, original)| **original == request)
                .map(|(number, _)| *number)
        };
        match number {
            Some(number) => {
                message["params"]["requestId"] = Value::from(number);
                message.to_string()
            }
            None => line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn requests_are_numbered_and_answers_mapped_back() {
        let ids = RequestIds::default();
        let sent = ids.outgoing(
            r#"{"jsonrpc":"2.0","id":"uuid-a","method":"initialize","params":{}}"#.into(),
        );
        assert_eq!(parsed(&sent)["id"], json!(1));
        assert_eq!(parsed(&sent)["method"], json!("initialize"));
        let sent = ids.outgoing(
            r#"{"jsonrpc":"2.0","id":"uuid-b","method":"session/new","params":{}}"#.into(),
        );
        assert_eq!(parsed(&sent)["id"], json!(2));
        // Answers: a number as sent, and a number written as a string.
        let answer =
            ids.incoming(r#"{"jsonrpc":"2.0","id":"2","result":{"sessionId":"s"}}"#.into());
        assert_eq!(parsed(&answer)["id"], json!("uuid-b"));
        assert_eq!(parsed(&answer)["result"], json!({"sessionId": "s"}));
        let answer =
            ids.incoming(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#.into());
        assert_eq!(parsed(&answer)["id"], json!("uuid-a"));
        // Answered once: a second answer to 1 is left for the crate to report.
        let again = r#"{"jsonrpc":"2.0","id":1,"result":null}"#;
        assert_eq!(ids.incoming(again.into()), again);
    }

    #[test]
    fn other_messages_pass_unchanged() {
        let ids = RequestIds::default();
        for line in [
            // Our answer to the agent's request, and our notification.
            r#"{"jsonrpc":"2.0","id":0,"result":{"content":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId":"s"}}"#,
            "not json",
        ] {
            assert_eq!(ids.outgoing(line.into()), line);
        }
        for line in [
            // The agent's request (its own ids), a notification, an unknown answer.
            r#"{"jsonrpc":"2.0","id":0,"method":"fs/read_text_file","params":{}}"#,
            r#"{"jsonrpc":"2.0","method":"session/update","params":{"update":{}}}"#,
            r#"{"jsonrpc":"2.0","id":"7","result":null}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}"#,
            "{\"id\":",
        ] {
            assert_eq!(ids.incoming(line.into()), line);
        }
    }

    #[test]
    fn a_cancel_request_names_the_wire_number() {
        let ids = RequestIds::default();
        ids.outgoing(r#"{"id":"uuid-a","method":"session/prompt","params":{}}"#.into());
        let cancel = ids.outgoing(
            r#"{"jsonrpc":"2.0","method":"$/cancel_request","params":{"requestId":"uuid-a"}}"#
                .into(),
        );
        assert_eq!(parsed(&cancel)["params"]["requestId"], json!(1));
    }

    #[test]
    fn renumbering_is_bounded() {
        let ids = RequestIds::default();
        for i in 0..RENUMBERED_PENDING_MAX {
            ids.outgoing(format!(r#"{{"id":"u{i}","method":"m"}}"#));
        }
        let line = r#"{"id":"over","method":"m"}"#;
        assert_eq!(ids.outgoing(line.into()), line);
    }
}
