//! Workspace credentials through a real node: write-only, sealed at rest, injected into
//! the workspace's agents, reserved names refused at write and at injection, and the
//! plaintext nowhere else.

mod common;

use common::*;
use shoal_client::ClientError;
use shoal_node::shard::state_machine::ShardCommand;
use shoal_protocol::ErrorCode;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A value planted in a credential and then searched for everywhere else.
const PLANTED: &str = "planted-credential-0b5e55ed";

/// Collects everything the node logs (at debug) into memory.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() && std::fs::read(&path).is_ok_and(|bytes| contains(&bytes, needle))
        {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn credentials_reach_the_agent_and_nothing_else() {
    let logs = LogSink::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init();

    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let ctx = node.node.as_ref().unwrap().context().clone();
    let client = node.client().await;
    let admin = node.admin().await;

    client
        .set_credential(None, "GITHUB_TOKEN", PLANTED)
        .await
        .expect("set");
    client
        .set_credential(None, "OTHER_TOKEN", "second")
        .await
        .expect("set");
    let listed = client.list_credentials(None).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["GITHUB_TOKEN", "OTHER_TOKEN"]);
    assert!(!format!("{listed:?}").contains(PLANTED));

    // The workspace's agent sees it as an environment variable (shown by its hash, so
    // the transcript does not hold it).
    let conv = client.create_conversation(None, None).await.unwrap();
    let frames = collect_turn(
        client
            .send(conv.id, "/env-digest GITHUB_TOKEN")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        done_content(&frames),
        format!("blake3:{}", blake3::hash(PLANTED.as_bytes()).to_hex())
    );
    assert!(warnings(&frames).is_empty(), "{:?}", warnings(&frames));
    assert!(!format!("{frames:?}").contains(PLANTED));

    // Admin output.
    let status = admin.status().await.unwrap();
    let actors = admin.actors().await.unwrap();
    assert!(!format!("{status:?}{actors:?}").contains(PLANTED));

    // Deleting: gone from the list; a second delete says it was not there.
    assert!(client.delete_credential(None, "OTHER_TOKEN").await.unwrap());
    assert!(!client.delete_credential(None, "OTHER_TOKEN").await.unwrap());
    assert_eq!(client.list_credentials(None).await.unwrap().len(), 1);

    // Nothing on disk holds it: not the store, the Raft log or its snapshots, not the
    // workspace tree or its snapshot chunks.
    let node_dir = ctx.config.node.data_dir.clone();
    let leaked = files_containing(&node_dir, PLANTED);
    assert!(leaked.is_empty(), "plaintext on disk in {leaked:?}");
    let logged = logs.0.lock().unwrap().clone();
    assert!(!logged.is_empty(), "the log sink collected nothing");
    assert!(!contains(&logged, PLANTED), "plaintext in the node's log");
}

#[tokio::test]
async fn reserved_and_malformed_names_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    for name in [
        "PATH",
        "HTTP_PROXY",
        "LD_PRELOAD",
        "SSL_CERT_FILE",
        "GIT_CONFIG_GLOBAL",
        "SHOAL_NODE_ID",
        "XDG_CONFIG_HOME",
        "lower_case",
        "1LEADING_DIGIT",
        "A/B",
        "../ETC",
        "",
    ] {
        let err = client
            .set_credential(None, name, "v")
            .await
            .expect_err(name);
        assert!(
            matches!(&err, ClientError::Server(e) if e.code == ErrorCode::InvalidArgument),
            "{name}: {err:?}"
        );
    }
    let big = "x".repeat(33 * 1024);
    assert!(client.set_credential(None, "BIG", &big).await.is_err());
    assert!(client.list_credentials(None).await.unwrap().is_empty());

    // Another user's workspace (any workspace id but your own) is not found.
    let foreign = shoal_protocol::WorkspaceId::new(shoal_protocol::ShardId(0), 12345);
    let err = client
        .set_credential(Some(foreign), "TOKEN", "v")
        .await
        .expect_err("foreign workspace");
    assert!(
        matches!(&err, ClientError::Server(e) if e.code == ErrorCode::NotFound),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_reserved_name_stored_by_other_means_is_not_injected() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let ctx = node.node.as_ref().unwrap().context().clone();
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    // As if stored before HTTP_PROXY was reserved: straight through the state machine,
    // which checks only the shape (the denylist may grow between versions).
    let key = ctx.credentials_key.as_ref().expect("dev nodes have a key");
    for (name, value) in [
        ("HTTP_PROXY", "http://evil.example"),
        ("GOOD_TOKEN", "fine"),
    ] {
        let cmd = ShardCommand::SetCredential {
            workspace: conv.workspace,
            name: name.into(),
            sealed: key.seal(conv.workspace, name, value).unwrap(),
            at_ms: 1,
        };
        ctx.cluster
            .propose(conv.workspace.shard, cmd)
            .await
            .unwrap();
    }
    let frames = collect_turn(client.send(conv.id, "/echo-env HTTP_PROXY").await.unwrap()).await;
    assert_eq!(done_content(&frames), "<unset>");
    let warned = warnings(&frames);
    assert!(
        warned
            .iter()
            .any(|w| w.contains("HTTP_PROXY") && w.contains("reserved")),
        "the owner hears why: {warned:?}"
    );
    let frames = collect_turn(client.send(conv.id, "/echo-env GOOD_TOKEN").await.unwrap()).await;
    assert_eq!(done_content(&frames), "fine");
}
