//! Shared helpers of the fault scenarios: settings, packet black-holing with `tc`, freezing a
//! server with SIGSTOP, RSS, a seeded random generator, an event-recording pool observer;
//! `workload` and `durable`: the counted writes and the scaffolding of the durable scenarios.
#![allow(dead_code)]

pub(crate) mod durable;
pub(crate) mod workload;

use std::collections::HashMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use notify_db_config::Settings;
use notify_db_pool::{Bind, ConnInfo, ConnectFailure, PoolObserver};
use notify_db_testdb::{Endpoint, Server};

/// Settings for `primary` (and `bulk` when given) in the test environment.
pub(crate) fn settings(primary: &str, bulk: Option<&str>) -> Settings {
    let mut env = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".to_owned(), "test".to_owned());
    env.insert("SQLALCHEMY_DATABASE_URI".to_owned(), primary.to_owned());
    if let Some(b) = bulk {
        env.insert("SQLALCHEMY_DATABASE_URI_BULK".to_owned(), b.to_owned());
    }
    Settings::load(None, &|k| env.get(k).cloned()).expect("test settings load")
}

/// A URI listing several servers (same credentials), e.g. for a bulk bind over two servers.
pub(crate) fn multi_host_uri(endpoints: &[&Endpoint], db: &str, query: &str) -> String {
    let first = endpoints[0];
    let hosts: Vec<String> = endpoints
        .iter()
        .map(|e| format!("{}:{}", e.host, e.port))
        .collect();
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!(
        "postgresql://{}:{}@{}/{db}{q}",
        first.user,
        first.password,
        hosts.join(",")
    )
}

/// A unique application_name for this test process, to count our backends in pg_stat_activity.
pub(crate) fn app_name(scenario: &str) -> String {
    format!("faults-{scenario}-{}", std::process::id())
}

/// Number of client backends with this application_name, seen from `client`'s server.
pub(crate) async fn backends(client: &tokio_postgres::Client, app: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND backend_type = 'client backend'",
            &[&app],
        )
        .await
        .expect("count backends")
        .get(0)
}

/// Sum of one metric's samples (every label set) in a Prometheus text payload.
pub(crate) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Resident set size of this process in KiB, from /proc/self/status.
pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// xorshift64*: a tiny seeded generator (the seed is printed so a run can be repeated).
pub(crate) struct Rng(u64);

impl Rng {
    /// From `FAULTS_SEED` when set, else from the clock; prints the seed.
    pub(crate) fn from_env(what: &str) -> Rng {
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(42)
            });
        println!("{what}: seed {seed} (set FAULTS_SEED={seed} to repeat)");
        Rng(seed | 1)
    }

    /// From a given seed, without printing it.
    pub(crate) fn quiet(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next value.
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Runs a command, failing with its output when it does not succeed.
fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Black-holes one server (`addr:port`) on the loopback interface: every packet it sends is
/// dropped, with a `tc` htb root qdisc whose filtered class has a 0-packet pfifo (no
/// `act_gact`/netem needed). Only the server's packets are dropped, on purpose: a packet dropped
/// by the sender's own qdisc is known to the sender's kernel as "not sent" (local congestion), so
/// dropping the client's packets would never count a keepalive probe as sent and would not behave
/// like a network black hole; dropping the server's replies does (the client's probes and
/// retransmissions leave, nothing comes back). Serialized between processes by a file lock;
/// removed on drop.
pub(crate) struct BlackHole {
    _lock: File,
}

const TC_LOCK: &str = "/tmp/notify-db-faults-tc.lock";
const CLASS: &str = "1:66";

/// The right to change lo's qdisc (a file lock shared by every process of this suite).
pub(crate) struct TcLock(File);

impl TcLock {
    /// Waits for the lock.
    pub(crate) fn acquire() -> Result<TcLock, String> {
        let lock = File::create(TC_LOCK).map_err(|e| format!("cannot open {TC_LOCK}: {e}"))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {TC_LOCK}: {e}"))?;
        Ok(TcLock(lock))
    }
}

impl BlackHole {
    /// Installs the drop rule for packets from `addr:port`.
    pub(crate) fn start(lock: TcLock, addr: Ipv4Addr, port: u16) -> Result<BlackHole, String> {
        let lock = lock.0;
        let current = sh(&["tc", "qdisc", "show", "dev", "lo"])?;
        if current.contains("qdisc htb 1: root") {
            // Left over by a killed run of this suite (we hold the lock): start from scratch.
            sh(&["tc", "qdisc", "del", "dev", "lo", "root"])?;
        } else if !current.contains("noqueue") {
            return Err(format!(
                "lo has a root qdisc this suite did not install; refusing to replace it:\n{current}"
            ));
        }
        let hole = BlackHole { _lock: lock };
        let a = addr.to_string();
        let p = port.to_string();
        sh(&[
            "tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb",
        ])?;
        sh(&[
            "tc", "class", "add", "dev", "lo", "parent", "1:", "classid", CLASS, "htb", "rate",
            "10gbit",
        ])?;
        sh(&[
            "tc", "qdisc", "add", "dev", "lo", "parent", CLASS, "handle", "66:", "pfifo", "limit",
            "0",
        ])?;
        sh(&[
            "tc",
            "filter",
            "add",
            "dev",
            "lo",
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            "src",
            &format!("{a}/32"),
            "match",
            "ip",
            "sport",
            &p,
            "0xffff",
            "classid",
            CLASS,
        ])?;
        Ok(hole)
    }

    /// Packets dropped so far by the black hole (from `tc -s qdisc`).
    pub(crate) fn dropped(&self) -> u64 {
        let Ok(out) = sh(&["tc", "-s", "qdisc", "show", "dev", "lo"]) else {
            return 0;
        };
        let mut lines = out.lines();
        while let Some(l) = lines.next() {
            if l.starts_with("qdisc pfifo 66:") {
                let stats = lines.next().unwrap_or_default();
                return stats
                    .split("dropped ")
                    .nth(1)
                    .and_then(|r| r.split(',').next())
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
            }
        }
        0
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        if let Err(e) = sh(&["tc", "qdisc", "del", "dev", "lo", "root"]) {
            eprintln!("removing the black hole failed: {e}");
        }
    }
}

/// Children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Sends `sig` to `pid` with `kill`: `Ok(true)` when delivered, `Ok(false)` when the process
/// had already exited (no /proc entry left), an error naming the pid and kill's message otherwise.
fn signal(sig: &str, pid: u32) -> Result<bool, String> {
    match sh(&["kill", &format!("-{sig}"), &pid.to_string()]) {
        Ok(_) => Ok(true),
        Err(_) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sends `sig` to the postmaster, which must be running, then to each of its children (one
/// that exits meanwhile is no failure).
fn signal_server(sig: &str, postmaster: u32) -> Result<(), String> {
    if !signal(sig, postmaster)? {
        return Err(format!(
            "`kill -{sig} {postmaster}`: the postmaster is not running"
        ));
    }
    for child in children(postmaster) {
        signal(sig, child)?;
    }
    Ok(())
}

/// Whether `pid` has exited: no /proc entry, or a zombie nobody has reaped yet.
fn gone(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// `kill -9` of the postmaster alone, as a crash would: its children notice its death and exit
/// by themselves. Waits (up to 30 s) until the postmaster and every child have exited, so the
/// server can be started again (crash recovery). Where nothing reaps the dead postmaster (a
/// container whose PID 1 does not), it stays a zombie that still answers `kill(pid, 0)`, and
/// the next postmaster would take its lock files (`postmaster.pid`, the socket's `.lock`) for a
/// live server's: then those stale files are removed, as an operator would.
pub(crate) fn kill_postmaster(server: &Server) -> Result<(), String> {
    let postmaster = server
        .postmaster_pid()
        .map_err(|e| format!("the postmaster's pid: {e}"))?;
    let kids = children(postmaster);
    if !signal("KILL", postmaster)? {
        return Err(format!(
            "`kill -KILL {postmaster}`: the postmaster is not running"
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(gone(postmaster) && kids.iter().all(|&k| gone(k))) {
        if Instant::now() > deadline {
            return Err(format!(
                "postmaster {postmaster} or its children {kids:?} still running 30 s after `kill -9`"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if std::path::Path::new(&format!("/proc/{postmaster}")).exists() {
        let socket_lock = format!(".s.PGSQL.{}.lock", server.endpoint().port);
        for lock in [
            server.data_dir().join("postmaster.pid"),
            server.socket_dir().join(socket_lock),
        ] {
            std::fs::remove_file(&lock)
                .map_err(|e| format!("removing the stale {}: {e}", lock.display()))?;
        }
    }
    Ok(())
}

/// A server frozen with SIGSTOP (postmaster and all its children); SIGCONT on drop.
pub(crate) struct Frozen {
    postmaster: u32,
    since: Instant,
}

impl Frozen {
    /// Stops `postmaster` and every child process; an error when a signal was not delivered.
    pub(crate) fn start(postmaster: u32) -> Result<Frozen, String> {
        let frozen = Frozen {
            postmaster,
            since: Instant::now(),
        };
        // The postmaster first, so that it forks no new child meanwhile; a child forked just
        // before the stop is stopped by a second pass. On an error, the drop resumes them all.
        signal_server("STOP", postmaster)?;
        signal_server("STOP", postmaster)?;
        Ok(frozen)
    }

    /// How long it has been frozen.
    pub(crate) fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // Children first: a resumed postmaster would see them stopped.
        for child in children(self.postmaster) {
            if let Err(e) = signal("CONT", child) {
                eprintln!("resuming a frozen server process failed: {e}");
            }
        }
        if let Err(e) = signal("CONT", self.postmaster) {
            eprintln!("resuming the frozen postmaster failed: {e}");
        }
    }
}

/// One recorded pool event.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// A connection was opened.
    Connected {
        at: Instant,
        bind: Bind,
        host: String,
    },
    /// A connection closed.
    Closed {
        at: Instant,
        bind: Bind,
        host: String,
    },
    /// A connect to `host:port` failed.
    ConnectFailed {
        at: Instant,
        bind: Bind,
        host: String,
        port: u16,
        why: ConnectFailure,
    },
}

/// A pool observer that records connection events (no metrics).
#[derive(Default)]
pub(crate) struct Recorder {
    /// Every event, in order.
    pub events: Mutex<Vec<Event>>,
}

impl Recorder {
    /// A copy of the events so far.
    pub(crate) fn snapshot(&self) -> Vec<Event> {
        self.events.lock().expect("events lock").clone()
    }
}

impl PoolObserver for Recorder {
    fn connected(&self, conn: &ConnInfo) {
        self.events
            .lock()
            .expect("events lock")
            .push(Event::Connected {
                at: Instant::now(),
                bind: conn.bind,
                host: conn.host.clone(),
            });
    }

    fn closed(&self, conn: &ConnInfo) {
        self.events
            .lock()
            .expect("events lock")
            .push(Event::Closed {
                at: Instant::now(),
                bind: conn.bind,
                host: conn.host.clone(),
            });
    }

    fn connect_failed(&self, bind: Bind, host: &str, port: u16, why: ConnectFailure) {
        self.events
            .lock()
            .expect("events lock")
            .push(Event::ConnectFailed {
                at: Instant::now(),
                bind,
                host: host.to_owned(),
                port,
                why,
            });
    }
}

/// Runs blocking server control (pg_ctl) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}
