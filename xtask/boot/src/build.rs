//! The build of `test` and `soak`: every target of the workspace in one `cargo build`, which
//! yields the xtask binary too. `cargo run --package xtask` would resolve xtask's dependencies
//! alone, to fewer features (serde, regex, ...), and compile them and every workspace crate
//! above them a second time for the tests: about a minute more on a fresh 2-core machine.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result, anyhow, bail};

use crate::{cargo_command, root};

/// The build, as shown in errors.
const BUILD: &str = "cargo build --workspace --all-targets";

/// Builds every target of the workspace with the features `cargo nextest run --workspace`
/// resolves (so the test build finds it all fresh), and returns the `xtask` binary it made.
pub fn workspace_with_xtask(cargo: &str) -> Result<PathBuf> {
    let mut child = cargo_command(cargo)
        .args(["build", "--workspace", "--all-targets"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {BUILD}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{BUILD}: no output pipe"))?;
    let mut xtask = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.with_context(|| format!("reading the messages of {BUILD}"))?;
        if let Some(path) = executable(&line).filter(|p| p.file_name() == Some("xtask".as_ref())) {
            xtask = Some(path);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {BUILD}"))?;
    if !status.success() {
        bail!("{BUILD} failed with {status}");
    }
    xtask.ok_or_else(|| anyhow!("{BUILD} reported no xtask binary"))
}

/// The `"executable"` of one of cargo's JSON messages (a `compiler-artifact` of a binary or a
/// test), if it has one.
fn executable(line: &str) -> Option<PathBuf> {
    const KEY: &str = "\"executable\":\"";
    let start = line.find(KEY)? + KEY.len();
    let mut path = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(PathBuf::from(path)),
            '\\' => match chars.next()? {
                'n' => path.push('\n'),
                't' => path.push('\t'),
                // `\\`, `\"` and `\/`; a path with a `\u` escape is not one this build writes.
                'u' => return None,
                escaped => path.push(escaped),
            },
            c => path.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::executable;
    use std::path::Path;

    #[test]
    fn the_executable_is_read_from_an_artifact_message_with_its_escapes() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"xtask"},"filenames":["/w/a \"b\"\\c/target/debug/xtask"],"executable":"/w/a \"b\"\\c/target/debug/xtask","fresh":true}"#;
        assert_eq!(
            executable(line).as_deref(),
            Some(Path::new("/w/a \"b\"\\c/target/debug/xtask"))
        );
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"executable":null}"#;
        assert_eq!(executable(lib), None);
        assert_eq!(
            executable(r#"{"reason":"build-finished","success":true}"#),
            None
        );
        assert_eq!(executable(r#"{"executable":"/cut"#), None);
    }
}
