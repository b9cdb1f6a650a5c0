//! MCP servers through a real node and the demo agent's child process: the agent's
//! servers from the node config and the workspace's (replicated, sealed) reach the
//! session's `mcpServers`; HTTP servers only reach agents that advertise
//! `mcpCapabilities.http`; env and header values never reach the transcript or a
//! listing, and the workspace owner's never reach an editor's turn.

mod common;

use common::*;
use shoal_client::{Client, ClientError, ShareWith};
use shoal_cluster_config::AgentMcpServer;
use shoal_protocol::client::Secret;
use shoal_protocol::mcp::{McpServerSpec, McpTransport};
use shoal_protocol::sharing::Role;
use shoal_protocol::transcript::EventFrame;
use shoal_protocol::{ConversationId, ErrorCode};
use std::collections::BTreeMap;

/// What the demo agent shows for a secret value: the first 16 hex digits of its hash.
fn digest(value: &str) -> String {
    blake3::hash(value.as_bytes()).to_hex()[..16].to_owned()
}

/// A node whose demo agent has a stdio server `files` and an HTTP server `docs`, and
/// the extra env `agent_env`.
async fn node_with_servers(dir: &std::path::Path, agent_env: &[(&str, &str)]) -> TestNode {
    let mut config = dev_config(dir);
    let (_, demo) = config
        .agents
        .iter_mut()
        .find(|(name, _)| name.as_str() == "demo")
        .expect("the dev config has the demo agent");
    demo.mcp.insert(
        "files".into(),
        AgentMcpServer::Stdio {
            command: "/bin/files".into(),
            args: vec!["--ro".into()],
            env: BTreeMap::from([("TOKEN".into(), "t0k3n".into())]),
        },
    );
    demo.mcp.insert(
        "docs".into(),
        AgentMcpServer::Http {
            url: "https://mcp.example/v1".into(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer s3cret".into())]),
        },
    );
    for (name, value) in agent_env {
        demo.env.insert((*name).into(), (*value).into());
    }
    TestNode::start_with(config).await
}

async fn turn(client: &Client, conversation: ConversationId, text: &str) -> Vec<EventFrame> {
    collect_turn(client.send(conversation, text).await.expect("send")).await
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_agents_and_the_workspaces_servers_reach_the_session_without_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node_with_servers(dir.path(), &[]).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let frames = turn(&client, conv.id, "/mcp").await;
    assert_eq!(
        done_content(&frames),
        format!(
            "mcp: docs (http https://mcp.example/v1; headers: Authorization={}), files (stdio /bin/files; env: TOKEN={})",
            digest("Bearer s3cret"),
            digest("t0k3n")
        )
    );
    assert!(warnings(&frames).is_empty(), "{:?}", warnings(&frames));

    // The workspace's `files` replaces the agent's; its env is sealed and never listed.
    let spec = McpServerSpec {
        name: "files".into(),
        transport: McpTransport::Stdio {
            command: "/opt/ws-files".into(),
            args: vec![],
        },
        secrets: BTreeMap::from([("WS_TOKEN".into(), Secret("w0rk-s3cret".into()))]),
    };
    let (_, listed) = client.set_workspace_mcp_server(None, spec).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].secret_names, ["WS_TOKEN"]);
    assert!(!format!("{listed:?}").contains("w0rk-s3cret"));
    let other = client.create_conversation(None, None).await.unwrap();
    let expected = format!(
        "mcp: docs (http https://mcp.example/v1; headers: Authorization={}), files (stdio /opt/ws-files; env: WS_TOKEN={})",
        digest("Bearer s3cret"),
        digest("w0rk-s3cret")
    );
    assert_eq!(
        done_content(&turn(&client, other.id, "/mcp").await),
        expected
    );
    let stored = client.get_conversation(other.id).await.unwrap();
    let shown = format!("{stored:?}");
    for secret in ["s3cret", "t0k3n", "w0rk"] {
        assert!(!shown.contains(secret), "{secret} in the transcript");
    }

    // An editor's turn runs without the owner's secrets: the workspace's server is left
    // out (the agent's own stays), with a warning naming it and no value.
    let token = client
        .share(other.id, Role::Editor, ShareWith::Link, None)
        .await
        .unwrap()
        .token
        .unwrap();
    let editor = node.client_as("eddie").await.with_share_token(Some(token));
    let frames = turn(&editor, other.id, "/mcp").await;
    assert_eq!(
        done_content(&frames),
        format!(
            "mcp: docs (http https://mcp.example/v1; headers: Authorization={}), files (stdio /bin/files; env: TOKEN={})",
            digest("Bearer s3cret"),
            digest("t0k3n")
        )
    );

    // Bad input changes nothing.
    let bad = McpServerSpec {
        name: "bad name".into(),
        transport: McpTransport::Http {
            url: "https://x".into(),
        },
        secrets: BTreeMap::new(),
    };
    assert_eq!(
        code(client.set_workspace_mcp_server(None, bad).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(client.remove_workspace_mcp_server(None, "nope").await),
        ErrorCode::InvalidArgument
    );
    let (_, after) = client.workspace_mcp_servers(None).await.unwrap();
    assert_eq!(after, listed);
    let (_, removed) = client
        .remove_workspace_mcp_server(None, "files")
        .await
        .unwrap();
    assert!(removed.is_empty());
    node.stop().await;
}

#[tokio::test]
async fn http_servers_reach_only_agents_that_take_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node_with_servers(dir.path(), &[(shoal_demo_agent::NO_HTTP_MCP_ENV, "1")]).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let frames = turn(&client, conv.id, "/mcp").await;
    assert_eq!(
        done_content(&frames),
        format!(
            "mcp: files (stdio /bin/files; env: TOKEN={})",
            digest("t0k3n")
        )
    );
    let warnings = warnings(&frames);
    assert!(
        warnings.iter().any(|w| w
            == "MCP server `docs` left out: agent `demo` does not advertise mcpCapabilities.http, so it cannot use HTTP MCP servers"),
        "{warnings:?}"
    );
    node.stop().await;
}
