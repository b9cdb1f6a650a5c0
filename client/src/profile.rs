//! The profile file: where a node is and how to authenticate to it.
//!
//! `shoal-node dev` writes one to `DATA_DIR/profile.toml`:
//! ```toml
//! address = "127.0.0.1:7443"      # host:port of a node
//! server_name = "localhost"        # TLS server name
//! ca_cert = "tls/ca.pem"           # relative paths resolve against the profile's directory
//! token = "<user token>"
//! admin_token = "<admin token>"    # optional
//! ```

use crate::ClientError;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The largest profile file accepted, in bytes (a profile is a handful of short lines).
pub const PROFILE_BYTES_MAX: u64 = 64 * 1024;

/// Where a node is and how to authenticate to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Profile {
    /// `host:port` of a node's client endpoint.
    pub address: String,
    /// The name the node's TLS certificate is issued for.
    pub server_name: String,
    /// The CA certificate (PEM) that signs the node's certificate; absolute after loading.
    pub ca_cert: PathBuf,
    /// Bearer token for the client API.
    pub token: String,
    /// Bearer token for the admin API, if this profile may use it.
    pub admin_token: Option<String>,
}

/// Tokens are secrets: never print them.
impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("address", &self.address)
            .field("server_name", &self.server_name)
            .field("ca_cert", &self.ca_cert)
            .field("token", &"<redacted>")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Unknown keys are ignored so a newer node may write more than this client reads.
#[derive(Deserialize)]
struct RawProfile {
    address: String,
    server_name: String,
    ca_cert: PathBuf,
    token: String,
    admin_token: Option<String>,
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
        require("address", &raw.address)?;
        require("server_name", &raw.server_name)?;
        require("token", &raw.token)?;
        if raw.ca_cert.as_os_str().is_empty() {
            return Err("`ca_cert` is empty".to_owned());
        }
        if !raw.address.contains(':') {
            return Err(format!(
                "`address` = {:?} has no port; write it as host:port",
                raw.address
            ));
        }
        let ca_cert = if raw.ca_cert.is_absolute() {
            raw.ca_cert
        } else {
            base_dir.join(raw.ca_cert)
        };
        Ok(Profile {
            address: raw.address,
            server_name: raw.server_name,
            ca_cert,
            token: raw.token,
            admin_token: raw.admin_token.filter(|t| !t.trim().is_empty()),
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
