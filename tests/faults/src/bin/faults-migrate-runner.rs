//! Runs the starter migration set plus one extra non-transactional migration to head, for the
//! crash matrix (which SIGKILLs this process at random moments). The database URI comes from
//! `FAULTS_DATABASE_URI`; nothing is printed but the outcome (never the URI).

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use notify_db_faults::crash_matrix_set;
use notify_db_migrate::{Migrator, Options};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Ok(uri) = std::env::var("FAULTS_DATABASE_URI") else {
        eprintln!("FAULTS_DATABASE_URI is not set");
        return ExitCode::from(2);
    };
    let uri = match notify_db_config::DatabaseUri::parse(&uri, "FAULTS_DATABASE_URI") {
        Ok(uri) => uri,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let set = match crash_matrix_set() {
        Ok(set) => set,
        Err(e) => {
            eprintln!("invalid migration set: {e}");
            return ExitCode::from(2);
        }
    };
    let options = Options {
        retry_delay: Duration::from_millis(100),
        advisory_lock_wait: Some(Duration::from_secs(30)),
        ..Options::default()
    };
    let target = match std::env::args().nth(1) {
        Some(t) => match notify_db_migrate::Target::from_str(&t) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("bad target: {e}");
                return ExitCode::from(2);
            }
        },
        None => notify_db_migrate::Target::Head,
    };
    let migrator = match Migrator::new(set, &uri) {
        Ok(m) => m.with_options(options),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match migrator.upgrade(&target).await {
        Ok(report) => {
            println!(
                "ok: {} migration(s) applied, now at {}",
                report.applied.len(),
                report.to.as_deref().unwrap_or("base")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migration failed: {e}");
            ExitCode::from(1)
        }
    }
}
