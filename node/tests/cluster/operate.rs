//! Operating a local cluster: `shoal-node up` and `config check`.

use super::harness::*;
use shoal_client::{AdminClient, Client, Profile};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_a_local_cluster_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("c");
    // `up` is killed on drop if the test fails; its nodes would outlive it.
    let _nodes = KillOnDrop(data.clone());
    let mut up = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["up", "--nodes", "3", "--first-port"])
        .arg(free_ports(3).to_string())
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("shoal cluster up: 3 nodes") {
                return;
            }
        }
        panic!("up exited before the cluster was ready");
    })
    .await
    .expect("cluster up in time");
    let profile = Profile::load(&data.join("profile.toml")).unwrap();
    wait_balanced(&[AdminClient::connect(&profile).await.unwrap()], 3).await;
    let client = Client::connect(&profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    assert_eq!(send_ok(&client, conv.id, "hi").await, "echo: hi");
    let pid = rustix::process::Pid::from_raw(up.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = tokio::time::timeout(WAIT, up.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    for n in ["n1", "n2", "n3"] {
        let config = data.join(n).join("shoal.toml");
        let still = std::process::Command::new("pgrep")
            .arg("-f")
            .arg(config.display().to_string())
            .output()
            .unwrap();
        assert!(still.stdout.is_empty(), "{n} still runs after up stopped");
    }
}

#[test]
fn config_check_rejects_a_lease_not_shorter_than_the_election_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        shoal_cluster_config::NodeConfig::dev(dir.path().to_owned(), "demo".into(), Vec::new());
    config.cluster.lease_ms = std::num::NonZeroU64::new(500).unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config.to_toml_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster.lease_ms"), "{stderr}");
    assert!(stderr.contains("election"), "{stderr}");
}
