//! `cargo xtask` (the alias in .cargo/config.toml runs this binary): for `test` and `soak`, the
//! prerequisite report first, in seconds on a fresh machine, then the whole workspace's build and
//! the xtask binary it made; for the other chores, `cargo run --package xtask`.

use std::os::unix::process::CommandExt;
use std::process::Command;

use xtask_boot::{CHECKED_CHORES, build, cargo, cargo_command, chore, prereq, root};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cargo = cargo();
    if chore(&args).is_some_and(|c| CHECKED_CHORES.contains(&c)) {
        let built = prereq::ensure(&cargo).and_then(|()| build::workspace_binary(&cargo, "xtask"));
        match built {
            // Replaces this process: signals and the exit code are the chore's own.
            Ok(Some(xtask)) => {
                let err = Command::new(&xtask).args(&args).current_dir(root()).exec();
                eprintln!("error: running {}: {err}", xtask.display());
                std::process::exit(1);
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        }
    }
    let err = cargo_command(&cargo)
        .args(["run", "--package", "xtask", "--"])
        .args(&args)
        .current_dir(root())
        .exec();
    eprintln!("error: running {cargo} run --package xtask: {err}");
    std::process::exit(1);
}
