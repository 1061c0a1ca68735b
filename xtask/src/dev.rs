//! `cargo xtask dev up | down | status`: a persistent local primary + replica.

use std::path::PathBuf;

use anyhow::{Context, Result};
use notify_db_testdb::{Cluster, base_dir};

use crate::util;

/// Arguments of `cargo xtask dev`.
#[derive(clap::Args)]
pub struct DevArgs {
    #[command(subcommand)]
    cmd: DevCmd,
}

#[derive(clap::Subcommand)]
enum DevCmd {
    /// Start (or create) the local primary + replica; print the `export` lines to use them.
    Up,
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
pub fn dev_dir() -> PathBuf {
    base_dir().join("dev")
}

/// Starts or reuses the persistent development cluster.
pub fn up() -> Result<Cluster> {
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
    Ok(cluster)
}

/// The shell lines that point SQLALCHEMY_DATABASE_URI(_BULK) at the dev cluster; the password is
/// read from its file when the line is evaluated, so it is never printed.
pub fn export_lines(cluster: &Cluster) -> String {
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
pub fn run(args: DevArgs) -> Result<()> {
    match args.cmd {
        DevCmd::Up => {
            let cluster = up()?;
            eprintln!(
                "# primary and replica are up in {}; to use them: eval \"$(cargo xtask dev up)\"",
                dev_dir().display()
            );
            print!("{}", export_lines(&cluster));
            Ok(())
        }
        DevCmd::Down { destroy } => {
            if !dev_dir().join("cluster.state").exists() {
                println!("no development cluster in {}", dev_dir().display());
                return Ok(());
            }
            let cluster = Cluster::builder()
                .replica(true)
                .persistent(dev_dir())
                .start()?;
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
    let state = dev_dir().join("cluster.state");
    let Ok(text) = std::fs::read_to_string(&state) else {
        println!("no development cluster (start one with `cargo xtask dev up`)");
        return Ok(());
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 {
            continue;
        }
        let (role, port) = (f[0], f[1]);
        let data = dev_dir().join(role);
        let running = data.join("postmaster.pid").exists();
        let host = if role == "primary" {
            "127.0.0.1"
        } else {
            "127.0.0.2"
        };
        println!(
            "{role:<8} {host}:{port:<6} {}  data {}",
            if running { "running" } else { "stopped" },
            data.display()
        );
    }
    Ok(())
}
