//! `cargo xtask bench`: every benchmark side by side with its baseline, one table, JSON under target/bench/.

mod cpu;
mod history;
mod metrics;
mod migrate;
mod pgbouncer;
mod pool;
mod template;
mod workload;

use anyhow::{Context, Result};

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
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

/// Runs the selected benchmarks and prints their table.
pub fn run(args: BenchArgs) -> Result<()> {
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
    let dir = crate::util::root().join("target/bench");
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

/// Environment variable marking a benchmark child process started by [`optimised`].
const CHILD_VAR: &str = "NOTIFY_BENCH_CHILD";
/// Prefix of the lines in which a child process reports its figures.
const FIGURE_LINE: &str = "BENCH-FIGURE\t";

/// Runs `measure` in an optimised build: `cargo xtask` builds in the dev profile (workspace
/// crates unoptimised, dependencies at opt-level 1), which would measure our code unoptimised
/// against optimised baselines, so a debug xtask re-runs `cargo xtask bench <bench>` with
/// `--release` and collects the child's figures from its stdout.
pub fn optimised(
    bench: &str,
    measure: impl FnOnce() -> Result<Vec<Figure>>,
) -> Result<Vec<Figure>> {
    if cfg!(debug_assertions) && std::env::var_os(CHILD_VAR).is_none() {
        return run_release(bench);
    }
    let figures = measure()?;
    if std::env::var_os(CHILD_VAR).is_some() {
        for f in &figures {
            println!(
                "{FIGURE_LINE}{}\t{}\t{}\t{}\t{}",
                f.name,
                f.value,
                f.unit,
                f.ratio.map(|r| r.to_string()).unwrap_or_default(),
                f.note
            );
        }
    }
    Ok(figures)
}

fn run_release(bench: &str) -> Result<Vec<Figure>> {
    eprintln!("bench {bench}: running in an optimised build (cargo run --release -p xtask)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "run",
            "--release",
            "-q",
            "-p",
            "xtask",
            "--",
            "bench",
            bench,
        ])
        .env(CHILD_VAR, "1")
        .current_dir(crate::util::root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running the optimised {bench} benchmark"))?;
    if !out.status.success() {
        anyhow::bail!("the optimised {bench} benchmark failed with {}", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let figures: Vec<Figure> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix(FIGURE_LINE))
        .filter_map(|l| {
            let mut it = l.split('\t');
            let (name, value, unit, ratio, note) =
                (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
            Some(Figure {
                bench: bench.into(),
                name: name.into(),
                value: value.parse().ok()?,
                unit: unit.into(),
                ratio: ratio.parse().ok(),
                note: note.into(),
            })
        })
        .collect();
    if figures.is_empty() {
        anyhow::bail!("the optimised {bench} benchmark printed no figures");
    }
    Ok(figures)
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
