//! `cargo xtask drop-test-dbs`: drops every test database and nothing else.

use std::process::Command;

use anyhow::{Context, Result, bail};
use notify_db_config::Settings;
use notify_db_connect::{Bind, connect_one};
use notify_db_testdb::{drop_database_sql, is_test_db_name};

use crate::util;

/// Arguments of `cargo xtask drop-test-dbs`.
#[derive(clap::Args)]
pub(crate) struct DropArgs {
    /// Run the drop through `docker compose exec primary psql` instead of connecting directly.
    #[arg(long)]
    in_docker: bool,
}

/// The database list, in one column.
const LIST_SQL: &str = "SELECT datname FROM pg_database ORDER BY datname";

/// Drops test databases on the configured primary (or the docker-compose one).
pub(crate) fn run(args: DropArgs) -> Result<()> {
    let dropped = if args.in_docker {
        drop_each(psql(LIST_SQL)?.lines(), |sql| psql(sql).map(drop))?
    } else {
        let settings = Settings::from_env()?;
        let primary = settings.primary.clone();
        let rt = util::runtime()?;
        let client = rt.block_on(async {
            // The maintenance database: the configured one may be a test database itself.
            // Through notify-db-connect, as every connection: TLS per the URI's sslmode.
            let maintenance = primary.with_dbname("postgres");
            match connect_one(&maintenance, &settings, Bind::Default).await {
                Ok((client, _)) => Ok(client),
                Err(_) => connect_one(&primary, &settings, Bind::Default)
                    .await
                    .map(|(client, _)| client)
                    .with_context(|| format!("connecting to {primary}")),
            }
        })?;
        let rows = rt.block_on(client.query(LIST_SQL, &[]))?;
        let names = rows.iter().map(|row| row.get::<_, &str>(0));
        drop_each(names, |sql| Ok(rt.block_on(client.batch_execute(sql))?))?
    };
    println!("{dropped} test database(s) dropped");
    Ok(())
}

/// Runs `execute` with the drop of each test database among `names`, saying which; the number
/// dropped.
fn drop_each<'a>(
    names: impl IntoIterator<Item = &'a str>,
    mut execute: impl FnMut(&str) -> Result<()>,
) -> Result<usize> {
    let mut dropped = 0;
    for name in names
        .into_iter()
        .map(str::trim)
        .filter(|n| is_test_db_name(n))
    {
        execute(&drop_database_sql(name)).with_context(|| format!("dropping {name}"))?;
        println!("dropped {name}");
        dropped += 1;
    }
    Ok(dropped)
}

/// Runs `sql` with psql in the docker-compose primary; its unaligned output.
fn psql(sql: &str) -> Result<String> {
    let out = Command::new("docker")
        .args([
            "compose", "exec", "-T", "primary", "psql", "-U", "postgres", "-d", "postgres", "-At",
            "-c", sql,
        ])
        .current_dir(util::root())
        .output()
        .context("running docker compose exec (is Docker running and `docker compose up` done?)")?;
    if !out.status.success() {
        bail!(
            "docker compose exec primary psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
