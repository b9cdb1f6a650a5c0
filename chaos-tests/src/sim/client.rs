//! The client hosts' workload: connect over simulated sockets, create a conversation,
//! send turns (recording every write), and follow the conversation.

use super::{
    FOLLOW_TAIL_MS, FollowerLog, OP_GAP_MS, SEND_TIMEOUT_MS, Shared, TURN_TIMEOUT_MS, Write,
    WriteOutcome, mix, sim_now_ms, udp,
};
use crate::history::committed_up_to;
use futures::StreamExt;
use shoal_client::{Client, ConnectOptions};
use shoal_protocol::ConversationId;
use shoal_protocol::transcript::Event;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// Makes client endpoints on simulated sockets, each with its own seeded QUIC RNG.
fn endpoint_factory(shared: &Arc<Shared>, client: usize) -> shoal_client::EndpointFactory {
    let shared = Arc::clone(shared);
    Arc::new(move |_node: SocketAddr| {
        let ip = turmoil::lookup(format!("c{}", client + 1).as_str());
        let socket = udp::SimUdpSocket::bind(ip, 0)?;
        let n = shared.client_endpoints.fetch_add(1, Ordering::Relaxed);
        let mut seed = [0_u8; 32];
        for (chunk, word) in seed.chunks_mut(8).zip(0_u64..) {
            chunk.copy_from_slice(&mix(shared.seed ^ mix(1_000 + n) ^ word).to_le_bytes());
        }
        let mut config = quinn::EndpointConfig::default();
        config.rng_seed(Some(seed));
        quinn::Endpoint::new_with_abstract_socket(
            config,
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
    })
}

/// One client host: create a conversation, then send `ops` turns, recording each write.
pub(super) async fn run_client(shared: &Arc<Shared>, name: &str, k: usize, ops: usize) {
    let options = ConnectOptions {
        endpoints: Some(endpoint_factory(shared, k)),
        rng_seed: Some(mix(shared.seed ^ mix(500 + k as u64))),
        ..ConnectOptions::default()
    };
    let trace = &shared.trace;
    let client = loop {
        match Client::connect_with(&shared.profile, options.clone()).await {
            Ok(client) => break client,
            Err(e) => {
                trace.log(name, format!("connect failed: {e}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    trace.log(name, format!("connected to {}", client.node_id()));
    let conversation = loop {
        match client
            .create_conversation(Some(name.to_owned()), None)
            .await
        {
            Ok(summary) => break summary.id,
            Err(e) => {
                trace.log(name, format!("create conversation failed: {e}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    trace.log(
        name,
        format!(
            "conversation {conversation} (shard {})",
            conversation.shard.0
        ),
    );
    shared
        .conversations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name.to_owned(), conversation);
    let (follow_target, stop_follow, mut follower) =
        spawn_follower(shared, name, &client, conversation);
    let mut last_acked = None;
    for op in 0..ops {
        let text = if op % 3 == 2 {
            format!("/slow 3 {name}-op{op}")
        } else {
            format!("{name}-op{op}")
        };
        let invoked_ms = sim_now_ms();
        trace.log(name, format!("send {text:?}"));
        let sent = tokio::time::timeout(
            Duration::from_millis(SEND_TIMEOUT_MS),
            client.send(conversation, text.clone()),
        )
        .await;
        let outcome = match sent {
            Ok(Ok(mut turn)) => {
                let message_id = turn.user_message();
                let acked_ms = sim_now_ms();
                trace.log(name, format!("acked {text:?} as message #{}", message_id.0));
                let finished =
                    tokio::time::timeout(Duration::from_millis(TURN_TIMEOUT_MS), async {
                        while let Some(frame) = turn.next().await {
                            match frame {
                                Ok(frame) => {
                                    if let Event::Done { message, .. } = &frame.event {
                                        return format!(
                                            "done ({} chars, {:?})",
                                            message.content.len(),
                                            message.status
                                        );
                                    }
                                }
                                Err(e) => return format!("turn stream failed: {e}"),
                            }
                        }
                        "turn stream ended before done".to_owned()
                    })
                    .await
                    .unwrap_or_else(|_| format!("no done within {TURN_TIMEOUT_MS} ms"));
                trace.log(name, format!("turn {text:?}: {finished}"));
                last_acked = Some(message_id.0);
                WriteOutcome::Acked {
                    message_id,
                    acked_ms,
                }
            }
            Ok(Err(e)) => {
                trace.log(name, format!("send {text:?} failed: {e}"));
                WriteOutcome::Failed {
                    error: e.to_string(),
                }
            }
            Err(_) => {
                trace.log(
                    name,
                    format!("send {text:?}: no answer within {SEND_TIMEOUT_MS} ms"),
                );
                WriteOutcome::Failed {
                    error: format!("no answer within {SEND_TIMEOUT_MS} ms"),
                }
            }
        };
        shared
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Write {
                conversation,
                client: name.to_owned(),
                text,
                invoked_ms,
                outcome,
            });
        tokio::time::sleep(Duration::from_millis(OP_GAP_MS)).await;
    }
    // The follower stops once it has seen the last acknowledged message committed, or
    // is stopped after FOLLOW_TAIL_MS (the checkers then judge what it saw).
    let _ = follow_target.send(Some(last_acked.unwrap_or(0)));
    let finished =
        match tokio::time::timeout(Duration::from_millis(FOLLOW_TAIL_MS), &mut follower).await {
            Ok(finished) => finished,
            Err(_) => {
                trace.log(
                    name,
                    "follower did not see the last message in time; stopping it",
                );
                let _ = stop_follow.send(());
                follower.await
            }
        };
    match finished {
        Ok(log) => shared
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(log),
        Err(e) => trace.log(name, format!("follower task failed: {e}")),
    }
    trace.log(name, "done");
}

/// Follows `conversation` (owner view through the follower stream), logging every event,
/// until told to stop or until it has seen a committed message with an id at least the
/// target sent on the returned watch.
fn spawn_follower(
    shared: &Arc<Shared>,
    name: &str,
    client: &Client,
    conversation: ConversationId,
) -> (
    tokio::sync::watch::Sender<Option<u64>>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<FollowerLog>,
) {
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (target_tx, mut target_rx) = tokio::sync::watch::channel::<Option<u64>>(None);
    let follower = format!("{name}-f");
    let trace = shared.trace.clone();
    let mut stream = client.follow(conversation, None);
    let task = tokio::spawn(async move {
        let mut events = Vec::new();
        let mut seen: Option<u64> = None;
        loop {
            let target = *target_rx.borrow_and_update();
            if target.is_some() && seen >= target {
                break;
            }
            tokio::select! {
                biased;
                _ = &mut stop_rx => break,
                _ = target_rx.changed() => {}
                next = stream.next() => match next {
                    Some(Ok(frame)) => {
                        trace.log(&follower, format!("seq {:?} {}", frame.seq, frame.event.type_name()));
                        seen = seen.max(committed_up_to(&frame.event));
                        events.push(frame);
                    }
                    Some(Err(e)) => {
                        trace.log(&follower, format!("follow failed: {e}"));
                        break;
                    }
                    None => {
                        trace.log(&follower, "follow ended");
                        break;
                    }
                },
            }
        }
        FollowerLog {
            follower,
            conversation,
            owner: true,
            since: None,
            events,
        }
    });
    (target_tx, stop_tx, task)
}
