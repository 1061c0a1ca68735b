//! `cargo xtask dev up|status|down`: the persistent development cluster's whole life, in a
//! private directory (`NOTIFY_DB_TESTDB_DIR`), so it never touches a developer's own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Removes the directory (stopping anything left running) when the test ends, pass or fail.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = xtask(&self.0, &["dev", "down", "--destroy"]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn xtask(base: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("NOTIFY_DB_TESTDB_DIR", base)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run xtask");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn up_status_down_and_destroy() {
    // Under the system temp dir: the postgres user (when we run as root) must traverse it.
    let base = std::env::temp_dir().join(format!("notify-db-dev-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let scratch = Scratch(base.clone());
    let dev = base.join("dev");

    let (ok, out, _) = xtask(&base, &["dev", "status"]);
    assert!(ok && out.contains("no development cluster"), "{out}");

    let (ok, exports, err) = xtask(&base, &["dev", "up"]);
    assert!(ok, "dev up: {err}");
    assert!(
        exports.contains("export SQLALCHEMY_DATABASE_URI=") && exports.contains("password"),
        "dev up prints export lines that read the password file: {exports}"
    );
    let password = std::fs::read_to_string(dev.join("password")).expect("password file");
    assert!(!password.is_empty());
    assert!(
        !exports.contains(password.trim()),
        "the password itself is never printed"
    );

    let (ok, out, err) = xtask(&base, &["dev", "status"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("primary  127.0.0.1:") && lines[0].contains(" running "),
        "{out}"
    );
    assert!(
        lines[1].starts_with("replica  127.0.0.2:") && lines[1].contains(" running "),
        "{out}"
    );

    // A second `up` reuses the cluster: same ports.
    let (ok, again, err) = xtask(&base, &["dev", "up"]);
    assert!(ok, "{err}");
    assert_eq!(again, exports, "dev up twice gives the same cluster");

    let (ok, out, err) = xtask(&base, &["dev", "down"]);
    assert!(ok && out.contains("data kept"), "{out}{err}");
    let (ok, out, _) = xtask(&base, &["dev", "status"]);
    assert!(ok, "{out}");
    assert_eq!(out.matches(" stopped ").count(), 2, "{out}");
    assert!(dev.join("primary").is_dir(), "down keeps the data");

    let (ok, out, err) = xtask(&base, &["dev", "down", "--destroy"]);
    assert!(ok && out.contains("deleted"), "{out}{err}");
    assert!(!dev.exists(), "--destroy deletes {}", dev.display());
    let (ok, out, _) = xtask(&base, &["dev", "status"]);
    assert!(ok && out.contains("no development cluster"), "{out}");
    drop(scratch);
}

#[test]
fn up_with_pgbouncer_points_the_pools_at_it_and_migrations_past_it() {
    let base = std::env::temp_dir().join(format!("notify-db-dev-bouncer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let scratch = Scratch(base.clone());
    let (ok, exports, err) = xtask(&base, &["dev", "up", "--pgbouncer"]);
    assert!(ok, "dev up --pgbouncer: {err}");
    for line in [
        "export DATABASE_URI_TRANSACTION_POOLER=true",
        "export DATABASE_URI_BULK_TRANSACTION_POOLER=true",
        "export DATABASE_MIGRATION_URI=",
        "/notification_api_bulk\"",
    ] {
        assert!(exports.contains(line), "missing {line:?}: {exports}");
    }
    // The exports work as printed: migrations go direct, doctor's pools through PgBouncer.
    let script = format!(
        "{exports}\n\"$XTASK\" migrate upgrade >/dev/null 2>&1 || exit 3\n\"$XTASK\" doctor"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("XTASK", env!("CARGO_BIN_EXE_xtask"))
        .env("NOTIFY_DB_TESTDB_DIR", &base)
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the exports");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("session: statement_timeout 1200000 ms") && text.contains("read-only"),
        "{text}"
    );
    let (ok, out, err) = xtask(&base, &["dev", "down"]);
    assert!(
        ok && out.contains("stopped the development PgBouncer"),
        "{out}{err}"
    );
    drop(scratch);
}
