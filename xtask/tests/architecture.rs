//! docs/ARCHITECTURE.md names files and folders; each one it names must exist, so the code map
//! cannot drift from the tree unnoticed.

use std::path::{Path, PathBuf};

mod workspace;

use workspace::{members, root};

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

/// The workspace members that are library crates (a `src/lib.rs`), relative to the root; xtask
/// and xtask/boot are the developer tool (the boot library only shares code with xtask's binary).
fn library_crates(root: &Path) -> Vec<PathBuf> {
    members(root)
        .into_iter()
        .filter(|d| !d.starts_with("xtask") && root.join(d).join("src/lib.rs").is_file())
        .collect()
}

/// The `.rs` files under `dir`, binaries (`bin/`, `main.rs`) left out.
fn library_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("bin") {
                library_sources(&path, out);
            }
        } else if path.extension().is_some_and(|x| x == "rs") && !path.ends_with("main.rs") {
            out.push(path);
        }
    }
}

/// "The library crates never print": no library source outside a binary writes to stdout or
/// stderr itself (they emit `tracing` events or write to an `impl Write` they are given).
#[test]
fn library_crates_never_print() {
    let root = root();
    let crates = library_crates(&root);
    for expected in ["crates/migrate-cli", "crates/testdb", "migrations"] {
        assert!(
            crates.iter().any(|c| c == Path::new(expected)),
            "library crate {expected} not found among {crates:?}: is the member list read right?"
        );
    }
    let printing = [
        "print!(",
        "println!(",
        "eprint!(",
        "eprintln!(",
        "io::stdout()",
        "io::stderr()",
        "io::stdout)",
        "io::stderr)",
    ];
    let mut found = Vec::new();
    for krate in &crates {
        let mut files = Vec::new();
        library_sources(&root.join(krate).join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            // Tests may print; comments (doc examples) are not code.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                let line = line.split("//").next().unwrap_or_default();
                if let Some(what) = printing.iter().find(|p| line.contains(*p)) {
                    let rel = file.strip_prefix(&root).unwrap_or(&file);
                    found.push(format!("{}:{}: {what}", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "library code writes to stdout/stderr (emit tracing events or take an `impl Write`):\n{}",
        found.join("\n")
    );
}

/// The `name -> deps` lines of the document's crate graph, `notify-db-` prefix restored.
fn documented_graph(doc: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let full = |n: &str| -> String {
        if n.starts_with("xtask") {
            n.to_owned()
        } else {
            format!("notify-db-{n}")
        }
    };
    let section = doc
        .split("### The crate graph")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("docs/ARCHITECTURE.md has a crate graph section with a fenced list");
    section
        .lines()
        .filter_map(|l| l.split_once("->"))
        .map(|(name, deps)| {
            let mut deps: Vec<String> = deps
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(full)
                .collect();
            deps.sort();
            (full(name.trim()), deps)
        })
        .collect()
}

/// Every crate edge the document's crate graph draws is a normal dependency in `cargo
/// metadata`, and every such dependency between workspace crates is drawn.
#[test]
fn the_documented_crate_graph_is_the_real_one() {
    let root = root();
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md"))
        .expect("reading docs/ARCHITECTURE.md");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let ours: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut real = std::collections::BTreeMap::new();
    for p in packages {
        let mut deps: Vec<String> = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| ours.contains(d))
            .map(str::to_owned)
            .collect();
        deps.sort();
        deps.dedup();
        real.insert(p["name"].as_str().expect("name").to_owned(), deps);
    }
    let documented = documented_graph(&doc);
    assert!(documented.len() >= 10, "{documented:?}");
    assert_eq!(
        documented, real,
        "docs/ARCHITECTURE.md's crate graph (left) against cargo metadata (right)"
    );
}

/// Whether a line of code opens a PostgreSQL connection with tokio-postgres itself.
fn opens_a_connection(line: &str) -> bool {
    [
        "tokio_postgres::connect(",
        ".connect_raw(",
        "connect(NoTls",
        "connect(tokio_postgres::NoTls",
        "MakeRustlsConnect::new(",
    ]
    .iter()
    .any(|call| line.contains(call))
}

/// "Every connection goes through notify-db-connect": outside `crates/connect`, no source opens
/// a connection with tokio-postgres itself. The test harness (`crates/testdb`, connecting to
/// the servers it started) and the benchmarks' bare baseline (`bench/`) are the exceptions, by
/// design: they must not depend on what they test or measure.
#[test]
fn only_the_connect_crate_opens_connections() {
    assert!(opens_a_connection(
        "let (c, conn) = tokio_postgres::connect(&uri, NoTls).await?;"
    ));
    assert!(opens_a_connection("config.connect(NoTls).await"));
    assert!(!opens_a_connection(
        "notify_db_connect::connect_one(&uri).await"
    ));
    let root = root();
    let mut crates = library_crates(&root);
    crates.extend(["xtask", "examples/service", "tests/faults"].map(PathBuf::from));
    let exempt = [
        Path::new("crates/connect"),
        Path::new("crates/testdb"),
        Path::new("bench"),
    ];
    let mut found = Vec::new();
    let mut read = 0;
    for krate in crates.iter().filter(|c| !exempt.contains(&c.as_path())) {
        let mut files = Vec::new();
        library_sources(&root.join(krate).join("src"), &mut files);
        if krate.ends_with("xtask") || krate.ends_with("faults") {
            // Their binaries are developer tools and fault injection over the same rule.
            let bin = root.join(krate).join("src");
            for name in ["main.rs", "bin"] {
                let p = bin.join(name);
                if p.is_file() {
                    files.push(p);
                } else if p.is_dir() {
                    library_sources(&p, &mut files);
                }
            }
        }
        for file in files {
            read += 1;
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                if opens_a_connection(line.split("//").next().unwrap_or_default()) {
                    let rel = file.strip_prefix(&root).unwrap_or(&file);
                    found.push(format!("{}:{}", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(read >= 50, "only {read} source files read");
    assert!(
        found.is_empty(),
        "connections opened outside crates/connect (use notify-db-connect):\n{}",
        found.join("\n")
    );
}
