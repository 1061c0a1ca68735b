//! `cargo xtask test` on a machine that lacks its prerequisites (here: an empty PATH) stops in
//! its first seconds, before building anything, naming what is missing and the install command.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_machine_without_the_tools_hears_what_to_install_before_anything_is_built() {
    let empty = std::env::temp_dir().join(format!("xtask-prereq-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("create an empty PATH directory");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["test", "--no-lint"])
        .env("PATH", &empty)
        .env_remove("CARGO")
        .env_remove("PG_BIN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run xtask");
    // It must answer in seconds; a run that started building would take minutes.
    let limit = Duration::from_secs(20);
    while child.try_wait().expect("wait for xtask").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`xtask test` did not stop within {limit:?} on a machine missing its tools");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("xtask output");
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&empty);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "it must fail: {stdout}{stderr}");
    assert!(
        took < Duration::from_secs(10),
        "stopped only after {took:?}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cargo xtask test is missing: "),
        "{stderr}"
    );
    for named in [
        "promtool (",
        "[Debian package prometheus]",
        "kill (",
        "[Debian package procps]",
        "cargo-nextest (",
        "apt-get install -y --no-install-recommends",
        "cargo install --locked cargo-nextest --version ",
    ] {
        assert!(last.contains(named), "`{named}` not named: {last}");
    }
    assert!(
        !stderr.contains("Compiling") && !stderr.contains(">>> apt-get"),
        "it built or installed something: {stderr}"
    );
}
