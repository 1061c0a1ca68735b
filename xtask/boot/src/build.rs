//! The dev build of `test`, `soak` and the chores that run another workspace binary: every
//! target of the workspace in one `cargo build`, which yields those binaries too. `cargo run
//! --package x` would resolve x's dependencies alone, to other features (serde, regex, ...), and
//! compile them and every workspace crate above them again: about a minute each on 2 cores.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use crate::{cargo_command, root};

/// The build, as shown in errors.
const BUILD: &str = "cargo build --workspace --all-targets";

/// Builds every target of the workspace with the features `cargo nextest run --workspace`
/// resolves (so the test build finds it all fresh), and returns its binary `name`; `None` when
/// its path is not plain in cargo's JSON (then `cargo run` finds it, a little later).
pub fn workspace_binary(cargo: &str, name: &str) -> Result<Option<PathBuf>> {
    let mut child = cargo_command(cargo)
        .args(["build", "--workspace", "--all-targets"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {BUILD}"))?;
    let messages = BufReader::new(child.stdout.take().context("no pipe from cargo build")?);
    let binary = messages
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| executable(&line))
        .filter(|path| path.ends_with(name))
        .last();
    let status = child
        .wait()
        .with_context(|| format!("waiting for {BUILD}"))?;
    if !status.success() {
        bail!("{BUILD} failed with {status}");
    }
    Ok(binary)
}

/// The `"executable"` of one of cargo's JSON messages (an artifact that is a binary or a test),
/// when it has one written without JSON escapes.
fn executable(line: &str) -> Option<PathBuf> {
    let rest = line.split_once("\"executable\":\"")?.1;
    let path = &rest[..rest.find('"')?];
    (!path.contains('\\')).then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::executable;
    use std::path::Path;

    #[test]
    fn the_executable_is_read_from_an_artifact_message_unless_escaped() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"xtask"},"filenames":["/w/target/debug/xtask"],"executable":"/w/target/debug/xtask","fresh":true}"#;
        assert_eq!(
            executable(line).as_deref(),
            Some(Path::new("/w/target/debug/xtask"))
        );
        let escaped = r#"{"reason":"compiler-artifact","executable":"/w/a \"b\"/xtask"}"#;
        assert_eq!(executable(escaped), None);
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"executable":null}"#;
        assert_eq!(executable(lib), None);
        assert_eq!(executable(r#"{"executable":"/cut"#), None);
    }
}
