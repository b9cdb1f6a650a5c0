//! The agent registry on a real node: probes of real child processes (the demo agent, a
//! missing command, one that exits, one that hangs), enabling and disabling at run time,
//! the guards on creating conversations and starting agents, and home templates read by
//! the demo agent.

mod common;

use common::*;
use shoal_client::ClientError;
use shoal_cluster_config::{AgentName, AgentSpec, HomeFile, HomePath, NodeConfig};
use shoal_protocol::ErrorCode;
use shoal_protocol::admin::{AgentInfo, AgentStatus};
use shoal_protocol::transcript::{Event, MessageStatus};
use std::path::Path;

fn add_agent(config: &mut NodeConfig, id: &str, command: &str, args: &[&str]) {
    let mut spec = AgentSpec::new(id, command);
    spec.args = args.iter().map(|a| (*a).to_owned()).collect();
    config
        .agents
        .insert(AgentName::new(id).expect("agent id"), spec);
}

fn find<'a>(agents: &'a [AgentInfo], id: &str) -> &'a AgentInfo {
    agents
        .iter()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("no agent {id} in {agents:?}"))
}

#[tokio::test]
async fn probes_report_ready_missing_disabled_and_failed_agents() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    config.conversation.agent_probe_timeout_ms = 2_000.try_into().unwrap();
    add_agent(&mut config, "ghost", "/nonexistent/ghost-agent", &[]);
    add_agent(&mut config, "exits", "false", &[]);
    // Never answers `initialize` (and ignores stdin).
    add_agent(&mut config, "hangs", "sleep", &["600"]);
    if let Some(gemini) = config.agents.get_mut("gemini") {
        gemini.enabled = false;
    }
    let mut node = TestNode::start_with(config).await;
    let admin = node.admin().await;

    let (answering, agents) = admin.agents().await.expect("agents");
    assert_eq!(answering, "dev");
    let demo = find(&agents, "demo");
    assert_eq!(demo.status, AgentStatus::Ready, "{demo:?}");
    assert_eq!(demo.label, "Shoal demo agent");
    assert_eq!(demo.agent_name.as_deref(), Some("shoal-demo-agent"));
    assert_eq!(demo.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert!(demo.load_session);
    assert!(demo.auth_methods.is_empty());
    assert!(demo.probed_at_ms.is_some());
    assert_eq!(demo.command.last().map(String::as_str), Some("demo-agent"));

    let ghost = find(&agents, "ghost");
    assert_eq!(
        ghost.status,
        AgentStatus::Missing {
            detail: "`/nonexistent/ghost-agent` does not exist or is not an executable file".into()
        }
    );
    let gemini = find(&agents, "gemini");
    assert_eq!(gemini.status, AgentStatus::Disabled);
    assert!(!gemini.enabled && !gemini.enabled_at_run_time);
    let exits = find(&agents, "exits");
    assert!(
        matches!(&exits.status, AgentStatus::Failed { reason } if reason.contains("exited")),
        "{exits:?}"
    );
    let hangs = find(&agents, "hangs");
    assert!(
        matches!(&hangs.status, AgentStatus::Failed { reason }
            if reason.contains("did not finish initialize within 2000 ms")),
        "{hangs:?}"
    );

    // Within the TTL, a listing reuses the results.
    let (_, again) = admin.agents().await.expect("agents again");
    assert_eq!(find(&again, "demo").probed_at_ms, demo.probed_at_ms);

    // On demand, one agent: probed again (a newer probe time).
    let (_, probed) = admin
        .probe_agents(Some("demo".into()))
        .await
        .expect("probe demo");
    assert_eq!(probed.len(), 1);
    assert!(probed[0].probed_at_ms >= demo.probed_at_ms);
    assert_eq!(probed[0].status, AgentStatus::Ready);
    let err = admin
        .probe_agents(Some("nope".into()))
        .await
        .expect_err("unknown agent");
    assert!(
        matches!(&err, ClientError::Server(e) if e.code == ErrorCode::NotFound
            && e.message.contains("no agent `nope` on node `dev`")),
        "{err:?}"
    );
    // A creator is told it failed, not its stderr.
    let client = node.client().await;
    let err = client
        .create_conversation(None, Some("exits".into()))
        .await
        .expect_err("failed probe");
    let shown = err.to_string();
    assert!(
        shown.contains("agent `exits` failed its probe on node `dev`")
            && shown.contains("ready agents: demo")
            && !shown.contains("exited"),
        "{shown}"
    );
    admin.close().await;
    node.stop().await;
}

#[tokio::test]
async fn a_stale_probe_is_repeated_when_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    config.conversation.agent_probe_ttl_ms = 1_000.try_into().unwrap();
    let mut node = TestNode::start_with(config).await;
    let admin = node.admin().await;
    let (_, agents) = admin.agents().await.expect("agents");
    let first = find(&agents, "demo").probed_at_ms.expect("probed");
    eventually(
        "a listing after the TTL probes the demo agent again",
        || async {
            let (_, agents) = admin.agents().await.expect("agents");
            let at = find(&agents, "demo").probed_at_ms.expect("probed");
            (at > first).then_some(())
        },
    )
    .await;
    admin.close().await;
    node.stop().await;
}

#[tokio::test]
async fn disabling_an_agent_refuses_conversations_and_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_config(dir.path());
    let mut node = TestNode::start_with(config.clone()).await;
    let admin = node.admin().await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.expect("ready");

    let (_, changed) = admin
        .set_agent_enabled("demo", false)
        .await
        .expect("disable");
    assert_eq!(changed[0].status, AgentStatus::Disabled);
    assert!(changed[0].enabled_at_run_time);
    let err = client
        .create_conversation(None, Some("demo".into()))
        .await
        .expect_err("disabled");
    let shown = err.to_string();
    assert!(
        shown.contains("agent `demo` is disabled on node `dev`")
            && shown.contains("shoalctl agents enable demo"),
        "{shown}"
    );
    // A turn of an existing conversation is refused too, naming the agent and the node.
    let frames = collect_turn(client.send(conv.id, "hi").await.expect("send")).await;
    let error = final_message(&frames).error.unwrap_or_default();
    assert!(
        error.contains("agent `demo` is disabled on node `dev`"),
        "{error}"
    );
    admin.close().await;
    node.stop().await;

    // Kept in the node's store: still disabled after a restart.
    let mut node = TestNode::start_with(config).await;
    let admin = node.admin().await;
    let (_, agents) = admin.agents().await.expect("agents");
    let demo = find(&agents, "demo");
    assert!(!demo.enabled && demo.enabled_at_run_time, "{demo:?}");
    let (_, changed) = admin.set_agent_enabled("demo", true).await.expect("enable");
    assert_eq!(changed[0].status, AgentStatus::Ready);
    let client = node.client().await;
    let conv = client
        .create_conversation(None, None)
        .await
        .expect("ready again");
    let frames = collect_turn(client.send(conv.id, "hello").await.expect("send")).await;
    assert_eq!(done_content(&frames), "echo: hello");
    admin.close().await;
    node.stop().await;
}

#[tokio::test]
async fn creating_for_an_agent_that_is_not_installed_lists_the_ready_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    add_agent(&mut config, "ghost", "/nonexistent/ghost-agent", &[]);
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let err = client
        .create_conversation(None, Some("ghost".into()))
        .await
        .expect_err("missing");
    let shown = err.to_string();
    assert!(
        matches!(&err, ClientError::Server(e) if e.code == ErrorCode::InvalidArgument),
        "{err:?}"
    );
    assert!(
        shown.contains("agent `ghost` is not installed on node `dev`")
            && shown.contains("ready agents: demo"),
        "{shown}"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_conversation_whose_agent_is_gone_gets_an_error_naming_agent_and_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    // The demo agent through a link that disappears, as on a node without the agent
    // (a failover to a host where it is not installed).
    let link = dir.path().join("linked-agent");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_shoal-node"), &link).unwrap();
    if let Some(demo) = config.agents.get_mut("demo") {
        demo.command = link.clone();
    }
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.expect("ready");
    std::fs::remove_file(&link).unwrap();
    let frames = collect_turn(client.send(conv.id, "hi").await.expect("send")).await;
    let errors: Vec<&String> = frames
        .iter()
        .filter_map(|f| match &f.event {
            Event::Error { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert!(
        errors.iter().any(
            |m| m.contains("agent `demo` is not installed on node `dev`")
                && m.contains("linked-agent")
        ),
        "{frames:?}"
    );
    assert_eq!(final_message(&frames).status, MessageStatus::Interrupted);
    node.stop().await;
}

fn template(config: &mut NodeConfig, files: &[(&str, HomeFile)]) {
    if let Some(demo) = config.agents.get_mut("demo") {
        demo.home = files
            .iter()
            .map(|(path, file)| (HomePath::new(path).expect("path"), file.clone()))
            .collect();
    }
}

async fn say(node: &TestNode, conversation: shoal_protocol::ConversationId, text: &str) -> String {
    let client = node.client().await;
    let turn = client.send(conversation, text).await.expect("send");
    done_content(&collect_turn(turn).await)
}

#[tokio::test]
async fn home_templates_reach_the_agent_and_are_refreshed_but_never_clobber_edits() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("settings.json");
    std::fs::write(&source, "{\"model\": \"small\"}").unwrap();
    let mut config = dev_config(dir.path());
    template(
        &mut config,
        &[
            (
                ".config/demo/config.toml",
                HomeFile::Content("level = 1".into()),
            ),
            (".demo/settings.json", HomeFile::Source(source.clone())),
        ],
    );
    let mut node = TestNode::start_with(config.clone()).await;
    let client = node.client().await;
    let conv = client
        .create_conversation(None, None)
        .await
        .expect("create");
    assert_eq!(
        say(&node, conv.id, "/cat-home .config/demo/config.toml").await,
        "cat: level = 1"
    );
    assert_eq!(
        say(&node, conv.id, "/cat-home .demo/settings.json").await,
        "cat: {\"model\": \"small\"}"
    );
    // The owner edits one templated file in the agent's home.
    let ctx = node.node.as_ref().expect("running").context().clone();
    let record = ctx
        .store
        .conversation(conv.id)
        .expect("store")
        .expect("conversation");
    let home = ctx.agent_home(record.workspace, conv.id);
    // The context holds the store open.
    drop(ctx);
    std::fs::write(home.join(".demo/settings.json"), "{\"model\": \"mine\"}").unwrap();
    node.stop().await;

    // A new template: the unchanged file is refreshed, the edited one kept.
    template(
        &mut config,
        &[
            (
                ".config/demo/config.toml",
                HomeFile::Content("level = 2".into()),
            ),
            (
                ".demo/settings.json",
                HomeFile::Content("{\"model\": \"big\"}".into()),
            ),
        ],
    );
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let frames = collect_turn(
        client
            .send(conv.id, "/cat-home .config/demo/config.toml")
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(done_content(&frames), "cat: level = 2");
    let kept = warnings(&frames);
    assert!(
        kept.iter().any(|w| w.contains("kept .demo/settings.json")),
        "{kept:?}"
    );
    assert_eq!(
        say(&node, conv.id, "/cat-home .demo/settings.json").await,
        "cat: {\"model\": \"mine\"}"
    );
    assert!(Path::new(&home).join(".shoal-managed.json").is_file());
    node.stop().await;
}
