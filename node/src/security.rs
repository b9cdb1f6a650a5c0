//! Certificates, TLS configuration and bearer tokens.
//!
//! * [`tls`]: the dev CA and node certificate (rcgen), and rustls/quinn server configs.
//! * [`tokens`]: tokens signed by the cluster's key (HMAC-SHA256 from `ring`).
//! * [`credentials`]: workspace credentials sealed with AES-256-GCM, the name denylist.

/// The bytes of the key file at `path`, or `len` fresh random bytes written there (mode
/// 0600, parent directories created) when it is missing; `true` when it was created.
/// `Err` says what failed.
pub(crate) fn load_or_create_key_file(
    path: &std::path::Path,
    len: usize,
) -> Result<(Vec<u8>, bool), String> {
    use ring::rand::{SecureRandom, SystemRandom};
    match std::fs::read(path) {
        Ok(bytes) => Ok((bytes, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; len];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| "no randomness".to_owned())?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(path, &bytes).map_err(|e| e.to_string())?;
            tls::set_owner_only(path).map_err(|e| e.to_string())?;
            Ok((bytes, true))
        }
        Err(e) => Err(e.to_string()),
    }
}

pub mod credentials;
pub mod tls;
pub mod tokens;
