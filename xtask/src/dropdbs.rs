//! `cargo xtask drop-test-dbs`: drops every test database and nothing else.

use std::process::Command;

use anyhow::{Context, Result, bail};
use notify_db_config::Settings;
use notify_db_connect::{Bind, connect_one};
use notify_db_testdb::{is_test_db_name, quote_ident};

use crate::util;

/// Arguments of `cargo xtask drop-test-dbs`.
#[derive(clap::Args)]
pub(crate) struct DropArgs {
    /// Run the drop through `docker compose exec primary psql` instead of connecting directly.
    #[arg(long)]
    in_docker: bool,
}

/// Drops test databases on the configured primary (or the docker-compose one).
pub(crate) fn run(args: DropArgs) -> Result<()> {
    if args.in_docker {
        return in_docker();
    }
    let settings = Settings::from_env()?;
    let primary = settings.primary.clone();
    util::runtime()?.block_on(async move {
        // Connect to the maintenance database: the configured one may be a test database itself.
        // Through notify-db-connect, as every connection: TLS per the URI's sslmode.
        let maintenance = primary.with_dbname("postgres");
        let client = match connect_one(&maintenance, &settings, Bind::Default).await {
            Ok((client, _)) => client,
            Err(_) => {
                connect_one(&primary, &settings, Bind::Default)
                    .await
                    .with_context(|| format!("connecting to {primary}"))?
                    .0
            }
        };
        let rows = client
            .query("SELECT datname FROM pg_database ORDER BY datname", &[])
            .await?;
        let mut dropped = 0;
        for row in rows {
            let name: String = row.get(0);
            if !is_test_db_name(&name) {
                continue;
            }
            client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                ))
                .await
                .with_context(|| format!("dropping {name}"))?;
            println!("dropped {name}");
            dropped += 1;
        }
        println!("{dropped} test database(s) dropped");
        Ok(())
    })
}

fn in_docker() -> Result<()> {
    let psql = |sql: &str| -> Result<String> {
        let out = Command::new("docker")
            .args([
                "compose", "exec", "-T", "primary", "psql", "-U", "postgres", "-d", "postgres",
                "-At", "-c", sql,
            ])
            .current_dir(util::root())
            .output()
            .context(
                "running docker compose exec (is Docker running and `docker compose up` done?)",
            )?;
        if !out.status.success() {
            bail!(
                "docker compose exec primary psql failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let list = psql("SELECT datname FROM pg_database")?;
    let mut dropped = 0;
    for name in list.lines().map(str::trim).filter(|n| is_test_db_name(n)) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))?;
        println!("dropped {name}");
        dropped += 1;
    }
    println!("{dropped} test database(s) dropped");
    Ok(())
}
