//! Naming a workspace or a skill pack on the command line: by its id (`w-…`, `p-…`) or by
//! its name, compared without regard to case as the node compares them. Names are
//! resolved against the caller's list, so an unknown name is answered with the names
//! there are.

use crate::render;
use anyhow::anyhow;
use shoal_client::Client;
use shoal_protocol::workspaces::{SkillPackInfo, WorkspaceInfo};
use shoal_protocol::{SkillPackId, WorkspaceId};

/// Names listed in an "unknown name" error line before `… and N more`.
const NAMES_SHOWN_MAX: usize = 20;

/// The item named `wanted`: the exact name first, then the one equal without regard to
/// case (names are unique that way, so there is at most one).
fn by_name<'a, T>(items: &'a [T], name_of: impl Fn(&T) -> &str, wanted: &str) -> Option<&'a T> {
    let lower = wanted.to_lowercase();
    items
        .iter()
        .find(|item| name_of(item) == wanted)
        .or_else(|| {
            items
                .iter()
                .find(|item| name_of(item).to_lowercase() == lower)
        })
}

/// `no workspace named "x"; yours are: "a", "b"; see `shoalctl ws list``.
fn unknown(what: &str, wanted: &str, names: &[&str], list_command: &str) -> anyhow::Error {
    let wanted = render::cell(wanted);
    if names.is_empty() {
        return anyhow!("no {what} named {wanted:?}: you have none; see `{list_command}`");
    }
    let mut shown: Vec<String> = names
        .iter()
        .take(NAMES_SHOWN_MAX)
        .map(|n| format!("{:?}", render::cell(n)))
        .collect();
    if names.len() > NAMES_SHOWN_MAX {
        shown.push(format!("and {} more", names.len() - NAMES_SHOWN_MAX));
    }
    anyhow!(
        "no {what} named {wanted:?}; yours are: {}; pass one of these names or an id (see `{list_command}`)",
        shown.join(", ")
    )
}

/// The workspace named `arg` in `list` (by id or by name).
fn find_workspace<'a>(list: &'a [WorkspaceInfo], arg: &str) -> anyhow::Result<&'a WorkspaceInfo> {
    if let Ok(id) = arg.parse::<WorkspaceId>() {
        return list.iter().find(|w| w.id == id).ok_or_else(|| {
            anyhow!("workspace {id} does not exist (or is not yours); see `shoalctl ws list`")
        });
    }
    by_name(list, |w| &w.name, arg).ok_or_else(|| {
        let names: Vec<&str> = list.iter().map(|w| w.name.as_str()).collect();
        unknown("workspace", arg, &names, "shoalctl ws list")
    })
}

/// The skill pack named `arg` in `list` (by id or by name).
fn find_pack<'a>(list: &'a [SkillPackInfo], arg: &str) -> anyhow::Result<&'a SkillPackInfo> {
    if let Ok(id) = arg.parse::<SkillPackId>() {
        return list.iter().find(|p| p.id == id).ok_or_else(|| {
            anyhow!("skill pack {id} does not exist (or is not yours); see `shoalctl skills list`")
        });
    }
    by_name(list, |p| &p.name, arg).ok_or_else(|| {
        let names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
        unknown("skill pack", arg, &names, "shoalctl skills list")
    })
}

/// The workspace `arg` names, with its current record.
pub(crate) async fn workspace(client: &Client, arg: &str) -> anyhow::Result<WorkspaceInfo> {
    let list = client.list_workspaces().await?;
    find_workspace(&list, arg).cloned()
}

/// The id of the workspace `arg` names: an id is taken as it is (the node answers for
/// it), a name is looked up.
pub(crate) async fn workspace_id(client: &Client, arg: &str) -> anyhow::Result<WorkspaceId> {
    match arg.parse::<WorkspaceId>() {
        Ok(id) => Ok(id),
        Err(_) => Ok(workspace(client, arg).await?.id),
    }
}

/// The skill pack `arg` names, with its current record.
pub(crate) async fn pack(client: &Client, arg: &str) -> anyhow::Result<SkillPackInfo> {
    let list = client.list_skill_packs().await?;
    find_pack(&list, arg).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::ShardId;

    fn workspace(uid: u128, name: &str) -> WorkspaceInfo {
        WorkspaceInfo {
            id: WorkspaceId::new(ShardId(1), uid),
            name: name.into(),
            default: uid == 0,
            created_at_ms: 0,
            packs: Vec::new(),
        }
    }

    #[test]
    fn workspaces_are_found_by_id_or_name_without_regard_to_case() {
        let list = [workspace(0, "default"), workspace(7, "Project X")];
        let by_id = find_workspace(&list, &list[1].id.to_string()).unwrap();
        assert_eq!(by_id.name, "Project X");
        assert_eq!(find_workspace(&list, "project x").unwrap().id, list[1].id);
        assert_eq!(find_workspace(&list, "DEFAULT").unwrap().id, list[0].id);

        let err = find_workspace(&list, "nope").unwrap_err().to_string();
        assert!(
            err.contains("no workspace named \"nope\"")
                && err.contains("\"default\", \"Project X\""),
            "{err}"
        );
        let other = WorkspaceId::new(ShardId(1), 9).to_string();
        let err = find_workspace(&list, &other).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn an_exact_name_wins_and_long_lists_are_cut() {
        let items = ["abc", "ABC"];
        assert_eq!(by_name(&items, |s| s, "ABC"), Some(&"ABC"));
        assert_eq!(by_name(&items, |s| s, "Abc"), Some(&"abc"));

        let names: Vec<String> = (0..30).map(|i| format!("n{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let err = unknown("skill pack", "x", &names, "shoalctl skills list").to_string();
        assert!(err.contains("\"n19\", and 10 more;"), "{err}");
        assert!(!err.contains("\"n20\""), "{err}");
        let err = unknown("skill pack", "x\u{1b}[2J", &[], "shoalctl skills list").to_string();
        assert!(
            err.contains("you have none") && !err.contains('\u{1b}'),
            "{err}"
        );
    }
}
