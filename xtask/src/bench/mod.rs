//! `cargo xtask bench`: every benchmark side by side with its baseline, one table, JSON under target/bench/.

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
    let mut figures = Vec::new();
    if args.which.is_none_or(|w| w == Which::Pool) {
        figures.extend(pool::run()?);
    }
    if args.which.is_none_or(|w| w == Which::Migrate) {
        figures.extend(migrate::run()?);
    }
    if args.which.is_none_or(|w| w == Which::Template) {
        figures.extend(template::run()?);
    }
    print_table(&figures);
    write_json(&figures)
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
