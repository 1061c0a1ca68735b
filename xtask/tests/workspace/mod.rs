//! The workspace as the xtask tests read it: its root, its files and its members.
// Each test binary uses some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The workspace root (xtask's parent folder).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// The text of the file at `rel` below the workspace root.
pub(crate) fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// The workspace members of the root Cargo.toml (`dir/*` patterns expanded), relative to the root.
pub(crate) fn members(root: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("reading Cargo.toml");
    let list = manifest
        .split("members")
        .nth(1)
        .and_then(|s| s.split(['[', ']']).nth(1))
        .expect("Cargo.toml lists its workspace members");
    let mut out = Vec::new();
    for m in list
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        match m.strip_suffix("/*") {
            Some(parent) => {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join(parent))
                    .unwrap_or_else(|e| panic!("reading member folder {parent}: {e}"))
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("Cargo.toml").is_file())
                    .map(|p| p.strip_prefix(root).expect("under the root").to_path_buf())
                    .collect();
                dirs.sort();
                out.extend(dirs);
            }
            None => out.push(PathBuf::from(m)),
        }
    }
    out
}
