//! docs/ARCHITECTURE.md names files and folders; each one it names must exist, so the code map
//! cannot drift from the tree unnoticed.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// The back-quoted words of `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// A back-quoted word that names a file or folder of the tree (not a command, SQL or a type).
fn is_path(word: &str) -> bool {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        && !word.starts_with("..")
        && !word.starts_with('/')
        // Build output and file-name patterns are not files of the tree.
        && !word.starts_with("target/")
        && !word.contains("NNNN")
        // A file-name ending on its own (`.rs`, `.sql`) names no file.
        && !(word.starts_with('.') && word[1..].chars().all(|c| c.is_ascii_alphanumeric()));
    let file = [".rs", ".toml", ".md", ".yml", ".sh"]
        .iter()
        .any(|ext| word.ends_with(ext));
    plain && (file || word.ends_with('/') || word.contains('/'))
}

/// Whether a file or folder called `name` (which may itself hold a `/`) is somewhere under `dir`.
fn found_under(dir: &Path, name: &str) -> bool {
    if dir.join(name).exists() {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        p.is_dir()
            && !p.ends_with("target")
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            && found_under(&p, name)
    })
}

#[test]
fn every_path_the_architecture_document_names_exists() {
    let root = root();
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md"))
        .expect("reading docs/ARCHITECTURE.md");
    let mut section_dirs: Vec<PathBuf> = vec![root.clone()];
    let mut checked = 0;
    let mut missing = Vec::new();
    for (n, line) in doc.lines().enumerate() {
        if line.starts_with("### ") {
            // A code-map heading names the folder(s) its section describes.
            section_dirs = quoted(line)
                .into_iter()
                .map(|w| root.join(w.trim_end_matches('/')))
                .filter(|p| p.is_dir())
                .collect();
            section_dirs.push(root.clone());
        }
        for word in quoted(line).into_iter().filter(|w| is_path(w)) {
            checked += 1;
            let name = word.trim_end_matches('/');
            if !section_dirs.iter().any(|d| found_under(d, name)) {
                missing.push(format!("line {}: `{word}`", n + 1));
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} paths recognised in docs/ARCHITECTURE.md: is the parser still right?"
    );
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names paths that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn paths_are_told_apart_from_other_words() {
    assert!(is_path("engine.rs"));
    assert!(is_path("crates/migrate"));
    assert!(is_path("bench/"));
    assert!(is_path("config/default.toml"));
    assert!(!is_path("cargo xtask test"));
    assert!(!is_path("Cluster::existing"));
    assert!(!is_path("postgresql[+driver]://"));
    assert!(!is_path("../shared/SPEC.md"));
    assert!(!is_path("config/<NOTIFY_ENVIRONMENT>.toml"));
    assert!(!is_path("NNNN_slug.rs"));
    assert!(!is_path(".rs"));
    assert!(is_path(".ci/run"));
    assert!(!is_path("target/bench/latest.json"));
    assert!(!found_under(&root(), "no-such-file-anywhere.rs"));
}
