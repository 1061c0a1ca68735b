//! Reading a directory of `.sql` migrations: `ID.up.sql` (required, may be empty) and
//! `ID.down.sql` (optional; empty is a no-op downgrade), the up texts through the directory's pack (see [`crate::sql_pack`]), a large
//! directory on a few threads.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, SetError};
use crate::migration::Migration;
use crate::sql_pack::{Key, Pack, Packable};

/// Reads `ID.up.sql` files (and, with `downs`, their `.down.sql` files) of `dir`.
pub(crate) fn read_sql_dir(dir: &Path, read_downs: bool) -> Result<Vec<Migration>, Error> {
    let io = |e: std::io::Error| Error::Io {
        path: dir.display().to_string(),
        source: e,
    };
    let mut stems = Vec::new();
    let mut downs = std::collections::HashSet::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry
            .map_err(io)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(stem) = name.strip_suffix(".up.sql") {
            stems.push(stem.to_owned());
        } else if let Some(stem) = name.strip_suffix(".down.sql") {
            downs.insert(stem.to_owned());
        }
    }
    // In order, so that of several bad files the first is reported.
    stems.sort_unstable();
    // An up file may be empty (a revision that changes nothing), but a down file without one
    // is a migration whose up went missing, never a migration of its own.
    let mut orphans: Vec<&String> = downs
        .iter()
        .filter(|d| stems.binary_search(d).is_err())
        .collect();
    orphans.sort_unstable();
    if let Some(id) = orphans.first() {
        return Err(SetError::MissingUp {
            id: (*id).clone(),
            path: dir.join(format!("{id}.down.sql")).display().to_string(),
        }
        .into());
    }
    if !read_downs {
        downs.clear();
    }
    let pack = Pack::read(dir);
    let now = std::time::SystemTime::now();
    // Opening and reading the files is kernel time per file: a large set is read by a few
    // threads (measured: `cargo xtask bench migrate`, the .sql directory no-op). A packed file
    // costs one stat, not worth a thread (measured: the no-op's client CPU, 6.0-6.75 -> 5.7-6.0 ms).
    let files_to_read = stems.len().saturating_sub(pack.len());
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(4)
        .min(files_to_read.div_ceil(FILES_PER_THREAD))
        .max(1);
    let read_part = |part: &[String]| -> Result<Vec<Loaded>, Error> {
        // One buffer for every file of the part: the statements are copied out of it.
        let mut text = String::new();
        part.iter()
            .map(|stem| read_migration(dir, stem, downs.contains(stem), &mut text, &pack, now))
            .collect()
    };
    let loaded = if threads == 1 {
        read_part(&stems)?
    } else {
        std::thread::scope(|scope| {
            let parts: Vec<_> = stems
                .chunks(stems.len().div_ceil(threads))
                .map(|part| scope.spawn(move || read_part(part)))
                .collect();
            let mut loaded = Vec::with_capacity(stems.len());
            for part in parts {
                match part.join() {
                    Ok(read) => loaded.extend(read?),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok::<_, Error>(loaded)
        })?
    };
    let mut kept = Vec::new();
    let mut read = Vec::new();
    let mut migrations = Vec::with_capacity(loaded.len());
    for (stem, l) in stems.iter().zip(loaded) {
        match l.up {
            UpText::Packed(key) => kept.push((stem.as_str(), key)),
            UpText::Read(Some(packable)) => read.push(packable),
            UpText::Read(None) => {}
        }
        migrations.push(l.migration);
    }
    // Rewritten when a file could join it or a packed one is gone.
    if pack.enabled() && (!read.is_empty() || kept.len() < pack.len()) {
        pack.rewrite(dir, &kept, read);
    }
    Ok(migrations)
}

/// Below this many files per thread, reading them on one thread is as fast.
const FILES_PER_THREAD: usize = 128;

/// Where a migration's up text came from.
enum UpText {
    /// The pack, under this key.
    Packed(Key),
    /// The file, with what the next pack may hold of it (a settled file's key and text).
    Read(Option<Packable>),
}

/// A migration read from the directory.
struct Loaded {
    migration: Migration,
    up: UpText,
}

/// Reads `stem`'s `.up.sql` (from the pack when its key matches) and, with `has_down`, its
/// `.down.sql`, through the buffer `text`.
fn read_migration(
    dir: &Path,
    stem: &str,
    has_down: bool,
    text: &mut String,
    pack: &Pack,
    now: std::time::SystemTime,
) -> Result<Loaded, Error> {
    let read = |suffix: &str, text: &mut String| {
        let path = dir.join(format!("{stem}{suffix}"));
        read_into(&path, text).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })
    };
    let key = pack
        .enabled()
        .then(|| Key::of(&dir.join(format!("{stem}.up.sql")), now))
        .flatten();
    let up = match key.and_then(|(k, _)| pack.get(stem, k).map(|t| (k, t))) {
        Some((k, packed)) => {
            text.clear();
            text.push_str(packed);
            UpText::Packed(k)
        }
        None => {
            read(".up.sql", text)?;
            // Packed under the key taken before the read: a change after it changes the key.
            // A stem with a space or a line break would not survive the pack's line format.
            let packable = stem.bytes().all(|b| b.is_ascii_graphic());
            UpText::Read(
                key.filter(|(k, settled)| {
                    packable && *settled && usize::try_from(k.size()) == Ok(text.len())
                })
                .map(|(k, _)| (stem.to_owned(), k, text.clone())),
            )
        }
    };
    let mut m = Migration::new(stem);
    for opt in header_options(text) {
        let bad = || SetError::BadOption {
            id: stem.to_owned(),
            option: opt.clone(),
        };
        if opt == "no-transaction" {
            m = m.no_transaction();
        } else if opt == "baseline" {
            m = m.baseline();
        } else if let Some(p) = opt.strip_prefix("parent=") {
            m = m.parent(p.trim());
        } else if let Some(v) = opt.strip_prefix("lock_timeout=") {
            m = m.lock_timeout(parse_duration(v).ok_or_else(bad)?);
        } else if let Some(v) = opt.strip_prefix("statement_timeout=") {
            m = m.statement_timeout(parse_duration(v).ok_or_else(bad)?);
        } else {
            return Err(bad().into());
        }
    }
    m = m.up(&*text);
    if has_down {
        read(".down.sql", text)?;
        m = m.down(&*text);
    }
    Ok(Loaded { migration: m, up })
}

/// Options from leading `-- notify-db: a, b` comment lines.
pub(crate) fn header_options(sql: &str) -> Vec<String> {
    sql.lines()
        .map(str::trim)
        .take_while(|l| l.starts_with("--") || l.is_empty())
        .filter_map(|l| l.trim_start_matches('-').trim().strip_prefix("notify-db:"))
        .flat_map(|rest| rest.split(',').map(|o| o.trim().to_owned()))
        .filter(|o| !o.is_empty())
        .collect()
}

/// `250ms`, `5s`, `2m`, `3h`.
pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" | "min" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

/// Reads a UTF-8 file into `buf` (replacing its contents), reusing its capacity.
fn read_into(path: &Path, buf: &mut String) -> std::io::Result<()> {
    use std::io::Read as _;
    buf.clear();
    // Through `Take`, so the read does not ask for the file's size first (one syscall less).
    std::fs::File::open(path)?
        .take(u64::MAX)
        .read_to_string(buf)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_options_are_read() {
        assert_eq!(
            header_options("-- notify-db: no-transaction, lock_timeout=5s\n-- x\nCREATE INDEX"),
            vec!["no-transaction", "lock_timeout=5s"]
        );
        assert_eq!(
            header_options("-- notify-db: parent=db6d9d9f06bc\n-- notify-db: baseline\nSELECT 1"),
            vec!["parent=db6d9d9f06bc", "baseline"]
        );
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("3h"), Some(Duration::from_secs(3 * 3600)));
    }
}
