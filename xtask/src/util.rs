//! Small helpers shared by the xtask commands.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Sets up `tracing` output on stderr: human-readable or JSON lines; `RUST_LOG` filters.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.with_target(false).init();
    }
}

/// An error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    notify_db_migrate::one_line(e.as_ref())
}

/// The workspace root (parent of xtask/).
pub fn root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(PathBuf::from).unwrap_or(dir)
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

/// A current-thread tokio runtime for async work in a command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

/// Arguments a command hands on as they are to the workspace binary that does its work (that
/// binary's `--help` lists them).
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Forwarded {
    /// Arguments of the binary (`--help` shows them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<std::ffi::OsString>,
}

impl Forwarded {
    /// Whether they ask for the binary's help (`-h`, `--help`), which needs no optimised build.
    pub fn ask_for_help(&self) -> bool {
        self.args.iter().any(|a| a == "-h" || a == "--help")
    }
}

/// A `cargo` command for a build inside xtask, without the variables `cargo run` set for xtask
/// itself (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`...). Build scripts such as ring's declare
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

/// Runs `cargo run -q <selection> -- <forwarded>` in the workspace root: a dev chore whose work
/// lives in another workspace binary (`selection` names the package, binary and profile). When
/// the binary fails, xtask exits with its code: the binary has printed its own error.
pub fn cargo_run(selection: &[&str], forwarded: Forwarded) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = cargo_command(cargo)
        .args(["run", "-q"])
        .args(selection)
        .arg("--")
        .args(forwarded.args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running cargo run {}", selection.join(" ")))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
