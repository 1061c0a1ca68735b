//! `cargo xtask bench`: every benchmark side by side with its baseline, one table, JSON under target/bench/.

mod metrics;
mod migrate;
mod pool;
mod template;

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
    let all: [(Which, &str, Bench); 4] = [
        (Which::Pool, "pool", pool::run),
        (Which::Migrate, "migrate", migrate::run),
        (Which::Template, "template", template::run),
        (Which::Metrics, "metrics", metrics::run),
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
