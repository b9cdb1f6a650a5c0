//! Sharing across nodes: the grantee's "shared with me" entry and a fork into the
//! grantee's workspace are written to a shard another node leads.

use super::common::{collect_turn, done_content};
use super::harness::*;
use shoal_client::{Client, ShareWith};
use shoal_protocol::UserId;
use shoal_protocol::sharing::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_and_a_fork_reach_the_grantees_shard_on_another_node() {
    let cluster = TestCluster::start(3).await;
    let owner = Client::connect(&cluster.profile).await.unwrap();
    let conv = owner.create_conversation(None, None).await.unwrap();
    // A balancing move can still cut a turn on a loaded machine: send until one ends.
    let mut done = None;
    for _ in 0..3 {
        let mut turn = owner.send(conv.id, "tide").await.unwrap();
        done = turn_done(&mut turn).await;
        if done.as_ref().is_some_and(|m| m.content == "echo: tide") {
            break;
        }
    }
    let last = done.expect("a turn ended").id;
    let conv_leader = cluster.leader_of(conv.id.shard.0, None).await;

    // A user whose own shard another node leads.
    let admin = cluster.admin(0).await;
    let mut found = None;
    for n in 0..64 {
        let name = format!("guest{n}");
        let token = admin
            .issue_token(UserId::parse(&name).unwrap(), 600)
            .await
            .unwrap();
        let profile = shoal_client::Profile {
            token,
            ..cluster.profile.clone()
        };
        let guest = Client::connect(&profile).await.unwrap();
        let home = guest.list_workspaces().await.unwrap()[0].id;
        if cluster.leader_of(home.shard.0, None).await != conv_leader {
            found = Some((name, guest, home));
            break;
        }
        guest.close().await;
    }
    let (name, guest, home) = found.expect("a user whose shard another node leads");

    owner
        .share(
            conv.id,
            Role::Editor,
            ShareWith::User(UserId::parse(&name).unwrap()),
            None,
        )
        .await
        .unwrap();
    let listed = eventually("the grant is listed for the grantee", || async {
        let listed = guest.shared_with_me().await.ok()?;
        (!listed.is_empty()).then_some(listed)
    })
    .await;
    assert_eq!(listed[0].conversation, conv.id);

    let fork = guest.fork(conv.id, last, None, None, None).await.unwrap();
    assert_eq!(fork.workspace, home);
    assert_eq!(fork.owner.0, name);
    let mine = guest.get_conversation(fork.id).await.unwrap();
    let contents: Vec<&str> = mine.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents[contents.len() - 2..], ["tide", "echo: tide"]);
    // The editor's own turn in the shared conversation runs on the owner's agent.
    let frames = collect_turn(guest.send(conv.id, "hello").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: hello");
}
