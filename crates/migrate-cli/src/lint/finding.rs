//! What the linter reports ([`Finding`], [`Report`]), and [`Ctx`]: one migration and direction
//! as the rules see it, which turns a place in a statement into a finding on a file's line.

use notify_db_migrate::{Direction, Migration};

use super::pg_major::PgMajor;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The migration file, relative to the base directory given to
    /// [`lint`](crate::lint::lint) when under it.
    pub file: String,
    /// The line in that file (1-based).
    pub line: usize,
    /// The rule (squawk's name, or one of ours).
    pub rule: String,
    /// What is wrong, with the migration, direction, statement number and a snippet.
    pub message: String,
    /// How to fix it.
    pub help: String,
    /// The migration's id.
    pub migration: String,
    /// `up` or `down`.
    pub direction: &'static str,
}

/// What a lint run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The findings, by file and line.
    pub findings: Vec<Finding>,
    /// How many migrations were linted.
    pub linted: usize,
}

/// What a rule check needs to know about one migration and direction.
pub(super) struct Ctx<'a> {
    /// The migration.
    pub(super) m: &'a Migration,
    /// The direction linted.
    pub(super) dir: Direction,
    /// Its file, as findings show it.
    pub(super) file: &'a str,
    /// The file's text.
    pub(super) text: &'a str,
    /// The direction's statements.
    pub(super) statements: &'a [String],
    /// The major squawk's rules are applied for.
    pub(super) pg: PgMajor,
}

impl Ctx<'_> {
    /// The line in the migration's file of byte `offset` in statement `idx`.
    pub(super) fn line_of(&self, idx: usize, offset: usize) -> usize {
        let stmt = &self.statements[idx];
        let line_at = |pos: usize| self.text[..pos.min(self.text.len())].lines().count().max(1);
        if let Some(p) = self.text.find(stmt.as_str()) {
            return line_at(p + offset + 1);
        }
        // Not verbatim in the file (barrel-generated, or a Rust string with `\` continuations):
        // look for the offending line of the statement, then for its first words.
        let start = stmt[..offset.min(stmt.len())]
            .rfind('\n')
            .map_or(0, |p| p + 1);
        let end = stmt[start..].find('\n').map_or(stmt.len(), |p| start + p);
        let line = stmt[start..end].trim();
        if line.len() > 8
            && let Some(p) = self.text.find(line)
        {
            return line_at(p + 1);
        }
        // Barrel quotes identifiers: find the column (or table) the finding is about in the
        // file, e.g. `t.add_column("name", ...)` for a finding on `"name" VARCHAR(255)`.
        let offset = offset.min(stmt.len());
        let ident = match stmt[offset..].strip_prefix('"') {
            Some(rest) => rest.split('"').next(),
            None => {
                let pre = &stmt[..offset];
                pre.rfind('"')
                    .and_then(|close| pre[..close].rfind('"').map(|open| &pre[open + 1..close]))
            }
        };
        if let Some(id) = ident.filter(|i| !i.is_empty())
            && let Some(p) = self.text.find(&format!("\"{id}\""))
        {
            return line_at(p + 1);
        }
        let words: Vec<&str> = stmt.split_whitespace().take(3).collect();
        if let Some(p) = self.text.find(&words.join(" ")) {
            return line_at(p + 1);
        }
        let call = match self.dir {
            Direction::Up => ".up(",
            Direction::Down => ".down(",
        };
        self.text
            .lines()
            .position(|l| l.contains(call))
            .or_else(|| self.text.lines().position(|l| l.contains("fn define")))
            .map_or(1, |p| p + 1)
    }

    /// A finding on byte `offset` of statement `idx`, with the snippet it points at.
    pub(super) fn finding(
        &self,
        idx: usize,
        offset: usize,
        rule: &str,
        message: String,
        help: String,
    ) -> Finding {
        let stmt = &self.statements[idx];
        let snippet: String = stmt[offset.min(stmt.len())..]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(80)
            .collect();
        Finding {
            file: self.file.to_owned(),
            line: self.line_of(idx, offset),
            rule: rule.to_owned(),
            message: format!(
                "{message} [{} {}, statement {}: `{snippet}`]",
                self.m.id(),
                self.dir.as_str(),
                idx + 1
            ),
            help,
            migration: self.m.id().to_owned(),
            direction: match self.dir {
                Direction::Up => "up",
                Direction::Down => "down",
            },
        }
    }
}
