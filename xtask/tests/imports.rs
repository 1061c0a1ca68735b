//! No import loops inside a crate: per crate, the files (modules) and the `use crate::` /
//! `use super::` / `use self::` imports between them (and inline `crate::a::b` or `child::f`
//! paths), followed through the `pub use` re-exports of `lib.rs` and `mod.rs` files to the file
//! that defines the name, must form no cycle. A name a module takes from its own ancestor
//! (`use super::Error` in a child of the file that defines `Error`) is no arrow: the child is
//! part of that module. A loop means two files that cannot be read, changed or moved one
//! without the other; the fix is to move a name to the room it belongs in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod workspace;

use workspace::{members, root};

/// A module path inside one crate (`["engine", "lock"]`; the root is empty).
type ModPath = Vec<String>;

/// The modules of the crate whose sources are under `src`, by path, each with its file's code
/// (what comes before `#[cfg(test)]`, comments removed). Binaries (`bin/`, a `main.rs` beside a
/// `lib.rs`) are crates of their own and left out.
fn modules(src: &Path) -> BTreeMap<ModPath, (PathBuf, String)> {
    let root_file = if src.join("lib.rs").is_file() {
        "lib.rs"
    } else {
        "main.rs"
    };
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                if !(dir == src && path.ends_with("bin")) {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut segs: ModPath = rel
                .iter()
                .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            let last = segs.last().cloned().unwrap_or_default();
            if segs.len() == 1 && (last == "lib" || last == "main") {
                if last != root_file.trim_end_matches(".rs") {
                    continue;
                }
                segs.clear();
            } else if last == "mod" {
                segs.pop();
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            out.insert(segs, (path, code_of(&text)));
        }
    }
    out
}

/// The non-test code of a file with its comments removed.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a `use` tree names, braces expanded: `a::{b, c::{d, e as f}}` gives `a::b`,
/// `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    // `x as y` keeps `x`: the alias marked first, then the white space dropped.
    let tree = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree: String = tree
        .replace(" as ", "@")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.split('@').next().unwrap_or_default().to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |e| format!("{prefix}{e}")))
        .map(|p| p.trim_end_matches("::self").to_owned())
        .collect()
}

/// Every path of `code` that starts at `crate`, `super`, `self` or one of `children` (the
/// file's child modules, which a path may name without `self::`): the `use` trees, expanded,
/// and inline paths (`crate::lag::sample(...)`, `revision::write(...)`), each made to start at
/// `crate`, `super` or `self`.
fn crate_paths(code: &str, children: &[String]) -> Vec<String> {
    let local = |p: &str| {
        let first = p.split("::").next().unwrap_or_default();
        if ["crate", "super", "self"].contains(&first) {
            Some(p.to_owned())
        } else if children.iter().any(|c| c == first) {
            Some(format!("self::{p}"))
        } else {
            None
        }
    };
    let mut out = Vec::new();
    for stmt in code.split(';') {
        // A re-export (`pub use`) hands a name on and is no arrow: `resolve` follows it to the
        // file that defines the name. A `use` tree holds only path characters (a `use` inside a
        // string does not).
        if let Some(tree) = stmt.trim_start().strip_prefix("use ").filter(|t| {
            t.chars()
                .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_:{},*".contains(c))
        }) {
            out.extend(expand(tree).iter().filter_map(|p| local(p)));
        }
    }
    // Inline paths, in the code without its `use` items (re-exports included).
    let code: String = code
        .split_inclusive(';')
        .filter(|stmt| {
            let s = stmt.trim_start();
            let s = s
                .strip_prefix("pub(crate) ")
                .or_else(|| s.strip_prefix("pub(super) "))
                .or_else(|| s.strip_prefix("pub "))
                .unwrap_or(s);
            !s.starts_with("use ")
        })
        .collect();
    let starts = ["crate", "super", "self"]
        .into_iter()
        .map(str::to_owned)
        .chain(children.iter().cloned());
    for start in starts {
        let pattern = format!("{start}::");
        for (i, _) in code.match_indices(&pattern) {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.extend(local(path.trim_end_matches(':')));
        }
    }
    out
}

/// The module an absolute or relative path points into, and the names after it.
fn absolute(from: &ModPath, path: &str) -> ModPath {
    let mut segs = path.split("::").map(str::to_owned);
    let mut base: ModPath = match segs.next().as_deref() {
        Some("crate") => Vec::new(),
        // `super` of `a/b.rs` is `a`; of `a/mod.rs` (module `a`) it is the root.
        Some("super") => {
            let mut b = from.clone();
            b.pop();
            b
        }
        Some("self") => from.clone(),
        _ => return Vec::new(),
    };
    for s in segs {
        if s == "super" {
            base.pop();
        } else {
            base.push(s);
        }
    }
    base
}

/// The file that defines what `path` (absolute, module segments then names) names: the longest
/// module prefix, then through that module's `pub use` re-exports while they lead elsewhere.
fn resolve(mods: &BTreeMap<ModPath, (PathBuf, String)>, path: &ModPath, depth: u32) -> ModPath {
    let mut module = path.clone();
    while !module.is_empty() && !mods.contains_key(&module) {
        module.pop();
    }
    let Some(name) = path.get(module.len()) else {
        return module;
    };
    if depth > 4 {
        return module;
    }
    let (_, code) = &mods[&module];
    for stmt in code.split(';') {
        let s = stmt.trim_start();
        let Some(tree) = s
            .strip_prefix("pub use ")
            .or_else(|| s.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        for target in expand(tree) {
            if target.rsplit("::").next() == Some(name.as_str()) {
                let abs = if target.starts_with("crate::")
                    || target.starts_with("super::")
                    || target.starts_with("self::")
                {
                    absolute(&module, &target)
                } else {
                    // `pub use lock::Name` in a module: a child module, relative.
                    let mut m = module.clone();
                    m.extend(target.split("::").map(str::to_owned));
                    m
                };
                if !mods.keys().any(|k| abs.starts_with(k) && !k.is_empty()) {
                    continue;
                }
                return resolve(mods, &abs, depth + 1);
            }
        }
    }
    module
}

/// The import loops (strongly connected sets of more than one file) of the crate under `src`.
fn loops(src: &Path) -> Vec<Vec<String>> {
    let mods = modules(src);
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, (_, code)) in &mods {
        let children: Vec<String> = mods
            .keys()
            .filter(|k| k.len() == module.len() + 1 && k.starts_with(module))
            .filter_map(|k| k.last().cloned())
            .collect();
        for path in crate_paths(code, &children) {
            let target = resolve(&mods, &absolute(module, &path), 0);
            // A module is part of its ancestors (it sees their private items): a name taken from
            // an ancestor (`use super::Error`, `crate::Error` defined in lib.rs) is no arrow.
            let ancestor = module.starts_with(&target);
            if !ancestor && mods.contains_key(&target) {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    // Strongly connected components by reachability (the graphs are small).
    let reach = |from: &ModPath| -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        mods.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in mods.keys() {
        if done.contains(m) || !reachable[m].contains(m) {
            continue;
        }
        let circle: Vec<&ModPath> = mods
            .keys()
            .filter(|o| reachable[m].contains(*o) && reachable[*o].contains(m))
            .collect();
        done.extend(circle.iter().map(|c| (*c).clone()));
        out.push(
            circle
                .into_iter()
                .map(|c| mods[c].0.display().to_string())
                .collect(),
        );
    }
    out
}

/// The `src` folders of the workspace's crates.
fn crate_sources(root: &Path) -> Vec<PathBuf> {
    members(root)
        .into_iter()
        .map(|m| root.join(m).join("src"))
        .filter(|src| src.is_dir())
        .collect()
}

#[test]
fn no_crate_has_an_import_loop_between_its_files() {
    let root = root();
    let sources = crate_sources(&root);
    assert!(
        sources.len() >= 10,
        "only {} crates found: {sources:?}",
        sources.len()
    );
    let mut found = Vec::new();
    for src in &sources {
        for circle in loops(src) {
            found.push(circle.join(" <-> "));
        }
    }
    assert!(
        found.is_empty(),
        "import loops inside crates (move a name to the file it belongs in):\n{}",
        found.join("\n")
    );
}

#[test]
fn a_loop_is_found_through_uses_inline_paths_and_re_exports() {
    let dir = std::env::temp_dir().join(format!("notify-db-imports-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("engine")).expect("temp dir");
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).expect("writing a fixture");
    };
    write(
        "lib.rs",
        "mod a;\nmod b;\nmod c;\nmod e;\nmod engine;\npub use b::Thing;\n",
    );
    write("a.rs", "use crate::Thing;\npub fn f() {}\n");
    write("b.rs", "pub struct Thing;\nfn g() { crate::engine::h() }\n");
    write("engine/mod.rs", "mod lock;\npub use lock::h;\n");
    // A file calling its child (no `self::`), the child a sibling of the file (an inline
    // `super::` path) and that sibling the file: a loop too.
    write("c.rs", "mod d;\npub struct C;\nfn k() { d::m() }\n");
    write("e.rs", "use crate::c::C;\n");
    write(
        "engine/lock.rs",
        "use super::super::{a::f, c};\npub fn h() { f() }\n",
    );
    std::fs::create_dir_all(dir.join("c")).expect("temp dir");
    write(
        "c/d.rs",
        "pub fn m() { super::super::e::x() }\n// use crate::a;\n#[cfg(test)]\nmod tests { use crate::a; }\n",
    );
    let found = loops(&dir);
    std::fs::remove_dir_all(&dir).expect("removing the fixture");
    let files = |circle: &Vec<String>| -> Vec<String> {
        let mut names: Vec<String> = circle
            .iter()
            .map(|p| p.rsplit('/').next().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        names
    };
    let mut circles: Vec<Vec<String>> = found.iter().map(files).collect();
    circles.sort();
    assert_eq!(
        circles,
        vec![
            // a -> b (through lib.rs's re-export) -> engine/lock.rs (inline path, through
            // engine/mod.rs's re-export) -> a.
            vec!["a.rs".to_owned(), "b.rs".to_owned(), "lock.rs".to_owned()],
            // c calls its child d without `self::`, d calls e, e imports c.
            vec!["c.rs".to_owned(), "d.rs".to_owned(), "e.rs".to_owned()],
        ],
        "the comment and the test module of c/d.rs import nothing"
    );
}

#[test]
fn use_trees_are_expanded() {
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}, self}"),
        vec![
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "crate::a"
        ]
    );
    assert_eq!(expand("super::x as y"), vec!["super::x"]);
}
