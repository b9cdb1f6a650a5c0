//! `shoal-node dev`: a node on embedded defaults.
//!
//! Everything lives under the data dir: the sled store, a self-signed CA and node
//! certificate (generated on first start), the token signing key, workspaces, and
//! `profile.toml` (address, server name, CA path, a user token and an admin token) that
//! the SDK and `shoalctl --profile` read. Restarting on the same dir keeps everything.

pub mod apply_alone;
pub mod seed;

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
    /// The credentials key could not be made.
    #[error(transparent)]
    CredentialsKey(#[from] crate::security::credentials::CredentialsKeyError),
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
    if let Some(path) = &config.auth.credentials_key_path {
        crate::security::credentials::CredentialsKey::load_or_create(path)?;
    }
    Ok(())
}

/// Writes `DATA_DIR/profile.toml` for a node listening on `addr`; returns its path.
pub fn write_profile(
    config: &NodeConfig,
    addr: SocketAddr,
    now_secs: u64,
) -> Result<PathBuf, DevError> {
    let path = config.node.data_dir.join("profile.toml");
    write_profile_at(config, &path, &[addr], now_secs)?;
    Ok(path)
}

/// Writes a profile naming `addrs` (the first is dialed first, the rest are fallbacks)
/// with a user and an admin token signed by `config`'s key.
pub fn write_profile_at(
    config: &NodeConfig,
    path: &Path,
    addrs: &[SocketAddr],
    now_secs: u64,
) -> Result<(), DevError> {
    let signer = TokenSigner::load_or_create(&config.auth.signing_key_path)?;
    let ttl = config.auth.token_ttl_secs.get();
    let user = UserId(DEV_USER.to_owned());
    let admin = UserId(DEV_ADMIN.to_owned());
    let token = signer.issue(&user, &[Scope::User], now_secs, ttl);
    let admin_token = signer.issue(&admin, &[Scope::Admin], now_secs, ttl);
    let mut table = toml::Table::new();
    if let Some(first) = addrs.first() {
        table.insert("address".into(), first.to_string().into());
    }
    if addrs.len() > 1 {
        let rest: Vec<toml::Value> = addrs[1..].iter().map(|a| a.to_string().into()).collect();
        table.insert("addresses".into(), toml::Value::Array(rest));
    }
    table.insert("server_name".into(), "localhost".into());
    table.insert(
        "ca_cert".into(),
        config.tls.ca_cert_path.display().to_string().into(),
    );
    table.insert("token".into(), token.into());
    table.insert("admin_token".into(), admin_token.into());
    let text = format!(
        "# Written by `shoal-node` at each start: connection settings for the SDK and shoalctl.\n{}",
        toml::to_string(&table).unwrap_or_default()
    );
    std::fs::write(path, text).map_err(|source| DevError::Profile {
        path: path.to_owned(),
        source,
    })?;
    crate::security::tls::set_owner_only(path).map_err(|source| DevError::Profile {
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}

/// One node of a local cluster made by [`prepare_cluster`].
#[derive(Debug, Clone)]
pub struct LocalNode {
    /// Node id (`n1`, `n2`, …).
    pub name: String,
    /// Its config file.
    pub config_path: PathBuf,
    /// Its address.
    pub addr: SocketAddr,
    /// Its data dir.
    pub data_dir: PathBuf,
}

/// Lays out a local cluster of `nodes` nodes on loopback under `dir` (reusing what
/// exists): a cluster CA and one certificate per node (`dir/certs`), one shared signing
/// key, and per node `dir/nN/shoal.toml` listening on `127.0.0.1:first_port + N - 1`
/// with every other node as a seed. `edit` may adjust each config before it is written
/// (tests shorten timings). Writes `dir/profile.toml` listing every node's address.
pub fn prepare_cluster(
    dir: &Path,
    nodes: u16,
    first_port: u16,
    agent_program: PathBuf,
    agent_args: Vec<String>,
    edit: impl Fn(&mut NodeConfig),
) -> Result<Vec<LocalNode>, DevError> {
    let mkdir = |path: &Path| {
        std::fs::create_dir_all(path).map_err(|source| DevError::DataDir {
            path: path.to_owned(),
            source,
        })
    };
    mkdir(dir)?;
    let dir = dir.canonicalize().map_err(|source| DevError::DataDir {
        path: dir.to_owned(),
        source,
    })?;
    let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
    let certs = dir.join("certs");
    if !certs.join("ca.pem").exists() {
        crate::security::tls::init_cluster_certs(&certs, &names)?;
    }
    let signing_key = dir.join("auth").join("signing.key");
    TokenSigner::load_or_create(&signing_key)?;
    // One credentials key for every node, like the signing key.
    let credentials_key = dir.join("auth").join("credentials.key");
    crate::security::credentials::CredentialsKey::load_or_create(&credentials_key)?;
    let addrs: Vec<SocketAddr> = (0..nodes)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], first_port.saturating_add(i))))
        .collect();
    let mut out = Vec::new();
    let mut first = None;
    for (i, name) in names.iter().enumerate() {
        let data_dir = dir.join(name);
        mkdir(&data_dir)?;
        let mut config =
            NodeConfig::dev(data_dir.clone(), agent_program.clone(), agent_args.clone());
        config.node.id =
            shoal_cluster_config::NodeId::new(name.as_str()).map_err(|e| DevError::DataDir {
                path: data_dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        config.node.listen_addr = addrs[i];
        config.node.advertise_addr = addrs[i];
        config.tls.ca_cert_path = certs.join("ca.pem");
        config.tls.cert_path = certs.join("nodes").join(format!("{name}.pem"));
        config.tls.key_path = certs.join("nodes").join(format!("{name}.key"));
        config.auth.signing_key_path = signing_key.clone();
        config.auth.credentials_key_path = Some(credentials_key.clone());
        config.cluster.replicas =
            std::num::NonZeroU8::new(nodes.min(3) as u8).unwrap_or(std::num::NonZeroU8::MIN);
        config.cluster.seeds = addrs.iter().filter(|a| **a != addrs[i]).copied().collect();
        edit(&mut config);
        // Check it like a file the operator wrote.
        let text = config.to_toml_string();
        let checked = NodeConfig::from_toml_str(&text, std::iter::empty())?;
        first.get_or_insert(checked);
        let config_path = data_dir.join("shoal.toml");
        std::fs::write(
            &config_path,
            format!("# Written by `shoal-node up`: node {name} of a local cluster.\n{text}"),
        )
        .map_err(|source| DevError::Profile {
            path: config_path.clone(),
            source,
        })?;
        out.push(LocalNode {
            name: name.clone(),
            config_path,
            addr: addrs[i],
            data_dir,
        });
    }
    let Some(first) = first else {
        return Ok(out);
    };
    write_profile_at(
        &first,
        &dir.join("profile.toml"),
        &addrs,
        crate::context::wall_clock_ms() / 1000,
    )?;
    Ok(out)
}

/// Attempts at finding [`free_port_range`].
const PORT_RANGE_ATTEMPTS: usize = 200;

/// The first of `n` consecutive UDP ports free on loopback right now (for `up`-style
/// local clusters in tests and benchmarks; another process may still take one later).
pub fn free_port_range(n: u16) -> Option<u16> {
    (0..PORT_RANGE_ATTEMPTS).find_map(|_| {
        let base = 20_000 + (rand::random::<u16>() % 30_000);
        (0..n)
            .all(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok())
            .then_some(base)
    })
}
