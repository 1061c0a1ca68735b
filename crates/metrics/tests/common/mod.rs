//! Helpers shared by the tests: parse the exposition text and look samples up by exact label set;
//! build pools observed by a fresh `MetricsHandle`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

type Labels = BTreeMap<String, String>;

/// A family's `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
    Untyped,
}

/// A histogram's samples for one label set.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Histogram {
    /// `(le, cumulative count)`, in file order.
    pub buckets: Vec<(f64, f64)>,
    pub sum: Option<f64>,
    pub count: Option<f64>,
}

/// One sample's value: a number, or a whole histogram.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Number(f64),
    Histogram(Histogram),
}

/// One sample (a gauge/counter value or a whole histogram) with its labels.
#[derive(Debug)]
pub(crate) struct Sample {
    pub labels: Labels,
    pub value: Value,
}

/// A parsed metric family.
#[derive(Debug)]
pub(crate) struct Family {
    pub kind: Kind,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// The parsed payload: families by name.
pub(crate) struct Parsed {
    pub families: BTreeMap<String, Family>,
}

/// A number in the text format: a float, `+Inf`, `-Inf` or `NaN`.
fn number(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// `name{a="x",b="y"} value [timestamp]` into (name, labels, value); label values may hold
/// any character, with `\\`, `\"` and `\n` escaped.
fn sample_line(line: &str) -> Result<(String, Labels, f64), String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = line[..name_end].to_owned();
    let mut labels = Labels::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            while chars
                .next_if(|(_, c)| *c == ',' || c.is_whitespace())
                .is_some()
            {}
            let Some(&(start, c)) = chars.peek() else {
                return Err("unterminated label set".into());
            };
            if c == '}' {
                rest = &body[start + 1..];
                break;
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=') {
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('=')
                || chars.next().map(|(_, c)| c) != Some('"')
            {
                return Err(format!("label {key:?} without =\"value\""));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c @ ('\\' | '"')) => value.push(c),
                        other => return Err(format!("bad escape {other:?} in label {key:?}")),
                    },
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated value of label {key:?}")),
                }
            }
            if labels.insert(key.trim().to_owned(), value).is_some() {
                return Err(format!("label {key:?} twice"));
            }
        }
    }
    let mut fields = rest.split_whitespace();
    let v = fields.next().ok_or("no value")?;
    let value = number(v).ok_or_else(|| format!("bad value {v:?}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing text".into());
    }
    Ok((name, labels, value))
}

/// The family a sample belongs to: a histogram's samples are `<family>_bucket`, `_sum`, `_count`.
fn family_of(name: &str, families: &BTreeMap<String, Family>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && families
                .get(base)
                .is_some_and(|f| f.kind == Kind::Histogram)
        {
            return base.to_owned();
        }
    }
    name.to_owned()
}

/// Parses `text` (the exporter's output, Prometheus text format 0.0.4). Panics on anything
/// malformed; `promtool_check` validates the same text independently.
pub(crate) fn parse(text: &str) -> Parsed {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |why: String| -> ! { panic!("line {}: {why}: {line}\n{text}", n + 1) };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            let (what, name, rest) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
            let (Some(what), Some(name)) = (what, name) else {
                continue;
            };
            let f = families.entry(name.to_owned()).or_insert_with(|| Family {
                kind: Kind::Untyped,
                help: String::new(),
                samples: Vec::new(),
            });
            match what {
                "HELP" => f.help = rest.replace("\\n", "\n").replace("\\\\", "\\"),
                "TYPE" => {
                    f.kind = match rest.trim() {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        "untyped" => Kind::Untyped,
                        other => fail(format!("unsupported type {other:?}")),
                    }
                }
                _ => {}
            }
            continue;
        }
        let (name, mut labels, value) = sample_line(line).unwrap_or_else(|e| fail(e));
        let base = family_of(&name, &families);
        let f = families.entry(base.clone()).or_insert_with(|| Family {
            kind: Kind::Untyped,
            help: String::new(),
            samples: Vec::new(),
        });
        if f.kind != Kind::Histogram {
            f.samples.push(Sample {
                labels,
                value: Value::Number(value),
            });
            continue;
        }
        let le = if name.ends_with("_bucket") {
            let le = labels
                .remove("le")
                .unwrap_or_else(|| fail("a bucket without le".into()));
            Some(number(&le).unwrap_or_else(|| fail(format!("bad le {le:?}"))))
        } else {
            None
        };
        let at = match f.samples.iter().position(|s| s.labels == labels) {
            Some(i) => i,
            None => {
                f.samples.push(Sample {
                    labels,
                    value: Value::Histogram(Histogram::default()),
                });
                f.samples.len() - 1
            }
        };
        let Value::Histogram(h) = &mut f.samples[at].value else {
            unreachable!("histogram families hold histograms")
        };
        match (le, name.strip_prefix(base.as_str())) {
            (Some(le), _) => h.buckets.push((le, value)),
            (None, Some("_sum")) => h.sum = Some(value),
            (None, Some("_count")) => h.count = Some(value),
            _ => fail(format!("{name} in histogram {base}")),
        }
    }
    Parsed { families }
}

fn label_map(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Parsed {
    /// All label sets of family `name`, sorted.
    pub(crate) fn label_sets(&self, name: &str) -> Vec<Labels> {
        let mut sets: Vec<_> = self
            .families
            .get(name)
            .map(|f| f.samples.iter().map(|s| s.labels.clone()).collect())
            .unwrap_or_default();
        sets.sort();
        sets
    }

    /// The family names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.families.keys().cloned().collect()
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Value> {
        let want = label_map(labels);
        let f = self.families.get(name)?;
        let mut found = f.samples.iter().filter(|s| s.labels == want);
        let first = found.next()?;
        assert!(
            found.next().is_none(),
            "two samples of {name} with labels {labels:?}"
        );
        Some(&first.value)
    }

    /// The value of the gauge `name` with exactly these labels.
    pub(crate) fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let f = self.families.get(name)?;
        assert_eq!(f.kind, Kind::Gauge, "{name} is not a gauge");
        match self.find(name, labels)? {
            Value::Number(v) => Some(*v),
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    /// The value of the counter `name` with exactly these labels.
    pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let f = self.families.get(name)?;
        assert_eq!(f.kind, Kind::Counter, "{name} is not a counter");
        match self.find(name, labels)? {
            Value::Number(v) => Some(*v),
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Histogram> {
        match self.find(name, labels)? {
            Value::Histogram(h) => Some(h),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// The cumulative buckets `(le, count)` of histogram `name` with exactly these labels.
    pub(crate) fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Option<Vec<(f64, f64)>> {
        Some(self.histogram(name, labels)?.buckets.clone())
    }

    /// `<name>_count` of a histogram with exactly these labels.
    pub(crate) fn hist_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.histogram(name, labels)?.count
    }

    /// `<name>_sum` of a histogram with exactly these labels.
    pub(crate) fn hist_sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.histogram(name, labels)?.sum
    }

    /// Every gauge sample of `name` summed (0 when absent).
    pub(crate) fn gauge_total(&self, name: &str) -> f64 {
        let Some(f) = self.families.get(name) else {
            return 0.0;
        };
        f.samples
            .iter()
            .map(|s| match &s.value {
                Value::Number(v) if f.kind == Kind::Gauge => *v,
                other => panic!("{name} is not a gauge: {other:?}"),
            })
            .sum()
    }

    /// Asserts no gauge sample of `name` is negative.
    pub(crate) fn assert_no_negative(&self, name: &str) {
        let Some(f) = self.families.get(name) else {
            return;
        };
        for s in &f.samples {
            if let Value::Number(v) = &s.value {
                assert!(*v >= 0.0, "{name}{:?} is negative: {v}", s.labels);
            }
        }
    }
}

/// Runs `promtool check metrics` on `text`; panics (never skips) when promtool is missing.
pub(crate) fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is required for this test (Debian package `prometheus`: apt-get install prometheus): {e}")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both pools of `settings`, observed by a new handle; no server check on build, so a test
/// controls every connection the pools open.
pub(crate) async fn observed_pools(
    settings: &notify_db_config::Settings,
) -> (notify_db_metrics::MetricsHandle, notify_db_pool::Databases) {
    let handle = notify_db_metrics::MetricsHandle::new();
    let dbs = notify_db_pool::Databases::builder(settings)
        .observer(handle.observer())
        .check_on_build(false)
        .build()
        .await
        .expect("building the observed pools");
    (handle, dbs)
}

/// A new database on the harness' shared primary, already replayed on its replica (the bulk pool
/// connects to it there).
pub(crate) async fn replicated_db() -> notify_db_testdb::TestDb {
    let db = notify_db_testdb::TestDb::create()
        .await
        .unwrap_or_else(|e| panic!("these tests need PostgreSQL from the test harness: {e}"));
    db.sync_replica()
        .await
        .expect("the replica replays the new database");
    db
}
