//! Certificates, TLS configuration and bearer tokens.
//!
//! * [`tls`]: the dev CA and node certificate (rcgen), and rustls/quinn server configs.
//! * [`tokens`]: tokens signed by the cluster's key (HMAC-SHA256 from `ring`).
//! * [`credentials`]: workspace credentials sealed with AES-256-GCM, the name denylist.

pub mod credentials;
pub mod tls;
pub mod tokens;
