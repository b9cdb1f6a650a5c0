//! `shoalctl skills import DIR`: a skill pack read from a local directory.
//!
//! ```text
//! DIR/AGENTS.md                 the pack's context (else DIR/CLAUDE.md; UTF-8)
//! DIR/skills/<slug>/SKILL.md    one skill per directory of DIR/skills/, with every
//! DIR/skills/<slug>/…           regular file below it
//! ```
//!
//! Without a `DIR/skills/`, each directory `DIR/<slug>/` holding a `SKILL.md` is a skill
//! (other directories and files of DIR are not part of the pack). Nothing below a skill
//! is left out: hidden files are included, and a symbolic link, a special file (FIFO,
//! socket, device) or a name that is not UTF-8 is an error naming it. Symbolic links are
//! never followed, DIR itself included. Reading stops at the first file that would take
//! the pack over [`SKILL_PACK_FILES_MAX`] files or [`SKILL_PACK_BYTES_MAX`] bytes, judged
//! from its size on disk before it is read.

use shoal_protocol::workspaces::{
    SKILL_FILE_DEPTH_MAX, SKILL_PACK_BYTES_MAX, SKILL_PACK_FILES_MAX, SKILLS_PER_PACK_MAX,
    SkillFile, SkillPackSpec, SkillSpec, check_slug,
};
use std::fs::{self, File, Metadata};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

/// The context files, in order of preference.
const CONTEXT_FILES: [&str; 2] = ["AGENTS.md", "CLAUDE.md"];

/// Builds a skill pack from `dir` (see the module docs); `name` replaces the directory's
/// name as the pack's name. The error says what is wrong with which path and what to do.
pub(crate) fn read_pack_dir(dir: &Path, name: Option<&str>) -> Result<SkillPackSpec, String> {
    let meta = metadata(dir)?;
    if meta.is_symlink() {
        return Err(format!(
            "{} is a symbolic link; pass the directory it points to",
            dir.display()
        ));
    }
    if !meta.is_dir() {
        return Err(format!(
            "{} is not a directory; pass the pack's directory",
            dir.display()
        ));
    }
    let name = match name {
        Some(name) => name.to_owned(),
        None => dir_name(dir)?,
    };
    let mut budget = Budget::default();
    budget.add_bytes(name.len(), dir)?;

    let mut context = None;
    for file in CONTEXT_FILES {
        let path = dir.join(file);
        let Some(meta) = metadata_if_exists(&path)? else {
            continue;
        };
        regular_file(&path, &meta)?;
        let bytes = budget.read(&path, &meta, 0)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("{} is not UTF-8 text; save it as UTF-8", path.display()))?;
        context = Some(text);
        break;
    }

    let mut skills = Vec::new();
    for (slug, skill_dir) in skill_dirs(dir)? {
        if skills.len() == SKILLS_PER_PACK_MAX {
            return Err(format!(
                "{} holds more than {SKILLS_PER_PACK_MAX} skills, the most a pack may have; split it into several packs",
                dir.display()
            ));
        }
        let mut files = Vec::new();
        read_tree(&skill_dir, "", 0, &mut files, &mut budget)?;
        skills.push(SkillSpec { slug, files });
    }

    if context.is_none() && skills.is_empty() {
        return Err(format!(
            "{} holds no skill pack: no AGENTS.md or CLAUDE.md, and no skills (directories skills/<slug>/, or <slug>/ with a SKILL.md)",
            dir.display()
        ));
    }
    let spec = SkillPackSpec {
        name,
        context,
        skills,
    };
    spec.check()
        .map_err(|e| format!("cannot import {}: {e}", dir.display()))?;
    Ok(spec)
}

/// The pack's default name: the directory's name (`.` and `..` resolved).
fn dir_name(dir: &Path) -> Result<String, String> {
    let name = match dir.file_name() {
        Some(name) => name.to_owned(),
        None => fs::canonicalize(dir)
            .ok()
            .and_then(|full| full.file_name().map(ToOwned::to_owned))
            .ok_or_else(|| {
                format!(
                    "cannot name the pack after {}; pass --name NAME",
                    dir.display()
                )
            })?,
    };
    name.into_string().map_err(|name| {
        format!(
            "the directory name {} is not UTF-8; pass --name NAME",
            name.to_string_lossy()
        )
    })
}

/// The skill directories with their slugs, by name: those of `dir/skills/`, or without
/// one, the directories of `dir` holding a `SKILL.md`.
fn skill_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let skills_dir = dir.join("skills");
    let mut found = Vec::new();
    match metadata_if_exists(&skills_dir)? {
        Some(meta) if meta.is_dir() => {
            for (name, path, meta) in entries(&skills_dir)? {
                no_symlink(&path, &meta)?;
                if !meta.is_dir() {
                    return Err(format!(
                        "{} is not a directory; every entry of {} must be a skill directory <slug>/ with a SKILL.md: move it elsewhere",
                        path.display(),
                        skills_dir.display()
                    ));
                }
                found.push((slug(name, &path)?, path));
            }
        }
        Some(meta) => {
            no_symlink(&skills_dir, &meta)?;
            return Err(format!(
                "{} is not a directory; skills go in {}/<slug>/",
                skills_dir.display(),
                skills_dir.display()
            ));
        }
        None => {
            for (name, path, meta) in entries(dir)? {
                if meta.is_symlink() {
                    return Err(format!(
                        "{} is a symbolic link, which skills import does not follow; replace it with a copy of what it points to, or move the skills into {}",
                        path.display(),
                        skills_dir.display()
                    ));
                }
                if meta.is_dir() && metadata_if_exists(&path.join("SKILL.md"))?.is_some() {
                    found.push((slug(name, &path)?, path));
                }
            }
        }
    }
    Ok(found)
}

/// A skill directory's name as its slug.
fn slug(name: String, path: &Path) -> Result<String, String> {
    check_slug(&name).map_err(|e| format!("{}: {e}; rename the directory", path.display()))?;
    Ok(name)
}

/// Adds every regular file below `dir` to `files`, with paths `/`-separated under `rel`;
/// `depth` is how many directories `dir` is below the skill's directory.
fn read_tree(
    dir: &Path,
    rel: &str,
    depth: usize,
    files: &mut Vec<SkillFile>,
    budget: &mut Budget,
) -> Result<(), String> {
    for (name, path, meta) in entries(dir)? {
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        no_symlink(&path, &meta)?;
        if meta.is_dir() {
            // A file in it would be deeper than a skill file may be.
            if depth + 2 > SKILL_FILE_DEPTH_MAX {
                return Err(format!(
                    "{} is nested too deep: skill files may be at most {SKILL_FILE_DEPTH_MAX} levels below the skill's directory",
                    path.display()
                ));
            }
            read_tree(&path, &rel, depth + 1, files, budget)?;
        } else {
            regular_file(&path, &meta)?;
            let content = budget.read(&path, &meta, rel.len())?;
            files.push(SkillFile { path: rel, content });
        }
    }
    Ok(())
}

/// What a pack has taken so far of its limits.
#[derive(Debug, Default)]
struct Budget {
    files: usize,
    bytes: usize,
}

impl Budget {
    fn add_bytes(&mut self, bytes: usize, path: &Path) -> Result<(), String> {
        if self.bytes + bytes > SKILL_PACK_BYTES_MAX {
            return Err(too_big(path, self.bytes + bytes));
        }
        self.bytes += bytes;
        Ok(())
    }

    /// Reads a file counted against the limits: its content and `path_bytes` (its path
    /// in the pack; 0 for the context, which is no skill file). Its size on disk is
    /// checked before reading, and no more than the limit is ever read.
    fn read(&mut self, path: &Path, meta: &Metadata, path_bytes: usize) -> Result<Vec<u8>, String> {
        if path_bytes > 0 {
            if self.files == SKILL_PACK_FILES_MAX {
                return Err(format!(
                    "{} would be file {} of the pack, the limit is {SKILL_PACK_FILES_MAX}; remove files or split the pack",
                    path.display(),
                    SKILL_PACK_FILES_MAX + 1
                ));
            }
            self.files += 1;
        }
        let room = SKILL_PACK_BYTES_MAX.saturating_sub(self.bytes + path_bytes);
        let size = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        if size > room {
            return Err(too_big(path, self.bytes.saturating_add(path_bytes + size)));
        }
        let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut content = Vec::with_capacity(size);
        // One byte past the room tells a file that grew since its size was read.
        file.take(room as u64 + 1)
            .read_to_end(&mut content)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        self.add_bytes(path_bytes + content.len(), path)?;
        Ok(content)
    }
}

fn too_big(path: &Path, bytes: usize) -> String {
    format!(
        "the pack would be over {SKILL_PACK_BYTES_MAX} bytes at {} (at least {bytes} bytes with it); remove large files or split the pack",
        path.display()
    )
}

/// The entries of `dir` by name, each with its own metadata (links not followed).
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, Metadata)>, String> {
    let read = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| format!("the name of {} is not UTF-8; rename it", path.display()))?;
        let meta = metadata(&path)?;
        out.push((name, path, meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `path`'s own metadata (a link is not followed).
fn metadata(path: &Path) -> Result<Metadata, String> {
    fs::symlink_metadata(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => format!("{} does not exist", path.display()),
        _ => format!("cannot read {}: {e}", path.display()),
    })
}

fn metadata_if_exists(path: &Path) -> Result<Option<Metadata>, String> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn no_symlink(path: &Path, meta: &Metadata) -> Result<(), String> {
    if meta.is_symlink() {
        return Err(format!(
            "{} is a symbolic link, which skills import does not follow; replace it with a copy of what it points to",
            path.display()
        ));
    }
    Ok(())
}

fn regular_file(path: &Path, meta: &Metadata) -> Result<(), String> {
    no_symlink(path, meta)?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file (a directory, FIFO, socket or device); skill packs hold regular files only: remove it",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "skills_import/tests.rs"]
mod tests;
