//! The error every Shoal API returns on the wire.

use serde::{Deserialize, Serialize};

/// What kind of failure a [`WireError`] reports. Encoded by declaration index: append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The token is missing, malformed, expired or not signed by this cluster. Nothing changed.
    Unauthorized,
    /// The caller is authenticated but may not do this. Nothing changed.
    Forbidden,
    /// The named conversation, workspace or message does not exist. Nothing changed.
    NotFound,
    /// A request field is invalid; [`WireError::field`] names it. Nothing changed.
    InvalidArgument,
    /// The target is busy (a turn is already running, a limit is reached). Retry later.
    Busy,
    /// This node does not host the target; [`WireError::moved_to`] says where to go.
    Moved,
    /// An unexpected server-side failure; [`WireError::error_id`] identifies it in the logs.
    Internal,
    /// The peer speaks no protocol version this node supports. The connection is closed.
    VersionMismatch,
    /// A frame or field exceeded its size limit. The connection is closed.
    TooLarge,
    /// The frame could not be decoded. The connection is closed.
    Malformed,
    /// The operation did not finish in time (for example an agent that stopped answering).
    Timeout,
    /// The node is shutting down or not ready yet. Retry on another node or later.
    Unavailable,
    /// Too many failed attempts (for example wrong share tokens): wait, then retry.
    RateLimited,
}

impl ErrorCode {
    /// A stable lowercase name for logs and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Busy => "busy",
            ErrorCode::Moved => "moved",
            ErrorCode::Internal => "internal",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Malformed => "malformed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error sent to a client. `message` is written for a person: what happened, to what,
/// and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    /// The kind of failure.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// For [`ErrorCode::InvalidArgument`]: the request field at fault.
    pub field: Option<String>,
    /// For [`ErrorCode::Internal`]: an id to find the failure in the node's logs.
    pub error_id: Option<String>,
    /// For [`ErrorCode::Moved`]: the address of the node that hosts the target.
    pub moved_to: Option<String>,
}

impl WireError {
    /// An error with just a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            error_id: None,
            moved_to: None,
        }
    }

    /// An [`ErrorCode::InvalidArgument`] error naming `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(ErrorCode::InvalidArgument, message)
        }
    }

    /// An [`ErrorCode::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// An [`ErrorCode::Unauthorized`] error.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// An [`ErrorCode::Forbidden`] error.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// An [`ErrorCode::Internal`] error carrying `error_id` for the logs.
    pub fn internal(error_id: impl Into<String>) -> Self {
        let error_id = error_id.into();
        Self {
            error_id: Some(error_id.clone()),
            ..Self::new(
                ErrorCode::Internal,
                format!("internal error (id {error_id}); the node's log has the details"),
            )
        }
    }
}
