//! Squawk's side of the linter: its findings on a migration's rendered script, for the
//! PostgreSQL major of `PgMajor`.

use squawk_linter::{Linter, Rule};

use super::error::LintError;
use super::finding::{Ctx, Finding};
use notify_db_migrate::Direction;

/// Squawk's findings on the rendered script, kept only where they point into the migration's own
/// statements (not the engine's version/journal bookkeeping).
pub(super) fn squawk_findings(ctx: &Ctx<'_>, rendered: &str) -> Result<Vec<Finding>, LintError> {
    // Where each statement of the migration sits in the rendered script.
    let marker = format!("\n-- {} (", ctx.m.id());
    let mut cursor = rendered.find(&marker).unwrap_or(0);
    let mut spans = Vec::new();
    for (i, s) in ctx.statements.iter().enumerate() {
        if let Some(p) = rendered[cursor..].find(s.as_str()) {
            let start = cursor + p;
            spans.push((start, start + s.len(), i));
            cursor = start + s.len();
        }
    }
    let parse = squawk_syntax::SourceFile::parse(rendered);
    let mut linter = Linter::with_rules(
        &[],
        &[
            Rule::RequireStatementTimeout,
            Rule::RequireLockTimeout,
            Rule::RequireTimeoutSettings,
            Rule::BanConcurrentIndexCreationInTransaction,
        ],
    );
    linter.settings.pg_version = ctx
        .pg
        .0
        .to_string()
        .parse()
        .map_err(|e| LintError::SquawkVersion(format!("{e:?}")))?;
    linter.settings.assume_in_transaction = false;
    let mut out = Vec::new();
    for e in parse.errors() {
        let at: usize = e.range().start().into();
        // A parse error may point just past the statement (where more was expected).
        if let Some(&(start, _, idx)) = spans.iter().find(|(s, e, _)| *s <= at && at <= *e) {
            out.push(ctx.finding(
                idx,
                at - start,
                "syntax-error",
                format!("squawk cannot parse this: {}", e.message()),
                "fix the SQL (the rules cannot check what they cannot parse)".into(),
            ));
        }
    }
    for v in linter.lint(&parse, rendered) {
        let at: usize = v.text_range.start().into();
        let Some(&(start, _, idx)) = spans.iter().find(|(s, e, _)| *s <= at && at < *e) else {
            continue;
        };
        let rule = v.code.to_string();
        if ctx.dir == Direction::Down && undoes_its_up(&rule) {
            continue;
        }
        let help = v.help.clone().unwrap_or_else(|| {
            format!("see https://squawkhq.com/docs/{rule}, or add `lint-allow: {rule}: <reason>`")
        });
        out.push(ctx.finding(idx, at - start, &rule, v.message.clone(), help));
    }
    Ok(out)
}

/// Rules about breaking clients by dropping or renaming objects: a down that drops or renames back
/// what its own up added breaks no client older than the migration, so they are not applied to
/// downgrades (lock-related rules are).
fn undoes_its_up(rule: &str) -> bool {
    (rule.starts_with("ban-drop-") && rule != "ban-drop-database") || rule.starts_with("renaming-")
}
