//! Bearer tokens signed by the cluster's key.
//!
//! A token is `shoal1.<claims>.<mac>`: `claims` is base64url JSON ([`Claims`]) and `mac`
//! is base64url HMAC-SHA256 over `shoal1.<claims>` with the signing key. Verification is
//! constant time (`ring::hmac::verify`). The key is 32 random bytes in a 0600 file.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};
use shoal_protocol::UserId;
use std::path::{Path, PathBuf};

const TOKEN_PREFIX: &str = "shoal1";
/// Bytes of a signing key.
pub const SIGNING_KEY_BYTES: usize = 32;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The client API, as the named user.
    User,
    /// The admin API.
    Admin,
}

/// The signed content of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user the token names.
    pub sub: String,
    /// What it allows.
    pub scopes: Vec<Scope>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
}

/// Why a token was refused. Nothing changes on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `shoal1.<claims>.<mac>`.
    #[error("token is malformed; use a token issued by this cluster (see profile.toml)")]
    Malformed,
    /// The signature does not match this cluster's key.
    #[error("token signature is invalid; it was not issued by this cluster")]
    BadSignature,
    /// The token has expired.
    #[error(
        "token expired at {exp} (unix seconds); ask for a new one (`shoalctl admin token USER`)"
    )]
    Expired {
        /// Expiry time.
        exp: u64,
    },
    /// The token does not carry the scope this API needs.
    #[error("token lacks the `{needed:?}` scope")]
    MissingScope {
        /// The scope needed.
        needed: Scope,
    },
}

/// Why the signing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[error("signing key {path}: {message}; check `auth.signing_key_path`")]
pub struct KeyError {
    path: PathBuf,
    message: String,
}

/// The cluster's token signing key.
pub struct TokenSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    /// A signer over the given key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// Loads the key at `path`, creating a fresh random one (mode 0600) if missing.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let err = |message: String| KeyError {
            path: path.to_owned(),
            message,
        };
        let (bytes, _) = super::load_or_create_key_file(path, SIGNING_KEY_BYTES).map_err(err)?;
        if bytes.len() < SIGNING_KEY_BYTES {
            return Err(err(format!(
                "holds {} bytes, at least {SIGNING_KEY_BYTES} are needed",
                bytes.len()
            )));
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// Issues a token for `user` with `scopes`, valid for `ttl_secs` from `now_secs`.
    pub fn issue(&self, user: &UserId, scopes: &[Scope], now_secs: u64, ttl_secs: u64) -> String {
        let claims = Claims {
            sub: user.0.clone(),
            scopes: scopes.to_vec(),
            exp: now_secs.saturating_add(ttl_secs),
            iat: now_secs,
        };
        // Serializing a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&claims).expect("claims serialize");
        let signed = format!("{TOKEN_PREFIX}.{}", URL_SAFE_NO_PAD.encode(json));
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Checks signature, expiry and scope; returns the user the token names.
    pub fn verify(
        &self,
        token: &str,
        now_secs: u64,
        needed: Scope,
    ) -> Result<(UserId, Claims), TokenError> {
        let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (prefix, claims_b64) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if prefix != TOKEN_PREFIX {
            return Err(TokenError::Malformed);
        }
        if mac.is_empty() || claims_b64.is_empty() {
            return Err(TokenError::Malformed);
        }
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, signed.as_bytes(), &mac).map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now_secs {
            return Err(TokenError::Expired { exp: claims.exp });
        }
        if !claims.scopes.contains(&needed) {
            return Err(TokenError::MissingScope { needed });
        }
        let user = UserId::parse(&claims.sub).map_err(|_| TokenError::Malformed)?;
        Ok((user, claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_and_every_refusal() {
        let signer = TokenSigner::from_bytes(&[7; 32]);
        let alice = UserId::parse("alice").unwrap();
        let token = signer.issue(&alice, &[Scope::User], 1000, 60);
        assert_eq!(signer.verify(&token, 1010, Scope::User).unwrap().0, alice);
        assert_eq!(
            signer.verify(&token, 1060, Scope::User),
            Err(TokenError::Expired { exp: 1060 })
        );
        assert_eq!(
            signer.verify(&token, 1010, Scope::Admin),
            Err(TokenError::MissingScope {
                needed: Scope::Admin
            })
        );
        let other = TokenSigner::from_bytes(&[8; 32]);
        assert_eq!(
            other.verify(&token, 1010, Scope::User),
            Err(TokenError::BadSignature)
        );
        // Tampering with the claims breaks the signature.
        let forged = token.replacen("shoal1.", "shoal1.x", 1);
        assert!(signer.verify(&forged, 1010, Scope::User).is_err());
        for junk in ["", "shoal1", "a.b.c", "shoal1..", "shoal1.!!.??"] {
            assert_eq!(
                signer.verify(junk, 0, Scope::User).unwrap_err(),
                TokenError::Malformed,
                "{junk}"
            );
        }
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth/signing.key");
        let a = TokenSigner::load_or_create(&path).unwrap();
        let b = TokenSigner::load_or_create(&path).unwrap();
        let user = UserId::parse("u").unwrap();
        let token = a.issue(&user, &[Scope::User], 0, 100);
        assert!(b.verify(&token, 1, Scope::User).is_ok());
        std::fs::write(&path, b"short").unwrap();
        assert!(
            TokenSigner::load_or_create(&path)
                .unwrap_err()
                .to_string()
                .contains("at least 32")
        );
    }
}
