//! The queue of messages sent during a turn is replicated state: a kill -9 of the
//! leader loses none of it, and the new leader runs it in order.

use super::harness::*;
use shoal_client::{Client, Sent};
use shoal_protocol::transcript::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_survive_a_kill_of_the_leader_and_run_in_order() {
    let mut cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        li,
        client_l,
        turn,
        ..
    } = cluster.long_turn_on_leader().await;
    for text in ["first queued", "second queued"] {
        match client_l.send_or_queue(conv.id, text).await.unwrap() {
            Sent::Queued(_) => {}
            Sent::Started(_) => panic!("a turn runs: {text:?} must be queued"),
        }
    }
    drop(turn);
    cluster.kill9(li).await;

    // The new leader activates the conversation on the next request: it saves the
    // interrupted turn, then runs the queue in its order.
    let survivor = (li + 1) % 3;
    let client = Client::connect(&cluster.profile_for(survivor))
        .await
        .unwrap();
    let users = eventually("the queued messages ran on the new leader", || async {
        let detail = client.get_conversation(conv.id).await.ok()?;
        let users: Vec<String> = detail
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .collect();
        let replies = detail
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant && m.content.starts_with("echo:"))
            .count();
        (users.len() == 3 && replies == 2 && !detail.summary.turn_running).then_some(users)
    })
    .await;
    assert_eq!(users[1..], ["first queued", "second queued"]);
    assert!(client.list_queue(conv.id).await.unwrap().is_empty());
}
