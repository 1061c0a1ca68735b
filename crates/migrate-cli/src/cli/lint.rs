//! `lint`: the migration linter ([`crate::lint`]) on the project's migrations.

use std::io::Write;
use std::path::Path;

use super::{CliError, Project, io};
use crate::lint::{self, Format, Source};

/// Arguments of `lint`.
#[derive(Debug, Clone, clap::Args)]
pub struct LintArgs {
    /// CI mode: lint only the migrations whose files were added or changed since this git ref.
    #[arg(long, value_name = "GIT_REF")]
    pub since: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Lints `project`'s migrations, writing the findings to `out`; file names are shown relative
/// to the current directory. Fails with [`lint::LintError::Findings`] when anything is found.
pub(super) fn run(args: &LintArgs, project: &Project, out: &mut dyn Write) -> Result<(), CliError> {
    let source = Source {
        set: project.set.clone(),
        dir: project.dir.clone(),
        kind: project.kind,
    };
    let base = std::env::current_dir().map_err(io(Path::new(".")))?;
    lint::run(&source, args.since.as_deref(), args.format, &base, out)?;
    Ok(())
}
