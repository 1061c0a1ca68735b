//! What autogenerate plans to write: a [`Plan`] of [`Step`]s, one migration each, and their ids.

use notify_db_migrate::Direction;

use super::barrel;

/// One generated migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Appended to the slug of every step but the first (`indexes`, `validate`).
    pub suffix: &'static str,
    /// What the step does, one line (the file's doc comment).
    pub summary: &'static str,
    /// Runs outside a transaction (`CONCURRENTLY`, batched backfills).
    pub no_transaction: bool,
    /// The upgrade statements, in order.
    pub up: Vec<String>,
    /// The downgrade statements, in order.
    pub down: Vec<String>,
    /// The barrel form of each upgrade statement that has one, by position (missing or `None`:
    /// SQL); the `.rs` form writes it (see [`barrel`]).
    pub up_barrel: Vec<Option<barrel::BarrelChange>>,
    /// The same for the downgrade statements.
    pub down_barrel: Vec<Option<barrel::BarrelChange>>,
    /// `lint-allow` exceptions: `(rule, None)` is left for the author to give the reason (a
    /// drop: the linter stops the migration until a person has looked); `(rule, Some(reason))`
    /// covers what the generated SQL does knowingly (a downgrade restoring head's state).
    pub allows: Vec<(&'static str, Option<&'static str>)>,
}

impl Step {
    /// The barrel form of statement `i` of `direction`, when it has one.
    pub fn barrel(&self, direction: Direction, i: usize) -> Option<&barrel::BarrelChange> {
        let forms = match direction {
            Direction::Up => &self.up_barrel,
            Direction::Down => &self.down_barrel,
        };
        forms.get(i).and_then(Option::as_ref)
    }

    /// The statements of `direction`; with `rust`, barrel's SQL where the `.rs` form writes barrel.
    pub fn statements(&self, direction: Direction, rust: bool) -> Vec<String> {
        let sql = match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        };
        sql.iter()
            .enumerate()
            .map(|(i, s)| match self.barrel(direction, i).filter(|_| rust) {
                Some(b) => b.sql(),
                None => s.clone(),
            })
            .collect()
    }
}

/// What autogenerate found and will write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// One line per difference found (`+ index ix_a`, `~ column t.a: default`).
    pub changes: Vec<String>,
    /// The migrations to write, in order (empty: nothing to write).
    pub steps: Vec<Step>,
    /// Differences written only as a commented block (renames, type changes, removed enum
    /// values): the command exits non-zero when there is any.
    pub unresolved: Vec<String>,
    /// Objects in either database that autogenerate does not compare.
    pub not_compared: Vec<String>,
}

impl Plan {
    /// True when the two schemas compare equal.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.unresolved.is_empty()
    }

    /// The steps as migrations numbered from `first_number`, ids `NNNN_slug[_suffix]`, as the
    /// `.sql` form writes them.
    pub fn migrations(&self, first_number: u32, slug: &str) -> Vec<notify_db_migrate::Migration> {
        self.migrations_in(first_number, slug, false)
    }

    /// [`Plan::migrations`] as the `.rs` form runs them: barrel's SQL where it writes barrel.
    pub fn rust_migrations(
        &self,
        first_number: u32,
        slug: &str,
    ) -> Vec<notify_db_migrate::Migration> {
        self.migrations_in(first_number, slug, true)
    }

    fn migrations_in(
        &self,
        first_number: u32,
        slug: &str,
        rust: bool,
    ) -> Vec<notify_db_migrate::Migration> {
        let mut out = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let mut m = notify_db_migrate::Migration::new(step_id(first_number, i, slug, step));
            if step.no_transaction {
                m = m.no_transaction();
            }
            for s in step.statements(Direction::Up, rust) {
                m = m.up(s);
            }
            for s in step.statements(Direction::Down, rust) {
                m = m.down(s);
            }
            out.push(m);
        }
        out
    }
}

/// The id of step `i`: the number, the slug cut so the suffix fits in [`notify_db_migrate::MAX_ID_LEN`].
pub fn step_id(first_number: u32, i: usize, slug: &str, step: &Step) -> String {
    let number = first_number + u32::try_from(i).unwrap_or(u32::MAX - first_number);
    if i == 0 || step.suffix.is_empty() {
        return format!("{number:04}_{slug}");
    }
    let room = notify_db_migrate::MAX_ID_LEN.saturating_sub(6 + step.suffix.len());
    let base: String = slug.chars().take(room).collect();
    format!("{number:04}_{}_{}", base.trim_end_matches('_'), step.suffix)
}
