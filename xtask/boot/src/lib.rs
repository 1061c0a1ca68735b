//! The first step of `cargo xtask`, with no workspace crate but `notify-db-hostprobe` (std only):
//! the prerequisite check of `cargo xtask test` and `soak`, and running the xtask chore.

pub mod build;
pub mod prereq;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The chores that check the prerequisites before the workspace is compiled.
pub const CHECKED_CHORES: [&str; 2] = ["test", "soak"];

/// The cargo that runs xtask (`CARGO`), else `cargo` from PATH.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// A `cargo` command for a build inside `cargo xtask`, without the variables `cargo run` set for
/// the running binary (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`...). Build scripts such as ring's declare
/// `rerun-if-env-changed` on them, so with xtask's values they would rebuild, and everything
/// above them, on every switch between `cargo xtask test` and a plain `cargo build`.
pub fn cargo_command(cargo: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if ["CARGO_PKG_", "CARGO_MANIFEST_"]
            .iter()
            .any(|prefix| text.starts_with(prefix))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&&*text)
        {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// The workspace root (two levels above xtask/boot/).
pub fn root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.ancestors().nth(2).map(PathBuf::from).unwrap_or(dir)
}

/// The chore `cargo xtask` is asked for: its first argument that is not an option (the value
/// of the global `--log-format` skipped).
pub fn chore(args: &[String]) -> Option<&str> {
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        if a == "--log-format" {
            rest.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// Runs a command in the workspace root, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    // Program and arguments only: the Debug form would show environment variables (passwords).
    let name = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("running {name}"))?;
    if !status.success() {
        bail!("{name} failed with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{chore, root};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_chore_is_the_first_argument_that_is_not_an_option() {
        assert_eq!(chore(&args(&["test", "--no-lint"])), Some("test"));
        assert_eq!(
            chore(&args(&["--log-format", "json", "soak", "--for", "1m"])),
            Some("soak")
        );
        assert_eq!(chore(&args(&["--log-format=json", "lint"])), Some("lint"));
        assert_eq!(chore(&args(&["--help"])), None);
    }

    #[test]
    fn the_root_is_the_workspace() {
        assert!(
            root().join("xtask/boot/Cargo.toml").is_file(),
            "{:?}",
            root()
        );
    }
}
