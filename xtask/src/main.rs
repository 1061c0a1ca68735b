//! `cargo xtask`: the one entry point for notify-db's developer tasks.

mod demo;
mod dev;
mod doctor;
mod dropdbs;
mod lint_migrations;
mod majors;
mod migrate;
mod pending;
mod soak;
mod stairway;
mod test;
mod util;

use clap::{Parser, Subcommand, ValueEnum};
use xtask_boot::prereq;

/// Developer tasks for notify-db.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    /// Log format: human-readable or JSON lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the tests need, start primary + replica, run the workspace tests against them
    /// under cargo-nextest, then fmt and clippy.
    Test(test::TestArgs),
    /// The fault suite's soak (both pools held at their maximum) for as long as asked.
    Soak(soak::SoakArgs),
    /// Only the static checks: `cargo fmt --check` and clippy with `-D warnings`.
    Lint,
    /// A persistent local primary + replica for development.
    Dev(dev::DevArgs),
    /// Drop every test database (test_notification_api_master / _gw<N>) and nothing else.
    DropTestDbs(dropdbs::DropArgs),
    /// Start the local clusters and show what notify-db does with them.
    Demo(demo::DemoArgs),
    /// Run or inspect migrations (upgrade, downgrade, current, history, revision, check, check-head).
    Migrate(migrate::MigrateArgs),
    /// Run benchmarks side by side with their baselines and print a table of ratios (the
    /// `notify-db-bench` binary of bench/, built in release).
    Bench(util::Forwarded),
    /// Check the configured primary and bulk hosts, settings and migration state; suggest fixes.
    Doctor(doctor::DoctorArgs),
    /// Point-in-time recovery drill on a throwaway cluster with WAL archiving (the fault suite's
    /// `pitr-drill` binary).
    PitrDrill(util::Forwarded),
    /// Lint the SQL every migration runs (squawk rules for a PostgreSQL major, 15 unless set, plus our own).
    LintMigrations(lint_migrations::LintMigrationsArgs),
    /// Stairway test: for each migration, upgrade, downgrade, compare schemas, upgrade again.
    TestMigrationDowngrade(stairway::StairwayArgs),
    /// Print `yes` if the database is behind the migration set's head, `no` otherwise.
    CheckIfMigrationsToRun(pending::PendingArgs),
}

fn main() {
    let cli = Cli::parse();
    util::init_logging(matches!(cli.log_format, LogFormat::Json));
    let result = match cli.cmd {
        Cmd::Test(a) => test::run(a),
        Cmd::Soak(a) => soak::run(a),
        Cmd::Lint => test::lint(),
        Cmd::Dev(a) => dev::run(a),
        Cmd::DropTestDbs(a) => dropdbs::run(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Migrate(a) => migrate::run(a),
        // Measuring needs the optimised build; printing the help does not.
        Cmd::Bench(a) => util::run_bin("notify-db-bench", "notify-db-bench", !a.ask_for_help(), a),
        Cmd::Doctor(a) => doctor::run(a),
        Cmd::PitrDrill(a) => util::run_bin("notify-db-faults", "pitr-drill", false, a),
        Cmd::LintMigrations(a) => lint_migrations::run(a),
        Cmd::TestMigrationDowngrade(a) => stairway::run(a),
        Cmd::CheckIfMigrationsToRun(a) => pending::run(a),
    };
    if let Err(e) = result {
        // One line: the reason, with its causes.
        eprintln!("error: {}", util::one_line(&e));
        std::process::exit(1);
    }
}
