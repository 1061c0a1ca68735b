//! `notify-db-bench`: every benchmark side by side with its baseline, one table, JSON under
//! target/bench/. `cargo xtask bench [NAME]` builds it in release and runs it.

mod cpu;
mod history;
mod metrics;
mod migrate;
mod pgbouncer;
mod pool;
mod template;
mod timed;
mod two_threads;
mod workload;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

/// Benchmarks of notify-db, each side by side with its baseline in the same run.
#[derive(Parser)]
#[command(name = "notify-db-bench")]
struct BenchArgs {
    /// Which benchmark (default: all).
    #[arg(value_enum)]
    which: Option<Which>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    Pool,
    Migrate,
    Template,
    Metrics,
    Pgbouncer,
}

/// One measured figure, optionally compared with a baseline measured in the same run.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Which benchmark it belongs to, e.g. `pool`.
    pub bench: String,
    /// What was measured, e.g. `N=8 ours`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit, e.g. `tps`, `ms/migration`.
    pub unit: String,
    /// ours / baseline (or the inverse for times, so that >1 is always "slower/worse" documented in `note`).
    pub ratio: Option<f64>,
    /// The target and what the ratio means.
    pub note: String,
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    if let Err(e) = run(BenchArgs::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Runs the selected benchmarks and prints their table.
fn run(args: BenchArgs) -> Result<()> {
    type Bench = fn() -> Result<Vec<Figure>>;
    let all: [(Which, &str, Bench); 5] = [
        (Which::Pool, "pool", pool::run),
        (Which::Migrate, "migrate", migrate::run),
        (Which::Template, "template", template::run),
        (Which::Metrics, "metrics", metrics::run),
        (Which::Pgbouncer, "pgbouncer", pgbouncer::run),
    ];
    let mut figures = Vec::new();
    let mut failed = Vec::new();
    for (which, name, bench) in all {
        if !args.which.is_none_or(|w| w == which) {
            continue;
        }
        // One failing benchmark does not hide the others' figures: report it at the end.
        match bench() {
            Ok(f) => figures.extend(f),
            Err(e) => {
                eprintln!("bench {name} failed: {e:#}");
                failed.push(format!("{name}: {e:#}"));
            }
        }
    }
    print_table(&figures);
    write_json(&figures)?;
    if !failed.is_empty() {
        anyhow::bail!(
            "{} benchmark(s) failed: {}",
            failed.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

fn print_table(figures: &[Figure]) {
    println!(
        "{:<10} {:<44} {:>14} {:<14} {:>8}  note",
        "bench", "figure", "value", "unit", "ratio"
    );
    for f in figures {
        let ratio = f.ratio.map(|r| format!("{r:.3}")).unwrap_or_default();
        println!(
            "{:<10} {:<44} {:>14.3} {:<14} {:>8}  {}",
            f.bench, f.name, f.value, f.unit, ratio, f.note
        );
    }
}

fn write_json(figures: &[Figure]) -> Result<()> {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).context("creating target/bench")?;
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let rows: Vec<String> = figures
        .iter()
        .map(|f| {
            format!(
                "  {{\"bench\": \"{}\", \"name\": \"{}\", \"value\": {}, \"unit\": \"{}\", \"ratio\": {}, \"note\": \"{}\"}}",
                esc(&f.bench),
                esc(&f.name),
                f.value,
                esc(&f.unit),
                f.ratio.map(|r| r.to_string()).unwrap_or_else(|| "null".into()),
                esc(&f.note)
            )
        })
        .collect();
    let path = dir.join("latest.json");
    std::fs::write(&path, format!("[\n{}\n]\n", rows.join(",\n")))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("written to {}", path.display());
    Ok(())
}

/// Runs `measure` only in an optimised build: these benchmarks compare our crates with optimised
/// baselines (pgbench, deadpool-postgres), so an unoptimised build would measure the wrong thing.
/// `cargo xtask bench` runs this binary with `--release`.
pub fn optimised(
    bench: &str,
    measure: impl FnOnce() -> Result<Vec<Figure>>,
) -> Result<Vec<Figure>> {
    if cfg!(debug_assertions) {
        anyhow::bail!(
            "the {bench} benchmark measures optimised code: run it with `cargo xtask bench {bench}` \
             or `cargo run --release -p notify-db-bench -- {bench}`"
        );
    }
    measure()
}

/// The workspace root (parent of bench/).
pub fn root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(PathBuf::from).unwrap_or(dir)
}

/// The median of `v` (robust against the other work sharing this machine); 0 for no values.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
