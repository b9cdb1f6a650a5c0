//! Skill packs materialized into a workspace's tree, and pruned when detached.
//!
//! [`sync`] makes the files Shoal manages match the attached packs, in attach order:
//! `work/AGENTS.md` and `work/CLAUDE.md` (the same text: one marked section per pack
//! with context), and `homes/<h>/.claude/skills/<slug>/<path>` in every agent home that
//! already exists (the first pack wins a slug).
//!
//! The files are managed ([`super::managed`]): recorded in `.shoal-managed.json` at the
//! root of the workspace tree, rewritten or removed only while unchanged, never through
//! a symlink. Slugs and file paths are checked again before use. Blocking I/O: run
//! [`sync`] on a blocking task, one at a time per tree (the workspace's sandbox actor).

use super::managed;
pub use super::managed::{REGISTRY_FILE, Synced};
use shoal_protocol::SkillPackId;
use shoal_protocol::workspaces::{SkillPackSpec, check_file_path, check_slug};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;

/// The context files, relative to the root.
const CONTEXT_FILES: [&str; 2] = ["work/AGENTS.md", "work/CLAUDE.md"];

/// One attached pack, in attach order.
#[derive(Debug, Clone)]
pub struct AttachedPack {
    /// The pack's id (named in the context marker and in warnings).
    pub id: SkillPackId,
    /// Its content.
    pub spec: SkillPackSpec,
}

/// Makes the files Shoal manages under `root` match `packs` (see module doc).
///
/// Fails only when the root cannot be opened or the registry cannot be saved (then the
/// files written so far stay, unrecorded, and a later sync leaves them alone); anything
/// wrong with one file is a warning.
pub fn sync(root: &Path, packs: &[AttachedPack]) -> io::Result<Synced> {
    let mut out = Synced::default();
    let context = context_text(packs);
    let mut desired: BTreeMap<String, &[u8]> = BTreeMap::new();
    if !context.is_empty() {
        for rel in CONTEXT_FILES {
            desired.insert(rel.to_owned(), context.as_bytes());
        }
    }
    let skill_files = skill_files(packs, &mut out.warnings);
    if !skill_files.is_empty() {
        for home in homes(root, &mut out.warnings) {
            for (path, content) in &skill_files {
                desired
                    .entry(format!("homes/{home}/{path}"))
                    .or_insert(*content);
            }
        }
    }
    managed::sync(root, &desired, &PackLayout, &mut out)
        .map_err(|e| io::Error::new(e.kind(), format!("workspace tree: {e}")))?;
    Ok(out)
}

/// The context files' text: one marked section per pack with context, or empty.
fn context_text(packs: &[AttachedPack]) -> String {
    let sections: Vec<String> = packs
        .iter()
        .filter_map(|pack| {
            let text = pack.spec.context.as_ref()?;
            let name: String = pack.spec.name.chars().filter(|c| !c.is_control()).collect();
            let newline = if text.ends_with('\n') { "" } else { "\n" };
            Some(format!(
                "<!-- shoal skill pack \"{name}\" ({}): written by Shoal and removed when the pack is detached; once you edit this file Shoal leaves it alone -->\n{text}{newline}",
                pack.id
            ))
        })
        .collect();
    sections.join("\n")
}

/// Every skill file of `packs`, by path relative to an agent home, the first pack
/// winning a slug. Bad slugs and paths are skipped with a warning.
fn skill_files<'a>(
    packs: &'a [AttachedPack],
    warnings: &mut Vec<String>,
) -> BTreeMap<String, &'a [u8]> {
    let mut files = BTreeMap::new();
    let mut owners: HashMap<&str, &AttachedPack> = HashMap::new();
    for pack in packs {
        let shown = format!("pack {:?} ({})", pack.spec.name, pack.id);
        for skill in &pack.spec.skills {
            if let Err(why) = check_slug(&skill.slug) {
                warnings.push(format!("skipped a skill of {shown}: {why}"));
                continue;
            }
            if let Some(first) = owners.get(skill.slug.as_str()) {
                warnings.push(format!(
                    "skipped skill `{}` of {shown}: pack {:?} ({}) attached earlier has a skill of that name; detach one or rename the skill",
                    skill.slug, first.spec.name, first.id
                ));
                continue;
            }
            owners.insert(&skill.slug, pack);
            for file in &skill.files {
                match check_file_path(&file.path) {
                    Ok(()) => {
                        let path = format!(".claude/skills/{}/{}", skill.slug, file.path);
                        files.entry(path).or_insert(file.content.as_slice());
                    }
                    Err(why) => warnings.push(format!(
                        "skipped a file of skill `{}` of {shown}: {why}",
                        skill.slug
                    )),
                }
            }
        }
    }
    files
}

/// The names of the agent homes: real directories in `homes/`, sorted. (Listing by
/// path is safe: every write opens `homes` and the home again without following links.)
fn homes(root: &Path, warnings: &mut Vec<String>) -> Vec<String> {
    let homes = root.join("homes");
    let listed = match std::fs::symlink_metadata(&homes) {
        Ok(meta) if meta.is_dir() => std::fs::read_dir(&homes),
        _ => return Vec::new(),
    };
    let mut names = Vec::new();
    for entry in listed.into_iter().flatten().map_while(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        match (entry.file_type(), entry.file_name().to_str()) {
            (Ok(kind), Some(_)) if kind.is_dir() => names.push(name),
            (Ok(kind), _) if kind.is_dir() || kind.is_symlink() => warnings.push(format!(
                "skipped homes/{name}: it is a symlink or its name is not UTF-8"
            )),
            _ => {}
        }
    }
    names.sort();
    names
}

/// Where pack files go in a workspace tree.
struct PackLayout;

impl managed::Layout for PackLayout {
    fn path_ok(&self, rel: &str) -> bool {
        registry_path_ok(rel)
    }

    fn depths(&self, rel: &str) -> (usize, usize) {
        depths(rel)
    }
}

/// Whether a registry path is one Shoal writes: a context file, or a skill file in a
/// home (a plain directory name) with a good slug and file path.
fn registry_path_ok(rel: &str) -> bool {
    if CONTEXT_FILES.contains(&rel) {
        return true;
    }
    let Some((home, rest)) = rel.strip_prefix("homes/").and_then(|r| r.split_once('/')) else {
        return false;
    };
    let skill = rest
        .strip_prefix(".claude/skills/")
        .and_then(|r| r.split_once('/'));
    let plain_home = !home.is_empty() && home != "." && home != ".." && !home.contains('\0');
    skill.is_some_and(|(slug, path)| {
        plain_home && check_slug(slug).is_ok() && check_file_path(path).is_ok()
    })
}

/// How many leading directories of `rel` are never created, and how many never
/// removed: `work/` may be created but is kept; `homes/<h>/` is neither created nor
/// removed.
fn depths(rel: &str) -> (usize, usize) {
    if rel.starts_with("homes/") {
        (2, 2)
    } else {
        (0, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::managed::Registry;
    use super::*;
    use shoal_protocol::ShardId;
    use shoal_protocol::workspaces::{SkillFile, SkillSpec};
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    type Skill<'a> = (&'a str, &'a [(&'a str, &'a str)]);

    const LINT: Skill<'static> = (
        "lint",
        &[
            ("SKILL.md", "# Lint\n"),
            ("scripts/run.sh", "cargo clippy\n"),
        ],
    );
    const SKILL_FILES: [&str; 4] = [
        "homes/c1/.claude/skills/lint/SKILL.md",
        "homes/c1/.claude/skills/lint/scripts/run.sh",
        "homes/c2/.claude/skills/lint/SKILL.md",
        "homes/c2/.claude/skills/lint/scripts/run.sh",
    ];

    fn pack(uid: u128, name: &str, context: Option<&str>, skills: &[Skill<'_>]) -> AttachedPack {
        let file = |(path, content): &(&str, &str)| SkillFile {
            path: (*path).into(),
            content: content.as_bytes().to_vec(),
        };
        let skills = skills.iter().map(|(slug, files)| SkillSpec {
            slug: (*slug).into(),
            files: files.iter().map(file).collect(),
        });
        let spec = SkillPackSpec {
            name: name.into(),
            context: context.map(Into::into),
            skills: skills.collect(),
        };
        AttachedPack {
            id: SkillPackId::new(ShardId(3), uid),
            spec,
        }
    }

    fn tools() -> AttachedPack {
        pack(1, "tools", Some("Use cargo."), &[LINT])
    }

    /// A tree with homes `c1` and `c2`.
    fn tree() -> anyhow::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        fs::create_dir_all(dir.path().join("homes/c1"))?;
        fs::create_dir_all(dir.path().join("homes/c2"))?;
        Ok(dir)
    }

    fn read(root: &Path, rel: &str) -> String {
        fs::read_to_string(root.join(rel)).unwrap_or_else(|e| format!("<{rel}: {e}>"))
    }

    fn registry(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
        let registry: Registry = serde_json::from_slice(&fs::read(root.join(REGISTRY_FILE))?)?;
        Ok(registry.files)
    }

    fn warned(synced: &Synced, text: &str) -> bool {
        synced.warnings.iter().any(|w| w.contains(text))
    }

    fn marker(pack: &AttachedPack) -> String {
        format!(
            "<!-- shoal skill pack \"{}\" ({}): written by Shoal and removed when the pack is detached; once you edit this file Shoal leaves it alone -->\n",
            pack.spec.name, pack.id
        )
    }

    #[test]
    fn attach_writes_context_and_skills_into_every_home() -> anyhow::Result<()> {
        let dir = tree()?;
        let root = dir.path();
        let synced = sync(root, &[tools()])?;
        assert_eq!(synced.warnings, Vec::<String>::new());
        assert_eq!(synced.written, 6);
        let context = format!("{}Use cargo.\n", marker(&tools()));
        assert!(context.contains("(p-3-00000000000000000000000000000001)"));
        assert_eq!(read(root, "work/AGENTS.md"), context);
        assert_eq!(read(root, "work/CLAUDE.md"), context);
        for rel in SKILL_FILES {
            let want = if rel.ends_with(".md") {
                "# Lint\n"
            } else {
                "cargo clippy\n"
            };
            assert_eq!(read(root, rel), want, "{rel}");
        }
        let files = registry(root)?;
        assert_eq!(files.len(), 6);
        assert!(SKILL_FILES.iter().all(|rel| files.contains_key(*rel)));
        let hash = blake3::hash(context.as_bytes());
        assert_eq!(files["work/AGENTS.md"], hash.to_hex().as_str());

        // Sections are separated by one blank line.
        let style = pack(2, "style", Some("Be terse.\n"), &[]);
        sync(root, &[tools(), style.clone()])?;
        let both = format!("{context}\n{}Be terse.\n", marker(&style));
        assert_eq!(read(root, "work/AGENTS.md"), both);
        Ok(())
    }

    #[test]
    fn a_second_sync_with_nothing_changed_writes_nothing() -> anyhow::Result<()> {
        let dir = tree()?;
        let root = dir.path();
        sync(root, &[tools()])?;
        // A rewrite renames a new file into place: the inode would change.
        let rels = [&SKILL_FILES[..], &["work/AGENTS.md", REGISTRY_FILE]].concat();
        let inodes = || {
            rels.iter()
                .map(|rel| fs::metadata(root.join(rel)).map(|m| m.ino()).ok())
        };
        let before: Vec<_> = inodes().collect();
        assert_eq!(sync(root, &[tools()])?, Synced::default());
        assert_eq!(inodes().collect::<Vec<_>>(), before);
        assert_eq!(read(root, SKILL_FILES[0]), "# Lint\n");
        Ok(())
    }

    #[test]
    fn detach_removes_only_unchanged_files_shoal_wrote() -> anyhow::Result<()> {
        let dir = tree()?;
        let root = dir.path();
        sync(root, &[tools()])?;
        fs::write(root.join(SKILL_FILES[0]), "# My lint\n")?;
        fs::create_dir_all(root.join("homes/c1/.claude/skills/mine"))?;
        fs::write(
            root.join("homes/c1/.claude/skills/mine/SKILL.md"),
            "# Mine\n",
        )?;

        let synced = sync(root, &[])?;
        assert_eq!((synced.written, synced.removed), (0, 5));
        assert!(warned(
            &synced,
            "kept homes/c1/.claude/skills/lint/SKILL.md"
        ));
        assert_eq!(read(root, SKILL_FILES[0]), "# My lint\n");
        assert_eq!(
            read(root, "homes/c1/.claude/skills/mine/SKILL.md"),
            "# Mine\n"
        );
        for gone in [
            "work/AGENTS.md",
            "work/CLAUDE.md",
            "homes/c1/.claude/skills/lint/scripts",
            "homes/c2/.claude",
            REGISTRY_FILE,
        ] {
            assert!(!root.join(gone).exists(), "{gone} is still there");
        }
        for kept in ["work", "homes/c1", "homes/c2"] {
            assert!(root.join(kept).is_dir(), "{kept} is gone");
        }
        // The edited file is the user's now: attaching again leaves it alone.
        assert!(warned(&sync(root, &[tools()])?, "kept homes/c1/.claude"));
        assert_eq!(read(root, SKILL_FILES[0]), "# My lint\n");
        Ok(())
    }

    #[test]
    fn a_users_own_agents_md_is_never_touched() -> anyhow::Result<()> {
        let dir = tree()?;
        let root = dir.path();
        fs::create_dir(root.join("work"))?;
        fs::write(root.join("work/AGENTS.md"), "mine\n")?;
        let synced = sync(root, &[tools()])?;
        let kept = "kept work/AGENTS.md: it was not written by Shoal or was changed since";
        assert!(warned(&synced, kept), "{:?}", synced.warnings);
        assert_eq!(read(root, "work/AGENTS.md"), "mine\n");
        assert!(read(root, "work/CLAUDE.md").contains("Use cargo."));
        assert!(!registry(root)?.contains_key("work/AGENTS.md"));

        sync(root, &[])?;
        assert_eq!(read(root, "work/AGENTS.md"), "mine\n");
        assert!(!root.join("work/CLAUDE.md").exists());
        Ok(())
    }

    #[test]
    fn updating_a_pack_rewrites_unchanged_files() -> anyhow::Result<()> {
        let dir = tree()?;
        let root = dir.path();
        sync(root, &[tools()])?;
        let files: &[_] = &[("SKILL.md", "# Lint v2\n"), ("notes.md", "n\n")];
        let updated = pack(1, "tools", Some("Use nextest."), &[("lint", files)]);
        let synced = sync(root, &[updated])?;
        assert_eq!(synced.warnings, Vec::<String>::new());
        // Both context files, and SKILL.md and notes.md in both homes; run.sh twice.
        assert_eq!((synced.written, synced.removed), (6, 2));
        assert!(read(root, "work/AGENTS.md").ends_with("-->\nUse nextest.\n"));
        assert_eq!(read(root, SKILL_FILES[2]), "# Lint v2\n");
        assert_eq!(read(root, "homes/c1/.claude/skills/lint/notes.md"), "n\n");
        assert!(!root.join("homes/c2/.claude/skills/lint/scripts").exists());
        let hash = blake3::hash(b"# Lint v2\n");
        assert_eq!(registry(root)?[SKILL_FILES[2]], hash.to_hex().as_str());
        Ok(())
    }

    #[test]
    fn symlinks_and_climbing_registry_paths_are_never_followed() -> anyhow::Result<()> {
        let base = tempfile::tempdir()?;
        let root = &base.path().join("root");
        fs::create_dir_all(root.join("homes/c1"))?;
        fs::create_dir_all(root.join("homes/c2/.claude/skills/lint"))?;
        let outside = tempfile::tempdir()?;
        let out = outside.path();
        symlink(out, root.join("homes/c1/.claude"))?;
        symlink(out, root.join("homes/c3"))?;
        // A final path that is a symlink is neither written nor followed.
        fs::write(out.join("target"), "secret\n")?;
        symlink(out.join("target"), root.join(SKILL_FILES[2]))?;

        let synced = sync(root, &[pack(1, "tools", None, &[LINT])])?;
        let w = |text| {
            assert!(
                warned(&synced, text),
                "no {text:?} in {:?}",
                synced.warnings
            )
        };
        w("skipped homes/c1/.claude/skills/lint/SKILL.md: `homes/c1/.claude` is a symlink");
        w("skipped homes/c3: it is a symlink");
        w("skipped homes/c2/.claude/skills/lint/SKILL.md: a directory, symlink");
        assert_eq!(synced.written, 1, "only c2's run.sh");
        assert_eq!(fs::read_dir(out)?.count(), 1);
        assert_eq!(read(out, "target"), "secret\n");

        // A planted registry naming files outside, with their true hashes.
        fs::create_dir_all(base.path().join("outside"))?;
        fs::create_dir_all(out.join("skills/lint"))?;
        let victims = [
            base.path().join("outside/x"),
            base.path().join("x"),
            out.join("skills/lint/SKILL.md"),
        ];
        let hash = blake3::hash(b"victim\n").to_hex().to_string();
        for victim in &victims {
            fs::write(victim, "victim\n")?;
        }
        let planted = [
            "../outside/x",
            "homes/../../x",
            &victims[1].display().to_string(),
            SKILL_FILES[0],
            SKILL_FILES[2],
        ];
        let files = planted.iter().map(|rel| (rel.to_string(), hash.clone()));
        let planted = Registry {
            version: 1,
            files: files.collect(),
        };
        fs::write(root.join(REGISTRY_FILE), serde_json::to_vec(&planted)?)?;
        let synced = sync(root, &[])?;
        assert!(warned(&synced, "dropped \"../outside/x\""));
        assert!(warned(&synced, "dropped \"homes/../../x\""));
        assert_eq!(synced.removed, 0);
        for victim in &victims {
            assert_eq!(fs::read_to_string(victim)?, "victim\n");
        }
        assert!(fs::symlink_metadata(root.join(SKILL_FILES[2]))?.is_symlink());
        assert_eq!(read(out, "target"), "secret\n");
        Ok(())
    }

    #[test]
    fn a_corrupt_registry_removes_nothing() -> anyhow::Result<()> {
        let dir = tree()?;
        let root = dir.path();
        sync(root, &[tools()])?;
        fs::write(root.join(REGISTRY_FILE), "garbage{")?;
        let synced = sync(root, &[])?;
        assert!(warned(&synced, "is not valid"), "{:?}", synced.warnings);
        assert_eq!(synced.removed, 0);
        assert!(read(root, "work/AGENTS.md").contains("Use cargo."));
        assert_eq!(read(root, SKILL_FILES[1]), "cargo clippy\n");
        Ok(())
    }

    #[test]
    fn the_first_pack_wins_a_duplicate_slug() -> anyhow::Result<()> {
        let dir = tree()?;
        let root = dir.path();
        let first = pack(1, "first", None, &[("lint", &[("SKILL.md", "A")])]);
        let skills: &[Skill<'_>] = &[
            ("lint", &[("SKILL.md", "B")]),
            ("fmt", &[("SKILL.md", "F")]),
        ];
        let second = pack(2, "second", None, skills);
        let synced = sync(root, &[first.clone(), second.clone()])?;
        assert_eq!(synced.warnings.len(), 1, "{:?}", synced.warnings);
        let warning = &synced.warnings[0];
        let (a, b) = (first.id.to_string(), second.id.to_string());
        for part in ["`lint`", "\"first\"", "\"second\"", &a, &b] {
            assert!(warning.contains(part), "{warning} lacks {part}");
        }
        assert_eq!(read(root, SKILL_FILES[0]), "A");
        assert_eq!(read(root, "homes/c2/.claude/skills/fmt/SKILL.md"), "F");
        Ok(())
    }

    #[test]
    fn bad_paths_and_slugs_from_the_network_are_skipped() -> anyhow::Result<()> {
        let base = tempfile::tempdir()?;
        let root = &base.path().join("root");
        fs::create_dir_all(root.join("homes/c1"))?;
        let files: &[_] = &[("../x", "climb"), ("/abs", "abs"), ("SKILL.md", "ok")];
        let evil: Skill<'_> = ("../../../../evil", &[("SKILL.md", "evil")]);
        let synced = sync(root, &[pack(1, "bad", None, &[("lint", files), evil])])?;
        assert_eq!(synced.warnings.len(), 3, "{:?}", synced.warnings);
        assert_eq!(synced.written, 1);
        assert_eq!(read(root, "homes/c1/.claude/skills/lint/SKILL.md"), "ok");
        assert!(!root.join("homes/c1/.claude/skills/x").exists());
        assert!(!base.path().join("evil").exists());
        let files = registry(root)?;
        assert_eq!(files.keys().collect::<Vec<_>>(), [SKILL_FILES[0]]);

        // No homes and no context: nothing is created, not even `work/`.
        let empty = tempfile::tempdir()?;
        let skills_only = pack(1, "tools", None, &[LINT]);
        assert_eq!(sync(empty.path(), &[skills_only])?, Synced::default());
        assert_eq!(fs::read_dir(empty.path())?.count(), 0);
        assert!(sync(&empty.path().join("missing"), &[]).is_err());
        Ok(())
    }
}
