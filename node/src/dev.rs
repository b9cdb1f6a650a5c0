//! `shoal-node dev`: a node on embedded defaults.
//!
//! Everything lives under the data dir: the sled store, a self-signed CA and node
//! certificate (generated on first start), the token signing key, workspaces, and
//! `profile.toml` (address, server name, CA path, a user token and an admin token) that
//! the SDK and `shoalctl --profile` read. Restarting on the same dir keeps everything.

use crate::security::tls::{TlsPaths, ensure_dev_certs};
use crate::security::tokens::{Scope, TokenSigner};
use shoal_cluster_config::{ConfigError, NodeConfig};
use shoal_protocol::UserId;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The user the dev profile's token names.
pub const DEV_USER: &str = "dev";
/// The user the dev profile's admin token names.
pub const DEV_ADMIN: &str = "admin";
/// The default data dir of `shoal-node dev`, relative to the working directory.
pub const DEV_DATA_DIR_DEFAULT: &str = ".shoal-dev";

/// Why dev mode could not prepare its files.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The data dir could not be created.
    #[error("cannot create the data dir {path}: {source}; pass a writable --data-dir")]
    DataDir {
        /// The dir.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The config (with `SHOAL_*` overrides) is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Certificates could not be generated.
    #[error(transparent)]
    Tls(#[from] crate::security::tls::TlsError),
    /// The signing key could not be created.
    #[error(transparent)]
    Key(#[from] crate::security::tokens::KeyError),
    /// The profile could not be written.
    #[error("cannot write the profile {path}: {source}")]
    Profile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The dev config: the `dev()` preset with the data dir made absolute, the listen
/// address, the demo agent command, and `SHOAL_*` environment overrides applied.
pub fn dev_config(
    data_dir: &Path,
    listen: Option<SocketAddr>,
    agent_program: PathBuf,
    agent_args: Vec<String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<NodeConfig, DevError> {
    std::fs::create_dir_all(data_dir).map_err(|source| DevError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let data_dir = data_dir
        .canonicalize()
        .map_err(|source| DevError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
    let mut config = NodeConfig::dev(data_dir, agent_program, agent_args);
    if let Some(listen) = listen {
        config.node.listen_addr = listen;
        config.node.advertise_addr = listen;
    }
    // Round-trip through TOML so `SHOAL_*` variables override the preset like a file.
    Ok(NodeConfig::from_toml_str(&config.to_toml_string(), env)?)
}

/// Generates the dev CA, node certificate and signing key if missing.
pub fn prepare(config: &NodeConfig) -> Result<(), DevError> {
    ensure_dev_certs(&TlsPaths {
        ca_cert: config.tls.ca_cert_path.clone(),
        cert: config.tls.cert_path.clone(),
        key: config.tls.key_path.clone(),
    })?;
    TokenSigner::load_or_create(&config.auth.signing_key_path)?;
    Ok(())
}

/// Writes `DATA_DIR/profile.toml` for a node listening on `addr`; returns its path.
pub fn write_profile(
    config: &NodeConfig,
    addr: SocketAddr,
    now_secs: u64,
) -> Result<PathBuf, DevError> {
    let signer = TokenSigner::load_or_create(&config.auth.signing_key_path)?;
    let ttl = config.auth.token_ttl_secs.get();
    let user = UserId(DEV_USER.to_owned());
    let admin = UserId(DEV_ADMIN.to_owned());
    let token = signer.issue(&user, &[Scope::User], now_secs, ttl);
    let admin_token = signer.issue(&admin, &[Scope::Admin], now_secs, ttl);
    let mut table = toml::Table::new();
    table.insert("address".into(), addr.to_string().into());
    table.insert("server_name".into(), "localhost".into());
    table.insert(
        "ca_cert".into(),
        config.tls.ca_cert_path.display().to_string().into(),
    );
    table.insert("token".into(), token.into());
    table.insert("admin_token".into(), admin_token.into());
    let text = format!(
        "# Written by `shoal-node dev` at each start: connection settings for the SDK and shoalctl.\n{}",
        toml::to_string(&table).unwrap_or_default()
    );
    let path = config.node.data_dir.join("profile.toml");
    std::fs::write(&path, text).map_err(|source| DevError::Profile {
        path: path.clone(),
        source,
    })?;
    crate::security::tls::set_owner_only(&path).map_err(|source| DevError::Profile {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
