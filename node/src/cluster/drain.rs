//! Drain: an operator takes a node out of placement (`shoalctl drain`) and puts it back
//! (`shoalctl undrain`), and watches how far it has come.
//!
//! # Where the drain lives
//! The flag belongs to the drained node: it is written to that node's own store (the
//! node-level `node-meta` tree, flushed before the request is answered) and published in
//! its gossip metadata ([`super::membership::NodeMeta::draining`]), which is what
//! placement reads on every node.
//!
//! * The drained node restarts: it reads the flag at start and gossips it from its first
//!   packet, so no reconciler ever sees it undrained.
//! * The other nodes restart: they learn the flag from the drained node's gossip, as they
//!   learn its address. A drained node that is down holds nothing placement could move
//!   back to it, and it says it drains again as soon as it is back.
//! * The store of the drained node is lost: the flag goes with it, and the node rejoins
//!   as a new member in placement (drain it again). Its Raft identity is new anyway.
//!
//! Why not a replicated record in a shard's state machine: every node's reconciler needs
//! the flag for every shard it leads, but a node holds only the shards it is a replica of;
//! a cluster-level record would need its own group or a read across nodes on every
//! reconciler round. The flag changes nothing that Raft guards (no command, no log entry):
//! it only steers which memberships the reconcilers propose, through the same checked
//! plan as a node that leaves, so the invariants of ARCHITECTURE.md are untouched.
//!
//! # Progress
//! [`progress`] counts what the node still holds from the shards' leaders' own views (a
//! follower's view of a shard it was removed from can be stale), gathered by the admin
//! API from every alive member.

use super::membership::{Liveness, Member, MembersView};
use crate::context::NodeContext;
use shoal_protocol::admin::{DrainProgress, ShardInfo};

/// Sets this node's drain flag: durably in its store first, then in its gossip metadata.
/// On a store error nothing changed and the error says why.
pub async fn set_draining(ctx: &NodeContext, draining: bool) -> Result<(), String> {
    let store = ctx.store.clone();
    ctx.blocking(move || store.set_draining(draining))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the drain flag was not stored: {e}"))?;
    ctx.membership.update_meta(|m| m.draining = draining);
    use crate::telemetry::events::EventKind;
    if draining {
        ctx.event(
            EventKind::Drain,
            format!("{} drains: it leaves placement", ctx.node_id()),
        );
    } else {
        ctx.event(
            EventKind::Undrain,
            format!("{} is back in placement", ctx.node_id()),
        );
    }
    if draining {
        tracing::warn!("drain requested: moving every leadership and replica off this node");
    } else {
        tracing::warn!("undrain requested: this node is back in placement");
    }
    Ok(())
}

/// The member called `name` in its current identity: alive before suspect before down
/// (an older identity of the same name is a store that node lost).
pub fn member_named<'a>(view: &'a MembersView, name: &str) -> Option<&'a Member> {
    let rank = |m: &Member| match m.liveness {
        Liveness::Alive => 0,
        Liveness::Suspect => 1,
        Liveness::Down => 2,
    };
    view.members
        .iter()
        .filter(|m| m.meta.name == name)
        .min_by_key(|m| rank(m))
}

/// The members that may hold replicas, each in its current identity: alive (or `me`,
/// which runs this code) and not draining.
pub fn placeable_members<'a>(
    view: &'a MembersView,
    me: &'a str,
) -> impl Iterator<Item = &'a Member> {
    view.members
        .iter()
        .filter(|m| !m.meta.name.is_empty() && !m.meta.draining)
        .filter(move |m| m.liveness == Liveness::Alive || m.meta.name == me)
        .filter(|m| member_named(view, &m.meta.name).is_some_and(|c| c == *m))
}

/// Names of the members of `view`, for an error naming what exists.
pub fn member_names(view: &MembersView) -> String {
    let mut names: Vec<&str> = view
        .members
        .iter()
        .map(|m| m.meta.name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    names.dedup();
    names.join(", ")
}

/// Counts what `node` still holds. `reports` are the `Shards` answers of the members that
/// answered (reporter name, its view); each shard is judged by its leader's own view
/// (the reporter that names itself leader, in the highest term). A replica of a store the
/// node lost (`node@old-store`) counts: the leader still has to replace it.
pub fn progress(
    node: &str,
    draining: bool,
    reports: &[(String, Vec<ShardInfo>)],
    shard_count: u16,
    placeable_members: u32,
    replicas_per_shard: u32,
    unreachable: Vec<String>,
) -> DrainProgress {
    let old_store = format!("{node}{}", crate::gateway::admin_api::OLD_STORE_SUFFIX);
    let is_node = |name: &String| name == node || *name == old_store;
    let mut leaderships = 0;
    let mut replicas = 0;
    let mut shards_unknown = 0;
    for shard in 0..shard_count {
        let leader_view = reports
            .iter()
            .filter_map(|(reporter, shards)| {
                shards
                    .iter()
                    .find(|s| s.shard == shard && s.leader.as_ref() == Some(reporter))
            })
            .max_by_key(|s| s.term);
        let Some(view) = leader_view else {
            shards_unknown += 1;
            continue;
        };
        if view.leader.as_ref().is_some_and(is_node) {
            leaderships += 1;
        }
        if view.replicas.iter().chain(&view.learners).any(is_node) {
            replicas += 1;
        }
    }
    DrainProgress {
        node: node.to_owned(),
        draining,
        leaderships,
        replicas,
        placeable_members,
        replicas_per_shard,
        shards_unknown,
        unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(shard: u16, leader: &str, replicas: &[&str], term: u64) -> ShardInfo {
        ShardInfo {
            shard,
            leader: Some(leader.to_owned()),
            replicas: replicas.iter().map(|r| (*r).to_owned()).collect(),
            learners: Vec::new(),
            term,
            applied_index: Some(1),
            hosted_here: false,
            quiet: false,
        }
    }

    #[test]
    fn each_shard_is_judged_by_its_leaders_own_view() {
        // n1 was removed from shard 0 but its stale view still lists it; n2 leads and
        // knows better. Shard 1 has no leader view at all (its leader did not answer).
        let reports = vec![
            (
                "n1".to_owned(),
                vec![
                    shard(0, "n1", &["n1", "n2", "n3"], 4),
                    shard(1, "n3", &["n1", "n2", "n3"], 2),
                    shard(2, "n1", &["n1", "n2", "n3"], 7),
                ],
            ),
            (
                "n2".to_owned(),
                vec![
                    shard(0, "n2", &["n2", "n3", "n4"], 5),
                    shard(1, "n3", &["n1", "n2", "n3"], 2),
                    shard(2, "n1", &["n1", "n2", "n3"], 7),
                ],
            ),
        ];
        let p = progress("n1", true, &reports, 3, 3, 3, vec!["n3: timeout".into()]);
        assert_eq!(p.leaderships, 1, "{p:?}");
        assert_eq!(p.replicas, 1, "{p:?}");
        assert_eq!(p.shards_unknown, 1, "{p:?}");
        assert!(!p.finished());
    }

    #[test]
    fn a_drain_finishes_when_nothing_is_left_or_the_replicas_cannot_leave() {
        let reports = vec![(
            "n2".to_owned(),
            vec![shard(0, "n2", &["n1@old-store", "n2", "n3"], 3)],
        )];
        let p = progress("n1", true, &reports, 1, 2, 3, Vec::new());
        assert_eq!((p.leaderships, p.replicas), (0, 1));
        assert!(p.replicas_stay() && p.finished(), "{p:?}");
        let p = progress("n1", true, &reports, 1, 3, 3, Vec::new());
        assert!(
            !p.finished(),
            "a spare member exists: the replica must move"
        );
        let p = progress("n1", false, &[], 0, 3, 3, Vec::new());
        assert!(!p.finished(), "a node that does not drain is not drained");
    }
}
