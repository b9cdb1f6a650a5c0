//! TLS material: generating a dev CA + node certificate, loading PEM files, and building
//! the QUIC server configuration with Shoal's ALPNs.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why TLS material could not be created, read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed. Nothing was changed.
    #[error("cannot read {what} from {path}: {message}; check the `[tls]` paths in the config")]
    Read {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        message: String,
    },
    /// A file could not be written while generating material.
    #[error("cannot write {path}: {source}; check that the data dir is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("invalid TLS configuration: {0}; regenerate the certificates or fix the `[tls]` paths")]
    Config(String),
}

/// Paths of a node's TLS material.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    /// CA certificate (PEM) clients trust.
    pub ca_cert: PathBuf,
    /// Node certificate chain (PEM).
    pub cert: PathBuf,
    /// Node private key (PEM).
    pub key: PathBuf,
}

/// Creates a self-signed CA and a node certificate for `localhost`, `127.0.0.1` and `::1`
/// under the given paths, unless the node certificate already exists. The CA key is kept
/// beside the CA certificate (`ca.key`) so more certificates can be issued later.
pub fn ensure_dev_certs(paths: &TlsPaths) -> Result<bool, TlsError> {
    if paths.cert.exists() && paths.key.exists() && paths.ca_cert.exists() {
        return Ok(false);
    }
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Shoal dev CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let node_key = KeyPair::generate()?;
    let mut node_params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    node_params
        .distinguished_name
        .push(DnType::CommonName, "Shoal dev node");
    let node_cert = node_params.signed_by(&node_key, &issuer)?;

    let ca_key_path = paths.ca_cert.with_extension("key");
    write_private(&ca_key_path, ca_key.serialize_pem().as_bytes())?;
    write_file(&paths.ca_cert, ca_cert.pem().as_bytes())?;
    write_private(&paths.key, node_key.serialize_pem().as_bytes())?;
    write_file(&paths.cert, node_cert.pem().as_bytes())?;
    Ok(true)
}

/// What `certs init` wrote.
#[derive(Debug, Clone)]
pub struct ClusterCerts {
    /// The cluster CA certificate (`ca.pem`; its key is `ca.key`).
    pub ca_cert: PathBuf,
    /// Per node: `(node id, certificate, key)` under `nodes/`.
    pub nodes: Vec<(String, PathBuf, PathBuf)>,
    /// The admin client certificate and key.
    pub admin: (PathBuf, PathBuf),
    /// The bundle clients trust to verify nodes (`client-ca.pem`).
    pub client_ca_bundle: PathBuf,
}

/// Creates a cluster CA, one certificate per node (server and client auth, for the node
/// id, `localhost`, `127.0.0.1` and `::1`), an admin client certificate and the client CA
/// bundle under `out`. Refuses to overwrite an existing CA, so a cluster's trust root is
/// never replaced by accident.
pub fn init_cluster_certs(out: &Path, nodes: &[String]) -> Result<ClusterCerts, TlsError> {
    let ca_cert_path = out.join("ca.pem");
    if ca_cert_path.exists() {
        return Err(TlsError::Config(format!(
            "{} already exists; pick an empty --out directory (an existing cluster CA is never overwritten)",
            ca_cert_path.display()
        )));
    }
    if nodes.is_empty() {
        return Err(TlsError::Config(
            "no node ids given; pass --nodes n1,n2,n3".to_owned(),
        ));
    }
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Shoal cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);
    write_private(&out.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    write_file(&ca_cert_path, ca_cert.pem().as_bytes())?;
    write_file(&out.join("client-ca.pem"), ca_cert.pem().as_bytes())?;
    let mut written = Vec::new();
    for node in nodes {
        let key = KeyPair::generate()?;
        let names = vec![
            node.clone(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, node.as_str());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer)?;
        let cert_path = out.join("nodes").join(format!("{node}.pem"));
        let key_path = out.join("nodes").join(format!("{node}.key"));
        write_file(&cert_path, cert.pem().as_bytes())?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        written.push((node.clone(), cert_path, key_path));
    }
    let admin_key = KeyPair::generate()?;
    let mut admin_params = CertificateParams::new(Vec::<String>::new())?;
    admin_params
        .distinguished_name
        .push(DnType::CommonName, "shoal-admin");
    admin_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin_params.signed_by(&admin_key, &issuer)?;
    let admin = (out.join("admin.pem"), out.join("admin.key"));
    write_file(&admin.0, admin_cert.pem().as_bytes())?;
    write_private(&admin.1, admin_key.serialize_pem().as_bytes())?;
    Ok(ClusterCerts {
        ca_cert: ca_cert_path,
        nodes: written,
        admin,
        client_ca_bundle: out.join("client-ca.pem"),
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| TlsError::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, bytes).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    write_file(path, bytes)?;
    set_owner_only(path).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Restricts a secret file to its owner (mode 0600).
pub(crate) fn set_owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Reads every certificate of a PEM file.
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Read {
        what,
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate found in the file".to_owned()));
    }
    Ok(certs)
}

/// Reads a private key from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        what: "a private key",
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The crypto provider every Shoal TLS config is built with (never the process default,
/// so a second provider compiled in by a dependency cannot make `builder()` panic).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Idle timeout of QUIC connections, in milliseconds.
pub const QUIC_IDLE_TIMEOUT_MS: u32 = 30_000;
/// Keep-alive interval of QUIC connections, in milliseconds (well under the idle timeout).
pub const QUIC_KEEP_ALIVE_MS: u64 = 5_000;
/// Packets a connected peer may receive before it must acknowledge them (within its
/// `max_ack_delay`, 25 ms, either way): a follower fed an event every few milliseconds
/// acknowledges a handful at once instead of every other one (QUIC's ACK frequency
/// extension, which every quinn peer supports).
pub const QUIC_ACK_ELICITING_THRESHOLD: u32 = 16;

/// The quinn server config for the client, admin and peer ALPNs.
pub fn server_config(paths: &TlsPaths, max_streams: u32) -> Result<quinn::ServerConfig, TlsError> {
    let certs = load_certs(&paths.cert, "the node certificate")?;
    let key = load_key(&paths.key)?;
    // Client certificates are optional on the client and admin ALPNs (they use bearer
    // tokens) and required on the peer ALPN: when one is presented it must chain to the
    // cluster CA, or the TLS handshake fails before any Shoal byte is read.
    let mut roots = rustls::RootCertStore::empty();
    for ca in load_certs(&paths.ca_cert, "the cluster CA certificate")? {
        roots
            .add(ca)
            .map_err(|e| TlsError::Config(format!("cluster CA: {e}")))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![
        shoal_protocol::ALPN_CLIENT.to_vec(),
        shoal_protocol::ALPN_ADMIN.to_vec(),
        shoal_protocol::ALPN_PEER.to_vec(),
    ];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(max_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .keep_alive_interval(Some(std::time::Duration::from_millis(QUIC_KEEP_ALIVE_MS)))
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
            QUIC_IDLE_TIMEOUT_MS,
        ))));
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(QUIC_ACK_ELICITING_THRESHOLD.into());
    transport.ack_frequency_config(Some(acks));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certs_are_generated_once_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths {
            ca_cert: dir.path().join("tls/ca.pem"),
            cert: dir.path().join("tls/node.pem"),
            key: dir.path().join("tls/node.key"),
        };
        assert!(ensure_dev_certs(&paths).unwrap());
        assert!(!ensure_dev_certs(&paths).unwrap());
        server_config(&paths, 16).unwrap();
        let missing = TlsPaths {
            cert: dir.path().join("nope.pem"),
            ..paths
        };
        let err = server_config(&missing, 16).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");
    }
}
