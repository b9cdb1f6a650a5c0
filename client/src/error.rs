//! The one error type of the SDK.

use shoal_protocol::{ErrorCode, WireError};
use std::path::PathBuf;

/// Everything that can go wrong talking to a Shoal node.
///
/// Each variant's `Display` says what happened and what to do. Whether the server changed
/// anything is stated per variant.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The profile file could not be read or is invalid. Nothing was sent.
    #[error("cannot use profile {}: {message}; fix the file or use another profile", path.display())]
    Profile {
        /// The profile file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The profile has no `admin_token`, which the admin API needs. Nothing was sent.
    #[error(
        "the profile has no admin_token; add `admin_token = \"...\"` to it (`shoal-node dev` writes one)"
    )]
    MissingAdminToken,
    /// No QUIC connection could be established (address, TLS or network). Nothing was sent.
    #[error(
        "cannot connect to {address}: {message}; check that the node is running and that the profile's address, server_name and ca_cert are right"
    )]
    Connect {
        /// The address dialled.
        address: String,
        /// Why it failed.
        message: String,
    },
    /// The node refused the handshake (bad or expired token, version mismatch). Nothing changed.
    #[error("the node refused the connection: {}: {}; check the token in the profile", code_words(.0.code), .0.message)]
    Rejected(WireError),
    /// The node answered the request with an error; the wire error says whether state changed
    /// (see [`ErrorCode`]).
    #[error("{}: {}", code_words(.0.code), .0.message)]
    Server(WireError),
    /// The node sent bytes this client does not understand. The request's outcome is unknown.
    #[error("protocol error: {0}; the node and this client may run incompatible versions")]
    Protocol(String),
    /// The connection or stream broke mid-request. The request may or may not have been applied.
    #[error("connection to the node lost: {0}; retry once the node is reachable")]
    ConnectionLost(String),
    /// The request could not be encoded (for example it exceeds the frame size limit).
    /// Nothing was sent.
    #[error("cannot encode the request: {0}; make it smaller")]
    Encode(String),
    /// An operation did not finish in time. The request may or may not have been applied.
    #[error("{what} timed out after {after_ms} ms; check that the node is healthy and retry")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The limit that expired, in milliseconds.
        after_ms: u64,
    },
}

/// `not_found` → `not found`, for sentences.
fn code_words(code: ErrorCode) -> String {
    code.as_str().replace('_', " ")
}

impl ClientError {
    /// The wire error code, when the node answered with an error (handshake or request).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Rejected(err) | ClientError::Server(err) => Some(err.code),
            _ => None,
        }
    }

    /// The wire error, when the node answered with one.
    pub fn wire_error(&self) -> Option<&WireError> {
        match self {
            ClientError::Rejected(err) | ClientError::Server(err) => Some(err),
            _ => None,
        }
    }

    /// Whether trying again later (possibly on a new connection) can succeed.
    ///
    /// Network failures, timeouts and the server codes `Busy`, `Unavailable`, `Moved`,
    /// `Internal` and `Timeout` are retryable; bad input, authorization failures, missing
    /// targets, profile and protocol errors are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::ConnectionLost(_)
            | ClientError::Timeout { .. } => true,
            ClientError::Rejected(err) | ClientError::Server(err) => matches!(
                err.code,
                ErrorCode::Busy
                    | ErrorCode::Unavailable
                    | ErrorCode::Moved
                    | ErrorCode::Internal
                    | ErrorCode::Timeout
            ),
            ClientError::Profile { .. }
            | ClientError::MissingAdminToken
            | ClientError::Encode(_)
            | ClientError::Protocol(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_what_and_what_to_do() {
        let err = ClientError::Server(WireError::not_found("conversation c-1-00 does not exist"));
        assert_eq!(
            err.to_string(),
            "not found: conversation c-1-00 does not exist"
        );
        assert_eq!(err.code(), Some(ErrorCode::NotFound));
        assert!(!err.is_retryable());

        let err = ClientError::Rejected(WireError::unauthorized("token expired"));
        assert!(err.to_string().contains("check the token"), "{err}");

        let err = ClientError::Timeout {
            what: "request",
            after_ms: 30_000,
        };
        assert!(err.is_retryable());
        assert_eq!(err.code(), None);
        assert!(err.to_string().contains("30000 ms"), "{err}");
    }
}
