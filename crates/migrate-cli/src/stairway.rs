//! The stairway test. On an empty database, for each migration N: upgrade to N, capture the
//! schema, downgrade to N-1, compare with the schema captured at N-1 before, upgrade to N again
//! and compare with the capture at N. Differences are written naming the migration and the
//! object. [`Mode::To`] runs the reference's shape instead: upgrade to head, downgrade to REV,
//! upgrade to head.
//!
//! ```no_run
//! # async fn f(set: notify_db_migrate::MigrationSet) -> Result<(), Box<dyn std::error::Error>> {
//! use notify_db_config::DatabaseUri;
//! use notify_db_migrate_cli::stairway::{self, Mode};
//! let uri = DatabaseUri::parse("postgresql://ci@127.0.0.1/empty_db", "--database-url")?;
//! stairway::run(&uri, set, &Mode::All, &mut std::io::stdout()).await?;
//! # Ok(()) }
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify_db_config::DatabaseUri;
use notify_db_connect::{ConnectUri, Tls};

use crate::schema::{self, Change, ObjectKind, Schema};
use notify_db_migrate::{Error, MigrationSet, Migrator, Options, Target};

/// Which migrations the test steps through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Every migration: up, down, up again, one at a time.
    All,
    /// Only the migrations whose files in `dir` changed since `git_ref` (and the ones after
    /// them); the earlier ones are applied straight.
    Since {
        /// The directory of the migration files (a git work tree).
        dir: PathBuf,
        /// The git ref to compare with (`origin/main`, `HEAD`).
        git_ref: String,
    },
    /// The reference's shape: upgrade to head, downgrade to this revision, upgrade to head again.
    To(String),
}

impl Mode {
    /// The mode for the command-line flags: `--to REV`, else `--since GIT_REF` (the migration
    /// files in `dir`), else every migration.
    pub fn from_flags(to: Option<&str>, since: Option<&str>, dir: &Path) -> Mode {
        match (to, since) {
            (Some(rev), _) => Mode::To(rev.to_owned()),
            (None, Some(git_ref)) => Mode::Since {
                dir: dir.to_path_buf(),
                git_ref: git_ref.to_owned(),
            },
            (None, None) => Mode::All,
        }
    }
}

/// Why the stairway test failed or could not run.
#[derive(Debug, thiserror::Error)]
pub enum StairwayError {
    /// The database holds something: the test downgrades to base and would destroy it.
    #[error(
        "the database is not empty (revision {revision}, {objects} object(s)); the stairway test \
         downgrades to base and would destroy data: point --database-url at an empty \
         database, or pass --fresh to `cargo xtask test-migration-downgrade` for a throwaway one"
    )]
    NotEmpty {
        /// The revision it is at (`base`: none).
        revision: String,
        /// Objects besides schemas and extensions.
        objects: usize,
    },
    /// One or more migrations do not downgrade and upgrade again cleanly (details written above).
    #[error(
        "stairway test failed for {} migration{}: {}",
        .ids.len(),
        if .ids.len() == 1 { "" } else { "s" },
        .ids.join(", ")
    )]
    Failed {
        /// The failed migrations.
        ids: Vec<String>,
    },
    /// [`Mode::To`]: the schema at the revision or at head was not restored (details written above).
    #[error("downgrade test from head to {revision} failed")]
    ReferenceShapeFailed {
        /// The revision downgraded to.
        revision: String,
    },
    /// An upgrade, a downgrade or a revision lookup failed.
    #[error("{what}: {source}")]
    Migrate {
        /// What was being done (`migration 0002_x: downgrade to 0001_y`).
        what: String,
        /// The engine's error.
        #[source]
        source: Box<Error>,
    },
    /// Connecting to capture the schema failed.
    #[error("connecting to {target} to capture the schema: {source}")]
    Connect {
        /// The database (password hidden).
        target: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The schema could not be captured.
    #[error(transparent)]
    Capture(Box<Error>),
    /// The TLS connector for the URI's `sslmode` could not be built.
    #[error(transparent)]
    Tls(#[from] notify_db_connect::TlsError),
    /// [`Mode::Since`]: the changed migrations could not be found.
    #[error(transparent)]
    Git(#[from] crate::changed::GitError),
    /// The report could not be written.
    #[error("writing the stairway report: {0}")]
    Output(#[source] std::io::Error),
}

/// Runs the stairway test on the EMPTY database `uri` names (refused when it has tables or
/// applied migrations), connecting per its `sslmode`, writing one line per migration to `out`.
/// Leaves the database at head. A failure is an error after the differences are written.
pub async fn run(
    uri: &DatabaseUri,
    set: MigrationSet,
    mode: &Mode,
    out: &mut dyn Write,
) -> Result<(), StairwayError> {
    let first = match mode {
        Mode::Since { dir, git_ref } => {
            let changed = crate::changed::since(dir, git_ref, &set)?;
            match set
                .migrations()
                .iter()
                .position(|m| changed.contains(m.id()))
            {
                Some(i) => i,
                None => {
                    return say(
                        out,
                        format!("no migration changed since {git_ref}: nothing to test"),
                    );
                }
            }
        }
        Mode::All | Mode::To(_) => 0,
    };
    let stairs = Stairs::new(set, uri)?;
    stairs.ensure_empty().await?;
    match mode {
        Mode::To(rev) => stairs.reference_shape(rev, out).await,
        Mode::All | Mode::Since { .. } => stairs.each_step(first, out).await,
    }
}

fn say(out: &mut dyn Write, line: String) -> Result<(), StairwayError> {
    writeln!(out, "{line}").map_err(StairwayError::Output)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
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
            (Some(b), Some(a)) if c.object.kind == ObjectKind::Constraint => {
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

/// `" (see the differences above)"` when there were differences.
fn see_above(differences: bool) -> &'static str {
    if differences {
        " (see the differences above)"
    } else {
        ""
    }
}

struct Stairs {
    migrator: Migrator,
    pg: tokio_postgres::Config,
    tls: Tls,
    /// The database, password hidden, for messages.
    target: String,
}

impl Stairs {
    fn new(set: MigrationSet, uri: &DatabaseUri) -> Result<Stairs, StairwayError> {
        let options = Options {
            // An empty database of its own: nothing else holds locks; fail fast rather than retry.
            max_attempts: 2,
            retry_delay: Duration::from_millis(200),
            ..Options::default()
        };
        let tls = uri.tls()?;
        Ok(Stairs {
            migrator: Migrator::new(set, uri)
                .map_err(|source| StairwayError::Migrate {
                    what: "connecting".into(),
                    source: Box::new(source),
                })?
                .with_options(options),
            pg: uri.to_pg_config(),
            tls,
            target: uri.to_string(),
        })
    }

    async fn capture(&self) -> Result<Schema, StairwayError> {
        let client = self
            .tls
            .connect(&self.pg)
            .await
            .map_err(|source| StairwayError::Connect {
                target: self.target.clone(),
                source,
            })?;
        let schema = schema::capture(&client)
            .await
            .map_err(|e| StairwayError::Capture(Box::new(e)))?;
        Ok(strip_engine_tables(schema))
    }

    /// Refuses a database that holds anything: the test downgrades to base.
    async fn ensure_empty(&self) -> Result<(), StairwayError> {
        let current = self
            .migrator
            .current()
            .await
            .map_err(|source| StairwayError::Migrate {
                what: "reading the database's revision".into(),
                source: Box::new(source),
            })?;
        let objects = self
            .capture()
            .await?
            .objects()
            .filter(|(id, _)| !matches!(id.kind, ObjectKind::Schema | ObjectKind::Extension))
            .count();
        if current.is_some() || objects > 0 {
            return Err(StairwayError::NotEmpty {
                revision: current.unwrap_or_else(|| "base".into()),
                objects,
            });
        }
        Ok(())
    }

    fn id(&self, i: usize) -> &str {
        self.migrator.set().migrations()[i].id()
    }

    fn target(&self, i: Option<usize>) -> Target {
        i.map_or(Target::Base, |i| Target::Revision(self.id(i).to_owned()))
    }

    /// Upgrades to `target`; `context` (e.g. `migration 0002_x`) prefixes a failure.
    async fn up(&self, target: &Target, context: &str) -> Result<(), StairwayError> {
        self.migrator
            .upgrade(target)
            .await
            .map_err(|source| StairwayError::Migrate {
                what: format!("{context}upgrade to {target}"),
                source: Box::new(source),
            })?;
        Ok(())
    }

    /// Downgrades to `target`; `context` prefixes a failure.
    async fn down(&self, target: &Target, context: &str) -> Result<(), StairwayError> {
        self.migrator
            .downgrade(target)
            .await
            .map_err(|source| StairwayError::Migrate {
                what: format!("{context}downgrade to {target}"),
                source: Box::new(source),
            })?;
        Ok(())
    }

    /// The stairway from migration `first`: up N, down to N-1 (schema as before), up N again
    /// (schema as at N).
    async fn each_step(&self, first: usize, out: &mut dyn Write) -> Result<(), StairwayError> {
        let n = self.migrator.set().migrations().len();
        if first > 0 {
            self.up(&self.target(Some(first - 1)), "").await?;
        }
        let mut before = self.capture().await?;
        let mut failed = Vec::new();
        for i in first..n {
            let id = self.id(i).to_owned();
            let prev = i.checked_sub(1);
            let prev_name = prev.map_or("base", |p| self.id(p)).to_owned();
            let t = Instant::now();
            self.up(&self.target(Some(i)), "").await?;
            let at_n = self.capture().await?;
            self.down(&self.target(prev), &format!("migration {id}: "))
                .await?;
            let after_down = self.capture().await?;
            let (down_diff, notes) = split_validation_only(before.diff(&after_down));
            for n in &notes {
                say(
                    out,
                    format!(
                        "note    {id}: its downgrade leaves {} validated (it was NOT VALID at \
                         {prev_name}); harmless, not counted as a failure",
                        n.object
                    ),
                )?;
            }
            if !down_diff.is_empty() {
                say(
                    out,
                    format!(
                        "FAILED  {id}: downgrade to {prev_name} does not restore the schema at \
                         {prev_name} ({} difference{}):\n{}",
                        down_diff.len(),
                        plural(down_diff.len()),
                        explain(&down_diff)
                    ),
                )?;
                failed.push(id.clone());
            }
            let context = format!(
                "migration {id}: upgrading again after its downgrade failed{}: ",
                see_above(!down_diff.is_empty())
            );
            self.up(&self.target(Some(i)), &context).await?;
            let again = self.capture().await?;
            let up_diff = at_n.diff(&again);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if !up_diff.is_empty() {
                say(
                    out,
                    format!(
                        "FAILED  {id}: upgrading again gives a different schema than the first \
                         time:\n{}",
                        explain(&up_diff)
                    ),
                )?;
                if failed.last() != Some(&id) {
                    failed.push(id.clone());
                }
            } else if down_diff.is_empty() {
                say(
                    out,
                    format!(
                        "ok      {id}: up, down to {prev_name}, up again: schema restored ({} \
                         objects, {ms:.0} ms)",
                        at_n.len()
                    ),
                )?;
            }
            before = at_n;
        }
        if !failed.is_empty() {
            return Err(StairwayError::Failed { ids: failed });
        }
        say(
            out,
            format!(
                "stairway test passed: {} migration{} each upgraded, downgraded and upgraded again",
                n - first,
                plural(n - first)
            ),
        )
    }

    /// The reference's shape: head, down to `rev`, head again; schemas compared at `rev` and head.
    async fn reference_shape(&self, rev: &str, out: &mut dyn Write) -> Result<(), StairwayError> {
        let target: Target = rev.parse().map_err(|source| StairwayError::Migrate {
            what: format!("revision {rev:?}"),
            source: Box::new(source),
        })?;
        self.up(&target, "").await?;
        let at_rev = self.capture().await?;
        self.up(&Target::Head, "").await?;
        let at_head = self.capture().await?;
        self.down(&target, "").await?;
        let rev_again = self.capture().await?;
        let (d1, notes) = split_validation_only(at_rev.diff(&rev_again));
        for n in &notes {
            say(
                out,
                format!(
                    "note: the downgrade leaves {} validated (it was NOT VALID at {rev})",
                    n.object
                ),
            )?;
        }
        if !d1.is_empty() {
            say(
                out,
                format!(
                    "FAILED: downgrading from head to {rev} does not restore the schema at {rev}:\n{}",
                    explain(&d1)
                ),
            )?;
        }
        let context = format!(
            "upgrading to head again after the downgrade to {rev} failed{}: ",
            see_above(!d1.is_empty())
        );
        self.up(&Target::Head, &context).await?;
        let head_again = self.capture().await?;
        let d2 = at_head.diff(&head_again);
        if d1.is_empty() && d2.is_empty() {
            return say(
                out,
                format!(
                    "ok: upgrade to head, downgrade to {rev}, upgrade to head: schemas at {rev} \
                     and at head restored"
                ),
            );
        }
        if !d2.is_empty() {
            say(
                out,
                format!(
                    "FAILED: upgrading to head again gives a different schema:\n{}",
                    explain(&d2)
                ),
            )?;
        }
        Err(StairwayError::ReferenceShapeFailed {
            revision: rev.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ObjectId;

    fn change(kind: ObjectKind, before: Option<&str>, after: Option<&str>) -> Change {
        Change {
            object: ObjectId {
                kind,
                name: "t.x".into(),
            },
            before: before.map(str::to_owned),
            after: after.map(str::to_owned),
        }
    }

    #[test]
    fn a_constraint_left_validated_is_a_note_not_a_failure() {
        let validated = change(
            ObjectKind::Constraint,
            Some("CHECK ((x > 0)) NOT VALID (not validated)"),
            Some("CHECK ((x > 0))"),
        );
        let redefined = change(
            ObjectKind::Constraint,
            Some("CHECK ((x > 0)) NOT VALID (not validated)"),
            Some("CHECK ((x > 1))"),
        );
        let column = change(
            ObjectKind::Column,
            Some("integer null"),
            Some("bigint null"),
        );
        let (failures, notes) =
            split_validation_only(vec![validated.clone(), redefined.clone(), column.clone()]);
        assert_eq!(notes, vec![validated]);
        assert_eq!(failures, vec![redefined, column]);
    }

    #[test]
    fn explain_says_what_the_downgrade_left_behind_lost_or_changed() {
        let text = explain(&[
            change(ObjectKind::Index, None, Some("CREATE INDEX ix")),
            change(ObjectKind::Column, Some("integer null"), None),
            change(
                ObjectKind::Column,
                Some("integer null"),
                Some("bigint null"),
            ),
        ]);
        assert_eq!(
            text,
            "    left behind: index t.x: CREATE INDEX ix\n    missing:     column t.x: integer \
             null\n    changed:     column t.x\n        was: integer null\n        now: bigint null"
        );
    }

    #[test]
    fn the_failure_names_every_failed_migration() {
        let e = StairwayError::Failed {
            ids: vec!["0002_a".into(), "0003_b".into()],
        };
        assert_eq!(
            e.to_string(),
            "stairway test failed for 2 migrations: 0002_a, 0003_b"
        );
    }
}
