//! A real Prometheus server (Debian's `prometheus` package) on a free loopback port, scraping
//! the targets it is given and evaluating the rule files it is given, for the alert tests and
//! `cargo xtask demo`. Its HTTP API is read with a minimal HTTP/1.0 client (no extra crates).

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::proc::{PROMETHEUS_PID, free_port, make_dir, remove_stale, spawn_reaper};
use crate::{Error, base_dir};

/// Address Prometheus listens on.
pub const PROMETHEUS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
pub use notify_db_hostprobe::ENV_PROMETHEUS;

/// How long a request to Prometheus' HTTP API may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for a Prometheus.
#[derive(Clone, Debug)]
pub struct PrometheusBuilder {
    targets: Vec<(String, String)>,
    rules: Vec<(String, String)>,
    interval: Duration,
}

impl Default for PrometheusBuilder {
    fn default() -> Self {
        PrometheusBuilder {
            targets: Vec::new(),
            rules: Vec::new(),
            interval: Duration::from_secs(1),
        }
    }
}

impl PrometheusBuilder {
    /// Scrapes `/metrics` of `address` (`host:port`) as job `job`.
    pub fn scrape(mut self, job: &str, address: &str) -> Self {
        self.targets.push((job.to_owned(), address.to_owned()));
        self
    }

    /// Loads a rule file named `name` (e.g. `alerts.yml`) with the YAML `text`.
    pub fn rules(mut self, name: &str, text: &str) -> Self {
        self.rules.push((name.to_owned(), text.to_owned()));
        self
    }

    /// The scrape and rule evaluation interval (default 1 s; at least 1 s).
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every.max(Duration::from_secs(1));
        self
    }

    /// Writes the configuration and starts Prometheus; returns once it is ready.
    pub fn start(self) -> Result<Prometheus, Error> {
        Prometheus::start(self)
    }
}

/// A running Prometheus; stopped and its directory removed on drop.
pub struct Prometheus {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prometheus")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Finds the `prometheus` server binary: `$PROMETHEUS`, then `PATH`, then `/usr/bin`.
pub fn find_prometheus() -> Result<PathBuf, Error> {
    notify_db_hostprobe::find_prometheus().map_err(|searched| Error::NoPrometheus { searched })
}

impl Prometheus {
    /// Options for a new Prometheus.
    pub fn builder() -> PrometheusBuilder {
        PrometheusBuilder::default()
    }

    /// The port it listens on (on [`PROMETHEUS_ADDR`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{PROMETHEUS_ADDR}:{}", self.port)
    }

    /// The URL of its graph page showing `queries` (one panel each, the last hour).
    pub fn graph_url(&self, queries: &[&str]) -> String {
        let panels: Vec<String> = queries
            .iter()
            .enumerate()
            .map(|(i, q)| format!("g{i}.expr={}&g{i}.tab=0&g{i}.range_input=1h", encode(q)))
            .collect();
        format!("{}/graph?{}", self.url(), panels.join("&"))
    }

    /// Its log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("prometheus.log")
    }

    /// The body of `GET path` (e.g. `/api/v1/rules`); an error unless the status is 200.
    pub fn get(&self, path: &str) -> Result<String, Error> {
        let (status, body) = http_get(self.port, path)?;
        if status != 200 {
            return Err(Error::Command {
                cmd: format!("GET {path} from Prometheus"),
                detail: format!("status {status}: {body}"),
            });
        }
        Ok(body)
    }

    /// The JSON body of an instant query of `expr` (`/api/v1/query`): `{"status":"success",
    /// "data":{"resultType":...,"result":[...]}}`. A query that does not parse is an error
    /// naming Prometheus' reason.
    pub fn query(&self, expr: &str) -> Result<String, Error> {
        let (status, body) = http_get(self.port, &format!("/api/v1/query?query={}", encode(expr)))?;
        if status != 200 {
            return Err(Error::Command {
                cmd: format!("Prometheus query {expr}"),
                detail: format!("status {status}: {body}"),
            });
        }
        Ok(body)
    }

    /// Waits, at most `within`, until it has scraped the target of `job` once.
    pub async fn wait_for_scrape(&self, job: &str, within: Duration) -> Result<(), Error> {
        let up = format!("up{{job=\"{job}\"}} == 1");
        let deadline = Instant::now() + within;
        while !self.query(&up)?.contains("\"value\"") {
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "Prometheus to scrape job {job} (log: {})",
                        self.log_file().display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    fn start(opts: PrometheusBuilder) -> Result<Prometheus, Error> {
        let binary = find_prometheus()?;
        let base = base_dir();
        fs::create_dir_all(&base)
            .map_err(|e| Error::io(format!("creating {}", base.display()), e))?;
        remove_stale(&base);
        let dir = base.join(format!(
            "prometheus-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        make_dir(&dir, None)?;
        fs::write(dir.join("owner.pid"), std::process::id().to_string())
            .map_err(|e| Error::io("writing owner.pid".into(), e))?;
        spawn_reaper(&dir);
        for (name, text) in &opts.rules {
            write(&dir.join(name), text)?;
        }
        write(&dir.join("prometheus.yml"), &config_text(&opts))?;
        let mut last_err = None;
        // A free port found by binding can be taken by someone else before Prometheus binds it.
        for _ in 0..3 {
            let port = free_port(PROMETHEUS_ADDR)?;
            match launch(&binary, &dir, port) {
                Ok(child) => return Ok(Prometheus { dir, port, child }),
                Err(e) => last_err = Some(e),
            }
        }
        let _ = fs::remove_dir_all(&dir);
        Err(last_err.unwrap_or_else(|| Error::Command {
            cmd: "prometheus".into(),
            detail: "failed".into(),
        }))
    }
}

/// Starts Prometheus in `dir` on `port` and waits until `/-/ready` answers 200.
fn launch(binary: &Path, dir: &Path, port: u16) -> Result<Child, Error> {
    let log_file = dir.join("prometheus.log");
    let log = fs::File::create(&log_file)
        .map_err(|e| Error::io(format!("creating {}", log_file.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io("duplicating the log file".into(), e))?;
    let mut child = Command::new(binary)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS_ADDR}:{port}"))
        .arg("--log.level=warn")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", binary.display()), e))?;
    write(&dir.join(PROMETHEUS_PID), &child.id().to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = http_get(port, "/-/ready") {
            return Ok(child);
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let tail = fs::read_to_string(&log_file).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(15).collect();
            let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            return Err(match exited {
                Some(status) => Error::Command {
                    cmd: format!("prometheus on {PROMETHEUS_ADDR}:{port}"),
                    detail: format!("exited with {status}\n--- log (last lines) ---\n{tail}"),
                },
                None => Error::Timeout {
                    what: format!(
                        "Prometheus to be ready on {PROMETHEUS_ADDR}:{port} (log: {})",
                        log_file.display()
                    ),
                },
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The `prometheus.yml` text: every target a job of its own, every rule file loaded.
fn config_text(opts: &PrometheusBuilder) -> String {
    let every = format!("{}s", opts.interval.as_secs());
    let mut text = format!(
        "global:\n  scrape_interval: {every}\n  scrape_timeout: {every}\n  evaluation_interval: {every}\n"
    );
    if !opts.rules.is_empty() {
        text.push_str("rule_files:\n");
        for (name, _) in &opts.rules {
            text.push_str(&format!("  - '{name}'\n"));
        }
    }
    text.push_str("scrape_configs:\n");
    for (job, address) in &opts.targets {
        text.push_str(&format!(
            "  - job_name: '{job}'\n    static_configs:\n      - targets: ['{address}']\n"
        ));
    }
    text
}

/// Percent-encodes `s` for a URL query value (everything but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET path` over HTTP/1.0 (the server closes the connection after the body): (status, body).
fn http_get(port: u16, path: &str) -> Result<(u16, String), Error> {
    let what = || format!("GET {path} from Prometheus on {PROMETHEUS_ADDR}:{port}");
    let mut s = TcpStream::connect_timeout(&(PROMETHEUS_ADDR, port).into(), HTTP_TIMEOUT)
        .map_err(|e| Error::io(what(), e))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| Error::io(what(), e))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {PROMETHEUS_ADDR}:{port}\r\n\r\n"
    )
    .map_err(|e| Error::io(what(), e))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| Error::io(what(), e))?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::Command {
            cmd: what(),
            detail: format!("no HTTP status line in {head:?}"),
        })?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_scrapes_every_target_and_loads_every_rule_file() {
        let opts = Prometheus::builder()
            .scrape("notify-api", "127.0.0.1:6011")
            .rules("alerts.yml", "groups: []\n")
            .interval(Duration::from_secs(2));
        let text = config_text(&opts);
        for line in [
            "scrape_interval: 2s",
            "evaluation_interval: 2s",
            "  - 'alerts.yml'",
            "  - job_name: 'notify-api'",
            "      - targets: ['127.0.0.1:6011']",
        ] {
            assert!(text.contains(line), "missing {line:?}:\n{text}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode(r#"ALERTS{alertname="A b"}[5m]"#),
            "ALERTS%7Balertname%3D%22A%20b%22%7D%5B5m%5D"
        );
    }
}
