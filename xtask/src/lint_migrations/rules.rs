//! Our own rules, beside squawk's: statements refused inside a transaction, unbounded DML on
//! a schema migration, transaction control (read with a small tokenizer of our own).

use super::*;

/// A token of a statement: upper-cased word or one punctuation character, with its byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Punct(char),
    /// A dollar-quoted body: its text and the offset where the text starts.
    Body(String, usize),
}

/// Splits SQL into tokens, skipping comments, string literals and quoted identifiers.
fn tokens(sql: &str) -> Vec<(usize, Tok)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
            i = end;
        } else if c == b'\'' || c == b'"' {
            let start = i;
            i += 1;
            while i < b.len() {
                if b[i] == c {
                    if b.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            if c == b'"' {
                out.push((start, Tok::Word(String::from("\"quoted\""))));
            }
        } else if c == b'$' {
            // $tag$ ... $tag$
            let tag_end = sql[i + 1..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .map(|p| i + 1 + p);
            match tag_end {
                Some(te) if b[te] == b'$' => {
                    let tag = &sql[i..=te];
                    let body_start = te + 1;
                    let body_end = sql[body_start..]
                        .find(tag)
                        .map_or(b.len(), |p| body_start + p);
                    out.push((
                        i,
                        Tok::Body(sql[body_start..body_end].to_owned(), body_start),
                    ));
                    i = (body_end + tag.len()).min(b.len());
                }
                _ => i += 1,
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            out.push((start, Tok::Word(sql[start..i].to_ascii_uppercase())));
        } else {
            out.push((i, Tok::Punct(c as char)));
            i += 1;
        }
    }
    out
}

fn word(t: Option<&(usize, Tok)>) -> Option<&str> {
    match t {
        Some((_, Tok::Word(w))) => Some(w.as_str()),
        _ => None,
    }
}

/// Why PostgreSQL would refuse this statement inside a transaction block, with the offending offset.
pub(super) fn refused_in_transaction(stmt: &str) -> Option<(usize, String)> {
    let toks = tokens(stmt);
    let w = |i: usize| word(toks.get(i));
    let first = w(0)?;
    if matches!(first, "CREATE" | "DROP" | "REINDEX" | "ALTER")
        && let Some((pos, _)) = toks
            .iter()
            .find(|(_, t)| *t == Tok::Word("CONCURRENTLY".into()))
    {
        return Some((
            *pos,
            format!("{first} ... CONCURRENTLY cannot run inside a transaction block"),
        ));
    }
    let two = (first, w(1).unwrap_or(""));
    let refused = match two {
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
            toks[0].0,
            format!("{what} cannot run inside a transaction block"),
        ));
    }
    if first == "DO" {
        for (_, t) in &toks {
            if let Tok::Body(body, start) = t
                && let Some((p, t)) = tokens(body)
                    .into_iter()
                    .find(|(_, t)| matches!(t, Tok::Word(w) if w == "COMMIT" || w == "ROLLBACK"))
            {
                let Tok::Word(kw) = t else { continue };
                return Some((
                    start + p,
                    format!("{kw} inside a DO block fails inside a transaction block"),
                ));
            }
        }
    }
    None
}

/// Offsets of UPDATE/DELETE statements without WHERE (top level, or inside DO bodies).
pub(super) fn unbounded_dml(stmt: &str, base: usize, out: &mut Vec<(usize, String)>) {
    let toks = tokens(stmt);
    for (i, (pos, t)) in toks.iter().enumerate() {
        if let Tok::Body(body, start) = t {
            unbounded_dml(body, base + start, out);
            continue;
        }
        let Tok::Word(kw) = t else { continue };
        if kw != "UPDATE" && kw != "DELETE" {
            continue;
        }
        let starts_statement = match i.checked_sub(1).map(|p| &toks[p].1) {
            None => true,
            Some(Tok::Punct(';' | ')')) => true,
            // a data-modifying CTE: `WITH x AS (DELETE FROM t RETURNING *) ...`
            Some(Tok::Punct('(')) => word(i.checked_sub(2).and_then(|p| toks.get(p))) == Some("AS"),
            Some(Tok::Word(w)) => matches!(w.as_str(), "BEGIN" | "LOOP" | "THEN" | "ELSE"),
            _ => false,
        };
        if !starts_statement {
            continue;
        }
        let mut depth = 0i32;
        let mut has_where = false;
        for (_, t) in &toks[i + 1..] {
            match t {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') => {
                    depth -= 1;
                    // the end of a CTE the statement sits in
                    if depth < 0 {
                        break;
                    }
                }
                Tok::Punct(';') if depth == 0 => break,
                Tok::Word(w) if w == "WHERE" && depth == 0 => {
                    has_where = true;
                    break;
                }
                _ => {}
            }
        }
        if !has_where {
            out.push((base + pos, kw.clone()));
        }
    }
}

/// True when the migration changes the schema (some upgrade statement is DDL).
fn is_schema_migration(m: &Migration) -> bool {
    m.up_statements().iter().any(|s| {
        matches!(
            word(tokens(s).first()),
            Some("CREATE" | "ALTER" | "DROP" | "COMMENT" | "GRANT" | "REVOKE")
        )
    })
}

/// Our own rules, on one direction of one migration.
pub(super) fn own_findings(ctx: &Ctx<'_>, _set: &[Migration]) -> Vec<Finding> {
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
