//! `cargo xtask test-migration-downgrade`: the stairway test. On an empty database, for each
//! migration N: upgrade to N, capture the schema, downgrade to N-1, compare with the schema
//! captured at N-1 before, upgrade to N again and compare with the capture at N. Differences are
//! printed naming the migration and the object. `--to REV` runs the reference's shape instead:
//! upgrade to head, downgrade to REV, upgrade to head.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use notify_db_config::{DatabaseUri, Tls};
use notify_db_migrate::schema::{self, Change, Schema};
use notify_db_migrate::{MigrationSet, Migrator, Options, Target};
use notify_db_testdb::TestDb;

use crate::util;

/// Arguments of `cargo xtask test-migration-downgrade`.
#[derive(clap::Args)]
pub struct StairwayArgs {
    /// An EMPTY database to run on (refused when it has tables or applied migrations). Default:
    /// SQLALCHEMY_DATABASE_URI when set, else a throwaway test database on the harness clusters.
    #[arg(long, env = "SQLALCHEMY_DATABASE_URI", hide_env_values = true)]
    database_url: Option<String>,
    /// Use a throwaway test database even when SQLALCHEMY_DATABASE_URI is set.
    #[arg(long)]
    fresh: bool,
    /// Test a directory of SQL migrations (`NNNN_slug.up.sql` + `.down.sql`) instead of migrations/.
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Only the migrations added or changed since this git ref (and the ones after them).
    #[arg(long, value_name = "GIT_REF", conflicts_with = "to")]
    since: Option<String>,
    /// The reference's shape: upgrade to head, downgrade to REV, upgrade to head again.
    #[arg(long, value_name = "REV")]
    to: Option<String>,
}

/// Runs `cargo xtask test-migration-downgrade`.
pub fn run(args: StairwayArgs) -> Result<()> {
    let (set, dir) = match &args.dir {
        Some(d) => (
            MigrationSet::from_dir(d)
                .with_context(|| format!("loading SQL migrations from {}", d.display()))?,
            d.clone(),
        ),
        None => (
            notify_db_migrations::set().context("loading the migration set (migrations/)")?,
            notify_db_migrations::dir().to_path_buf(),
        ),
    };
    let first = match &args.since {
        Some(r) => {
            let changed = crate::lint_migrations::changed_since(&dir, r, &set)?;
            match set
                .migrations()
                .iter()
                .position(|m| changed.contains(m.id()))
            {
                Some(i) => i,
                None => {
                    println!("no migration changed since {r}: nothing to test");
                    return Ok(());
                }
            }
        }
        None => 0,
    };
    let database_url = if args.fresh {
        None
    } else {
        args.database_url.clone()
    };
    util::runtime()?.block_on(async {
        // Keep the throwaway database alive until the end; it is dropped afterwards.
        let (pg, tls, _db) = match &database_url {
            Some(u) => {
                // The URI's sslmode, as the service and the migration CLI connect.
                let uri = DatabaseUri::parse(u, "SQLALCHEMY_DATABASE_URI")?;
                (uri.to_pg_config(), uri.tls()?, None)
            }
            None => {
                let db = TestDb::create()
                    .await
                    .context("creating a throwaway test database on the harness clusters")?;
                (db.primary().pg_config(db.name()), Tls::Off, Some(db))
            }
        };
        let stairs = Stairs::new(set, pg, tls);
        stairs.ensure_empty().await?;
        match &args.to {
            Some(rev) => stairs.reference_shape(rev).await,
            None => stairs.each_step(first).await,
        }
    })
}

struct Stairs {
    migrator: Migrator,
    pg: tokio_postgres::Config,
    tls: Tls,
}

/// Objects of the engine's own tables are not part of the schema under test.
fn strip_engine_tables(s: Schema) -> Schema {
    s.without_table("alembic_version")
        .without_table(notify_db_migrate::JOURNAL_TABLE)
}

/// Splits off changes where a constraint that was NOT VALID is now validated (and nothing else
/// changed): a down cannot "unvalidate" without dropping and re-adding the constraint, and a
/// validated constraint is a state the up accepts again (`VALIDATE CONSTRAINT` is idempotent).
fn split_validation_only(changes: Vec<Change>) -> (Vec<Change>, Vec<Change>) {
    changes
        .into_iter()
        .partition(|c| match (&c.before, &c.after) {
            (Some(b), Some(a)) if c.object.kind == schema::ObjectKind::Constraint => {
                b.replace(" NOT VALID (not validated)", "") != *a
            }
            _ => true,
        })
}

/// A readable diff: what the downgrade left behind, lost, or changed.
fn explain(changes: &[Change]) -> String {
    let mut out = Vec::new();
    for c in changes {
        out.push(match (&c.before, &c.after) {
            (None, Some(a)) => format!("    left behind: {}: {a}", c.object),
            (Some(b), None) => format!("    missing:     {}: {b}", c.object),
            (Some(b), Some(a)) => {
                format!(
                    "    changed:     {}\n        was: {b}\n        now: {a}",
                    c.object
                )
            }
            (None, None) => format!("    ?            {}", c.object),
        });
    }
    out.join("\n")
}

impl Stairs {
    fn new(set: MigrationSet, pg: tokio_postgres::Config, tls: Tls) -> Stairs {
        let options = Options {
            // A throwaway database: nothing else holds locks; fail fast rather than retry.
            max_attempts: 2,
            retry_delay: Duration::from_millis(200),
            ..Options::default()
        };
        Stairs {
            migrator: Migrator::new(set)
                .with_options(options)
                .with_tls(tls.clone()),
            pg,
            tls,
        }
    }

    async fn capture(&self) -> Result<Schema> {
        let client = self
            .tls
            .connect(&self.pg)
            .await
            .context("connecting to capture the schema")?;
        Ok(strip_engine_tables(schema::capture(&client).await?))
    }

    /// Refuses a database that holds anything: the test downgrades to base.
    async fn ensure_empty(&self) -> Result<()> {
        let current = self
            .migrator
            .current(&self.pg)
            .await
            .context("reading the database's revision")?;
        let schema = self.capture().await?;
        let objects = schema
            .objects()
            .filter(|(id, _)| {
                !matches!(
                    id.kind,
                    schema::ObjectKind::Schema | schema::ObjectKind::Extension
                )
            })
            .count();
        if current.is_some() || objects > 0 {
            bail!(
                "the database is not empty (revision {}, {objects} object(s)); the stairway test \
                 downgrades to base and would destroy data: point --database-url at an empty \
                 database, or pass --fresh for a throwaway one",
                current.as_deref().unwrap_or("base")
            );
        }
        Ok(())
    }

    fn id(&self, i: usize) -> &str {
        self.migrator.set().migrations()[i].id()
    }

    fn target(&self, i: Option<usize>) -> Target {
        i.map_or(Target::Base, |i| Target::Revision(self.id(i).to_owned()))
    }

    async fn up(&self, target: &Target) -> Result<()> {
        self.migrator
            .upgrade(&self.pg, target)
            .await
            .with_context(|| format!("upgrade to {target}"))?;
        Ok(())
    }

    async fn down(&self, target: &Target) -> Result<()> {
        self.migrator
            .downgrade(&self.pg, target)
            .await
            .with_context(|| format!("downgrade to {target}"))?;
        Ok(())
    }

    /// The stairway: up N, down to N-1 (schema as before), up N again (schema as at N).
    async fn each_step(&self, first: usize) -> Result<()> {
        let n = self.migrator.set().migrations().len();
        if first > 0 {
            self.up(&self.target(Some(first - 1))).await?;
        }
        let mut before = self.capture().await?;
        let mut failed = Vec::new();
        for i in first..n {
            let id = self.id(i).to_owned();
            let prev = i.checked_sub(1);
            let prev_name = prev.map_or("base", |p| self.id(p)).to_owned();
            let t = Instant::now();
            self.up(&self.target(Some(i))).await?;
            let at_n = self.capture().await?;
            self.down(&self.target(prev))
                .await
                .with_context(|| format!("migration {id}"))?;
            let after_down = self.capture().await?;
            let (down_diff, notes) = split_validation_only(before.diff(&after_down));
            for n in &notes {
                println!(
                    "note    {id}: its downgrade leaves {} validated (it was NOT VALID at {prev_name}); \
                     harmless, not counted as a failure",
                    n.object
                );
            }
            if !down_diff.is_empty() {
                println!(
                    "FAILED  {id}: downgrade to {prev_name} does not restore the schema at {prev_name} \
                     ({} difference{}):\n{}",
                    down_diff.len(),
                    if down_diff.len() == 1 { "" } else { "s" },
                    explain(&down_diff)
                );
                failed.push(id.clone());
            }
            if let Err(e) = self.up(&self.target(Some(i))).await {
                bail!(
                    "migration {id}: upgrading again after its downgrade failed{}: {}",
                    if down_diff.is_empty() {
                        ""
                    } else {
                        " (see the differences above)"
                    },
                    util::one_line(&e)
                );
            }
            let again = self.capture().await?;
            let up_diff = at_n.diff(&again);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if !up_diff.is_empty() {
                println!(
                    "FAILED  {id}: upgrading again gives a different schema than the first time:\n{}",
                    explain(&up_diff)
                );
                if failed.last() != Some(&id) {
                    failed.push(id.clone());
                }
            } else if down_diff.is_empty() {
                println!(
                    "ok      {id}: up, down to {prev_name}, up again: schema restored ({} objects, {ms:.0} ms)",
                    at_n.len()
                );
            }
            before = at_n;
        }
        if !failed.is_empty() {
            bail!(
                "stairway test failed for {} migration{}: {}",
                failed.len(),
                if failed.len() == 1 { "" } else { "s" },
                failed.join(", ")
            );
        }
        println!(
            "stairway test passed: {} migration{} each upgraded, downgraded and upgraded again",
            n - first,
            if n - first == 1 { "" } else { "s" }
        );
        Ok(())
    }

    /// The reference's shape: head, down to `rev`, head again; schemas compared at `rev` and head.
    async fn reference_shape(&self, rev: &str) -> Result<()> {
        let target: Target = rev.parse()?;
        self.up(&target).await?;
        let at_rev = self.capture().await?;
        self.up(&Target::Head).await?;
        let at_head = self.capture().await?;
        self.down(&target).await?;
        let rev_again = self.capture().await?;
        let (d1, notes) = split_validation_only(at_rev.diff(&rev_again));
        for n in &notes {
            println!(
                "note: the downgrade leaves {} validated (it was NOT VALID at {rev})",
                n.object
            );
        }
        if !d1.is_empty() {
            println!(
                "FAILED: downgrading from head to {rev} does not restore the schema at {rev}:\n{}",
                explain(&d1)
            );
        }
        if let Err(e) = self.up(&Target::Head).await {
            bail!(
                "upgrading to head again after the downgrade to {rev} failed{}: {}",
                if d1.is_empty() {
                    ""
                } else {
                    " (see the differences above)"
                },
                util::one_line(&e)
            );
        }
        let head_again = self.capture().await?;
        let d2 = at_head.diff(&head_again);
        if d1.is_empty() && d2.is_empty() {
            println!(
                "ok: upgrade to head, downgrade to {rev}, upgrade to head: schemas at {rev} and at head restored"
            );
            return Ok(());
        }
        if !d2.is_empty() {
            println!(
                "FAILED: upgrading to head again gives a different schema:\n{}",
                explain(&d2)
            );
        }
        bail!("downgrade test from head to {rev} failed")
    }
}
