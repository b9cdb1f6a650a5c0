//! Unit tests of grants, the lock, the "shared with me" index and imports in the state
//! machine.

use super::super::sharing::{StoredGrant, conversation_grants, locked, shared_with};
use super::*;
use shoal_protocol::sharing::{GrantId, GrantTarget, Role, SharedListing};

fn alice() -> UserId {
    UserId::parse("alice").unwrap()
}

fn grant(uid: u64, request: u128, target: GrantTarget) -> StoredGrant {
    let link = !matches!(target, GrantTarget::User { .. });
    StoredGrant {
        id: GrantId {
            conversation: conv(),
            uid,
        },
        owner: alice(),
        role: Role::Viewer,
        target,
        secret_hash: link.then_some([7; 32]),
        created_at_ms: 1,
        expires_at_ms: None,
        rotations: 0,
        request_id: RequestId(request),
    }
}

fn made(outcome: Result<Outcome, Rejection>) -> StoredGrant {
    match outcome {
        Ok(Outcome::Grant(g)) => *g,
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[test]
fn a_grant_is_made_once_per_request_and_only_by_the_owner() {
    let mut mem = Mem::default();
    create(&mut mem);
    let first = made(mem.run(&ShardCommand::CreateGrant {
        grant: grant(1, 5, GrantTarget::Link),
    }));
    // A retry with another uid gets the first grant.
    let again = made(mem.run(&ShardCommand::CreateGrant {
        grant: grant(2, 5, GrantTarget::Link),
    }));
    assert_eq!(again.id, first.id);
    assert_eq!(conversation_grants(&mem, conv()).unwrap().len(), 1);
    let mut foreign = grant(3, 6, GrantTarget::Link);
    foreign.owner = UserId::parse("mallory").unwrap();
    assert_eq!(
        mem.run(&ShardCommand::CreateGrant { grant: foreign }),
        Err(Rejection::NotFound(conv()))
    );
    // Malformed: a link without a secret, an invitation bound when made.
    let mut no_secret = grant(4, 7, GrantTarget::Link);
    no_secret.secret_hash = None;
    let bound = grant(
        5,
        8,
        GrantTarget::Invite {
            bound_to: Some(alice()),
        },
    );
    for bad in [no_secret, bound] {
        let cmd = ShardCommand::CreateGrant { grant: bad };
        assert!(matches!(cmd.validate(), Err(Rejection::Invalid(_))));
        assert!(matches!(mem.run(&cmd), Err(Rejection::Invalid(_))));
    }
}

#[test]
fn revoke_rotate_and_bind_change_only_the_owners_grant() {
    let mut mem = Mem::default();
    create(&mut mem);
    let link = made(mem.run(&ShardCommand::CreateGrant {
        grant: grant(1, 1, GrantTarget::Invite { bound_to: None }),
    }));
    let mallory = UserId::parse("mallory").unwrap();
    assert_eq!(
        mem.run(&ShardCommand::RotateGrant {
            grant: link.id,
            owner: mallory.clone(),
            secret_hash: [9; 32],
        }),
        Err(Rejection::GrantNotFound(link.id))
    );
    let rotated = made(mem.run(&ShardCommand::RotateGrant {
        grant: link.id,
        owner: alice(),
        secret_hash: [9; 32],
    }));
    assert_eq!((rotated.rotations, rotated.secret_hash), (1, Some([9; 32])));
    // The first user binds an invitation; a second bind changes nothing.
    let bob = UserId::parse("bob").unwrap();
    for user in [&bob, &mallory] {
        let bound = made(mem.run(&ShardCommand::BindInvite {
            grant: link.id,
            user: user.clone(),
        }));
        assert_eq!(
            bound.target,
            GrantTarget::Invite {
                bound_to: Some(bob.clone())
            }
        );
    }
    assert_eq!(
        mem.run(&ShardCommand::RevokeGrant {
            grant: link.id,
            owner: mallory,
        }),
        Ok(Outcome::Removed { existed: false })
    );
    assert_eq!(
        mem.run(&ShardCommand::RevokeGrant {
            grant: link.id,
            owner: alice(),
        }),
        Ok(Outcome::Removed { existed: true })
    );
    assert!(conversation_grants(&mem, conv()).unwrap().is_empty());
}

#[test]
fn deleting_a_conversation_removes_its_grants_and_lock() {
    let mut mem = Mem::default();
    create(&mut mem);
    made(mem.run(&ShardCommand::CreateGrant {
        grant: grant(1, 1, GrantTarget::Link),
    }));
    mem.run(&ShardCommand::SetShareLock {
        conversation: conv(),
        owner: alice(),
        locked: true,
    })
    .unwrap();
    assert!(locked(&mem, conv()).unwrap());
    mem.run(&ShardCommand::DeleteConversation {
        conversation: conv(),
        owner: alice(),
    })
    .unwrap();
    assert!(conversation_grants(&mem, conv()).unwrap().is_empty());
    assert!(!locked(&mem, conv()).unwrap());
}

#[test]
fn the_shared_with_me_index_and_imports() {
    let mut mem = Mem::default();
    let bob = UserId::parse("bob").unwrap();
    let listing = SharedListing {
        conversation: conv(),
        grant: GrantId {
            conversation: conv(),
            uid: 1,
        },
        role: Role::Editor,
        owner: alice(),
        title: None,
        shared_at_ms: 1,
    };
    mem.run(&ShardCommand::IndexShared {
        user: bob.clone(),
        listing: listing.clone(),
    })
    .unwrap();
    assert_eq!(
        shared_with(&mem, &bob).unwrap(),
        std::slice::from_ref(&listing)
    );
    mem.run(&ShardCommand::UnindexShared {
        user: bob.clone(),
        grant: listing.grant,
    })
    .unwrap();
    assert!(shared_with(&mem, &bob).unwrap().is_empty());

    // An import into bob's default workspace, idempotent per request; its messages must
    // be finished and numbered from 0.
    let default = WorkspaceId::new(ShardId(3), 70);
    let id = ConversationId::new(ShardId(3), 99);
    let message = text_message(
        MessageId(0),
        TurnId(1),
        shoal_protocol::transcript::Role::User,
        "hi",
        1,
    );
    let record = ConversationRecord {
        id,
        workspace: default,
        owner: bob.clone(),
        title: Some("Fork of x".into()),
        agent: "demo".into(),
        created_at_ms: 1,
        message_count: 1,
        activation: 0,
        turns: 1,
        running_turn: None,
        agent_session: None,
    };
    let import =
        |record: ConversationRecord, messages: Vec<Message>| ShardCommand::ImportConversation {
            record: Box::new(record),
            messages,
            default,
            request_id: RequestId(3),
        };
    let cmd = import(record.clone(), vec![message.clone()]);
    assert!(matches!(mem.run(&cmd), Ok(Outcome::Conversation(_))));
    assert!(matches!(mem.run(&cmd), Ok(Outcome::Conversation(r)) if r.id == id));
    let mut gap = message.clone();
    gap.id = MessageId(1);
    let bad = import(record.clone(), vec![gap]);
    assert!(matches!(bad.validate(), Err(Rejection::Invalid(_))));
    // Not bob's workspace (another existing id in his shard without a record).
    let mut elsewhere = record;
    elsewhere.workspace = WorkspaceId::new(ShardId(3), 71);
    elsewhere.id = ConversationId::new(ShardId(3), 100);
    let mut cmd = import(elsewhere, vec![message]);
    if let ShardCommand::ImportConversation { request_id, .. } = &mut cmd {
        *request_id = RequestId(4);
    }
    assert_eq!(
        mem.run(&cmd),
        Err(Rejection::WorkspaceNotFound(WorkspaceId::new(
            ShardId(3),
            71
        )))
    );
}
