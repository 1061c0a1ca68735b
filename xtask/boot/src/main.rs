//! `cargo xtask` (the alias in .cargo/config.toml runs this binary): for `test` and `soak`, the
//! prerequisite report first, in seconds on a fresh machine; then the chore itself, by
//! `cargo run --package xtask` (which compiles the workspace).

use std::os::unix::process::CommandExt;

use xtask_boot::{CHECKED_CHORES, cargo, cargo_command, chore, prereq, root};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cargo = cargo();
    if chore(&args).is_some_and(|c| CHECKED_CHORES.contains(&c))
        && let Err(e) = prereq::ensure(&cargo)
    {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    // Replaces this process: signals and the exit code are the chore's own.
    let err = cargo_command(&cargo)
        .args(["run", "--package", "xtask", "--"])
        .args(&args)
        .current_dir(root())
        .exec();
    eprintln!("error: running {cargo} run --package xtask: {err}");
    std::process::exit(1);
}
