//! The real `shoal-node dev` process: ready line, profile, kill -9 mid-turn, restart.

mod common;

use common::wait_for_chunks;
use futures::StreamExt;
use shoal_client::{Client, Profile};
use shoal_protocol::transcript::{Event, MessageStatus, content_from_parts};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(60);

async fn spawn_dev(dir: &Path) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["dev", "--data-dir"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("SHOAL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn shoal-node dev");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("ready") {
                return line;
            }
        }
        panic!("shoal-node exited before printing ready");
    })
    .await
    .expect("ready line in time");
    assert!(ready.contains("127.0.0.1:"), "{ready}");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

#[tokio::test]
async fn kill_9_mid_turn_keeps_the_last_checkpoint_and_restart_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = spawn_dev(dir.path()).await;
    let profile = Profile::load(&dir.path().join("profile.toml")).unwrap();
    let client = Client::connect(&profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    let mut turn = client.send(conv.id, "/slow 1000").await.unwrap();
    // 20 chunks at 50 ms apart span several 250 ms checkpoint intervals.
    wait_for_chunks(&mut turn, 20).await;
    node.start_kill().unwrap();
    node.wait().await.unwrap();
    drop(turn);
    drop(client);

    let mut node = spawn_dev(dir.path()).await;
    let profile = Profile::load(&dir.path().join("profile.toml")).unwrap();
    let client = Client::connect(&profile).await.unwrap();
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(detail.messages.len(), 2, "{detail:?}");
    let saved = &detail.messages[1];
    assert_eq!(saved.status, MessageStatus::Interrupted);
    assert!(
        saved.content.starts_with("chunk 1 chunk 2 "),
        "the checkpoint kept the streamed text: {saved:?}"
    );
    assert_eq!(saved.content, content_from_parts(&saved.parts));
    let mut turn = client.send(conv.id, "after kill").await.unwrap();
    let mut text = String::new();
    while let Some(frame) = tokio::time::timeout(WAIT, turn.next()).await.unwrap() {
        if let Event::TextChunk { text: t, .. } = frame.unwrap().event {
            text.push_str(&t);
        }
    }
    assert_eq!(text, "echo: after kill");
    node.start_kill().unwrap();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn config_check_accepts_good_files_and_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        r#"
default_agent = "demo"
[node]
id = "n1"
data_dir = "/var/lib/shoal"
[tls]
ca_cert_path = "ca.pem"
cert_path = "node.pem"
key_path = "node.key"
[auth]
signing_key_path = "signing.key"
[agents.demo]
command = "/usr/bin/true"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&good).unwrap()
        + "[conversation]\ncheckpoint_interval_ms = 9000\nturn_idle_timeout_ms = 1000\n";
    std::fs::write(&bad, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("conversation.checkpoint_interval_ms"),
        "{stderr}"
    );
}
