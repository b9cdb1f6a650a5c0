//! The profile file: where the nodes are and how to authenticate to them.
//!
//! `shoal-node dev` writes one to `DATA_DIR/profile.toml`:
//! ```toml
//! address = "127.0.0.1:7443"      # host:port of a node
//! server_name = "localhost"        # TLS server name
//! ca_cert = "tls/ca.pem"           # relative paths resolve against the profile's directory
//! token = "<user token>"
//! admin_token = "<admin token>"    # optional
//! share_token = "shoalshare1.…"     # optional: act on conversations with a share token
//! ```
//!
//! For a cluster, add the other nodes (optional; all nodes' certificates must carry
//! `server_name` and be signed by `ca_cert`):
//! ```toml
//! addresses = ["127.0.0.1:7444", "127.0.0.1:7445"]
//! ```
//! The client connects to `address` first and tries `addresses` in order when a connect
//! fails; after a lost connection it starts again from the address that last worked.

use crate::ClientError;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The largest profile file accepted, in bytes (a profile is a handful of short lines).
pub const PROFILE_BYTES_MAX: u64 = 64 * 1024;
/// Most entries in a profile's `addresses` list (each dead one can cost a
/// [`crate::DIAL_TIMEOUT_MS`] per reconnect).
pub const PROFILE_ADDRESSES_MAX: usize = 16;

/// Where the nodes are and how to authenticate to them.
#[derive(Clone, PartialEq, Eq)]
pub struct Profile {
    /// `host:port` of a node's client endpoint: the first one dialled.
    pub address: String,
    /// `host:port` of other nodes of the same cluster (key `addresses`, optional, at most
    /// [`PROFILE_ADDRESSES_MAX`]), tried in order when connecting to `address` fails. Same
    /// `server_name`, CA and token. The admin client does not use them.
    pub addresses: Vec<String>,
    /// The name the node's TLS certificate is issued for.
    pub server_name: String,
    /// The CA certificate (PEM) that signs the node's certificate; absolute after loading.
    pub ca_cert: PathBuf,
    /// Bearer token for the client API.
    pub token: String,
    /// Bearer token for the admin API, if this profile may use it.
    pub admin_token: Option<String>,
    /// A share token (`shoalshare1.…`, key `share_token`, optional): a client made from
    /// this profile acts on conversations with it (see [`crate::Client::connect_shared`]).
    pub share_token: Option<String>,
}

/// Tokens are secrets: never print them.
impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("address", &self.address)
            .field("addresses", &self.addresses)
            .field("server_name", &self.server_name)
            .field("ca_cert", &self.ca_cert)
            .field("token", &"<redacted>")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "share_token",
                &self.share_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Unknown keys are ignored so a newer node may write more than this client reads.
#[derive(Deserialize)]
struct RawProfile {
    address: String,
    #[serde(default)]
    addresses: Vec<String>,
    server_name: String,
    ca_cert: PathBuf,
    token: String,
    admin_token: Option<String>,
    share_token: Option<String>,
}

/// Checks that `value` (the profile key `key`) is a non-empty `host:port`.
fn check_address(key: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("`{key}` is empty"));
    }
    if !value.contains(':') {
        return Err(format!(
            "`{key}` = {value:?} has no port; write it as host:port"
        ));
    }
    Ok(())
}

impl Profile {
    /// Reads and checks a profile file; a relative `ca_cert` is resolved against the file's
    /// directory.
    pub fn load(path: &Path) -> Result<Profile, ClientError> {
        let error = |message: String| ClientError::Profile {
            path: path.to_owned(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
        if meta.len() > PROFILE_BYTES_MAX {
            return Err(error(format!(
                "the file is {} bytes, more than the {PROFILE_BYTES_MAX} a profile may have",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
        Self::parse(&text, base_dir).map_err(error)
    }

    /// Parses profile text; relative `ca_cert` paths are joined to `base_dir`.
    pub(crate) fn parse(text: &str, base_dir: &Path) -> Result<Profile, String> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| {
            // toml's message spans several lines (it quotes the offending line); keep one.
            e.to_string().lines().collect::<Vec<_>>().join(" ")
        })?;
        let require = |key: &str, value: &str| {
            if value.trim().is_empty() {
                Err(format!("`{key}` is empty"))
            } else {
                Ok(())
            }
        };
        check_address("address", &raw.address)?;
        require("server_name", &raw.server_name)?;
        require("token", &raw.token)?;
        if raw.ca_cert.as_os_str().is_empty() {
            return Err("`ca_cert` is empty".to_owned());
        }
        if raw.addresses.len() > PROFILE_ADDRESSES_MAX {
            return Err(format!(
                "`addresses` lists {} nodes, more than the {PROFILE_ADDRESSES_MAX} a profile may list; keep a few per cluster",
                raw.addresses.len()
            ));
        }
        for (i, address) in raw.addresses.iter().enumerate() {
            check_address(&format!("addresses[{i}]"), address)?;
        }
        let ca_cert = if raw.ca_cert.is_absolute() {
            raw.ca_cert
        } else {
            base_dir.join(raw.ca_cert)
        };
        Ok(Profile {
            address: raw.address,
            addresses: raw.addresses,
            server_name: raw.server_name,
            ca_cert,
            token: raw.token,
            admin_token: raw.admin_token.filter(|t| !t.trim().is_empty()),
            share_token: raw.share_token.filter(|t| !t.trim().is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
address = "127.0.0.1:7443"
server_name = "localhost"
ca_cert = "tls/ca.pem"
token = "user-token"
admin_token = "admin-token"
"#;

    #[test]
    fn relative_ca_cert_resolves_against_the_profile_directory() {
        let profile = Profile::parse(FULL, Path::new("/data/dev")).unwrap();
        assert_eq!(profile.ca_cert, PathBuf::from("/data/dev/tls/ca.pem"));
        assert_eq!(profile.address, "127.0.0.1:7443");
        assert_eq!(profile.server_name, "localhost");
        assert_eq!(profile.token, "user-token");
        assert_eq!(profile.admin_token.as_deref(), Some("admin-token"));
    }

    #[test]
    fn absolute_ca_cert_is_kept_and_admin_token_is_optional() {
        let text = r#"
address = "[::1]:7443"
server_name = "localhost"
ca_cert = "/etc/shoal/ca.pem"
token = "t"
"#;
        let profile = Profile::parse(text, Path::new("/data/dev")).unwrap();
        assert_eq!(profile.ca_cert, PathBuf::from("/etc/shoal/ca.pem"));
        assert_eq!(profile.admin_token, None);
        assert!(profile.addresses.is_empty());
    }

    #[test]
    fn addresses_list_the_other_nodes_in_order() {
        let text = format!("{FULL}addresses = [\"127.0.0.1:7444\", \"node-c:7443\"]\n");
        let profile = Profile::parse(&text, Path::new("/")).unwrap();
        assert_eq!(profile.address, "127.0.0.1:7443");
        assert_eq!(profile.addresses, vec!["127.0.0.1:7444", "node-c:7443"]);
        assert!(format!("{profile:?}").contains("node-c:7443"));
    }

    #[test]
    fn bad_addresses_name_the_entry() {
        let no_port = format!("{FULL}addresses = [\"a:1\", \"node-c\"]\n");
        let err = Profile::parse(&no_port, Path::new("/")).unwrap_err();
        assert!(
            err.contains("`addresses[1]`") && err.contains("host:port"),
            "{err}"
        );

        let empty = format!("{FULL}addresses = [\" \"]\n");
        let err = Profile::parse(&empty, Path::new("/")).unwrap_err();
        assert_eq!(err, "`addresses[0]` is empty");

        let many: Vec<String> = (0..=PROFILE_ADDRESSES_MAX)
            .map(|i| format!("\"n{i}:1\""))
            .collect();
        let too_many = format!("{FULL}addresses = [{}]\n", many.join(", "));
        let err = Profile::parse(&too_many, Path::new("/")).unwrap_err();
        assert!(err.contains("`addresses`"), "{err}");

        let not_a_list = format!("{FULL}addresses = \"a:1\"\n");
        let err = Profile::parse(&not_a_list, Path::new("/")).unwrap_err();
        assert!(err.contains("addresses"), "{err}");
    }

    #[test]
    fn bad_profiles_name_the_key() {
        let missing = "address = \"a:1\"\nserver_name = \"x\"\nca_cert = \"c\"\n";
        let err = Profile::parse(missing, Path::new("/")).unwrap_err();
        assert!(err.contains("token"), "{err}");
        assert!(!err.contains('\n'), "{err}");

        let empty = FULL.replace("user-token", " ");
        assert_eq!(
            Profile::parse(&empty, Path::new("/")).unwrap_err(),
            "`token` is empty"
        );

        let no_port = FULL.replace("127.0.0.1:7443", "localhost");
        assert!(
            Profile::parse(&no_port, Path::new("/"))
                .unwrap_err()
                .contains("host:port")
        );
    }

    #[test]
    fn debug_never_prints_tokens() {
        let profile = Profile::parse(FULL, Path::new("/")).unwrap();
        let text = format!("{profile:?}");
        assert!(!text.contains("user-token") && !text.contains("admin-token"));
    }

    #[test]
    fn load_reports_the_path_of_a_missing_file() {
        let err = Profile::load(Path::new("/nonexistent/shoal/profile.toml")).unwrap_err();
        assert!(matches!(err, ClientError::Profile { .. }));
        assert!(err.to_string().contains("/nonexistent/shoal/profile.toml"));
    }
}
