//! Workspace credentials: named secrets sealed with AES-256-GCM under the cluster's
//! credentials key, injected as environment variables into the workspace's agents.
//!
//! * The key is 32 random bytes in a 0600 file (`auth.credentials_key_path`), the same
//!   file on every node. Its id (the first 8 bytes of its SHA-256, hex) is stored beside
//!   each ciphertext, so a node holding another key says so instead of failing vaguely.
//! * A value is sealed by the node that accepts it, with a fresh random 96-bit nonce and
//!   the workspace and name as associated data (a ciphertext moved to another name or
//!   workspace does not open). Only the sealed form enters the Raft log, snapshots and
//!   the store; plaintext exists only in the request, the agent's environment and
//!   memory while an agent starts.
//! * Names are `[A-Z_][A-Z0-9_]*`, and a reserved-name denylist ([`is_reserved`]) is
//!   enforced when a credential is written and again when it is injected (a value stored
//!   before a name was reserved is never injected).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use shoal_protocol::WorkspaceId;
use std::path::{Path, PathBuf};

/// Bytes of the credentials key.
pub const CREDENTIALS_KEY_BYTES: usize = 32;
/// Longest credential name.
pub const CREDENTIAL_NAME_BYTES_MAX: usize = 128;
/// Largest credential value.
pub const CREDENTIAL_VALUE_BYTES_MAX: usize = 32 * 1024;
/// Most credentials one workspace holds.
pub const CREDENTIALS_PER_WORKSPACE_MAX: usize = 64;

/// Names that are never set from a credential: they steer how the agent's programs find
/// executables, libraries, homes, proxies, trusted certificates, git and package
/// registries — a credential with one of them could hijack or intercept the sandbox.
const RESERVED_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "NODE_EXTRA_CA_CERTS",
    "NODE_OPTIONS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_PROXY_COMMAND",
    "GIT_ASKPASS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
];

/// Prefixes of reserved names (see [`RESERVED_NAMES`]).
const RESERVED_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "SSL_CERT_",
    "GIT_CONFIG_",
    "GIT_SSH",
    "NPM_CONFIG_",
    "XDG_",
    "SHOAL_",
];

/// Whether `name` is reserved, in any case (`http_proxy` is as reserved as
/// `HTTP_PROXY`: many programs read both).
pub fn is_reserved(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    RESERVED_NAMES.contains(&upper.as_str())
        || RESERVED_PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// Checks a credential name: the shape of an environment variable, bounded, not
/// reserved. The error says what is wrong and what is allowed.
pub fn check_name(name: &str) -> Result<(), String> {
    check_shape(name)?;
    if is_reserved(name) {
        return Err(format!(
            "credential name `{name}` is reserved (it steers paths, proxies, TLS trust, git, package registries or Shoal itself); pick another name"
        ));
    }
    Ok(())
}

/// The shape half of [`check_name`], which the replicated state machine checks: the
/// denylist may grow between versions, so it is checked where credentials are written
/// and injected, never on log replay (an older entry must apply alike on every replica).
pub fn check_shape(name: &str) -> Result<(), String> {
    let well_formed = !name.is_empty()
        && name.len() <= CREDENTIAL_NAME_BYTES_MAX
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_uppercase() || (i > 0 && b.is_ascii_digit()));
    if !well_formed {
        return Err(format!(
            "credential name `{}` is not allowed: use [A-Z_][A-Z0-9_]* of at most {CREDENTIAL_NAME_BYTES_MAX} characters",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Checks a credential value's size and content (it becomes an environment variable).
pub fn check_value(value: &str) -> Result<(), String> {
    if value.len() > CREDENTIAL_VALUE_BYTES_MAX {
        return Err(format!(
            "the credential value has {} bytes; at most {CREDENTIAL_VALUE_BYTES_MAX}",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err(
            "the credential value contains a NUL byte, which no environment variable can hold"
                .into(),
        );
    }
    Ok(())
}

/// A credential value as stored: never the plaintext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The id of the key that sealed it.
    pub key_id: String,
    /// The AES-GCM nonce.
    pub nonce: [u8; 12],
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("bytes", &self.ciphertext.len())
            .finish()
    }
}

/// Why the credentials key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("credentials key {path}: {message}; check `auth.credentials_key_path`")]
pub struct CredentialsKeyError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// The cluster's credentials key.
pub struct CredentialsKey {
    cipher: Aes256Gcm,
    id: String,
}

impl std::fmt::Debug for CredentialsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl CredentialsKey {
    /// Loads the key at `path`, creating a random one (0600) when the file is missing.
    pub fn load_or_create(path: &Path) -> Result<Self, CredentialsKeyError> {
        let err = |message: String| CredentialsKeyError {
            path: path.to_owned(),
            message,
        };
        let (bytes, created) =
            super::load_or_create_key_file(path, CREDENTIALS_KEY_BYTES).map_err(err)?;
        if created {
            tracing::warn!(path = %path.display(), "created a new credentials key: every node of the cluster needs this same file");
        }
        Self::from_bytes(&bytes).map_err(err)
    }

    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != CREDENTIALS_KEY_BYTES {
            return Err(format!(
                "holds {} bytes; a credentials key is exactly {CREDENTIALS_KEY_BYTES}",
                bytes.len()
            ));
        }
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|e| e.to_string())?;
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let id = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self { cipher, id })
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aad(workspace: WorkspaceId, name: &str) -> Vec<u8> {
        format!("shoal-credential/1:{workspace}:{name}").into_bytes()
    }

    /// Seals `value` as credential `name` of `workspace`.
    pub fn seal(&self, workspace: WorkspaceId, name: &str, value: &str) -> Result<Sealed, String> {
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a nonce".to_owned())?;
        let aad = Self::aad(workspace, name);
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| "sealing the credential failed".to_owned())?;
        Ok(Sealed {
            key_id: self.id.clone(),
            nonce,
            ciphertext,
        })
    }

    /// Opens credential `name` of `workspace`. The error never holds any of the value.
    pub fn open(
        &self,
        workspace: WorkspaceId,
        name: &str,
        sealed: &Sealed,
    ) -> Result<String, String> {
        if sealed.key_id != self.id {
            return Err(format!(
                "credential `{name}` was sealed under key {} but this node holds key {}: every node needs the same auth.credentials_key_path file",
                sealed.key_id, self.id
            ));
        }
        let aad = Self::aad(workspace, name);
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| format!("credential `{name}` does not open: it is damaged or was not sealed for this workspace and name"))?;
        String::from_utf8(plain).map_err(|_| format!("credential `{name}` is not UTF-8"))
    }
}

/// The environment variables `workspace`'s agents get from its credentials, checked
/// against the denylist again (a credential stored before its name was reserved is not
/// injected), and what was left out, for the owner (names and reasons, no values).
pub fn agent_env(
    ctx: &crate::context::NodeContext,
    workspace: WorkspaceId,
) -> (std::collections::BTreeMap<String, String>, Vec<String>) {
    let mut env = std::collections::BTreeMap::new();
    let mut left_out = Vec::new();
    let stored = match ctx.store.workspace_credentials(workspace) {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(%workspace, error = %e, "cannot read the workspace's credentials");
            left_out.push(
                "the workspace's credentials could not be read; the agent starts without them"
                    .to_owned(),
            );
            return (env, left_out);
        }
    };
    if stored.entries.is_empty() {
        return (env, left_out);
    }
    let Some(key) = &ctx.credentials_key else {
        left_out.push(
            "the workspace has credentials but this node has no `auth.credentials_key_path`; the agent starts without them"
                .to_owned(),
        );
        return (env, left_out);
    };
    for (name, credential) in &stored.entries {
        if let Err(e) = check_name(name) {
            tracing::warn!(%workspace, %name, "a stored credential has a reserved or malformed name; not injected");
            left_out.push(format!("not injected: {e}"));
            continue;
        }
        match key.open(workspace, name, &credential.sealed) {
            Ok(value) => {
                env.insert(name.clone(), value);
            }
            Err(e) => {
                tracing::warn!(%workspace, %name, error = %e, "a credential does not open; not injected");
                left_out.push(format!("not injected: {e}"));
            }
        }
    }
    (env, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::ShardId;

    #[test]
    fn names_are_env_shaped_and_reserved_families_are_refused_in_any_case() {
        for ok in ["GITHUB_TOKEN", "_X", "A1", "OPENAI_API_KEY"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "1A",
            "github_token",
            "A-B",
            "A B",
            "Ä",
            &"A".repeat(129),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for reserved in [
            "PATH",
            "HOME",
            "USER",
            "SHELL",
            "LD_PRELOAD",
            "DYLD_INSERT_LIBRARIES",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "ALL_PROXY",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "NODE_EXTRA_CA_CERTS",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GIT_CONFIG_GLOBAL",
            "GIT_SSH_COMMAND",
            "GIT_SSH",
            "NPM_CONFIG_REGISTRY",
            "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL",
            "XDG_CONFIG_HOME",
            "SHOAL_NODE_ID",
        ] {
            let refused = check_name(reserved);
            assert!(
                refused.as_ref().is_err_and(|e| e.contains("reserved")),
                "{reserved}: {refused:?}"
            );
        }
        // Injection checks names stored by any means, in any case.
        assert!(is_reserved("http_proxy"));
        assert!(is_reserved("Https_Proxy"));
        assert!(!is_reserved("GITHUB_TOKEN"));
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_workspace_name_and_key() {
        let key = CredentialsKey::from_bytes(&[7u8; 32]).unwrap();
        let ws = WorkspaceId::new(ShardId(1), 9);
        let sealed = key.seal(ws, "GITHUB_TOKEN", "ghp_secret").unwrap();
        assert!(
            !sealed
                .ciphertext
                .windows(b"ghp_secret".len())
                .any(|w| w == b"ghp_secret")
        );
        assert!(!format!("{sealed:?}").contains("ghp_secret"));
        assert_eq!(key.open(ws, "GITHUB_TOKEN", &sealed).unwrap(), "ghp_secret");
        // Another name, workspace or key: refused, and the error holds no value.
        let other_ws = WorkspaceId::new(ShardId(1), 10);
        for result in [
            key.open(ws, "OTHER", &sealed),
            key.open(other_ws, "GITHUB_TOKEN", &sealed),
        ] {
            let e = result.unwrap_err();
            assert!(!e.contains("ghp_secret"), "{e}");
        }
        let other_key = CredentialsKey::from_bytes(&[8u8; 32]).unwrap();
        let e = other_key.open(ws, "GITHUB_TOKEN", &sealed).unwrap_err();
        assert!(e.contains("auth.credentials_key_path"), "{e}");
        // Two seals of one value differ (fresh nonces).
        let again = key.seal(ws, "GITHUB_TOKEN", "ghp_secret").unwrap();
        assert_ne!(again.nonce, sealed.nonce);
        assert!(CredentialsKey::from_bytes(&[1u8; 31]).is_err());
    }

    #[test]
    fn values_are_bounded() {
        assert!(check_value("x").is_ok());
        assert!(check_value(&"x".repeat(CREDENTIAL_VALUE_BYTES_MAX + 1)).is_err());
        assert!(check_value("a\0b").is_err());
    }
}
