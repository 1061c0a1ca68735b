//! `test-downgrade`: the stairway test ([`crate::stairway`]) on an empty database.

use std::io::Write;

use notify_db_config::DatabaseUri;

use super::error::CliError;
use super::project::Project;
use crate::stairway::{self, Mode};

/// Runs the stairway test of the project's set on the empty database `uri`.
pub(super) async fn test_downgrade(
    project: &Project,
    uri: &DatabaseUri,
    to: Option<&str>,
    since: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mode = Mode::from_flags(to, since, &project.dir);
    stairway::run(uri, project.set.clone(), &mode, out).await?;
    Ok(())
}
