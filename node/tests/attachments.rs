//! Attachments through a real node and the demo agent's child process: images and files
//! reach the agent as ACP `image` and `resource` prompt blocks, the transcript names
//! them; an agent that does not advertise them, a running turn and bad attachments are
//! refused before anything is committed.

mod common;

use base64::Engine as _;
use common::*;
use shoal_client::{Client, ClientError};
use shoal_protocol::attachments::Attachment;
use shoal_protocol::{ConversationId, ErrorCode};

fn attachment(name: &str, mime: &str, data: &[u8]) -> Attachment {
    Attachment {
        name: name.into(),
        mime_type: mime.into(),
        data: data.to_vec(),
    }
}

fn digest(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..16].to_owned()
}

fn refused<T>(result: Result<T, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Server(e)) => (e.code, e.message),
        Err(other) => panic!("expected a server error, got {other}"),
        Ok(_) => panic!("expected a refusal"),
    }
}

async fn message_count(client: &Client, conversation: ConversationId) -> u64 {
    client
        .get_conversation(conversation)
        .await
        .unwrap()
        .summary
        .message_count
}

#[tokio::test]
async fn images_and_files_reach_the_agent_as_prompt_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let png = [0x89, b'P', b'N', b'G', 0, 1, 2, 255];
    let blob = [0xff, 0xfe, 0x00];
    let attachments = vec![
        attachment("pic.png", "image/png", &png),
        attachment("notes v1.txt", "text/plain", b"hello notes"),
        attachment("data.bin", "application/octet-stream", &blob),
    ];
    let turn = client
        .send_with_attachments(conv.id, "/attachments", attachments)
        .await
        .unwrap();
    let frames = collect_turn(turn).await;
    let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
    assert_eq!(
        done_content(&frames),
        format!(
            "attachments: image image/png {} chars blake3:{}; resource attachment:///notes%20v1.txt text/plain text 11 chars blake3:{}; resource attachment:///data.bin application/octet-stream blob {} chars blake3:{}",
            b64(&png).len(),
            digest(&b64(&png)),
            digest("hello notes"),
            b64(&blob).len(),
            digest(&b64(&blob)),
        )
    );
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(
        detail.messages[0].content,
        "/attachments\n[attachment: pic.png (image/png, 8 bytes)]\n[attachment: notes v1.txt (text/plain, 11 bytes)]\n[attachment: data.bin (application/octet-stream, 3 bytes)]"
    );
    // Given once: the next turn has none.
    assert_eq!(
        done_content(&collect_turn(client.send(conv.id, "/attachments").await.unwrap()).await),
        "attachments: none"
    );

    // While a turn runs: refused, not queued.
    let mut slow = client.send(conv.id, "/slow 200").await.unwrap();
    wait_for_chunks(&mut slow, 1).await;
    let before = message_count(&client, conv.id).await;
    let (code, message) = refused(
        client
            .send_with_attachments(
                conv.id,
                "look",
                vec![attachment("a.png", "image/png", &png)],
            )
            .await,
    );
    assert_eq!(code, ErrorCode::Busy);
    assert!(message.contains("not queued"), "{message}");
    assert!(client.cancel(conv.id).await.unwrap());
    collect_turn(slow).await;
    assert!(client.list_queue(conv.id).await.unwrap().is_empty());
    assert_eq!(message_count(&client, conv.id).await, before + 1);

    // Bad attachments are refused (the SDK checks as the node does).
    let (code, _) = refused(
        client
            .send_with_attachments(conv.id, "x", vec![attachment("../x", "text/plain", b"x")])
            .await,
    );
    assert_eq!(code, ErrorCode::InvalidArgument);
    node.stop().await;
}

#[tokio::test]
async fn an_agent_that_does_not_take_attachments_refuses_them_before_anything_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    let (_, demo) = config
        .agents
        .iter_mut()
        .find(|(name, _)| name.as_str() == "demo")
        .expect("the dev config has the demo agent");
    demo.env
        .insert(shoal_demo_agent::TEXT_ONLY_ENV.into(), "1".into());
    let mut node = TestNode::start_with(config).await;
    // What the node knows of the agent comes from its probe.
    node.admin()
        .await
        .probe_agents(Some("demo".into()))
        .await
        .unwrap();
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let (code, message) = refused(
        client
            .send_with_attachments(
                conv.id,
                "look",
                vec![attachment("pic.png", "image/png", &[1, 2, 3])],
            )
            .await,
    );
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(
        message.contains("agent `demo` does not take image attachments like pic.png (image/png, 3 bytes) (it does not advertise promptCapabilities.image)"),
        "{message}"
    );
    let (_, message) = refused(
        client
            .send_with_attachments(
                conv.id,
                "read",
                vec![attachment("a.txt", "text/plain", b"a")],
            )
            .await,
    );
    assert!(
        message.contains("promptCapabilities.embeddedContext"),
        "{message}"
    );
    assert_eq!(
        message_count(&client, conv.id).await,
        0,
        "nothing committed"
    );
    // Text alone still works.
    assert_eq!(
        done_content(&collect_turn(client.send(conv.id, "hi").await.unwrap()).await),
        "echo: hi"
    );
    node.stop().await;
}
