//! PLACEHOLDER replaced by the helper's module before commit.
use shoal_protocol::SkillPackId;
use shoal_protocol::workspaces::SkillPackSpec;
use std::path::Path;
#[derive(Debug, Clone)]
pub struct AttachedPack {
    pub id: SkillPackId,
    pub spec: SkillPackSpec,
}
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    pub written: u64,
    pub removed: u64,
    pub warnings: Vec<String>,
}
pub fn sync(_root: &Path, _packs: &[AttachedPack]) -> std::io::Result<Synced> {
    Ok(Synced::default())
}
