//! Size guard: xtask holds dev chores only (at most [`XTASK_MAX_LINES`] lines of non-test
//! source), and no non-test source file of the workspace is over [`FILE_MAX_LINES`] lines, so
//! product logic does not drift back into xtask and files stay small enough to review.
//!
//! Non-test source: every `.rs` file under a workspace member's `src/` (and its `build.rs`),
//! without its `#[cfg(test)]` modules; `tests/`, `benches/` and `examples/` folders are tests.

use std::path::{Path, PathBuf};

/// The most lines of non-test source xtask may hold.
const XTASK_MAX_LINES: usize = 2_000;
/// The most lines of non-test source one file may hold.
const FILE_MAX_LINES: usize = 700;
mod workspace;

use workspace::{members, root};

/// The `.rs` files under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for p in entries.flatten().map(|e| e.path()) {
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Lines of `text` outside its `#[cfg(test)]` modules (a module ends where its braces balance).
fn non_test_lines(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let mut count = 0;
    let mut i = 0;
    while i < lines.len() {
        let starts_test_module = lines[i].trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|l| l.trim_start().starts_with("mod ") && l.contains('{'));
        if !starts_test_module {
            count += 1;
            i += 1;
            continue;
        }
        let mut depth = 0i64;
        let mut j = i + 1;
        while j < lines.len() {
            depth += lines[j].matches('{').count() as i64 - lines[j].matches('}').count() as i64;
            j += 1;
            if depth <= 0 {
                break;
            }
        }
        i = j;
    }
    count
}

/// Every non-test source file of the workspace with its line count, relative to the root.
fn non_test_sources() -> Vec<(PathBuf, usize)> {
    let root = root();
    let mut out = Vec::new();
    for member in members(&root) {
        let mut files = rust_files(&root.join(&member).join("src"));
        let build = root.join(&member).join("build.rs");
        if build.is_file() {
            files.push(build);
        }
        for f in files {
            let text = std::fs::read_to_string(&f)
                .unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
            let rel = f.strip_prefix(&root).expect("under the root").to_path_buf();
            out.push((rel, non_test_lines(&text)));
        }
    }
    out
}

#[test]
fn xtask_holds_at_most_2000_lines_of_non_test_source() {
    let files: Vec<(PathBuf, usize)> = non_test_sources()
        .into_iter()
        .filter(|(p, _)| p.starts_with("xtask"))
        .collect();
    assert!(
        files.iter().any(|(p, _)| p.ends_with("xtask/src/main.rs")),
        "xtask/src/main.rs not found among {files:?}: is the member list read right?"
    );
    let total: usize = files.iter().map(|(_, n)| n).sum();
    let mut biggest = files.clone();
    biggest.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let listing: Vec<String> = biggest
        .iter()
        .map(|(p, n)| format!("{n:>6} {}", p.display()))
        .collect();
    assert!(
        total <= XTASK_MAX_LINES,
        "xtask has {total} lines of non-test source, more than {XTASK_MAX_LINES}: move product \
         logic into the crates (largest first):\n{}",
        listing.join("\n")
    );
}

#[test]
fn no_non_test_source_file_is_over_700_lines() {
    let files = non_test_sources();
    let members = members(&root());
    for m in [
        "crates/migrate",
        "crates/migrate-cli",
        "xtask",
        "bench",
        "tests/faults",
    ] {
        assert!(
            members.iter().any(|p| p == Path::new(m)),
            "workspace member {m} not found in {members:?}: is the member list read right?"
        );
    }
    assert!(
        files.len() >= 50,
        "only {} source files found: is the walk right?",
        files.len()
    );
    let offenders: Vec<String> = files
        .iter()
        .filter(|(_, n)| *n > FILE_MAX_LINES)
        .map(|(p, n)| format!("{}: {n} lines", p.display()))
        .collect();
    assert!(
        offenders.is_empty(),
        "non-test source files over {FILE_MAX_LINES} lines (split them along their seams):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn test_modules_are_not_counted() {
    let text = "fn a() {}\n\
                fn b() {}\n\
                #[cfg(test)]\n\
                mod tests {\n\
                    #[test]\n\
                    fn t() {\n\
                        assert_eq!(format!(\"{}\", 1), \"1\");\n\
                    }\n\
                }\n\
                fn c() {}\n";
    assert_eq!(non_test_lines(text), 3);
    // A `#[cfg(test)]` item that is not a module counts like any other line.
    assert_eq!(non_test_lines("#[cfg(test)]\nfn helper() {}\n"), 2);
    assert_eq!(non_test_lines(""), 0);
}
