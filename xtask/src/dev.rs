//! `cargo xtask dev up [--pgbouncer] | down | status`: a persistent local primary + replica,
//! optionally behind a PgBouncer in transaction mode.

use std::path::PathBuf;

use anyhow::{Context, Result};
use notify_db_config::Settings;
use notify_db_testdb::{Cluster, PgBouncer, base_dir};

use crate::util;

/// Arguments of `cargo xtask dev`.
#[derive(clap::Args)]
pub(crate) struct DevArgs {
    #[command(subcommand)]
    cmd: DevCmd,
}

#[derive(clap::Subcommand)]
enum DevCmd {
    /// Start (or create) the local primary + replica; print the `export` lines to use them.
    Up {
        /// Also start a PgBouncer in transaction mode in front of them (databases
        /// `notification_api` and `notification_api_bulk`); the exports then point the pools
        /// at it and migrations at the primary directly.
        #[arg(long)]
        pgbouncer: bool,
    },
    /// Stop them (`--destroy` also deletes their data).
    Down {
        /// Delete the data directories too.
        #[arg(long)]
        destroy: bool,
    },
    /// Say whether they run, where, and whether the replica streams.
    Status,
}

/// Where the development cluster lives.
pub(crate) fn dev_dir() -> PathBuf {
    base_dir().join("dev")
}

/// Starts or reuses the persistent development cluster.
pub(crate) fn up() -> Result<Cluster> {
    let cluster = Cluster::builder()
        .replica(true)
        .persistent(dev_dir())
        .start()?;
    let pw = dev_dir().join("password");
    std::fs::write(&pw, &cluster.primary().endpoint().password)
        .context("writing the password file")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600))
        .context("chmod password file")?;
    util::runtime()?.block_on(async {
        let c = cluster.primary().endpoint().connect("postgres").await?;
        let exists = c
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = 'notification_api'",
                &[],
            )
            .await
            .context("checking for notification_api")?
            .is_some();
        if !exists {
            c.batch_execute("CREATE DATABASE notification_api")
                .await
                .context("creating notification_api")?;
        }
        anyhow::Ok(())
    })?;
    // The replica must have replayed CREATE DATABASE before anything is pointed at it: the
    // exports are used at once, and a login to a database not yet replayed is refused.
    cluster
        .wait_for_replica()
        .context("waiting for the replica to replay the primary")?;
    Ok(cluster)
}

/// Where the development PgBouncer lives.
fn pgbouncer_dir() -> PathBuf {
    dev_dir().join("pgbouncer")
}

/// The PgBouncer database that leads to the replica.
const BULK_DB: &str = "notification_api_bulk";

/// Starts (or restarts) the development PgBouncer in front of `cluster`. The session settings
/// the pools would set are enforced by PgBouncer's `connect_query` instead.
fn pgbouncer_up(cluster: &Cluster) -> Result<PgBouncer> {
    let settings = Settings::from_env().context("reading the settings")?;
    let s = &settings.session;
    let timeout = |replica: bool| s.statement_timeout_for(replica).as_millis();
    let p = cluster.primary().endpoint();
    let mut builder = PgBouncer::builder()
        .persistent(pgbouncer_dir())
        .database("notification_api", p, "notification_api")
        .connect_query(&format!("SET statement_timeout = {}", timeout(false)));
    let bulk_query = |replica: bool| {
        format!(
            "SET statement_timeout = {}; SET default_transaction_read_only = on",
            timeout(replica)
        )
    };
    builder = match cluster.replica() {
        Some(r) => builder
            .database(BULK_DB, r.endpoint(), "notification_api")
            .connect_query(&bulk_query(true)),
        None => builder
            .database(BULK_DB, p, "notification_api")
            .connect_query(&bulk_query(false)),
    };
    Ok(builder.start()?)
}

/// The `export` lines for the pools through the development PgBouncer (and migrations direct).
fn pgbouncer_export_lines(cluster: &Cluster, bouncer: &PgBouncer) -> String {
    let pw = dev_dir().join("password");
    let p = cluster.primary().endpoint();
    let uri = |port: u16, host: &str, db: &str| {
        format!(
            "\"postgresql://{}:$(cat {})@{host}:{port}/{db}\"",
            p.user,
            pw.display()
        )
    };
    let b = bouncer.endpoint(&p.user, "");
    format!(
        "export SQLALCHEMY_DATABASE_URI={}\n\
         export SQLALCHEMY_DATABASE_URI_BULK={}\n\
         export DATABASE_URI_TRANSACTION_POOLER=true\n\
         export DATABASE_URI_BULK_TRANSACTION_POOLER=true\n\
         export DATABASE_MIGRATION_URI={}\n",
        uri(b.port, &b.host, "notification_api"),
        uri(b.port, &b.host, BULK_DB),
        uri(p.port, &p.host, "notification_api"),
    )
}

/// The shell lines that point SQLALCHEMY_DATABASE_URI(_BULK) at the dev cluster; the password is
/// read from its file when the line is evaluated, so it is never printed.
pub(crate) fn export_lines(cluster: &Cluster) -> String {
    let pw = dev_dir().join("password");
    let p = cluster.primary().endpoint();
    let mut out = format!(
        "export SQLALCHEMY_DATABASE_URI=\"postgresql://{}:$(cat {})@{}:{}/notification_api\"\n",
        p.user,
        pw.display(),
        p.host,
        p.port
    );
    if let Some(r) = cluster.replica() {
        let r = r.endpoint();
        out.push_str(&format!(
            "export SQLALCHEMY_DATABASE_URI_BULK=\"postgresql://{}:$(cat {})@{}:{}/notification_api\"\n",
            r.user,
            pw.display(),
            r.host,
            r.port
        ));
    }
    out
}

/// Runs `cargo xtask dev ...`.
pub(crate) fn run(args: DevArgs) -> Result<()> {
    match args.cmd {
        DevCmd::Up { pgbouncer } => {
            let cluster = up()?;
            if pgbouncer {
                let bouncer = pgbouncer_up(&cluster)?;
                eprintln!(
                    "# primary and replica are up in {}, behind PgBouncer (transaction mode) on \
                     127.0.0.1:{}; to use them: eval \"$(cargo xtask dev up --pgbouncer)\"",
                    dev_dir().display(),
                    bouncer.port()
                );
                print!("{}", pgbouncer_export_lines(&cluster, &bouncer));
                return Ok(());
            }
            // Without --pgbouncer, a PgBouncer left from an earlier `up --pgbouncer` is stopped.
            PgBouncer::stop_in(&pgbouncer_dir());
            eprintln!(
                "# primary and replica are up in {}; to use them: eval \"$(cargo xtask dev up)\"",
                dev_dir().display()
            );
            print!("{}", export_lines(&cluster));
            Ok(())
        }
        DevCmd::Down { destroy } => {
            if PgBouncer::stop_in(&pgbouncer_dir()) {
                println!("stopped the development PgBouncer");
            }
            let Some(cluster) = Cluster::existing(&dev_dir())? else {
                println!("no development cluster in {}", dev_dir().display());
                return Ok(());
            };
            if destroy {
                cluster.destroy()?;
                println!("stopped and deleted the development cluster");
            } else {
                cluster.stop()?;
                println!(
                    "stopped the development cluster (data kept; `dev down --destroy` deletes it)"
                );
            }
            Ok(())
        }
        DevCmd::Status => status(),
    }
}

fn status() -> Result<()> {
    let Some(cluster) = Cluster::existing(&dev_dir())? else {
        println!("no development cluster (start one with `cargo xtask dev up`)");
        return Ok(());
    };
    let servers = [
        ("primary", Some(cluster.primary())),
        ("replica", cluster.replica()),
    ];
    for (role, server) in servers {
        let Some(s) = server else { continue };
        let ep = s.endpoint();
        println!(
            "{role:<8} {}:{:<6} {}  data {}",
            ep.host,
            ep.port,
            if s.is_running() { "running" } else { "stopped" },
            s.data_dir().display()
        );
    }
    Ok(())
}
