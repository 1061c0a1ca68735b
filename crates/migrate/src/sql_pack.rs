//! The `.sql` directory's pack: the texts of its `.up.sql` files in one file ([`PACK_FILE`]),
//! each keyed on the file's metadata (inode, size, modification and change times in
//! nanoseconds), as Python keeps `.pyc` files beside Alembic's migrations. A run then reads one
//! file and stats the others instead of opening and reading a thousand small files (measured:
//! `cargo xtask bench migrate`, the `.sql` directory no-op).
//!
//! Nothing is trusted that the metadata does not vouch for: a file whose key differs is read
//! again, so its text, options and checksum are always the file's own. Editing a file changes
//! its change time (which no tool can set back), and an editor that replaces the file changes
//! its inode. A file changed within the filesystem's timestamp granularity of being packed could
//! keep its key, so only files unchanged for [`SETTLED`] are packed (git's "racily clean"
//! entries). The pack is rewritten only when a settled file was read from disk; a directory that
//! cannot be written simply has none (`NOTIFY_DB_SQL_PACK=0` turns it off).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The pack's file name, in the migrations directory (ignored by the loader: not `*.up.sql`).
pub const PACK_FILE: &str = ".notify-db-sql-pack";

/// Set to `0` to neither read nor write the pack.
pub const PACK_ENV: &str = "NOTIFY_DB_SQL_PACK";

/// The first line of a pack: a format change makes old packs unreadable, hence unused.
const MAGIC: &str = "notify-db-sql-pack 1\n";

/// Only files whose times are this far in the past are packed.
const SETTLED: Duration = Duration::from_secs(2);

/// What identifies one version of a file: inode, size, mtime and ctime (seconds, nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key([i64; 6]);

impl Key {
    /// The file size this key says.
    pub(crate) fn size(&self) -> i64 {
        self.0[1]
    }

    /// The key of `path`, with whether the file is settled; `None` where there is no such key.
    pub(crate) fn of(path: &Path, now: SystemTime) -> Option<(Key, bool)> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let m = std::fs::metadata(path).ok()?;
            let key = Key([
                i64::try_from(m.ino()).ok()?,
                i64::try_from(m.size()).ok()?,
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ]);
            let newest = m.mtime().max(m.ctime());
            let limit = now
                .checked_sub(SETTLED)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok())
                .unwrap_or(0);
            // Seconds only, so "settled" is at least SETTLED minus one second: enough for any
            // filesystem with sub-second times; coarser ones never get a key that old and equal.
            Some((key, newest < limit))
        }
        #[cfg(not(unix))]
        {
            let _ = (path, now);
            None
        }
    }
}

/// The pack of one directory, as read at the start of a load.
#[derive(Debug, Default)]
pub(crate) struct Pack {
    entries: HashMap<String, (Key, String)>,
    enabled: bool,
}

/// A file read from disk that may go into the next pack.
pub(crate) type Packable = (String, Key, String);

impl Pack {
    /// Reads `dir`'s pack; a missing, unreadable or foreign one is an empty pack.
    pub(crate) fn read(dir: &Path) -> Pack {
        let enabled = std::env::var_os(PACK_ENV).is_none_or(|v| v != "0");
        let entries = if enabled {
            std::fs::read_to_string(dir.join(PACK_FILE))
                .ok()
                .and_then(|text| parse(&text))
                .unwrap_or_default()
        } else {
            HashMap::new()
        };
        Pack { entries, enabled }
    }

    /// The packed text of `stem` when its key is `key`.
    pub(crate) fn get(&self, stem: &str, key: Key) -> Option<&str> {
        match self.entries.get(stem) {
            Some((k, text)) if *k == key => Some(text),
            _ => None,
        }
    }

    /// Number of packed files.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the pack is read and written at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Writes the pack of `dir` anew: the entries still valid (`kept`, by stem) and the files
    /// just read. Best effort: a failure only means the next run reads the files.
    pub(crate) fn rewrite(&self, dir: &Path, kept: &[(&str, Key)], read: Vec<Packable>) {
        let mut text = String::from(MAGIC);
        let mut push = |stem: &str, key: Key, body: &str| {
            let k = key.0;
            text.push_str(&format!(
                "{stem} {} {} {} {} {} {} {}\n{body}\n",
                k[0],
                k[1],
                k[2],
                k[3],
                k[4],
                k[5],
                body.len()
            ));
        };
        for (stem, key) in kept {
            if let Some((_, body)) = self.entries.get(*stem) {
                push(stem, *key, body);
            }
        }
        for (stem, key, body) in &read {
            push(stem, *key, body);
        }
        let tmp = dir.join(format!("{PACK_FILE}.{}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, text).and_then(|()| {
            // A rename, so a concurrent reader sees the old pack or the new one, never half.
            std::fs::rename(&tmp, dir.join(PACK_FILE))
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(dir = %dir.display(), error = %e, "the .sql pack was not written");
        }
    }
}

/// The entries of a pack's text; `None` when it is not one.
fn parse(text: &str) -> Option<HashMap<String, (Key, String)>> {
    let mut rest = text.strip_prefix(MAGIC)?;
    let mut entries = HashMap::new();
    while !rest.is_empty() {
        let (line, after) = rest.split_once('\n')?;
        let mut fields = line.split(' ');
        let stem = fields.next()?;
        let mut key = [0i64; 6];
        for k in &mut key {
            *k = fields.next()?.parse().ok()?;
        }
        let len: usize = fields.next()?.parse().ok()?;
        let body = after.get(..len)?;
        rest = after.get(len..)?.strip_prefix('\n')?;
        entries.insert(stem.to_owned(), (Key(key), body.to_owned()));
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_reads_back_what_was_written_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("notify-db-pack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = Key([1, 2, 3, 4, 5, 6]);
        let body = "-- notify-db: no-transaction\nCREATE INDEX x ON t (a);\n\n";
        Pack::default().rewrite(&dir, &[], vec![("0001_a".into(), key, body.into())]);
        let pack = Pack::read(&dir);
        assert_eq!(pack.get("0001_a", key), Some(body));
        assert_eq!(pack.get("0001_a", Key([1, 2, 3, 4, 5, 7])), None);
        assert_eq!(pack.get("0002_b", key), None);
        std::fs::write(
            dir.join(PACK_FILE),
            "notify-db-sql-pack 1\n0001_a 1 2 3 4 5 6 900\nx",
        )
        .expect("write");
        assert_eq!(Pack::read(&dir).len(), 0, "a truncated pack is not used");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
