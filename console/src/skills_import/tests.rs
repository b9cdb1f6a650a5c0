//! `read_pack_dir` against directories built in a temporary directory.

use super::*;
use std::io::Write;

/// Writes `files` (`path`, content) below `root`, creating directories.
fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

fn pack_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join(name);
    fs::create_dir(&dir).unwrap();
    (temp, dir)
}

fn file(path: &str, content: &str) -> SkillFile {
    SkillFile {
        path: path.into(),
        content: content.as_bytes().to_vec(),
    }
}

#[test]
fn skills_come_from_the_skills_directory_with_every_file() {
    let (_temp, dir) = pack_dir("tools");
    write(
        &dir,
        &[
            ("AGENTS.md", "be careful"),
            ("README.md", "not part of the pack"),
            ("skills/lint/SKILL.md", "# lint"),
            ("skills/lint/scripts/run.sh", "#!/bin/sh"),
            ("skills/lint/.hidden", "h"),
            ("skills/fmt/SKILL.md", "# fmt"),
        ],
    );
    let spec = read_pack_dir(&dir, None).unwrap();
    assert_eq!(
        spec,
        SkillPackSpec {
            name: "tools".into(),
            context: Some("be careful".into()),
            skills: vec![
                SkillSpec {
                    slug: "fmt".into(),
                    files: vec![file("SKILL.md", "# fmt")],
                },
                SkillSpec {
                    slug: "lint".into(),
                    files: vec![
                        file(".hidden", "h"),
                        file("SKILL.md", "# lint"),
                        file("scripts/run.sh", "#!/bin/sh"),
                    ],
                },
            ],
        }
    );
}

#[test]
fn without_a_skills_directory_skills_are_directories_with_a_skill_md() {
    let (_temp, dir) = pack_dir("whatever");
    write(
        &dir,
        &[
            ("CLAUDE.md", "claude context"),
            ("pdf/SKILL.md", "# pdf"),
            ("pdf/forms/fill.py", "print()"),
            ("docs/notes.md", "no SKILL.md here"),
            ("loose.txt", "not a skill"),
        ],
    );
    let spec = read_pack_dir(&dir, Some("Documents")).unwrap();
    assert_eq!(spec.name, "Documents");
    assert_eq!(spec.context.as_deref(), Some("claude context"));
    assert_eq!(spec.skills.len(), 1);
    assert_eq!(spec.skills[0].slug, "pdf");
    assert_eq!(
        spec.skills[0].files,
        [file("SKILL.md", "# pdf"), file("forms/fill.py", "print()")]
    );
}

#[test]
fn agents_md_wins_over_claude_md_and_must_be_utf8() {
    let (_temp, dir) = pack_dir("ctx");
    write(&dir, &[("AGENTS.md", "agents"), ("CLAUDE.md", "claude")]);
    let spec = read_pack_dir(&dir, None).unwrap();
    assert_eq!(spec.context.as_deref(), Some("agents"));
    assert!(spec.skills.is_empty());

    fs::write(dir.join("AGENTS.md"), [0xff, 0xfe]).unwrap();
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(err.contains("AGENTS.md is not UTF-8"), "{err}");
}

#[cfg(unix)]
#[test]
fn symlinks_are_never_followed() {
    use std::os::unix::fs::symlink;
    let (temp, dir) = pack_dir("links");
    write(&dir, &[("skills/lint/SKILL.md", "# lint")]);
    write(temp.path(), &[("outside.txt", "secret")]);

    symlink(
        temp.path().join("outside.txt"),
        dir.join("skills/lint/leak"),
    )
    .unwrap();
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(err.contains("skills/lint/leak is a symbolic link"), "{err}");
    fs::remove_file(dir.join("skills/lint/leak")).unwrap();

    symlink(dir.join("skills/lint"), dir.join("skills/alias")).unwrap();
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(err.contains("skills/alias is a symbolic link"), "{err}");
    fs::remove_file(dir.join("skills/alias")).unwrap();

    symlink(temp.path().join("outside.txt"), dir.join("AGENTS.md")).unwrap();
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(err.contains("AGENTS.md is a symbolic link"), "{err}");
    fs::remove_file(dir.join("AGENTS.md")).unwrap();

    let link = temp.path().join("link-to-pack");
    symlink(&dir, &link).unwrap();
    let err = read_pack_dir(&link, None).unwrap_err();
    assert!(err.contains("link-to-pack is a symbolic link"), "{err}");

    assert!(read_pack_dir(&dir, None).is_ok());
}

#[cfg(unix)]
#[test]
fn special_files_are_errors() {
    let (_temp, dir) = pack_dir("special");
    write(&dir, &[("skills/net/SKILL.md", "# net")]);
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("skills/net/sock")).unwrap();
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(
        err.contains("skills/net/sock is not a regular file"),
        "{err}"
    );
}

#[test]
fn a_file_over_the_byte_limit_is_refused_before_it_is_read() {
    let (_temp, dir) = pack_dir("big");
    write(&dir, &[("skills/data/SKILL.md", "# data")]);
    // 1 GiB on disk as far as its size says (sparse): refused from its metadata alone.
    let huge = File::create(dir.join("skills/data/huge.bin")).unwrap();
    huge.set_len(1 << 30).unwrap();
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(
        err.contains(&format!("over {SKILL_PACK_BYTES_MAX} bytes"))
            && err.contains("skills/data/huge.bin"),
        "{err}"
    );

    // Files that are small alone but too big together stop at the one that overflows.
    fs::remove_file(dir.join("skills/data/huge.bin")).unwrap();
    let chunk = vec![b'x'; SKILL_PACK_BYTES_MAX / 4];
    for i in 0..5 {
        let mut f = File::create(dir.join(format!("skills/data/part{i}"))).unwrap();
        f.write_all(&chunk).unwrap();
    }
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(err.contains("skills/data/part3"), "{err}");
}

#[test]
fn too_many_files_are_refused() {
    let (_temp, dir) = pack_dir("many");
    write(&dir, &[("skills/many/SKILL.md", "# many")]);
    for i in 0..SKILL_PACK_FILES_MAX {
        fs::write(dir.join(format!("skills/many/f{i:03}")), "x").unwrap();
    }
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(
        err.contains(&format!("limit is {SKILL_PACK_FILES_MAX}")),
        "{err}"
    );
}

#[test]
fn empty_and_malformed_directories_are_errors() {
    let (temp, dir) = pack_dir("empty");
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(err.contains("holds no skill pack"), "{err}");

    let err = read_pack_dir(&temp.path().join("missing"), None).unwrap_err();
    assert!(err.contains("does not exist"), "{err}");

    write(&dir, &[("skills/README.md", "x")]);
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(err.contains("skills/README.md is not a directory"), "{err}");
    fs::remove_file(dir.join("skills/README.md")).unwrap();

    write(&dir, &[("skills/Bad Name/SKILL.md", "x")]);
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(err.contains("rename the directory"), "{err}");
    fs::remove_dir_all(dir.join("skills/Bad Name")).unwrap();

    write(&dir, &[("skills/nodoc/run.sh", "x")]);
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(err.contains("skill `nodoc` has no SKILL.md"), "{err}");
    fs::remove_dir_all(dir.join("skills/nodoc")).unwrap();

    write(
        &dir,
        &[
            ("skills/deep/SKILL.md", "x"),
            ("skills/deep/1/2/3/4/5/6/7/8/f", "x"),
        ],
    );
    let err = read_pack_dir(&dir, None).unwrap_err();
    assert!(err.contains("nested too deep"), "{err}");

    let err = read_pack_dir(&dir.join("skills/deep/SKILL.md"), None).unwrap_err();
    assert!(err.contains("is not a directory"), "{err}");
}

#[test]
fn the_name_defaults_to_the_resolved_directory_name() {
    let (_temp, dir) = pack_dir("named");
    write(&dir, &[("AGENTS.md", "x"), ("sub/keep", "y")]);
    let spec = read_pack_dir(&dir.join("sub/.."), None).unwrap();
    assert_eq!(spec.name, "named");
    let err = read_pack_dir(&dir, Some("a/b")).unwrap_err();
    assert!(err.contains("skill pack name"), "{err}");
}
