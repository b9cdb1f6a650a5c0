//! Workspaces and skill packs as the client API sees them, and the checks on their
//! names and files. The node runs the same checks (and again in its state machine), the
//! SDK and `shoalctl skills import` run them before sending, so a bad name or path is
//! refused with the same message wherever it is caught.

use crate::ids::{SkillPackId, WorkspaceId};
use serde::{Deserialize, Serialize};

/// Most workspaces one user may have (the default one included).
pub const WORKSPACES_PER_USER_MAX: usize = 100;
/// Longest workspace or skill-pack name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;
/// Most skill packs one user may have.
pub const SKILL_PACKS_PER_USER_MAX: usize = 100;
/// Most skill packs attached to one workspace.
pub const SKILL_PACKS_PER_WORKSPACE_MAX: usize = 16;
/// Most skills in one pack.
pub const SKILLS_PER_PACK_MAX: usize = 64;
/// Most files in one pack (over all its skills).
pub const SKILL_PACK_FILES_MAX: usize = 256;
/// Most bytes of one pack: its context and every file's path and content.
pub const SKILL_PACK_BYTES_MAX: usize = 512 * 1024;
/// Longest relative path of a skill file, in bytes.
pub const SKILL_FILE_PATH_BYTES_MAX: usize = 255;
/// Deepest relative path of a skill file, in components.
pub const SKILL_FILE_DEPTH_MAX: usize = 8;
/// Longest skill slug, in bytes.
pub const SKILL_SLUG_BYTES_MAX: usize = 64;

/// A workspace as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceInfo {
    /// Its id.
    pub id: WorkspaceId,
    /// Its name (unique per user, compared without regard to case).
    pub name: String,
    /// The user's default workspace: it always exists and cannot be deleted.
    pub default: bool,
    /// When it was created (0 for a default workspace never written).
    pub created_at_ms: u64,
    /// The skill packs attached to it, in the order their files are materialized.
    pub packs: Vec<SkillPackId>,
}

/// A skill pack's content, as created, updated or imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillPackSpec {
    /// Its name (unique per user, compared without regard to case).
    pub name: String,
    /// Context text for the agents (`AGENTS.md` / `CLAUDE.md` at the workspace root).
    pub context: Option<String>,
    /// Its skills.
    pub skills: Vec<SkillSpec>,
}

/// One skill: a directory `<slug>/` with a `SKILL.md` and any other files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillSpec {
    /// The directory name: `[a-z0-9][a-z0-9._-]*`, at most [`SKILL_SLUG_BYTES_MAX`].
    pub slug: String,
    /// Its files, by path relative to the skill directory; one is `SKILL.md`.
    pub files: Vec<SkillFile>,
}

/// One file of a skill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillFile {
    /// Relative path inside the skill directory, `/`-separated.
    pub path: String,
    /// The bytes.
    pub content: Vec<u8>,
}

/// A skill pack as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillPackInfo {
    /// Its id.
    pub id: SkillPackId,
    /// Its name.
    pub name: String,
    /// Whether it has context text.
    pub has_context: bool,
    /// Its skills' slugs.
    pub skills: Vec<String>,
    /// Its size as counted against [`SKILL_PACK_BYTES_MAX`].
    pub bytes: u64,
    /// When it was created.
    pub created_at_ms: u64,
    /// When it was last replaced.
    pub updated_at_ms: u64,
    /// The workspaces it is attached to.
    pub attached: Vec<WorkspaceId>,
}

/// Checks a workspace or skill-pack name: 1 to [`NAME_BYTES_MAX`] bytes, no control
/// characters, no `/` or `\`, not `.` or `..`, no leading or trailing whitespace.
/// `what` names the thing in the message ("workspace name").
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let shown: String = name.chars().take(64).collect();
    if name.is_empty() {
        return Err(format!("a {what} cannot be empty"));
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(format!(
            "the {what} is {} bytes, the limit is {NAME_BYTES_MAX}",
            name.len()
        ));
    }
    if name.trim() != name {
        return Err(format!(
            "the {what} `{shown}` starts or ends with whitespace"
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
        || name == "."
        || name == ".."
    {
        return Err(format!(
            "the {what} {shown:?} may not contain control characters, `/` or `\\`, nor be `.` or `..`"
        ));
    }
    Ok(())
}

/// Checks a skill slug: `[a-z0-9][a-z0-9._-]*`, at most [`SKILL_SLUG_BYTES_MAX`] bytes.
pub fn check_slug(slug: &str) -> Result<(), String> {
    let ok = !slug.is_empty()
        && slug.len() <= SKILL_SLUG_BYTES_MAX
        && slug
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "skill slug {:?} must be 1-{SKILL_SLUG_BYTES_MAX} characters of a-z 0-9 . _ - starting with a letter or digit",
            slug.chars().take(64).collect::<String>()
        ))
    }
}

/// Checks a skill file's relative path: `/`-separated components that are not empty,
/// `.` or `..`, with no `\`, NUL or control characters, at most
/// [`SKILL_FILE_DEPTH_MAX`] deep and [`SKILL_FILE_PATH_BYTES_MAX`] long. Such a path
/// can only name a file inside the skill's directory.
pub fn check_file_path(path: &str) -> Result<(), String> {
    let shown: String = path.chars().take(80).collect();
    let bad = |why: &str| Err(format!("skill file path {shown:?} {why}"));
    if path.is_empty() {
        return bad("is empty");
    }
    if path.len() > SKILL_FILE_PATH_BYTES_MAX {
        return bad(&format!("is longer than {SKILL_FILE_PATH_BYTES_MAX} bytes"));
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("contains a control character or `\\`");
    }
    if path.starts_with('/') {
        return bad("is absolute; paths are relative to the skill directory");
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > SKILL_FILE_DEPTH_MAX {
        return bad(&format!(
            "is deeper than {SKILL_FILE_DEPTH_MAX} directories"
        ));
    }
    if components
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return bad("has an empty, `.` or `..` component");
    }
    Ok(())
}

impl SkillPackSpec {
    /// The pack's size as counted against [`SKILL_PACK_BYTES_MAX`].
    pub fn bytes(&self) -> usize {
        let files: usize = self
            .skills
            .iter()
            .flat_map(|s| &s.files)
            .map(|f| f.path.len() + f.content.len())
            .sum();
        self.name.len() + self.context.as_ref().map_or(0, String::len) + files
    }

    /// Checks everything about the pack that can be checked alone: its name, slugs
    /// (unique), file paths (unique per skill, each skill with a `SKILL.md`) and every
    /// limit. The message names what to fix.
    pub fn check(&self) -> Result<(), String> {
        check_name("skill pack name", &self.name)?;
        if self.skills.len() > SKILLS_PER_PACK_MAX {
            return Err(format!(
                "the pack has {} skills, the limit is {SKILLS_PER_PACK_MAX}",
                self.skills.len()
            ));
        }
        let files: usize = self.skills.iter().map(|s| s.files.len()).sum();
        if files > SKILL_PACK_FILES_MAX {
            return Err(format!(
                "the pack has {files} files, the limit is {SKILL_PACK_FILES_MAX}"
            ));
        }
        let bytes = self.bytes();
        if bytes > SKILL_PACK_BYTES_MAX {
            return Err(format!(
                "the pack is {bytes} bytes, the limit is {SKILL_PACK_BYTES_MAX}"
            ));
        }
        if self.context.is_none() && self.skills.is_empty() {
            return Err("the pack has neither context text nor skills".to_owned());
        }
        let mut slugs = std::collections::HashSet::new();
        for skill in &self.skills {
            check_slug(&skill.slug)?;
            if !slugs.insert(skill.slug.as_str()) {
                return Err(format!("skill `{}` appears twice", skill.slug));
            }
            let mut paths = std::collections::HashSet::new();
            for file in &skill.files {
                check_file_path(&file.path)?;
                if !paths.insert(file.path.as_str()) {
                    return Err(format!(
                        "file `{}` appears twice in skill `{}`",
                        file.path, skill.slug
                    ));
                }
            }
            // A file and a directory of the same name cannot both exist.
            for path in &paths {
                let mut prefix = String::new();
                for component in path
                    .split('/')
                    .collect::<Vec<_>>()
                    .split_last()
                    .map_or(&[][..], |(_, dirs)| dirs)
                {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(component);
                    if paths.contains(prefix.as_str()) {
                        return Err(format!(
                            "skill `{}` has both a file and a directory `{prefix}`",
                            skill.slug
                        ));
                    }
                }
            }
            if !paths.contains("SKILL.md") {
                return Err(format!("skill `{}` has no SKILL.md", skill.slug));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(files: &[(&str, &str)]) -> SkillPackSpec {
        SkillPackSpec {
            name: "tools".into(),
            context: None,
            skills: vec![SkillSpec {
                slug: "lint".into(),
                files: files
                    .iter()
                    .map(|(p, c)| SkillFile {
                        path: (*p).into(),
                        content: c.as_bytes().to_vec(),
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("workspace name", "my project (2)").is_ok());
        for bad in [
            "",
            " x",
            "x ",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\nb",
            &"x".repeat(65),
        ] {
            assert!(check_name("workspace name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn slugs_are_checked() {
        assert!(check_slug("pdf-tools_2.0").is_ok());
        for bad in ["", "..", ".x", "-x", "A", "a/b", "a b", &"a".repeat(65)] {
            assert!(check_slug(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_paths_cannot_leave_the_skill_directory() {
        for ok in ["SKILL.md", "scripts/run.sh", "a/b/c.txt", "..hidden"] {
            assert!(check_file_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\..\\b",
            "a\0b",
            "1/2/3/4/5/6/7/8/9",
        ] {
            assert!(check_file_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn packs_are_checked_whole() {
        assert!(pack(&[("SKILL.md", "x"), ("run.sh", "y")]).check().is_ok());
        let err = pack(&[("run.sh", "y")]).check().unwrap_err();
        assert!(err.contains("no SKILL.md"), "{err}");
        let err = pack(&[("SKILL.md", "x"), ("SKILL.md", "y")])
            .check()
            .unwrap_err();
        assert!(err.contains("twice"), "{err}");
        let err = pack(&[("SKILL.md", "x"), ("a", "y"), ("a/b", "z")])
            .check()
            .unwrap_err();
        assert!(err.contains("both a file and a directory"), "{err}");
        let big = "x".repeat(SKILL_PACK_BYTES_MAX);
        let err = pack(&[("SKILL.md", &big)]).check().unwrap_err();
        assert!(err.contains("limit"), "{err}");
        let mut empty = pack(&[]);
        empty.skills.clear();
        assert!(empty.check().unwrap_err().contains("neither"));
    }
}
