//! Renders a [`Plan`]'s steps as migration files: `NNNN_slug.rs` (a `define` function) or
//! `NNNN_slug.up.sql` + `NNNN_slug.down.sql`.

use std::path::{Path, PathBuf};

use super::step::{Plan, Step, step_id};
use crate::rust_file::{RustMigration, raw_literal};
use notify_db_migrate::Direction;

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Where it goes.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// The comment lines every generated file starts with: the message, what the step does, the
/// `lint-allow` exceptions left for the author, and (first file only) the unresolved differences.
fn header(plan: &Plan, index: usize, step: Option<&Step>, message: &str) -> Vec<String> {
    let mut lines = vec![format!("{message} (written by `revision --autogenerate`)")];
    if let Some(step) = step {
        lines.push(step.summary.to_owned());
        for (rule, reason) in &step.allows {
            // No reason given: the linter stops the migration until a person writes one.
            lines.push(format!("lint-allow: {rule}: {}", reason.unwrap_or("")));
        }
    }
    if index == 0 && !plan.unresolved.is_empty() {
        lines.push(String::new());
        lines.push("NOT WRITTEN: autogenerate does not guess renames or type changes.".into());
        lines.push("Decide what these are and write the SQL yourself:".into());
        for u in &plan.unresolved {
            lines.push(format!("  {u}"));
        }
    }
    lines
}

/// The `.rs` migration of `step`: barrel calls for the statements barrel writes exactly, raw
/// SQL for the others.
fn rust_file(step: &Step, parent: Option<&str>, head: &[String]) -> String {
    let barrel: Vec<(Direction, usize, &super::barrel::BarrelChange)> = [
        (Direction::Up, step.up.len()),
        (Direction::Down, step.down.len()),
    ]
    .into_iter()
    .flat_map(|(d, n)| (0..n).filter_map(move |i| step.barrel(d, i).map(|b| (d, i, b))))
    .collect();
    let uses = if barrel.iter().any(|(_, _, b)| b.uses_types()) {
        vec!["use barrel::backend::Pg;", "use barrel::types;"]
    } else if !barrel.is_empty() {
        vec!["use barrel::backend::Pg;"]
    } else {
        vec![]
    };
    let method = |d: Direction| if d == Direction::Up { "up" } else { "down" };
    let var = |d: Direction, i: usize| format!("{}{i}", method(d));
    let call = |d: Direction, i: usize, sql: &String| match step.barrel(d, i) {
        Some(_) => format!(".{}({}.make::<Pg>())", method(d), var(d, i)),
        None => format!(".{}({})", method(d), raw_literal(sql)),
    };
    let (comments, about): (Vec<&String>, Vec<&String>) =
        head.iter().partition(|l| l.starts_with("lint-allow:"));
    RustMigration {
        about: about.into_iter().cloned().collect(),
        uses: uses.into_iter().map(str::to_owned).collect(),
        doc: format!(
            "{} {}",
            step.summary,
            if barrel.is_empty() {
                "Raw SQL, as the catalog spells it (the tests compare schemas built from it)."
            } else {
                "Barrel where it writes the change exactly; raw SQL, as the catalog spells it, \
                 elsewhere (the tests compare schemas built from both)."
            }
        ),
        comments: comments.into_iter().cloned().collect(),
        body: barrel
            .iter()
            .map(|(d, i, b)| b.rust(&var(*d, *i)))
            .collect(),
        calls: step
            .no_transaction
            .then(|| ".no_transaction()".to_owned())
            .into_iter()
            .chain(parent.map(|p| format!(".parent({p:?})")))
            .chain(
                step.up
                    .iter()
                    .enumerate()
                    .map(|(i, s)| call(Direction::Up, i, s)),
            )
            .chain(
                step.down
                    .iter()
                    .enumerate()
                    .map(|(i, s)| call(Direction::Down, i, s)),
            )
            .collect(),
    }
    .text()
}

/// The files for `plan`, numbered from `first_number` in `dir`; the first declares `parent` when
/// given (the others follow it by number). A plan with only unresolved differences gets one file
/// holding the commented block and no statements.
pub fn render_files(
    plan: &Plan,
    dir: &Path,
    sql_files: bool,
    first_number: u32,
    parent: Option<&str>,
    slug: &str,
    message: &str,
) -> Vec<GeneratedFile> {
    let placeholder = Step {
        suffix: "",
        summary: "Nothing written: see the differences listed in this comment.",
        no_transaction: false,
        up: vec!["-- write the upgrade SQL here".into()],
        down: vec!["-- write the downgrade SQL here".into()],
        up_barrel: vec![],
        down_barrel: vec![],
        allows: vec![],
    };
    let steps: Vec<&Step> = if plan.steps.is_empty() {
        vec![&placeholder]
    } else {
        plan.steps.iter().collect()
    };
    let mut files = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        let id = step_id(first_number, i, slug, step);
        let head = header(plan, i, Some(step), message);
        if sql_files {
            let comments = |extra: &[String]| {
                extra
                    .iter()
                    .map(|l| format!("-- {l}").trim_end().to_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let option = if step.no_transaction {
                "-- notify-db: no-transaction\n"
            } else {
                ""
            };
            let parent_line = match (i, parent) {
                (0, Some(p)) => format!("-- notify-db: parent={p}\n"),
                _ => String::new(),
            };
            let body = |stmts: &[String]| {
                stmts
                    .iter()
                    .map(|s| {
                        if s.starts_with("--") {
                            s.clone()
                        } else {
                            format!("{s};")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n")
            };
            files.push(GeneratedFile {
                path: dir.join(format!("{id}.up.sql")),
                text: format!(
                    "{option}{parent_line}{}\n\n{}\n",
                    comments(&head),
                    body(&step.up)
                ),
            });
            files.push(GeneratedFile {
                path: dir.join(format!("{id}.down.sql")),
                text: format!("{option}-- {message}\n\n{}\n", body(&step.down)),
            });
        } else {
            let text = rust_file(step, parent.filter(|_| i == 0), &head);
            files.push(GeneratedFile {
                path: dir.join(format!("{id}.rs")),
                text,
            });
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(no_transaction: bool, table: &str) -> Step {
        Step {
            suffix: if no_transaction { "indexes" } else { "" },
            summary: "test step",
            no_transaction,
            up: vec![format!("CREATE TABLE {table} (id bigint)")],
            down: vec![format!("DROP TABLE {table}")],
            up_barrel: vec![],
            down_barrel: vec![],
            allows: vec![],
        }
    }

    #[test]
    fn in_an_imported_history_the_first_file_names_the_head_as_its_parent() {
        let plan = Plan {
            changes: vec!["+ table a".into()],
            steps: vec![step(false, "a"), step(true, "b")],
            unresolved: vec![],
            not_compared: vec![],
        };
        let dir =
            std::env::temp_dir().join(format!("notify-db-autogen-parent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // An Alembic history whose head has no number: without the link, 0001 would not follow it.
        std::fs::write(
            dir.join("db6d9d9f06bc.up.sql"),
            "-- notify-db: baseline\nCREATE TABLE base (id bigint)",
        )
        .expect("baseline file");
        for f in render_files(&plan, &dir, true, 1, Some("db6d9d9f06bc"), "add_a", "add a") {
            std::fs::write(&f.path, &f.text).expect("write");
        }
        let set = notify_db_migrate::MigrationSet::from_dir(&dir).expect("the written files load");
        let ids: Vec<&str> = set.migrations().iter().map(|m| m.id()).collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(ids[0], "db6d9d9f06bc");
        assert_eq!(set.migrations()[1].declared_parent(), Some("db6d9d9f06bc"));
        assert_eq!(set.migrations()[2].declared_parent(), None);
        let rs = render_files(
            &plan,
            &dir,
            false,
            1,
            Some("db6d9d9f06bc"),
            "add_a",
            "add a",
        );
        assert!(
            rs[0].text.contains(".parent(\"db6d9d9f06bc\")"),
            "{}",
            rs[0].text
        );
        assert!(!rs[1].text.contains(".parent("), "{}", rs[1].text);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
