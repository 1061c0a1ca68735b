//! Scaffolding of the durable scenarios: private clusters with `fsync` and `full_page_writes`
//! on, pools with short timeouts, the phases of a run, and the results row each scenario writes
//! for `cargo xtask test`'s table (`<target>/fault-results/<scenario>.json`).

use std::path::PathBuf;
use std::time::Duration;

use notify_db_config::Settings;
use notify_db_pool::Databases;
use notify_db_testdb::{Cluster, Endpoint};

use super::workload::{TABLE_SQL, Verdict, Writes, verify};

/// Load before the fault (the rate it must come back to).
pub(crate) const BEFORE: Duration = Duration::from_secs(2);
/// Load after the repair (recovery is measured in it).
pub(crate) const AFTER: Duration = Duration::from_secs(3);
/// The pools' timeouts: connect, TCP user timeout and wait for a free connection.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// A private durable cluster (with a streaming replica when asked), or a failure saying why.
pub(crate) fn cluster(label: &str, replica: bool) -> Cluster {
    Cluster::builder()
        .label(label)
        .durable(true)
        .replica(replica)
        .start()
        .unwrap_or_else(|e| panic!("a private durable cluster must start for {label}: {e}"))
}

/// Creates the workload's table in database `postgres` on `server`.
pub(crate) async fn create_table(server: &Endpoint) {
    server
        .connect("postgres")
        .await
        .expect("connecting to the primary to create fault_writes")
        .batch_execute(TABLE_SQL)
        .await
        .expect("creating fault_writes");
}

/// Settings for a `default` bind on `uri` with [`TIMEOUT`] everywhere (so a fault ends work
/// within seconds) and a short host back-off.
pub(crate) fn settings(uri: &str, scenario: &str) -> Settings {
    let mut s = super::settings(uri, None);
    s.pool.size = 5;
    s.pool.wait_timeout = TIMEOUT;
    s.pool.connect_timeout = TIMEOUT;
    s.pool.tcp_user_timeout = TIMEOUT;
    s.pool.host_backoff = Duration::from_secs(1);
    s.pool.application_name = super::app_name(scenario);
    s
}

/// The pools for `settings`, built without a first connection.
pub(crate) async fn pools(settings: &Settings) -> Databases {
    Databases::builder(settings)
        .check_on_build(false)
        .build()
        .await
        .expect("pools for the durable scenario")
}

/// Verifies the writes against `server` (the primary after the fault), prints and records the
/// scenario's results row, then asserts the zero-loss promises (at most `lost_allowed`
/// acknowledged rows lost).
pub(crate) async fn finish(
    scenario: &str,
    server: &Endpoint,
    writes: &Writes,
    fault: (Duration, Duration),
    lost_allowed: usize,
    note: &str,
) -> Verdict {
    let client = server
        .connect("postgres")
        .await
        .unwrap_or_else(|e| panic!("{scenario}: connecting to the primary to verify: {e}"));
    let verdict = verify(&client, writes).await;
    let t = writes.throughput(fault);
    let errors = writes.errors();
    let row = serde_json::json!({
        "scenario": scenario,
        "acknowledged": verdict.acknowledged,
        "failed": verdict.failed,
        "unknown": verdict.unknown,
        "unknown_present": verdict.unknown_present,
        "lost": verdict.lost.len(),
        "duplicated": verdict.duplicated.len(),
        "errors": errors,
        "before_per_s": t.before.round(),
        "during_per_s": t.during.round(),
        "after_per_s": t.after.round(),
        "fault_s": (fault.1 - fault.0).as_secs_f64(),
        "recovery_s": t.recovery.map(|r| r.as_secs_f64()),
        "commit": commit(),
        "note": note,
    });
    println!("{scenario}: {row}");
    let dir = notify_db_faults::results::results_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."),
    );
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(format!("{scenario}.json")), format!("{row}\n")));
    if let Err(e) = written {
        panic!(
            "{scenario}: writing the results row into {}: {e}",
            dir.display()
        );
    }
    verdict.assert_intact(scenario, lost_allowed);
    verdict
}

/// The commit the suite runs on (`git rev-parse HEAD`), or `unknown` outside a git checkout.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
