//! Shared helpers for the node's end-to-end tests: a real node on loopback with the real
//! demo agent as its agent child process, driven through the SDK.
#![allow(dead_code, unreachable_pub)]

use futures::StreamExt;
use shoal_client::{Client, FollowStream, Profile, TurnStream};
use shoal_cluster_config::NodeConfig;
use shoal_node::{Node, NodeHandle, dev};
use shoal_protocol::transcript::{Event, EventFrame};
use std::path::Path;
use std::time::Duration;

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(60);

/// How often [`eventually`] asks again.
pub const POLL: Duration = Duration::from_millis(100);

/// Resolves with `probe`'s first `Some`, asking every [`POLL`]. For state only the admin
/// API shows (it has no push); fails naming `what` after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(WAIT, what, probe).await
}

/// [`eventually`] with its own bound.
pub async fn eventually_within<T, F, Fut>(wait: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match within(wait, probe).await {
        Some(value) => value,
        None => panic!("{what}: not within {wait:?}"),
    }
}

/// Polls `probe` until it gives a value, for at most `wait`; `None` after that.
pub async fn within<T, F, Fut>(wait: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let mut tick = tokio::time::interval(POLL);
    let polled = async {
        loop {
            tick.tick().await;
            if let Some(value) = probe().await {
                return value;
            }
        }
    };
    tokio::time::timeout(wait, polled).await.ok()
}

pub fn dev_config(dir: &Path) -> NodeConfig {
    let exe = env!("CARGO_BIN_EXE_shoal-node").into();
    let listen = "127.0.0.1:0".parse().ok();
    let config = dev::dev_config(dir, listen, exe, vec!["demo-agent".into()], Vec::new())
        .expect("dev config");
    dev::prepare(&config).expect("dev files");
    config
}

pub struct TestNode {
    pub node: Option<NodeHandle>,
    pub profile: Profile,
    pub config: NodeConfig,
}

impl TestNode {
    pub async fn start(dir: &Path) -> TestNode {
        Self::start_with(dev_config(dir)).await
    }

    pub async fn start_with(config: NodeConfig) -> TestNode {
        let node = Node::start(config.clone()).await.expect("node starts");
        let path =
            dev::write_profile(&config, node.addr(), node.context().now_secs()).expect("profile");
        let profile = Profile::load(&path).expect("profile loads");
        TestNode {
            node: Some(node),
            profile,
            config,
        }
    }

    pub async fn client(&self) -> Client {
        tokio::time::timeout(WAIT, Client::connect(&self.profile))
            .await
            .expect("connect in time")
            .expect("connect")
    }

    /// A client of another user, with a token the admin API issues.
    pub async fn client_as(&self, user: &str) -> Client {
        let token = self
            .admin()
            .await
            .issue_token(shoal_protocol::UserId::parse(user).expect("user id"), 600)
            .await
            .expect("token");
        let profile = Profile {
            token,
            ..self.profile.clone()
        };
        tokio::time::timeout(WAIT, Client::connect(&profile))
            .await
            .expect("connect in time")
            .expect("connect")
    }

    pub async fn admin(&self) -> shoal_client::AdminClient {
        tokio::time::timeout(WAIT, shoal_client::AdminClient::connect(&self.profile))
            .await
            .expect("admin connect in time")
            .expect("admin connect")
    }

    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            tokio::time::timeout(WAIT, node.shutdown())
                .await
                .expect("shutdown in time");
        }
    }
}

/// Collects a turn's events through `Done`.
pub async fn collect_turn(mut turn: TurnStream) -> Vec<EventFrame> {
    let mut frames = Vec::new();
    let result = tokio::time::timeout(WAIT, async {
        while let Some(frame) = turn.next().await {
            let frame = frame.expect("turn event");
            let done = matches!(frame.event, Event::Done { .. });
            frames.push(frame);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "turn did not finish in {WAIT:?}; got {} events: {:?}",
        frames.len(),
        frames.last()
    );
    frames
}

/// Collects follow events until (and including) the `n`-th `Done`.
pub async fn follow_until_done(follow: &mut FollowStream, dones: usize) -> Vec<EventFrame> {
    let mut frames = Vec::new();
    let mut seen = 0;
    let result = tokio::time::timeout(WAIT, async {
        while let Some(frame) = follow.next().await {
            let frame = frame.expect("follow event");
            if matches!(frame.event, Event::Done { .. }) {
                seen += 1;
            }
            frames.push(frame);
            if seen == dones {
                break;
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "follower did not see {dones} done events in {WAIT:?}; got {frames:?}"
    );
    frames
}

/// The text of a turn's `Done` message.
/// The message of the turn's `Done`.
pub fn final_message(frames: &[EventFrame]) -> shoal_protocol::transcript::Message {
    frames
        .iter()
        .find_map(|f| match &f.event {
            Event::Done { message, .. } => Some(message.clone()),
            _ => None,
        })
        .expect("done")
}

pub fn done_content(frames: &[EventFrame]) -> String {
    frames
        .iter()
        .find_map(|f| match &f.event {
            Event::Done { message, .. } => Some(message.content.clone()),
            _ => None,
        })
        .expect("a done event")
}

/// Asserts that after the first reset, sequence numbers increase by exactly one.
pub fn assert_gap_free(frames: &[EventFrame]) {
    for pair in frames.windows(2) {
        if matches!(pair[1].event, Event::Reset { .. }) {
            continue;
        }
        assert_eq!(
            pair[1].seq.0,
            pair[0].seq.0 + 1,
            "gap or duplicate between {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Reads a turn's events until `n` text chunks have streamed.
pub async fn wait_for_chunks(turn: &mut TurnStream, n: usize) {
    let mut chunks = 0;
    while chunks < n {
        let frame = tokio::time::timeout(WAIT, turn.next())
            .await
            .expect("a text chunk in time")
            .expect("the turn is still streaming")
            .expect("turn event");
        if matches!(frame.event, Event::TextChunk { .. }) {
            chunks += 1;
        }
    }
}

/// Follows `conversation` and waits for the opening reset, so the follower is attached
/// before the caller starts a turn (follow streams connect lazily).
pub async fn follow_attached(
    client: &Client,
    conversation: shoal_protocol::ConversationId,
) -> (FollowStream, EventFrame) {
    let mut follow = client.follow(conversation, None);
    let first = tokio::time::timeout(WAIT, follow.next())
        .await
        .expect("the opening frame in time")
        .expect("the follow stream is open")
        .expect("follow event");
    assert!(
        matches!(first.event, Event::Reset { .. }),
        "a follow starts with a reset: {first:?}"
    );
    (follow, first)
}

/// The owner-only agent warnings among a turn's frames.
pub fn warnings(frames: &[EventFrame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match &f.event {
            Event::AgentWarning { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// The status lines among a turn's frames.
pub fn statuses(frames: &[EventFrame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match &f.event {
            Event::Status { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// Waits until `ctx`'s node runs no agent process.
pub async fn no_agent_runs(ctx: &shoal_node::context::NodeContext) {
    eventually("no agent process runs", || async {
        (shoal_node::context::Metrics::get(&ctx.metrics.agent_processes) == 0).then_some(())
    })
    .await;
}

/// Asserts that a turn found its workspace restored from a snapshot and its agent's own
/// session loaded (not replaced): its `Done` is `done` (the demo agent's `/history`).
pub fn assert_restored_and_remembered(frames: &[EventFrame], done: &str) {
    let statuses = statuses(frames);
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("workspace restored from snapshot")),
        "{statuses:?}"
    );
    assert!(
        !statuses.iter().any(|s| s.contains("could not resume")),
        "the agent did not load its session: {statuses:?}"
    );
    assert_eq!(done_content(frames), done);
}
