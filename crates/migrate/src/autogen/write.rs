//! Renders a [`Plan`]'s steps as migration files: `NNNN_slug.rs` (a `define` function) or
//! `NNNN_slug.up.sql` + `NNNN_slug.down.sql`.

use std::path::{Path, PathBuf};

use super::{Plan, Step, step_id};

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

/// A Rust string literal for `sql`: a raw string with enough `#`s.
fn raw(sql: &str) -> String {
    let mut hashes = String::from("#");
    while sql.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}\"{sql}\"{hashes}")
}

/// The files for `plan`, numbered from `first_number` in `dir`. A plan with only unresolved
/// differences gets one file holding the commented block and no statements.
pub fn render_files(
    plan: &Plan,
    dir: &Path,
    sql_files: bool,
    first_number: u32,
    slug: &str,
    message: &str,
) -> Vec<GeneratedFile> {
    let placeholder = Step {
        suffix: "",
        summary: "Nothing written: see the differences listed in this comment.",
        no_transaction: false,
        up: vec!["-- write the upgrade SQL here".into()],
        down: vec!["-- write the downgrade SQL here".into()],
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
                text: format!("{option}{}\n\n{}\n", comments(&head), body(&step.up)),
            });
            files.push(GeneratedFile {
                path: dir.join(format!("{id}.down.sql")),
                text: format!("{option}-- {message}\n\n{}\n", body(&step.down)),
            });
        } else {
            let mut text = String::new();
            let mut doc = head.iter();
            if let Some(first) = doc.next() {
                text.push_str(&format!("//! {first}\n"));
            }
            let mut allows = Vec::new();
            for l in doc {
                if l.starts_with("lint-allow:") {
                    allows.push(format!("// {}\n", l.trim_end()));
                } else {
                    text.push_str(format!("//! {l}").trim_end());
                    text.push('\n');
                }
            }
            text.push_str("\nuse notify_db_migrate::Migration;\n\n");
            text.push_str(&format!(
                "/// {} Raw SQL, as the catalog spells it (the tests compare schemas built from it).\n",
                step.summary
            ));
            for a in allows {
                text.push_str(&a);
            }
            text.push_str("pub fn define(m: Migration) -> Migration {\n    m");
            // rustfmt's chain shape: the first call on `m`'s line, one call per line after it.
            let calls = step
                .no_transaction
                .then(|| ".no_transaction()".to_owned())
                .into_iter()
                .chain(step.up.iter().map(|s| format!(".up({})", raw(s))))
                .chain(step.down.iter().map(|s| format!(".down({})", raw(s))));
            for (i, call) in calls.enumerate() {
                if i > 0 {
                    text.push_str("\n        ");
                }
                text.push_str(&call);
            }
            text.push_str("\n}\n");
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

    #[test]
    fn raw_strings_hold_quotes_and_hashes() {
        assert_eq!(raw("SELECT 1"), "r#\"SELECT 1\"#");
        assert_eq!(raw("a \"# b"), "r##\"a \"# b\"##");
    }
}
