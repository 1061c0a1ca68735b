//! `cargo xtask demo`: start the local primary + replica and show how to use them.

use anyhow::{Context, Result};

use crate::{dev, util};

/// Arguments of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Exit after printing, instead of waiting for Ctrl-C.
    #[arg(long)]
    no_wait: bool,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    let cluster = dev::up()?;
    let rt = util::runtime()?;
    rt.block_on(async {
        for (name, server) in std::iter::once(("primary", cluster.primary())).chain(cluster.replica().map(|r| ("replica", r))) {
            let c = server.endpoint().connect("notification_api").await?;
            let row = c
                .query_one(
                    "SELECT current_setting('server_version'), pg_is_in_recovery(), host(inet_server_addr())",
                    &[],
                )
                .await
                .with_context(|| format!("querying the {name}"))?;
            let (v, rec, addr): (String, bool, Option<String>) = (row.get(0), row.get(1), row.get(2));
            println!(
                "{name:<8} PostgreSQL {v} at {}:{} (inet_server_addr {}), in recovery: {rec}",
                server.endpoint().host,
                server.endpoint().port,
                addr.unwrap_or_else(|| "-".into())
            );
        }
        anyhow::Ok(())
    })?;
    println!("\nTo connect (the password is read from its file, never printed):");
    print!("{}", dev::export_lines(&cluster));
    println!("psql \"$SQLALCHEMY_DATABASE_URI\"");
    if args.no_wait {
        println!("\nThe clusters keep running; stop them with `cargo xtask dev down`.");
        return Ok(());
    }
    println!("\nPress Ctrl-C to stop the clusters.");
    rt.block_on(tokio::signal::ctrl_c())
        .context("waiting for Ctrl-C")?;
    cluster.stop()?;
    println!("stopped");
    Ok(())
}
