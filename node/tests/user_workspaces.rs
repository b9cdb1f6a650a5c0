//! Workspaces and skill packs as users manage them, through a real node and the SDK:
//! create, list, rename, reorder and delete workspaces; conversations, files and
//! credentials per workspace; skill packs materialized and pruned; and the attacks
//! (another user's ids, names and pack paths that try to leave their place).

mod common;

use common::*;
use shoal_client::{Client, ClientError};
use shoal_protocol::ErrorCode;
use shoal_protocol::workspaces::{SkillFile, SkillPackSpec, SkillSpec};

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> Option<ErrorCode> {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            eprintln!("refused as expected: {e}");
            e.code()
        }
    }
}

async fn user(node: &TestNode, name: &str) -> Client {
    let token = node
        .admin()
        .await
        .issue_token(shoal_protocol::UserId::parse(name).unwrap(), 600)
        .await
        .unwrap();
    Client::connect(&shoal_client::Profile {
        token,
        ..node.profile.clone()
    })
    .await
    .unwrap()
}

async fn say(client: &Client, conversation: shoal_protocol::ConversationId, text: &str) -> String {
    let turn = client.send(conversation, text).await.expect("send");
    done_content(&collect_turn(turn).await)
}

#[tokio::test]
async fn workspaces_are_created_used_reordered_and_deleted_with_their_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;

    let names = |list: &[shoal_protocol::workspaces::WorkspaceInfo]| {
        list.iter().map(|w| w.name.clone()).collect::<Vec<_>>()
    };
    let list = client.list_workspaces().await.unwrap();
    assert_eq!(names(&list), ["default"]);
    assert!(list[0].default);
    let default = list[0].id;

    let api = client.create_workspace("api").await.unwrap();
    let web = client.create_workspace("web").await.unwrap();
    assert_eq!(
        code(client.create_workspace("API").await),
        Some(ErrorCode::InvalidArgument),
        "names are unique without regard to case"
    );
    assert_eq!(
        code(client.create_workspace("../../etc").await),
        Some(ErrorCode::InvalidArgument)
    );
    let renamed = client.rename_workspace(web.id, "frontend").await.unwrap();
    assert_eq!(renamed.name, "frontend");
    let order = client.move_workspace(renamed.id, 0).await.unwrap();
    assert_eq!(names(&order), ["frontend", "default", "api"]);
    assert_eq!(
        names(&client.list_workspaces().await.unwrap()),
        names(&order)
    );

    // Each workspace has its own tree: a file written in `api` is seen by another
    // conversation of `api`, not by one of the default workspace.
    let writer = client
        .create_conversation_in(api.id, None, None)
        .await
        .unwrap();
    assert_eq!(writer.workspace, api.id);
    say(&client, writer.id, "/write notes.txt from-api").await;
    let reader = client
        .create_conversation_in(api.id, None, None)
        .await
        .unwrap();
    assert_eq!(
        say(&client, reader.id, "/cat notes.txt").await,
        "cat: from-api"
    );
    let elsewhere = client.create_conversation(None, None).await.unwrap();
    assert_eq!(elsewhere.workspace, default);
    assert!(
        say(&client, elsewhere.id, "/cat notes.txt")
            .await
            .starts_with("cat failed"),
    );
    // Credentials are per workspace.
    client
        .set_credential(Some(api.id), "API_KEY", "k1")
        .await
        .unwrap();
    assert_eq!(
        client.list_credentials(Some(api.id)).await.unwrap().len(),
        1
    );
    assert!(client.list_credentials(None).await.unwrap().is_empty());

    // Deleting needs the name repeated, and the default workspace cannot go.
    assert_eq!(
        code(client.delete_workspace(api.id, "wrong").await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(client.delete_workspace(default, "default").await),
        Some(ErrorCode::InvalidArgument)
    );
    let tree = node
        .config
        .node
        .data_dir
        .join("workspaces")
        .join(api.id.to_string());
    assert!(tree.join("work/notes.txt").exists());
    assert_eq!(client.delete_workspace(api.id, "api").await.unwrap(), 2);
    assert!(!tree.exists(), "the deleted workspace's tree is removed");
    for conversation in [writer.id, reader.id] {
        assert_eq!(
            code(client.get_conversation(conversation).await),
            Some(ErrorCode::NotFound)
        );
    }
    let listed = client.list_conversations(100).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id).collect::<Vec<_>>(),
        [elsewhere.id]
    );
    assert_eq!(
        names(&client.list_workspaces().await.unwrap()),
        ["frontend", "default"]
    );
    assert_eq!(
        code(client.create_conversation_in(api.id, None, None).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(client.list_credentials(Some(api.id)).await),
        Some(ErrorCode::NotFound)
    );
    // The deleted conversations' actors are gone.
    let actors = node.admin().await.actors().await.unwrap();
    assert!(
        actors
            .iter()
            .all(|a| a.key != writer.id.to_string() && a.key != reader.id.to_string()),
        "{actors:?}"
    );
}

#[tokio::test]
async fn another_users_workspace_or_pack_is_not_found_whatever_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let alice = node.client().await;
    let mallory = user(&node, "mallory").await;
    let ws = alice.create_workspace("private").await.unwrap();
    let conv = alice
        .create_conversation_in(ws.id, None, None)
        .await
        .unwrap();
    let pack = alice.create_skill_pack(pack("secret-pack")).await.unwrap();
    let default = alice.list_workspaces().await.unwrap()[1].id;

    let not_found = Some(ErrorCode::NotFound);
    assert_eq!(
        code(mallory.create_conversation_in(ws.id, None, None).await),
        not_found
    );
    assert_eq!(
        code(mallory.create_conversation_in(default, None, None).await),
        not_found
    );
    assert_eq!(
        code(mallory.rename_workspace(ws.id, "mine").await),
        not_found
    );
    assert_eq!(code(mallory.move_workspace(ws.id, 0).await), not_found);
    assert_eq!(
        code(mallory.delete_workspace(ws.id, "private").await),
        not_found
    );
    assert_eq!(
        code(mallory.set_credential(Some(ws.id), "X", "y").await),
        not_found
    );
    assert_eq!(code(mallory.list_credentials(Some(ws.id)).await), not_found);
    assert_eq!(code(mallory.get_skill_pack(pack.id).await), not_found);
    assert_eq!(code(mallory.delete_skill_pack(pack.id).await), not_found);
    assert_eq!(
        code(mallory.attach_skill_pack(None, pack.id).await),
        not_found
    );
    assert_eq!(
        code(mallory.attach_skill_pack(Some(ws.id), pack.id).await),
        not_found
    );
    assert_eq!(code(mallory.get_conversation(conv.id).await), not_found);
    // Nothing of Alice's changed, and Mallory sees only her own default workspace.
    let alices = alice.list_workspaces().await.unwrap();
    assert_eq!(alices.len(), 2);
    assert!(alices.iter().all(|w| w.packs.is_empty()));
    assert_eq!(alice.list_skill_packs().await.unwrap().len(), 1);
    assert_eq!(mallory.list_workspaces().await.unwrap().len(), 1);
    assert!(mallory.list_skill_packs().await.unwrap().is_empty());
}

fn pack(name: &str) -> SkillPackSpec {
    SkillPackSpec {
        name: name.into(),
        context: Some("Always answer in haiku.".into()),
        skills: vec![SkillSpec {
            slug: "lint".into(),
            files: vec![
                SkillFile {
                    path: "SKILL.md".into(),
                    content: b"---\nname: lint\ndescription: lints\n---\nRun the linter.\n"
                        .to_vec(),
                },
                SkillFile {
                    path: "scripts/run.sh".into(),
                    content: b"#!/bin/sh\necho lint\n".to_vec(),
                },
            ],
        }],
    }
}

#[tokio::test]
async fn an_attached_pack_is_materialized_for_the_agent_and_detaching_prunes_only_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let ws = client.create_workspace("skills").await.unwrap();
    let root = node
        .config
        .node
        .data_dir
        .join("workspaces")
        .join(ws.id.to_string());

    let created = client.create_skill_pack(pack("style")).await.unwrap();
    assert_eq!(created.skills, ["lint"]);
    let attached = client
        .attach_skill_pack(Some(ws.id), created.id)
        .await
        .unwrap();
    assert_eq!(attached.packs, [created.id]);
    assert_eq!(
        client.list_skill_packs().await.unwrap()[0].attached,
        [ws.id]
    );

    // The agent's first turn sees the context and the skill in its home.
    let conv = client
        .create_conversation_in(ws.id, None, None)
        .await
        .unwrap();
    let agents_md = say(&client, conv.id, "/cat AGENTS.md").await;
    assert!(agents_md.contains("Always answer in haiku."), "{agents_md}");
    let home = root.join("homes").join(conv.id.to_string());
    let skill = home.join(".claude/skills/lint/SKILL.md");
    let seen = say(&client, conv.id, &format!("/cat {}", skill.display())).await;
    assert!(seen.contains("Run the linter."), "{seen}");
    assert!(root.join("work/CLAUDE.md").exists());

    // The user edits one of Shoal's files, the agent writes a skill of its own.
    std::fs::write(
        home.join(".claude/skills/lint/scripts/run.sh"),
        "#!/bin/sh\nmine\n",
    )
    .unwrap();
    let own = home.join(".claude/skills/mine/SKILL.md");
    std::fs::create_dir_all(own.parent().unwrap()).unwrap();
    std::fs::write(&own, "my own skill").unwrap();

    // An update rewrites the files Shoal manages; detach removes them.
    let mut updated = pack("style");
    updated.context = Some("Answer in prose.".into());
    client.update_skill_pack(created.id, updated).await.unwrap();
    let agents = std::fs::read_to_string(root.join("work/AGENTS.md")).unwrap();
    assert!(agents.contains("Answer in prose."), "{agents}");

    client
        .detach_skill_pack(Some(ws.id), created.id)
        .await
        .unwrap();
    assert!(!root.join("work/AGENTS.md").exists());
    assert!(!root.join("work/CLAUDE.md").exists());
    assert!(!skill.exists());
    assert_eq!(
        std::fs::read_to_string(home.join(".claude/skills/lint/scripts/run.sh")).unwrap(),
        "#!/bin/sh\nmine\n",
        "a file the user changed is kept"
    );
    assert_eq!(std::fs::read_to_string(&own).unwrap(), "my own skill");
    assert_eq!(
        code(client.detach_skill_pack(Some(ws.id), created.id).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(client.delete_skill_pack(created.id).await.unwrap(), 0);
    assert!(client.list_skill_packs().await.unwrap().is_empty());
}

#[tokio::test]
async fn pack_paths_that_leave_their_skill_are_refused_by_the_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    for path in ["../../../.bashrc", "/etc/passwd", "a/../../x", "a\\..\\b"] {
        let mut spec = pack("evil");
        spec.skills[0].files.push(SkillFile {
            path: path.into(),
            content: b"pwned".to_vec(),
        });
        assert_eq!(
            code(client.create_skill_pack(spec).await),
            Some(ErrorCode::InvalidArgument),
            "{path}"
        );
    }
    let mut slug = pack("evil");
    slug.skills[0].slug = "..".into();
    assert_eq!(
        code(client.create_skill_pack(slug).await),
        Some(ErrorCode::InvalidArgument)
    );
    assert!(client.list_skill_packs().await.unwrap().is_empty());
}
