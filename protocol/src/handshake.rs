//! The connect handshake: magic, version negotiation, authentication.
//!
//! The client's first bidirectional stream carries one [`Hello`] frame; the server
//! answers one [`HelloReply`] frame. On `Rejected` the server closes the connection.

use crate::error::{ErrorCode, WireError};
use crate::ids::UserId;
use serde::{Deserialize, Serialize};

/// First bytes of every `Hello`: identifies a Shoal peer.
pub const MAGIC: [u8; 4] = *b"SHOL";
/// Oldest protocol version this build speaks.
pub const PROTOCOL_VERSION_MIN: u16 = 1;
/// Newest protocol version this build speaks.
pub const PROTOCOL_VERSION_MAX: u16 = 1;
/// Longest accepted bearer token, in bytes.
pub const TOKEN_BYTES_MAX: usize = 4096;

/// The client's opening frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`MAGIC`].
    pub magic: [u8; 4],
    /// Oldest version the client speaks.
    pub version_min: u16,
    /// Newest version the client speaks.
    pub version_max: u16,
    /// Bearer token (user token on `shoal-client/1`, admin token on `shoal-admin/1`).
    pub token: String,
    /// Free-form client name and version for logs (at most 128 bytes are kept).
    pub client_name: String,
}

impl Hello {
    /// A hello for this build's version range.
    pub fn new(token: impl Into<String>, client_name: impl Into<String>) -> Self {
        Self {
            magic: MAGIC,
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION_MAX,
            token: token.into(),
            client_name: client_name.into(),
        }
    }
}

/// The server's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Accepted: the negotiated version and who the token names.
    Welcome {
        /// Negotiated protocol version.
        version: u16,
        /// The serving node's id.
        node_id: String,
        /// The authenticated user.
        user: UserId,
        /// The server's software version.
        server_version: String,
    },
    /// Refused; the connection is closed after this frame.
    Rejected(WireError),
}

/// Checks magic and version range; returns the version to speak.
pub fn negotiate(hello: &Hello) -> Result<u16, WireError> {
    if hello.magic != MAGIC {
        return Err(WireError::new(
            ErrorCode::Malformed,
            "not a Shoal client (bad magic bytes)",
        ));
    }
    let low = hello.version_min.max(PROTOCOL_VERSION_MIN);
    let high = hello.version_max.min(PROTOCOL_VERSION_MAX);
    if low > high {
        return Err(WireError::new(
            ErrorCode::VersionMismatch,
            format!(
                "client speaks protocol versions {}..={}, this node speaks {}..={}; upgrade the older side",
                hello.version_min, hello.version_max, PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX
            ),
        ));
    }
    if hello.token.len() > TOKEN_BYTES_MAX {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!(
                "token is {} bytes, the limit is {TOKEN_BYTES_MAX}",
                hello.token.len()
            ),
        ));
    }
    Ok(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common_version_and_rejects_disjoint_ranges() {
        assert_eq!(
            negotiate(&Hello::new("t", "x")).unwrap(),
            PROTOCOL_VERSION_MAX
        );
        let future = Hello {
            version_min: 99,
            version_max: 120,
            ..Hello::new("t", "x")
        };
        let err = negotiate(&future).unwrap_err();
        assert_eq!(err.code, ErrorCode::VersionMismatch);
        assert!(err.message.contains("99..=120"), "{}", err.message);
        let bad_magic = Hello {
            magic: *b"HTTP",
            ..Hello::new("t", "x")
        };
        assert_eq!(
            negotiate(&bad_magic).unwrap_err().code,
            ErrorCode::Malformed
        );
    }
}
