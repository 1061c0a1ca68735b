//! The migration files the commands write: their names ([`slug`]) and the one way they are
//! written ([`write_new`]: never over an existing file, all or nothing).

use std::path::PathBuf;

use super::error::{CliError, io};

/// A file-name slug from a message: lower case, `_` between words, at most 27 characters.
pub fn slug(message: &str) -> String {
    let mut s = String::new();
    for c in message.trim().chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('_') && !s.is_empty() {
            s.push('_');
        }
    }
    let mut s: String = s.chars().take(notify_db_migrate::MAX_ID_LEN - 5).collect();
    while s.ends_with('_') {
        s.pop();
    }
    s
}

/// The slug of `message`, refused when it has no letter or digit.
pub fn checked_slug(message: &str) -> Result<String, CliError> {
    let slug = slug(message);
    if slug.is_empty() {
        return Err(CliError::Refused(
            "revision needs a message with at least one letter or digit: revision -m \"add foo\""
                .into(),
        ));
    }
    Ok(slug)
}

/// Writes `files` (path, text), creating their folders: refused, writing nothing, when one of
/// them exists; all or nothing, so a failed write removes the ones written before it (a half
/// written migration would load as a different migration).
pub(crate) fn write_new(files: &[(PathBuf, String)]) -> Result<(), CliError> {
    if let Some((path, _)) = files.iter().find(|(path, _)| path.exists()) {
        return Err(CliError::Refused(format!(
            "{} already exists",
            path.display()
        )));
    }
    for (i, (path, text)) in files.iter().enumerate() {
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, text));
        if let Err(e) = written {
            for (done, _) in &files[..i] {
                let _ = std::fs::remove_file(done);
            }
            return Err(io(path)(e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_new;

    #[test]
    fn new_files_are_all_written_or_none_is() {
        let dir = std::env::temp_dir().join(format!("notify-db-write-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        // The second file's folder is a file: its write fails after the first was written.
        std::fs::write(dir.join("blocker"), "").expect("a file in the way");
        let files = [
            (dir.join("a.up.sql"), "SELECT 1".to_owned()),
            (dir.join("blocker/b.up.sql"), "SELECT 2".to_owned()),
        ];
        let err = write_new(&files).expect_err("the second file cannot be written");
        assert!(err.to_string().contains("blocker"), "{err}");
        assert!(
            !dir.join("a.up.sql").exists(),
            "the first file was removed again"
        );

        let files = [
            (dir.join("sub/a.up.sql"), "SELECT 1".to_owned()),
            (dir.join("b.up.sql"), "SELECT 2".to_owned()),
        ];
        write_new(&files).expect("both written, the folder created");
        assert_eq!(
            std::fs::read_to_string(dir.join("sub/a.up.sql")).expect("written"),
            "SELECT 1"
        );
        let again = write_new(&files).expect_err("never over an existing file");
        assert!(again.to_string().contains("already exists"), "{again}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
