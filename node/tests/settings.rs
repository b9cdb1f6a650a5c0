//! Session settings through a real node, the SDK and the demo agent's child process: the
//! modes and models the agent offers are shown to the owner, the owner's picks reach the
//! agent (`session/set_mode`, `session/set_config_option`) and reach it again after a
//! restart; bad picks, picks during a turn and picks by sharees are refused and change
//! nothing.

mod common;

use common::*;
use shoal_client::{Client, ClientError, ShareWith};
use shoal_protocol::settings::SettingKind;
use shoal_protocol::sharing::Role;
use shoal_protocol::{ConversationId, ErrorCode};

async fn say(client: &Client, conversation: ConversationId, text: &str) -> String {
    done_content(&collect_turn(client.send(conversation, text).await.expect("send")).await)
}

fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (ErrorCode, String) {
    match result {
        Ok(answer) => panic!("expected a refusal, got {answer:?}"),
        Err(ClientError::Server(e)) => (e.code, e.message),
        Err(other) => panic!("expected a server error, got {other}"),
    }
}

#[tokio::test]
async fn the_agents_modes_and_models_are_shown_picked_and_applied_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let before = client.get_conversation(conv.id).await.unwrap().settings;
    assert_eq!(
        before.offer, None,
        "nothing is known before a session starts"
    );

    assert_eq!(
        say(&client, conv.id, "/settings").await,
        "mode: code, model: demo-fast"
    );
    let settings = client.get_conversation(conv.id).await.unwrap().settings;
    let offer = settings.offer.clone().expect("the agent's offer is kept");
    let modes = offer.setting(SettingKind::Mode).expect("modes");
    assert_eq!(modes.current, "code");
    assert_eq!(modes.choice_list(), "code, ask, architect");
    let models = offer.setting(SettingKind::Model).expect("models");
    assert_eq!(models.choice_list(), "demo-fast, demo-smart");

    // A value the agent does not offer: refused, listing what it offers; nothing changed.
    let (code, message) = refused(
        client
            .set_session_settings(conv.id, Some("yolo"), Some("demo-smart"))
            .await,
    );
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(
        message.contains("does not offer mode `yolo`; it offers: code, ask, architect"),
        "{message}"
    );
    let (code, message) = refused(
        client
            .set_session_settings(conv.id, None, Some("gpt-9"))
            .await,
    );
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("demo-fast, demo-smart"), "{message}");
    let unchanged = client.get_conversation(conv.id).await.unwrap().settings;
    assert_eq!((unchanged.mode, unchanged.model), (None, None));

    let set = client
        .set_session_settings(conv.id, Some("ask"), Some("demo-smart"))
        .await
        .unwrap();
    assert_eq!(set.mode.as_deref(), Some("ask"));
    assert_eq!(set.model.as_deref(), Some("demo-smart"));
    assert_eq!(
        say(&client, conv.id, "/settings").await,
        "mode: ask, model: demo-smart"
    );
    // What the agent runs now is what it reported (its `current_mode_update`, the
    // `session/set_config_option` answer).
    let offer = client
        .get_conversation(conv.id)
        .await
        .unwrap()
        .settings
        .offer
        .unwrap();
    assert_eq!(offer.setting(SettingKind::Mode).unwrap().current, "ask");
    assert_eq!(
        offer.setting(SettingKind::Model).unwrap().current,
        "demo-smart"
    );
    // Only the model changes; the mode stays.
    client
        .set_session_settings(conv.id, None, Some("demo-fast"))
        .await
        .unwrap();
    assert_eq!(
        say(&client, conv.id, "/settings").await,
        "mode: ask, model: demo-fast"
    );
    drop(client);
    node.stop().await;

    // A new node process, a new agent process that starts with its defaults: the picks
    // are replicated state and applied to it again.
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let kept = client.get_conversation(conv.id).await.unwrap().settings;
    assert_eq!(kept.mode.as_deref(), Some("ask"));
    assert!(kept.offer.is_some(), "the offer is kept across restarts");
    assert_eq!(
        say(&client, conv.id, "/settings").await,
        "mode: ask, model: demo-fast"
    );
    node.stop().await;
}

#[tokio::test]
async fn picks_made_before_the_first_session_are_applied_or_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    // As `shoalctl conv new --mode architect --model demo-smart` does.
    let conv = client.create_conversation(None, None).await.unwrap();
    client
        .set_session_settings(conv.id, Some("architect"), Some("demo-smart"))
        .await
        .unwrap();
    assert_eq!(
        say(&client, conv.id, "/settings").await,
        "mode: architect, model: demo-smart"
    );

    // Nothing is known to check against before the first session: a mode the agent
    // turns out not to offer is left out with a warning to the owner, and the turn runs.
    let other = client.create_conversation(None, None).await.unwrap();
    client
        .set_session_settings(other.id, Some("nonsense"), None)
        .await
        .unwrap();
    let frames = collect_turn(client.send(other.id, "/settings").await.unwrap()).await;
    assert_eq!(done_content(&frames), "mode: code, model: demo-fast");
    let warnings = warnings(&frames);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("does not offer mode `nonsense`; it offers: code, ask, architect")),
        "{warnings:?}"
    );
    // Now the offer is known, and checked.
    let (code, _) = refused(
        client
            .set_session_settings(other.id, Some("nonsense"), None)
            .await,
    );
    assert_eq!(code, ErrorCode::InvalidArgument);
    // Badly formed ids are refused before anything is known.
    let third = client.create_conversation(None, None).await.unwrap();
    let (code, message) = refused(
        client
            .set_session_settings(third.id, Some("a b"), None)
            .await,
    );
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("whitespace"), "{message}");
    let (code, _) = refused(client.set_session_settings(third.id, None, None).await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    node.stop().await;
}

#[tokio::test]
async fn settings_change_only_between_turns_and_only_by_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let owner = node.client().await;
    let conv = owner.create_conversation(None, None).await.unwrap();
    assert_eq!(
        say(&owner, conv.id, "/settings").await,
        "mode: code, model: demo-fast"
    );

    let mut turn = owner.send(conv.id, "/slow 200").await.unwrap();
    wait_for_chunks(&mut turn, 1).await;
    let (code, message) = refused(owner.set_session_settings(conv.id, Some("ask"), None).await);
    assert_eq!(code, ErrorCode::Busy);
    assert!(message.contains("between turns"), "{message}");
    assert!(owner.cancel(conv.id).await.unwrap());
    collect_turn(turn).await;

    for role in [Role::Viewer, Role::Editor] {
        let token = owner
            .share(conv.id, role, ShareWith::Link, None)
            .await
            .unwrap()
            .token
            .unwrap();
        let sharee = node.client_as("sam").await.with_share_token(Some(token));
        let (code, message) = refused(
            sharee
                .set_session_settings(conv.id, Some("ask"), None)
                .await,
        );
        assert_eq!(code, ErrorCode::Forbidden, "{role:?}: {message}");
    }
    let settings = owner.get_conversation(conv.id).await.unwrap().settings;
    assert_eq!((settings.mode, settings.model), (None, None));
    assert_eq!(
        say(&owner, conv.id, "/settings").await,
        "mode: code, model: demo-fast"
    );
    node.stop().await;
}

/// An agent that offers its modes and models only on `session/new`: after a restart its
/// `session/load` says nothing, and the picks are applied with the choices known from
/// before.
#[tokio::test]
async fn picks_reach_a_resumed_session_that_does_not_repeat_its_offer() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = dev_config(dir.path());
        let (_, demo) = config
            .agents
            .iter_mut()
            .find(|(name, _)| name.as_str() == "demo")
            .expect("the dev config has the demo agent");
        demo.env
            .insert(shoal_demo_agent::QUIET_LOAD_ENV.into(), "1".into());
        config
    };
    let mut node = TestNode::start_with(config()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    assert_eq!(
        say(&client, conv.id, "/settings").await,
        "mode: code, model: demo-fast"
    );
    client
        .set_session_settings(conv.id, Some("architect"), Some("demo-smart"))
        .await
        .unwrap();
    assert_eq!(
        say(&client, conv.id, "/settings").await,
        "mode: architect, model: demo-smart"
    );
    drop(client);
    node.stop().await;

    let mut node = TestNode::start_with(config()).await;
    let client = node.client().await;
    let frames = collect_turn(client.send(conv.id, "/settings").await.unwrap()).await;
    assert_eq!(done_content(&frames), "mode: architect, model: demo-smart");
    assert!(warnings(&frames).is_empty(), "{:?}", warnings(&frames));
    let started = statuses(&frames);
    assert!(
        !started
            .iter()
            .any(|s| s.contains("could not resume") || s.contains("new session")),
        "the session was loaded, not replaced: {started:?}"
    );
    let offer = client
        .get_conversation(conv.id)
        .await
        .unwrap()
        .settings
        .offer
        .expect("the offer known from before is kept");
    assert_eq!(
        offer.setting(SettingKind::Mode).unwrap().choice_list(),
        "code, ask, architect"
    );
    node.stop().await;
}
