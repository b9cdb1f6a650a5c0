//! `certs init` and the peer ALPN's mTLS gate: only certificates of the cluster CA pass.

mod common;

use common::*;
use shoal_client::Client;
use shoal_protocol::ALPN_PEER;
use std::path::Path;
use std::sync::Arc;

fn certs_init(out: &Path, nodes: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["certs", "init", "--out"])
        .arg(out)
        .args(["--nodes", nodes])
        .output()
        .expect("run certs init")
}

/// Connects on the peer ALPN, optionally presenting a client certificate.
async fn peer_connect(
    addr: std::net::SocketAddr,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<quinn::Connection, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in shoal_node::security::tls::load_certs(ca, "ca").unwrap() {
        roots.add(cert).unwrap();
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(shoal_node::security::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots);
    let mut tls = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                shoal_node::security::tls::load_certs(cert, "cert").unwrap(),
                shoal_node::security::tls::load_key(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN_PEER.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connecting = endpoint
        .connect(addr, "localhost")
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(WAIT, connecting)
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| e.to_string())
}

fn close_reason(err: quinn::ConnectionError) -> (u64, String) {
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => (
            close.error_code.into_inner(),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => (u64::MAX, other.to_string()),
    }
}

#[tokio::test]
async fn peer_alpn_admits_only_cluster_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = certs_init(&certs, "n1,n2,n3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "ca.pem",
        "ca.key",
        "client-ca.pem",
        "admin.pem",
        "admin.key",
        "nodes/n1.pem",
        "nodes/n3.key",
    ] {
        assert!(certs.join(file).exists(), "{file} missing");
    }
    // The CA is never overwritten; bad node ids are refused.
    let again = certs_init(&certs, "n4");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = certs_init(&dir.path().join("other"), "n1,../evil");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--nodes"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Node n1 serves with its cluster certificate.
    let mut config = dev_config(&dir.path().join("n1"));
    config.tls.ca_cert_path = certs.join("ca.pem");
    config.tls.cert_path = certs.join("nodes/n1.pem");
    config.tls.key_path = certs.join("nodes/n1.key");
    let profile_dir = dir.path().join("n1");
    let mut node = TestNode::start_with(config).await;
    let addr = node.node.as_ref().unwrap().addr();
    assert!(profile_dir.join("profile.toml").exists());
    // Clients still connect with a bearer token and no certificate.
    let client = Client::connect(&node.profile).await.unwrap();
    assert!(client.list_conversations(1).await.unwrap().is_empty());

    // A peer with n2's certificate passes the TLS gate and is served peer requests.
    let conn = peer_connect(
        addr,
        &certs.join("ca.pem"),
        Some((&certs.join("nodes/n2.pem"), &certs.join("nodes/n2.key"))),
    )
    .await
    .expect("a cluster certificate is accepted");
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let request = shoal_node::peer::PeerRequest::Campaign { shard: 60_000 };
    let frame = shoal_protocol::frame::encode_frame(&request).unwrap();
    send.write_all(&frame).await.unwrap();
    send.finish().unwrap();
    let reply: shoal_node::peer::ControlReply = tokio::time::timeout(
        WAIT,
        shoal_node::gateway::frames::read_frame(&mut recv, 1 << 20),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    match reply {
        shoal_node::peer::ControlReply::Refused(why) => assert!(why.contains("no shard"), "{why}"),
        other => panic!("a campaign for a missing shard must be refused, got {other:?}"),
    }

    // No certificate: refused before any message.
    let conn = peer_connect(addr, &certs.join("ca.pem"), None)
        .await
        .expect("TLS completes");
    let (code, reason) = close_reason(tokio::time::timeout(WAIT, conn.closed()).await.unwrap());
    assert_eq!(code, u64::from(shoal_node::gateway::close_code::REJECTED));
    assert!(reason.contains("cluster CA"), "{reason}");

    // A certificate from another CA fails the TLS handshake itself.
    let foreign = dir.path().join("foreign");
    assert!(certs_init(&foreign, "n2").status.success());
    let result = peer_connect(
        addr,
        &certs.join("ca.pem"),
        Some((&foreign.join("nodes/n2.pem"), &foreign.join("nodes/n2.key"))),
    )
    .await;
    match result {
        Err(_) => {}
        Ok(conn) => {
            // TLS 1.3 may report the client-certificate rejection after the handshake.
            let err = tokio::time::timeout(WAIT, conn.closed()).await.unwrap();
            assert!(
                !matches!(err, quinn::ConnectionError::ApplicationClosed(_)),
                "foreign cert reached the application: {err}"
            );
        }
    }
    node.stop().await;
}
