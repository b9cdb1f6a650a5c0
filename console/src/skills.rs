//! `shoalctl skills …`: skill packs. A pack is named by its id (`p-…`) or its name, a
//! workspace by its id (`w-…`) or its name.
//!
//! `skills show --json` prints the whole pack: `id`, `name`, `bytes`, `created_at_ms`,
//! `updated_at_ms`, `attached` (workspace ids), `context` (text or `null`) and `skills`,
//! each `{"slug", "files": [{"path", "bytes", "text"}]}`, where a file that is not UTF-8
//! has `base64` (standard alphabet, padded) instead of `text`.

use crate::conv::print_line;
use crate::lookup;
use crate::render::{Align, cell, table};
use crate::skills_import::read_pack_dir;
use anyhow::anyhow;
use base64::Engine as _;
use clap::Subcommand;
use serde_json::{Value, json};
use shoal_client::{Client, Profile};
use shoal_protocol::workspaces::{SkillFile, SkillPackInfo, SkillPackSpec, WorkspaceInfo};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `shoalctl skills …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SkillsCommand {
    /// List your skill packs: id, name, skills, size and how many workspaces have them.
    List {
        /// Print a JSON array (`id`, `name`, `has_context`, `skills` (slugs), `bytes`,
        /// `created_at_ms`, `updated_at_ms`, `attached` (workspace ids)).
        #[arg(long)]
        json: bool,
    },
    /// Show a pack: its context text and each skill's files with their sizes.
    Show {
        /// The pack: its id (`p-…`) or its name.
        pack: String,
        /// Print the whole pack as one JSON object, file contents included (as `text`,
        /// or `base64` when not UTF-8).
        #[arg(long)]
        json: bool,
    },
    /// Create a pack from a directory (or replace a pack's content with --update).
    ///
    /// DIR/AGENTS.md (else DIR/CLAUDE.md) is the context; each directory of DIR/skills/
    /// is a skill (without DIR/skills/: each directory of DIR with a SKILL.md), its slug
    /// the directory name, with every file below it (hidden files too). Symbolic links
    /// and special files are refused; at most 256 files and 512 KiB in all.
    Import {
        /// The pack's directory.
        dir: PathBuf,
        /// The pack's name (default: the directory's name; with --update: the pack's
        /// current name).
        #[arg(long)]
        name: Option<String>,
        /// Replace this pack's content (id or name) instead of creating a pack; the
        /// workspaces it is attached to get the new files.
        #[arg(long, value_name = "PACK")]
        update: Option<String>,
    },
    /// Delete a pack, detaching it from every workspace.
    Rm {
        /// The pack: its id (`p-…`) or its name.
        pack: String,
    },
    /// Attach a pack to a workspace: its files are written into the workspace and its
    /// agents' homes (`~/.claude/skills/<slug>/`).
    Attach {
        /// The pack: its id (`p-…`) or its name.
        pack: String,
        /// The workspace, by id (`w-…`) or name (default: your default workspace).
        #[arg(long, value_name = "WS")]
        workspace: Option<String>,
    },
    /// Detach a pack from a workspace: the files Shoal wrote for it are removed, files
    /// changed since stay.
    Detach {
        /// The pack: its id (`p-…`) or its name.
        pack: String,
        /// The workspace, by id (`w-…`) or name (default: your default workspace).
        #[arg(long, value_name = "WS")]
        workspace: Option<String>,
    },
}

/// Runs one `skills` command.
pub(crate) async fn run(profile: &Profile, command: SkillsCommand) -> anyhow::Result<ExitCode> {
    if let SkillsCommand::Import { dir, name, update } = command {
        return import(profile, &dir, name.as_deref(), update.as_deref()).await;
    }
    let client = Client::connect(profile).await?;
    let result = run_with(&client, command).await;
    client.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// `skills import`: a new pack's directory is read before connecting, so a directory
/// that cannot be imported is refused without the node; an update first looks up the
/// pack's current name.
async fn import(
    profile: &Profile,
    dir: &Path,
    name: Option<&str>,
    update: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (verb, result) = match update {
        None => {
            let spec = read_pack_dir(dir, name).map_err(|e| anyhow!(e))?;
            let client = Client::connect(profile).await?;
            let result = client.create_skill_pack(spec.clone()).await;
            client.close().await;
            (
                "imported",
                result.map(|info| (info, spec)).map_err(Into::into),
            )
        }
        Some(pack) => {
            let client = Client::connect(profile).await?;
            let result = async {
                let current = lookup::pack(&client, pack).await?;
                let spec = read_pack_dir(dir, Some(name.unwrap_or(&current.name)))
                    .map_err(|e| anyhow!(e))?;
                let info = client.update_skill_pack(current.id, spec.clone()).await?;
                anyhow::Ok((info, spec))
            }
            .await;
            client.close().await;
            ("updated", result)
        }
    };
    let (info, spec) = result?;
    let files: usize = spec.skills.iter().map(|s| s.files.len()).sum();
    print_line(&format!(
        "{verb} pack {} ({}): {} skill{}, {files} file{}, {} bytes",
        cell(&info.name),
        info.id,
        info.skills.len(),
        plural(info.skills.len()),
        plural(files),
        info.bytes
    ))?;
    Ok(ExitCode::SUCCESS)
}

async fn run_with(client: &Client, command: SkillsCommand) -> anyhow::Result<()> {
    match command {
        SkillsCommand::Import { .. } => unreachable!("`run` hands `skills import` to `import`"),
        SkillsCommand::List { json } => {
            let list = client.list_skill_packs().await?;
            if json {
                let items: Vec<Value> = list.iter().map(pack_json).collect();
                print_line(&Value::Array(items).to_string())?;
            } else {
                for line in packs_table(&list) {
                    print_line(&line)?;
                }
            }
        }
        SkillsCommand::Show { pack, json } => {
            let id = lookup::pack(client, &pack).await?.id;
            let (info, spec) = client.get_skill_pack(id).await?;
            if json {
                print_line(&pack_content_json(&info, &spec).to_string())?;
            } else {
                for line in show_lines(&info, &spec) {
                    print_line(&line)?;
                }
            }
        }
        SkillsCommand::Rm { pack } => {
            let info = lookup::pack(client, &pack).await?;
            let detached = client.delete_skill_pack(info.id).await?;
            print_line(&format!(
                "deleted pack {} ({}), detached from {detached} workspace{}",
                cell(&info.name),
                info.id,
                plural(usize::try_from(detached).unwrap_or(usize::MAX))
            ))?;
        }
        SkillsCommand::Attach { pack, workspace } => {
            let (pack, workspace) = pack_and_workspace(client, &pack, workspace).await?;
            let ws = client.attach_skill_pack(workspace, pack.id).await?;
            print_line(&format!(
                "attached pack {} to {}",
                cell(&pack.name),
                workspace_words(&ws)
            ))?;
        }
        SkillsCommand::Detach { pack, workspace } => {
            let (pack, workspace) = pack_and_workspace(client, &pack, workspace).await?;
            let ws = client.detach_skill_pack(workspace, pack.id).await?;
            print_line(&format!(
                "detached pack {} from {}",
                cell(&pack.name),
                workspace_words(&ws)
            ))?;
        }
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

async fn pack_and_workspace(
    client: &Client,
    pack: &str,
    workspace: Option<String>,
) -> anyhow::Result<(SkillPackInfo, Option<shoal_protocol::WorkspaceId>)> {
    let pack = lookup::pack(client, pack).await?;
    let workspace = match workspace {
        Some(arg) => Some(lookup::workspace_id(client, &arg).await?),
        None => None,
    };
    Ok((pack, workspace))
}

/// `workspace "web" (w-…), which has 2 packs`.
fn workspace_words(ws: &WorkspaceInfo) -> String {
    format!(
        "workspace {} ({}), which has {} pack{}",
        cell(&ws.name),
        ws.id,
        ws.packs.len(),
        plural(ws.packs.len())
    )
}

/// One pack in `skills list --json`.
fn pack_json(p: &SkillPackInfo) -> Value {
    json!({
        "id": p.id.to_string(),
        "name": p.name,
        "has_context": p.has_context,
        "skills": p.skills,
        "bytes": p.bytes,
        "created_at_ms": p.created_at_ms,
        "updated_at_ms": p.updated_at_ms,
        "attached": p.attached.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// A file's content as `text` when it is UTF-8, else as `base64`.
fn file_json(file: &SkillFile) -> Value {
    let mut object = json!({ "path": file.path, "bytes": file.content.len() });
    match std::str::from_utf8(&file.content) {
        Ok(text) => object["text"] = json!(text),
        Err(_) => {
            object["base64"] =
                json!(base64::engine::general_purpose::STANDARD.encode(&file.content));
        }
    }
    object
}

/// The pack in `skills show --json` (see the module docs).
fn pack_content_json(info: &SkillPackInfo, spec: &SkillPackSpec) -> Value {
    json!({
        "id": info.id.to_string(),
        "name": spec.name,
        "bytes": info.bytes,
        "created_at_ms": info.created_at_ms,
        "updated_at_ms": info.updated_at_ms,
        "attached": info.attached.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "context": spec.context,
        "skills": spec.skills.iter().map(|s| json!({
            "slug": s.slug,
            "files": s.files.iter().map(file_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// `ID NAME SKILLS BYTES WORKSPACES`, by name as listed.
fn packs_table(list: &[SkillPackInfo]) -> Vec<String> {
    if list.is_empty() {
        return vec!["no skill packs; create one with `shoalctl skills import DIR`".to_owned()];
    }
    let header = [
        ("ID", Align::Left),
        ("NAME", Align::Left),
        ("SKILLS", Align::Right),
        ("BYTES", Align::Right),
        ("WORKSPACES", Align::Right),
    ];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                cell(&p.name),
                p.skills.len().to_string(),
                p.bytes.to_string(),
                p.attached.len().to_string(),
            ]
        })
        .collect();
    table(&header, &rows)
}

/// The pack for a human: a header, the context text (control characters other than
/// newlines and tabs shown as `?`) and each skill's files with their sizes.
fn show_lines(info: &SkillPackInfo, spec: &SkillPackSpec) -> Vec<String> {
    let files: usize = spec.skills.iter().map(|s| s.files.len()).sum();
    let mut lines = vec![
        format!(
            "pack {} ({}): {} skill{}, {files} file{}, {} bytes, attached to {} workspace{}",
            cell(&spec.name),
            info.id,
            spec.skills.len(),
            plural(spec.skills.len()),
            plural(files),
            info.bytes,
            info.attached.len(),
            plural(info.attached.len())
        ),
        String::new(),
    ];
    match &spec.context {
        Some(context) => {
            lines.push(format!("context ({} bytes):", context.len()));
            lines.extend(context.lines().map(|line| {
                let safe: String = line
                    .chars()
                    .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
                    .collect();
                format!("  {safe}").trim_end().to_owned()
            }));
        }
        None => lines.push("context: none".to_owned()),
    }
    for skill in &spec.skills {
        lines.push(String::new());
        lines.push(format!("skill {}/", cell(&skill.slug)));
        let width = skill
            .files
            .iter()
            .map(|f| cell(&f.path).chars().count())
            .max()
            .unwrap_or(0);
        for file in &skill.files {
            lines.push(format!(
                "  {:width$}  {:>7} bytes",
                cell(&file.path),
                file.content.len()
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::workspaces::SkillSpec;
    use shoal_protocol::{ShardId, SkillPackId, WorkspaceId};

    fn sample() -> (SkillPackInfo, SkillPackSpec) {
        let spec = SkillPackSpec {
            name: "tools".into(),
            context: Some("be\u{1b}[2J careful\n\tindented".into()),
            skills: vec![SkillSpec {
                slug: "lint".into(),
                files: vec![
                    SkillFile {
                        path: "SKILL.md".into(),
                        content: b"# lint".to_vec(),
                    },
                    SkillFile {
                        path: "bin/tool".into(),
                        content: vec![0xff, 0x00, 0x01],
                    },
                ],
            }],
        };
        let info = SkillPackInfo {
            id: SkillPackId::new(ShardId(1), 5),
            name: "tools".into(),
            has_context: true,
            skills: vec!["lint".into()],
            bytes: spec.bytes() as u64,
            created_at_ms: 1,
            updated_at_ms: 2,
            attached: vec![WorkspaceId::new(ShardId(1), 0)],
        };
        (info, spec)
    }

    #[test]
    fn show_json_has_text_or_base64_contents() {
        let (info, spec) = sample();
        let value = pack_content_json(&info, &spec);
        assert_eq!(value["id"], "p-1-00000000000000000000000000000005");
        assert_eq!(value["attached"][0], "w-1-00000000000000000000000000000000");
        let files = &value["skills"][0]["files"];
        assert_eq!(
            files[0],
            json!({"path": "SKILL.md", "bytes": 6, "text": "# lint"})
        );
        assert_eq!(
            files[1],
            json!({"path": "bin/tool", "bytes": 3, "base64": "/wAB"})
        );
    }

    #[test]
    fn show_lists_context_and_file_sizes_without_control_characters() {
        let (info, spec) = sample();
        let lines = show_lines(&info, &spec);
        assert_eq!(
            lines,
            [
                "pack tools (p-1-00000000000000000000000000000005): 1 skill, 2 files, 54 bytes, attached to 1 workspace",
                "",
                "context (24 bytes):",
                "  be?[2J careful",
                "  \tindented",
                "",
                "skill lint/",
                "  SKILL.md        6 bytes",
                "  bin/tool        3 bytes",
            ]
        );
    }

    #[test]
    fn the_list_table_counts_skills_and_workspaces() {
        let (info, _) = sample();
        assert_eq!(
            packs_table(&[info]),
            [
                "ID                                    NAME   SKILLS  BYTES  WORKSPACES",
                "p-1-00000000000000000000000000000005  tools       1     54           1",
            ]
        );
        assert!(packs_table(&[])[0].starts_with("no skill packs"));
    }
}
