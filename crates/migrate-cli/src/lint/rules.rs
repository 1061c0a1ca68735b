//! Our own rules, beside squawk's: statements refused inside a transaction, unbounded DML on
//! a schema migration, transaction control (read with the crate's SQL lexer).

use notify_db_migrate::{Migration, transaction_control};

use super::finding::{Ctx, Finding};
use notify_db_migrate::lexer::{self, Kind, Token};

/// The tokens of a statement, without comments.
fn tokens(sql: &str) -> Vec<Token<'_>> {
    lexer::code_tokens(sql).collect()
}

/// The upper-cased word at `i`, if the token there is a word.
fn word(toks: &[Token<'_>], i: usize) -> Option<String> {
    toks.get(i)
        .filter(|t| t.kind == Kind::Word)
        .map(|t| t.text.to_ascii_uppercase())
}

/// Why PostgreSQL would refuse this statement inside a transaction block, with the offending offset.
pub(super) fn refused_in_transaction(stmt: &str) -> Option<(usize, String)> {
    let toks = tokens(stmt);
    let first = word(&toks, 0)?;
    if matches!(first.as_str(), "CREATE" | "DROP" | "REINDEX" | "ALTER")
        && let Some(t) = toks.iter().find(|t| t.is_keyword("CONCURRENTLY"))
    {
        return Some((
            t.start,
            format!("{first} ... CONCURRENTLY cannot run inside a transaction block"),
        ));
    }
    let second = word(&toks, 1).unwrap_or_default();
    let refused = match (first.as_str(), second.as_str()) {
        ("VACUUM", _) => Some("VACUUM"),
        ("CREATE", "DATABASE") | ("DROP", "DATABASE") => Some("CREATE/DROP DATABASE"),
        ("CREATE", "TABLESPACE") | ("DROP", "TABLESPACE") => Some("CREATE/DROP TABLESPACE"),
        ("ALTER", "SYSTEM") => Some("ALTER SYSTEM"),
        ("CREATE", "SUBSCRIPTION") | ("DROP", "SUBSCRIPTION") => Some("CREATE/DROP SUBSCRIPTION"),
        ("REINDEX", "DATABASE") | ("REINDEX", "SYSTEM") => Some("REINDEX DATABASE/SYSTEM"),
        ("CLUSTER", "") => Some("CLUSTER without a table"),
        _ => None,
    };
    if let Some(what) = refused {
        return Some((
            toks[0].start,
            format!("{what} cannot run inside a transaction block"),
        ));
    }
    if first == "DO" {
        for (start, body) in toks.iter().filter_map(Token::dollar_body) {
            if let Some(t) = lexer::code_tokens(body)
                .find(|t| t.is_keyword("COMMIT") || t.is_keyword("ROLLBACK"))
            {
                return Some((
                    start + t.start,
                    format!(
                        "{} inside a DO block fails inside a transaction block",
                        t.text.to_ascii_uppercase()
                    ),
                ));
            }
        }
    }
    None
}

/// Offsets of UPDATE/DELETE statements without WHERE (top level, or inside DO bodies).
pub(super) fn unbounded_dml(stmt: &str, base: usize, out: &mut Vec<(usize, String)>) {
    let toks = tokens(stmt);
    for (i, t) in toks.iter().enumerate() {
        if let Some((start, body)) = t.dollar_body() {
            unbounded_dml(body, base + start, out);
            continue;
        }
        if !(t.is_keyword("UPDATE") || t.is_keyword("DELETE")) {
            continue;
        }
        let starts_statement = match i.checked_sub(1).map(|p| &toks[p]) {
            None => true,
            Some(p) if p.is_punct(';') || p.is_punct(')') => true,
            // a data-modifying CTE: `WITH x AS (DELETE FROM t RETURNING *) ...`
            Some(p) if p.is_punct('(') => {
                i.checked_sub(2).is_some_and(|q| toks[q].is_keyword("AS"))
            }
            Some(p) => ["BEGIN", "LOOP", "THEN", "ELSE"]
                .iter()
                .any(|k| p.is_keyword(k)),
        };
        if !starts_statement {
            continue;
        }
        let mut depth = 0i32;
        let mut has_where = false;
        for t in &toks[i + 1..] {
            if t.is_punct('(') {
                depth += 1;
            } else if t.is_punct(')') {
                depth -= 1;
                // the end of a CTE the statement sits in
                if depth < 0 {
                    break;
                }
            } else if depth == 0 && t.is_punct(';') {
                break;
            } else if depth == 0 && t.is_keyword("WHERE") {
                has_where = true;
                break;
            }
        }
        if !has_where {
            out.push((base + t.start, t.text.to_ascii_uppercase()));
        }
    }
}

/// True when the migration changes the schema (some upgrade statement is DDL).
fn is_schema_migration(m: &Migration) -> bool {
    m.up_statements().iter().any(|s| {
        lexer::code_tokens(s).next().is_some_and(|t| {
            ["CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE"]
                .iter()
                .any(|k| t.is_keyword(k))
        })
    })
}

/// Our own rules, on one direction of one migration.
pub(super) fn own_findings(ctx: &Ctx<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (idx, stmt) in ctx.statements.iter().enumerate() {
        if ctx.m.is_transactional()
            && let Some(command) = transaction_control(stmt)
        {
            out.push(ctx.finding(
                idx,
                0,
                "transaction-control-in-migration",
                format!(
                    "{command} in a migration the runner wraps in ONE transaction with its version \
                     update: part of it would commit without alembic_version moving (the runner \
                     refuses to load it)"
                ),
                "remove the statement (the runner commits the migration), or mark the migration \
                 non-transactional (`.no_transaction()`, or `-- notify-db: no-transaction` as the \
                 first line of a .sql file); SAVEPOINT, RELEASE and ROLLBACK TO are allowed"
                    .into(),
            ));
        }
        if ctx.m.is_transactional()
            && let Some((offset, why)) = refused_in_transaction(stmt)
        {
            out.push(
                ctx.finding(
                    idx,
                    offset,
                    "statement-refused-in-transaction",
                    format!("{why}, and this migration runs in one"),
                    "mark the migration non-transactional (`.no_transaction()`, or \
                 `-- notify-db: no-transaction` as the first line of a .sql file), \
                 keeping other DDL in a separate migration"
                        .into(),
                ),
            );
        }
        if is_schema_migration(ctx.m) {
            let mut hits = Vec::new();
            unbounded_dml(stmt, 0, &mut hits);
            for (offset, kw) in hits {
                out.push(
                    ctx.finding(
                        idx,
                        offset,
                        "update-or-delete-without-where",
                        format!("{kw} without WHERE in a schema migration touches every row"),
                        "add a WHERE clause, or move the data change into a batched data \
                     migration of its own"
                            .into(),
                    ),
                );
            }
        }
    }
    out
}
