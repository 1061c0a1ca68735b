//! Small helpers shared by the xtask commands.

use anyhow::{Context, Result};

/// Sets up `tracing` output on stderr: human-readable or JSON lines; `RUST_LOG` filters.
pub(crate) fn init_logging(json: bool) {
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
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    notify_db_migrate::one_line(e.as_ref())
}

/// The workspace root, and running a command there (shared with the first step, xtask-boot).
pub(crate) use xtask_boot::{cargo_command, root, run};

/// A current-thread tokio runtime for async work in a command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
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
pub(crate) struct Forwarded {
    /// Arguments of the binary (`--help` shows them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<std::ffi::OsString>,
}

impl Forwarded {
    /// Whether they ask for the binary's help (`-h`, `--help`), which needs no optimised build.
    pub(crate) fn ask_for_help(&self) -> bool {
        self.args.iter().any(|a| a == "-h" || a == "--help")
    }
}

/// Runs binary `bin` of package `package` with `forwarded`, in the workspace root: a dev chore
/// whose work lives in another workspace binary. Built in release, or else taken from the dev
/// build of every target (the test build: nothing is compiled a second time for it). When the
/// binary fails, xtask exits with its code: the binary has printed its own error.
pub(crate) fn run_bin(package: &str, bin: &str, release: bool, forwarded: Forwarded) -> Result<()> {
    let cargo = xtask_boot::cargo();
    let dev_build = (!release).then(|| xtask_boot::build::workspace_binary(&cargo, bin));
    let mut cmd = dev_build
        .transpose()?
        .flatten()
        .map(std::process::Command::new)
        .unwrap_or_else(|| {
            let mut run = cargo_command(&cargo);
            run.args(["run", "-q", "--package", package, "--bin", bin]);
            run.args(release.then_some("--release")).arg("--");
            run
        });
    let status = cmd
        .args(forwarded.args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running {bin}"))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
