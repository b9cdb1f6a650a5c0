//! Newline-delimited JSON-RPC 2.0: bounded line reading, message classification and the
//! writer loop that puts every outgoing message on its own flushed line.

use std::io;

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Longest accepted input line; a longer one is answered with a parse error and skipped.
pub(crate) const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Invalid JSON on a line.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// Valid JSON that is not a JSON-RPC message.
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// The method is not implemented.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// The params are missing or have the wrong shape.
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// The agent failed internally (e.g. its session store is unreadable).
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// The request conflicts with the agent's state (e.g. a prompt is already running).
pub(crate) const BUSY: i64 = -32000;
/// ACP's `auth_required`: the agent needs credentials before it opens a session (the
/// same number as [`BUSY`], told apart by the message).
pub(crate) const AUTH_REQUIRED: i64 = -32000;
/// The named session does not exist.
pub(crate) const SESSION_NOT_FOUND: i64 = -32002;

/// A JSON-RPC error object, sent to the client or received from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub(crate) struct RpcError {
    /// The JSON-RPC error code.
    pub(crate) code: i64,
    /// The human-readable message.
    pub(crate) message: String,
}

impl RpcError {
    /// Builds an error with `code` and `message`.
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// An invalid-params error explaining what is wrong.
    pub(crate) fn invalid_params(detail: impl std::fmt::Display) -> Self {
        Self::new(INVALID_PARAMS, format!("invalid params: {detail}"))
    }
}

/// One line read from the input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line's bytes without the `\n` (and without a trailing `\r`).
    Text(Vec<u8>),
    /// The line was longer than the limit; its bytes were discarded.
    TooLong {
        /// How many bytes the line had when the limit was crossed.
        bytes: usize,
    },
}

/// Reads `\n`-terminated lines with a length limit; a final line without `\n` counts.
pub(crate) struct LineReader<R> {
    inner: R,
    line: Vec<u8>,
    line_bytes_max: usize,
    /// Set once the current line crossed the limit: its bytes are being skipped.
    overflow_bytes: Option<usize>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Wraps `inner`, refusing lines longer than `line_bytes_max`.
    pub(crate) fn new(inner: R, line_bytes_max: usize) -> Self {
        Self {
            inner,
            line: Vec::new(),
            line_bytes_max,
            overflow_bytes: None,
        }
    }

    /// The next line, or `None` at end of input.
    pub(crate) async fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let Self {
                inner,
                line,
                line_bytes_max,
                overflow_bytes,
            } = self;
            let available = inner.fill_buf().await?;
            if available.is_empty() {
                if line.is_empty() && overflow_bytes.is_none() {
                    return Ok(None);
                }
                return Ok(Some(self.take_line()));
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            match overflow_bytes {
                Some(bytes) => *bytes = bytes.saturating_add(chunk.len()),
                None if line.len() + chunk.len() > *line_bytes_max => {
                    *overflow_bytes = Some(line.len() + chunk.len());
                    *line = Vec::new();
                }
                None => line.extend_from_slice(chunk),
            }
            let consumed = chunk.len() + usize::from(newline.is_some());
            inner.consume(consumed);
            if newline.is_some() {
                return Ok(Some(self.take_line()));
            }
        }
    }

    fn take_line(&mut self) -> Line {
        if let Some(bytes) = self.overflow_bytes.take() {
            return Line::TooLong { bytes };
        }
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Line::Text(line)
    }
}

/// A message received from the client.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// A request that must be answered with the same `id`.
    Request {
        /// The request id (a number or a string), echoed unchanged.
        id: Value,
        /// The method name.
        method: String,
        /// The params (`null` when absent).
        params: Value,
    },
    /// A notification, never answered.
    Notification {
        /// The method name.
        method: String,
        /// The params (`null` when absent).
        params: Value,
    },
    /// The client's answer to one of our requests.
    Response {
        /// The id of our request.
        id: Value,
        /// The result, or the error the client returned.
        outcome: Result<Value, RpcError>,
    },
}

/// Parses one line into a message, or into the error to send back with the id to use.
pub(crate) fn parse_message(line: &[u8]) -> Result<Incoming, (Value, RpcError)> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        (
            Value::Null,
            RpcError::new(PARSE_ERROR, format!("parse error: {e}")),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(invalid_request(
            Value::Null,
            "a message must be a JSON object",
        ));
    };
    let id = object.remove("id");
    if let Some(id) = &id
        && !(id.is_number() || id.is_string())
    {
        return Err(invalid_request(
            Value::Null,
            "id must be a number or a string",
        ));
    }
    let params = object.remove("params").unwrap_or(Value::Null);
    match (object.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => Ok(Incoming::Request { id, method, params }),
        (Some(Value::String(method)), None) => Ok(Incoming::Notification { method, params }),
        (Some(_), id) => Err(invalid_request(
            id.unwrap_or(Value::Null),
            "method must be a string",
        )),
        (None, Some(id)) => {
            if let Some(error) = object.remove("error") {
                let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                Ok(Incoming::Response {
                    id,
                    outcome: Err(RpcError::new(code, message)),
                })
            } else if let Some(result) = object.remove("result") {
                Ok(Incoming::Response {
                    id,
                    outcome: Ok(result),
                })
            } else {
                Err(invalid_request(
                    Value::Null,
                    "a response needs a result or an error",
                ))
            }
        }
        (None, None) => Err(invalid_request(
            Value::Null,
            "a message needs a method or an id",
        )),
    }
}

fn invalid_request(id: Value, detail: &str) -> (Value, RpcError) {
    (
        id,
        RpcError::new(INVALID_REQUEST, format!("invalid request: {detail}")),
    )
}

/// A successful response to request `id`.
pub(crate) fn response(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response to request `id` (`null` when the id is unknown).
pub(crate) fn error_response(id: Value, error: &RpcError) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": error.code, "message": error.message},
    })
}

/// An agent→client request.
pub(crate) fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// An agent→client notification.
pub(crate) fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// What the writer loop is asked to do.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Write this message on its own line and flush.
    Message(Value),
    /// Write this message and flush but leave out its newline (a sloppy agent): the
    /// newline is written just before the next message.
    Unterminated(Value),
    /// Exit the process with this code once everything queued before it is written.
    Exit(i32),
}

/// Writes queued messages, one flushed line each, until every sender is gone.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut output: W,
    mut queue: mpsc::Receiver<Outgoing>,
) -> io::Result<()> {
    // The last message was written without its newline.
    let mut unterminated = false;
    while let Some(outgoing) = queue.recv().await {
        let (message, terminate) = match outgoing {
            Outgoing::Message(message) => (message, true),
            Outgoing::Unterminated(message) => (message, false),
            Outgoing::Exit(code) => {
                eprintln!("shoal-demo-agent: exiting with code {code} as scripted");
                std::process::exit(code);
            }
        };
        let mut bytes = Vec::new();
        if unterminated {
            bytes.push(b'\n');
        }
        serde_json::to_writer(&mut bytes, &message)?;
        if terminate {
            bytes.push(b'\n');
        }
        unterminated = !terminate;
        output.write_all(&bytes).await?;
        output.flush().await?;
    }
    output.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &[u8], line_bytes_max: usize) -> Vec<Line> {
        // A tiny buffer makes lines span several fill_buf calls.
        let reader = tokio::io::BufReader::with_capacity(3, input);
        let mut lines = LineReader::new(reader, line_bytes_max);
        let mut out = Vec::new();
        while let Some(line) = lines
            .next_line()
            .await
            .expect("reading a slice cannot fail")
        {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn lines_split_on_newline_and_accept_a_final_unterminated_line() {
        let lines = read_all(b"ab\r\ncdef\n\nlast", 100).await;
        assert_eq!(
            lines,
            vec![
                Line::Text(b"ab".to_vec()),
                Line::Text(b"cdef".to_vec()),
                Line::Text(Vec::new()),
                Line::Text(b"last".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn an_overlong_line_is_reported_and_the_next_line_survives() {
        let lines = read_all(b"0123456789\nok\n0123456789", 5).await;
        assert_eq!(
            lines,
            vec![
                Line::TooLong { bytes: 10 },
                Line::Text(b"ok".to_vec()),
                Line::TooLong { bytes: 10 },
            ]
        );
    }

    #[test]
    fn messages_are_classified() {
        let request = parse_message(br#"{"jsonrpc":"2.0","id":"a","method":"m"}"#);
        assert_eq!(
            request,
            Ok(Incoming::Request {
                id: json!("a"),
                method: "m".into(),
                params: Value::Null
            })
        );
        let note = parse_message(br#"{"jsonrpc":"2.0","method":"n","params":{"x":1}}"#);
        assert_eq!(
            note,
            Ok(Incoming::Notification {
                method: "n".into(),
                params: json!({"x": 1})
            })
        );
        let answer =
            parse_message(br#"{"jsonrpc":"2.0","id":0,"error":{"code":-1,"message":"no"}}"#);
        assert_eq!(
            answer,
            Ok(Incoming::Response {
                id: json!(0),
                outcome: Err(RpcError::new(-1, "no"))
            })
        );
    }

    #[test]
    fn bad_messages_get_the_right_error_codes() {
        let code = |line: &[u8]| parse_message(line).map(|_| ()).map_err(|(_, e)| e.code);
        assert_eq!(code(b"{not json"), Err(PARSE_ERROR));
        assert_eq!(code(b"[1,2]"), Err(INVALID_REQUEST));
        assert_eq!(code(br#"{"id":{},"method":"m"}"#), Err(INVALID_REQUEST));
        assert_eq!(code(br#"{"id":1}"#), Err(INVALID_REQUEST));
    }
}
