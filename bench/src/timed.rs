//! One timed process of each side of the migration benchmarks: `psql` (the floor) and our
//! migration binary; shared by `migrate.rs` and `history.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use notify_db_testdb::Endpoint;

/// What psql runs: a script (`-f`, stopping at the first error) or one command (`-c`).
pub(super) enum PsqlInput<'a> {
    File(&'a Path),
    Command(&'a str),
}

/// Times one `psql` process (start, connect, `input`) against `db`.
pub(super) fn time_psql(
    psql: &Path,
    ep: &Endpoint,
    db: &str,
    input: PsqlInput<'_>,
) -> Result<Duration> {
    let mut cmd = Command::new(psql);
    cmd.env("PGPASSWORD", &ep.password)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", &ep.host])
        .args(["-p", &ep.port.to_string(), "-U", &ep.user, "-d", db]);
    match input {
        PsqlInput::File(file) => cmd.arg("-f").arg(file),
        PsqlInput::Command(sql) => cmd.args(["-c", sql]),
    };
    let start = Instant::now();
    let out = cmd.stdout(Stdio::null()).output().context("running psql")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// Times one run of our migration binary `binary` (`upgrade`, over `dir` when it reads `.sql`
/// files) against `db`.
pub(super) fn time_ours(
    binary: &Path,
    dir: Option<&Path>,
    ep: &Endpoint,
    db: &str,
) -> Result<Duration> {
    let mut cmd = Command::new(binary);
    if let Some(dir) = dir {
        cmd.arg("--source").arg(dir);
    }
    let start = Instant::now();
    let out = cmd
        .args(["--database-url", &ep.uri(db), "upgrade"])
        .env("NOTIFY_ENVIRONMENT", "test")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running notify-db-migrate")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "notify-db-migrate failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}
