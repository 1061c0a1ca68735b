//! `import-alembic-sql FILE`: Alembic's offline upgrade SQL ([`crate::alembic_sql`]) written
//! into the project's `.sql` migration directory, one linked migration per revision. Nothing is
//! written unless every file can be, and the set they make with the directory's migrations is
//! valid.

use std::io::Write;
use std::path::Path;

use notify_db_migrate::MigrationSet;

use super::{CliError, FileKind, Project, io};
use crate::alembic_sql;

/// Imports `file` into `project`'s directory; prints one line per file written.
pub(super) fn run(file: &Path, project: &Project, out: &mut dyn Write) -> Result<(), CliError> {
    if project.kind != FileKind::Sql {
        return Err(CliError::Refused(format!(
            "import-alembic-sql writes .sql migrations, but this project's migrations are .rs \
             files ({}): import into a directory of .sql migrations with `notify-db-migrate \
             --source DIR import-alembic-sql {}`",
            project.dir.display(),
            file.display()
        )));
    }
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
        let path = project.dir.join(format!("{}.up.sql", r.id));
        if path.exists() {
            return Err(CliError::Refused(format!(
                "{} already exists: revision {} was imported before (nothing was written)",
                path.display(),
                r.id
            )));
        }
        files.push((path, r.sql_file(&source)));
    }
    let mut all = project.set.migrations().to_vec();
    all.extend(revisions.iter().map(alembic_sql::Revision::migration));
    MigrationSet::new(all).map_err(notify_db_migrate::Error::from)?;
    for (i, (path, text)) in files.iter().enumerate() {
        if let Err(e) = std::fs::write(path, text) {
            // All or nothing: a half-imported range would leave a head the file does not end at.
            for (written, _) in &files[..=i] {
                let _ = std::fs::remove_file(written);
            }
            return Err(io(path)(e));
        }
    }
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
        "imported {} revision{}: {} -> {} (no down files: write them, or the migrations cannot \
         be downgraded)",
        revisions.len(),
        if revisions.len() == 1 { "" } else { "s" },
        first.parent.as_deref().unwrap_or("base"),
        last.id
    )
    .map_err(io(Path::new("<output>")))?;
    Ok(())
}
