//! `pitr-drill` (run by `cargo xtask pitr-drill`): a point-in-time recovery drill on a throwaway
//! cluster.
//!
//! Starts a cluster with WAL archiving, takes a base backup, writes rows, notes a timestamp,
//! writes more rows, deletes some old ones and drops a table (the "accident"), archives the WAL,
//! stops the server, restores the base backup into a new data directory with `restore_command` +
//! `recovery_target_time` + `recovery_target_action = 'promote'`, starts it on a free port, and
//! checks that exactly the rows committed before the timestamp exist and that the table is back.
//! docs/backup-and-recovery.md describes the same procedure for a real server.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use notify_db_testdb::{Cluster, Endpoint, Server, StopMode, append};
use tokio_postgres::Client;

/// Point-in-time recovery drill on a throwaway cluster with WAL archiving.
#[derive(Parser)]
#[command(name = "pitr-drill")]
struct PitrArgs {
    /// Rows written before the base backup.
    #[arg(long, default_value_t = 100)]
    rows_before_backup: u32,
    /// Rows written after the base backup and before the recovery target time.
    #[arg(long, default_value_t = 250)]
    rows_before_target: u32,
    /// Rows written after the recovery target time (they must not come back).
    #[arg(long, default_value_t = 170)]
    rows_after_target: u32,
    /// Self-test of the drill: restore to the end of the WAL instead of the noted time, so the
    /// verification must fail (proves the checks can fail).
    #[arg(long, hide = true)]
    ignore_target: bool,
}

/// Old rows deleted after the target time (an "accident" the restore must undo).
const DELETED_AFTER_TARGET: u32 = 10;
/// Rows of the table dropped after the target time.
const TEMPLATES: u32 = 5;
/// Database the drill works in.
const DB: &str = "notification_api";

/// What a table looked like: row count and a digest of every row, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    rows: i64,
    digest: String,
}

fn main() {
    if let Err(e) = run(PitrArgs::parse()) {
        // One line: the reason, with its causes.
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

/// Runs the drill; fails when a step fails or the restored database does not match.
fn run(args: PitrArgs) -> Result<()> {
    if args.rows_before_backup <= DELETED_AFTER_TARGET || args.rows_after_target == 0 {
        bail!("--rows-before-backup must be > {DELETED_AFTER_TARGET} and --rows-after-target > 0");
    }
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;

    step(1, "start a throwaway cluster with archive_mode = on");
    let cluster = Cluster::builder()
        .label("pitr")
        .setting("archive_mode", "on")
        .start()
        .context("starting the throwaway cluster")?;
    let primary = cluster.primary();
    println!(
        "      primary {}:{} data {}",
        primary.endpoint().host,
        primary.endpoint().port,
        primary.data_dir().display()
    );

    step(
        2,
        "set archive_command to copy each finished WAL segment into the archive",
    );
    let archive = cluster.dir().join("wal-archive");
    // The archiver runs as the server's user: the folder is the server user's.
    let mut mkdir = Command::new("mkdir");
    mkdir.arg("-p").arg(&archive);
    primary.run_as_owner(mkdir)?;
    let archive_command = format!(
        "test ! -f \"{0}/%f\" && cp \"%p\" \"{0}/%f\"",
        archive.display()
    );
    rt.block_on(async {
        let c = primary.endpoint().connect("postgres").await?;
        // Two calls: ALTER SYSTEM cannot run in the implicit transaction of a multi-statement string.
        c.batch_execute(&format!(
            "ALTER SYSTEM SET archive_command = {}",
            literal(&archive_command)
        ))
        .await
        .context("setting archive_command")?;
        c.batch_execute("SELECT pg_reload_conf()")
            .await
            .context("reloading the configuration")?;
        c.batch_execute(&format!("CREATE DATABASE {DB}"))
            .await
            .context("creating the database")?;
        anyhow::Ok(())
    })?;
    println!("      archive_command = {archive_command}");

    step(
        3,
        &format!(
            "create tables templates and notifications; write {} notifications",
            args.rows_before_backup
        ),
    );
    let db = rt.block_on(primary.endpoint().connect(DB))?;
    rt.block_on(async {
        db.batch_execute(
            "CREATE TABLE templates (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
             CREATE TABLE notifications (
                 id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 template_id bigint NOT NULL,
                 reference text NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT clock_timestamp());",
        )
        .await
        .context("creating the tables")?;
        db.execute("INSERT INTO templates (name) SELECT 'template-' || g FROM generate_series(1, $1::int) g", &[&(TEMPLATES as i32)])
            .await
            .context("writing templates")?;
        insert(&db, "before-backup", args.rows_before_backup, 1).await
    })?;

    step(4, "take a base backup with pg_basebackup");
    let backup = cluster.dir().join("base-backup");
    let mut cmd = Command::new(primary.bin("pg_basebackup"));
    cmd.arg("-h")
        .arg(primary.socket_dir())
        .arg("-p")
        .arg(primary.endpoint().port.to_string())
        .args([
            "-U",
            &primary.endpoint().user,
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
            "-D",
        ])
        .arg(&backup);
    primary.run_as_owner(cmd)?;
    let label = fs::read_to_string(backup.join("backup_label")).context("reading backup_label")?;
    for line in label
        .lines()
        .filter(|l| l.starts_with("START WAL LOCATION") || l.starts_with("START TIME"))
    {
        println!("      {line}");
    }

    step(
        5,
        &format!(
            "write {} notifications after the backup",
            args.rows_before_target
        ),
    );
    rt.block_on(insert(&db, "before-target", args.rows_before_target, 5))?;

    step(
        6,
        "note the recovery target time and what the tables hold at that moment",
    );
    let (target, expected_notifications, expected_templates) = rt.block_on(async {
        let ts: String = db
            .query_one("SELECT clock_timestamp()::text", &[])
            .await
            .context("reading the time")?
            .get(0);
        let n = fingerprint(&db, "notifications").await?;
        let t = fingerprint(&db, "templates").await?;
        anyhow::Ok((ts, n, t))
    })?;
    println!("      recovery_target_time = '{target}'");
    println!(
        "      notifications: {} rows; templates: {} rows",
        expected_notifications.rows, expected_templates.rows
    );

    step(
        7,
        &format!(
            "the accident: write {} more rows, delete the {DELETED_AFTER_TARGET} oldest, drop table templates",
            args.rows_after_target
        ),
    );
    let last_wal = rt.block_on(async {
        insert(&db, "after-target", args.rows_after_target, 3).await?;
        let deleted = db
            .execute("DELETE FROM notifications WHERE id IN (SELECT id FROM notifications ORDER BY id LIMIT $1)", &[&(DELETED_AFTER_TARGET as i64)])
            .await
            .context("deleting rows")?;
        db.batch_execute("DROP TABLE templates").await.context("dropping templates")?;
        let left: i64 = db.query_one("SELECT count(*) FROM notifications", &[]).await?.get(0);
        println!("      deleted {deleted} rows; notifications now has {left} rows; templates is gone");

        step(8, "switch to a new WAL segment (pg_switch_wal) and wait until everything is archived");
        let wal: String = db.query_one("SELECT pg_walfile_name(pg_switch_wal())", &[]).await.context("pg_switch_wal")?.get(0);
        wait_archived(&db, &wal).await?;
        anyhow::Ok(wal)
    })?;
    let segments = fs::read_dir(&archive).map(|d| d.count()).unwrap_or(0);
    println!(
        "      {last_wal} archived; {segments} file(s) in {}",
        archive.display()
    );
    drop(db);

    step(
        9,
        "stop the original server: the restore uses only the base backup and the WAL archive",
    );
    primary
        .stop(StopMode::Fast)
        .context("stopping the primary")?;

    step(
        10,
        "restore the base backup into a new data directory with recovery settings",
    );
    let restored = cluster.dir().join("restored");
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(&backup).arg(&restored);
    primary.run_as_owner(cp)?;
    let restored_server = cluster.server_for("restored")?;
    let port = restored_server.endpoint().port;
    let restore_command = format!("cp \"{}/%f\" \"%p\"", archive.display());
    let mut conf = format!(
        "\n# notify-db pitr-drill: restore\narchive_mode = off\nrestore_command = {}\n",
        literal(&restore_command),
    );
    if args.ignore_target {
        println!("      (self-test: no recovery target, replaying to the end of the WAL)");
    } else {
        conf.push_str(&format!(
            "recovery_target_time = {}\nrecovery_target_action = 'promote'\n",
            literal(&target)
        ));
    }
    append(&restored.join("postgresql.conf"), &conf)?;
    let signal = restored.join("recovery.signal");
    let mut touch = Command::new("touch");
    touch.arg(&signal);
    restored_server.run_as_owner(touch)?;
    for line in conf
        .lines()
        .filter(|l| l.starts_with("restore_command") || l.starts_with("recovery_target"))
    {
        println!("      {line}");
    }
    println!("      + recovery.signal in {}", restored.display());

    step(
        11,
        &format!("start the restored server on port {port} and wait until recovery ends"),
    );
    let log = restored_server.log_file().to_path_buf();
    let restore_started = Instant::now();
    restored_server
        .start()
        .context("starting the restored server")?;
    let restored_server = StopOnDrop(restored_server);
    let endpoint = restored_server.0.endpoint().clone();
    let verified = rt.block_on(async {
        let c = wait_promoted(&endpoint, &log).await?;
        println!(
            "      recovery finished in {:.1}s (start to promoted: the recovery time of this restore); the server accepts writes",
            restore_started.elapsed().as_secs_f64()
        );
        if let Ok(text) = fs::read_to_string(&log) {
            for line in text.lines().filter(|l| {
                l.contains("recovery stopping") || l.contains("last completed transaction")
            }) {
                println!(
                    "      log: {}",
                    line.split_once("LOG:")
                        .map_or(line, |(_, rest)| rest.trim())
                );
            }
        }

        step(12, "verify the restored database");
        verify(
            &c,
            &expected_notifications,
            &expected_templates,
            &target,
            &args,
        )
        .await
    })?;
    if !verified {
        bail!(
            "the restored database does not match the state at {target} (see the MISMATCH lines above)"
        );
    }
    println!(
        "pitr-drill passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(n: u32, what: &str) {
    println!("[{n:>2}] {what}");
}

/// A single-quoted SQL / postgresql.conf string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Inserts `rows` notifications labelled `phase-<n>` in `txns` transactions.
async fn insert(db: &Client, phase: &str, rows: u32, txns: u32) -> Result<()> {
    let txns = txns.clamp(1, rows.max(1));
    let mut done = 0;
    for t in 0..txns {
        let n = if t + 1 == txns {
            rows - done
        } else {
            rows / txns
        };
        db.execute(
            "INSERT INTO notifications (template_id, reference)
             SELECT 1 + g % 5, $1::text || '-' || ($2::int + g) FROM generate_series(1, $3::int) g",
            &[&phase, &(done as i32), &(n as i32)],
        )
        .await
        .with_context(|| format!("writing {phase} rows"))?;
        done += n;
    }
    Ok(())
}

async fn fingerprint(db: &Client, table: &str) -> Result<Fingerprint> {
    let cols = if table == "templates" {
        "id || ':' || name"
    } else {
        "id || ':' || template_id || ':' || reference"
    };
    let row = db
        .query_one(
            &format!("SELECT count(*), coalesce(md5(string_agg({cols}, ',' ORDER BY id)), '') FROM {table}"),
            &[],
        )
        .await
        .with_context(|| format!("reading {table}"))?;
    Ok(Fingerprint {
        rows: row.get(0),
        digest: row.get(1),
    })
}

/// Waits until the archiver has archived `wal` (names of one timeline sort in WAL order).
async fn wait_archived(db: &Client, wal: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = db
            .query_one("SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') FROM pg_stat_archiver", &[])
            .await
            .context("reading pg_stat_archiver")?;
        let (last, failed, last_failed): (String, i64, String) =
            (row.get(0), row.get(1), row.get(2));
        if last.len() == wal.len() && last.as_str() >= wal {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "WAL segment {wal} was not archived within 60 s (last archived {last:?}, {failed} failure(s), last failed {last_failed:?}): check archive_command"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects to the restored server and waits until it has left recovery (promoted).
async fn wait_promoted(endpoint: &Endpoint, log: &Path) -> Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let c = loop {
        match endpoint.connect(DB).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => {
                return Err(anyhow::Error::new(e).context(format!(
                    "connecting to the restored server (log {})",
                    log.display()
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    loop {
        let in_recovery: bool = c
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .context("pg_is_in_recovery()")?
            .get(0);
        if !in_recovery {
            return Ok(c);
        }
        if Instant::now() > deadline {
            bail!(
                "the restored server is still in recovery after 60 s (see {})",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Compares the restored tables with the noted state; prints one line per check. True when all match.
async fn verify(
    c: &Client,
    notifications: &Fingerprint,
    templates: &Fingerprint,
    target: &str,
    args: &PitrArgs,
) -> Result<bool> {
    let mut ok = true;
    let got = fingerprint(c, "notifications").await?;
    let later: i64 = c
        .query_one(
            "SELECT count(*) FROM notifications WHERE reference LIKE 'after-target-%'",
            &[],
        )
        .await
        .context("counting later rows")?
        .get(0);
    let oldest: i64 = c
        .query_one(
            "SELECT count(*) FROM notifications WHERE reference LIKE 'before-backup-%' AND id <= $1",
            &[&(DELETED_AFTER_TARGET as i64)],
        )
        .await
        .context("counting the deleted rows")?
        .get(0);
    if got == *notifications && later == 0 {
        println!(
            "      ✓ notifications: exactly the {} rows committed before {target} ({} before the backup + {} after it), same contents",
            got.rows, args.rows_before_backup, args.rows_before_target
        );
        println!(
            "      ✓ notifications: 0 of the {} rows written after the target time",
            args.rows_after_target
        );
    } else {
        ok = false;
        println!(
            "      ✗ MISMATCH notifications: {} rows (digest {}), expected {} rows (digest {}); {later} of the {} rows written after the target time are present",
            got.rows, got.digest, notifications.rows, notifications.digest, args.rows_after_target
        );
    }
    if oldest == DELETED_AFTER_TARGET as i64 {
        println!("      ✓ notifications: the {oldest} rows deleted after the target time are back");
    } else {
        ok = false;
        println!(
            "      ✗ MISMATCH notifications: {oldest} of the {DELETED_AFTER_TARGET} rows deleted after the target time are back"
        );
    }
    let exists: bool = c
        .query_one("SELECT to_regclass('public.templates') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        ok = false;
        println!("      ✗ MISMATCH templates: the dropped table is not back");
    } else {
        let got = fingerprint(c, "templates").await?;
        if got == *templates {
            println!(
                "      ✓ templates: the dropped table is back with its {} rows",
                got.rows
            );
        } else {
            ok = false;
            println!(
                "      ✗ MISMATCH templates: {} rows (digest {}), expected {} rows (digest {})",
                got.rows, got.digest, templates.rows, templates.digest
            );
        }
    }
    // A restored server must accept writes after promotion (the identity sequence is usable too).
    c.execute(
        "INSERT INTO notifications (template_id, reference) VALUES (1, 'after-restore')",
        &[],
    )
    .await
    .context("writing to the restored server")?;
    println!("      ✓ the restored server accepts writes");
    Ok(ok)
}

/// Stops the restored server (immediate mode: it is thrown away with the cluster directory).
struct StopOnDrop(Server);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.0.stop(StopMode::Immediate) {
            eprintln!("warning: stopping the restored server: {e}");
        }
    }
}
