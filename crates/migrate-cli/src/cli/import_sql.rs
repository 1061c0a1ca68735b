//! `import-alembic-sql FILE`: Alembic's offline upgrade SQL ([`crate::alembic_sql`]) written
//! into the project's directory, one linked migration per revision: `ID.up.sql` in a `.sql`
//! directory, `ID.rs` in a compiled set (its build script registers every `.rs` file). Nothing is
//! written unless every file can be, and the set they make with the directory's migrations is
//! valid.

use std::io::Write;
use std::path::Path;

use notify_db_migrate::MigrationSet;

use super::error::{CliError, io};
use super::files::write_new;
use super::project::Project;
use crate::FileKind;
use crate::alembic_sql;

/// Imports `file` into `project`'s directory; prints one line per file written.
pub(super) fn run(file: &Path, project: &Project, out: &mut dyn Write) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file).map_err(io(file))?;
    let source = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let revisions = alembic_sql::parse(&text, &file.display().to_string())?;
    let (Some(first), Some(last)) = (revisions.first(), revisions.last()) else {
        return Ok(());
    };
    // The range must continue the directory's history where it ends.
    let head = project.set.head();
    if head != first.parent.as_deref() {
        return Err(CliError::Refused(format!(
            "{}: the range starts at {} (`-- Running upgrade` at line {}), but the migrations in \
             {} end at {}: render the range from the directory's head (`alembic upgrade \
             --sql {}:{}`), or import into the directory that holds {}",
            file.display(),
            first.parent.as_deref().unwrap_or("base"),
            first.line,
            project.dir.display(),
            head.unwrap_or("base (no migrations)"),
            head.unwrap_or("base"),
            last.id,
            first.parent.as_deref().unwrap_or("base"),
        )));
    }
    let mut files = Vec::with_capacity(revisions.len());
    for r in &revisions {
        let (path, text) = match project.kind {
            FileKind::Sql => (
                project.dir.join(format!("{}.up.sql", r.id)),
                r.sql_file(&source),
            ),
            FileKind::Rust => (
                project.dir.join(format!("{}.rs", r.id)),
                r.rust_file(&source),
            ),
        };
        if path.exists() {
            return Err(CliError::Refused(format!(
                "{} already exists: revision {} was imported before (nothing was written)",
                path.display(),
                r.id
            )));
        }
        files.push((path, text));
    }
    let mut all = project.set.migrations().to_vec();
    all.extend(revisions.iter().map(alembic_sql::Revision::migration));
    MigrationSet::new(all).map_err(notify_db_migrate::Error::from)?;
    // All or nothing: a half-imported range would leave a head the file does not end at.
    write_new(&files)?;
    for ((path, _), r) in files.iter().zip(&revisions) {
        writeln!(
            out,
            "wrote {}{}",
            path.display(),
            if r.transactional {
                ""
            } else {
                " (no-transaction)"
            }
        )
        .map_err(io(Path::new("<output>")))?;
    }
    writeln!(
        out,
        "imported {} revision{}: {} -> {} ({})",
        revisions.len(),
        if revisions.len() == 1 { "" } else { "s" },
        first.parent.as_deref().unwrap_or("base"),
        last.id,
        match project.kind {
            FileKind::Sql => "no down files: write them, or the migrations cannot be downgraded",
            FileKind::Rust =>
                "no downs: add `.down(...)` to each, or the migrations cannot be downgraded; \
                 rebuild to compile them in",
        }
    )
    .map_err(io(Path::new("<output>")))?;
    Ok(())
}
