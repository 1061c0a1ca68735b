//! Helpers shared by the tests: parse the exposition text and look samples up by exact label set.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricFamily, MetricsExposition, PrometheusType, PrometheusValue};

type Labels = BTreeMap<String, String>;

/// One sample (a gauge/counter value or a whole histogram) with its labels.
#[derive(Debug)]
pub struct Sample {
    pub labels: Labels,
    pub value: PrometheusValue,
}

/// A parsed metric family.
#[derive(Debug)]
pub struct Family {
    pub kind: PrometheusType,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// The parsed payload: families by name.
pub struct Parsed {
    pub families: BTreeMap<String, Family>,
}

fn family(f: &MetricFamily<PrometheusType, PrometheusValue>) -> Family {
    let samples = f
        .iter_samples()
        .map(|s| {
            let set = s.get_labelset().expect("sample bound to its family");
            Sample {
                labels: set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                value: s.value.clone(),
            }
        })
        .collect();
    Family {
        kind: f.family_type.clone(),
        help: f.help.clone(),
        samples,
    }
}

/// Parses `text` (the exporter's output) with a Prometheus text-format parser.
pub fn parse(text: &str) -> Parsed {
    if text.trim().is_empty() {
        return Parsed {
            families: BTreeMap::new(),
        };
    }
    let exposition: MetricsExposition<PrometheusType, PrometheusValue> = parse_prometheus(text)
        .unwrap_or_else(|e| panic!("the rendered metrics do not parse: {e:?}\n{text}"));
    Parsed {
        families: exposition
            .families
            .iter()
            .map(|(n, f)| (n.clone(), family(f)))
            .collect(),
    }
}

fn label_map(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Parsed {
    /// All label sets of family `name`, sorted.
    pub fn label_sets(&self, name: &str) -> Vec<Labels> {
        let mut sets: Vec<_> = self
            .families
            .get(name)
            .map(|f| f.samples.iter().map(|s| s.labels.clone()).collect())
            .unwrap_or_default();
        sets.sort();
        sets
    }

    /// The family names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.families.keys().cloned().collect()
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&PrometheusValue> {
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
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels)? {
            PrometheusValue::Gauge(v) => Some(v.as_f64()),
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    /// The value of the counter `name` with exactly these labels.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels)? {
            PrometheusValue::Counter(c) => Some(c.value.as_f64()),
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn histogram(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<&openmetrics_parser::HistogramValue> {
        match self.find(name, labels)? {
            PrometheusValue::Histogram(h) => Some(h),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// The cumulative buckets `(le, count)` of histogram `name` with exactly these labels.
    pub fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Option<Vec<(f64, f64)>> {
        let h = self.histogram(name, labels)?;
        Some(
            h.buckets
                .iter()
                .map(|b| (b.upper_bound, b.count.as_f64()))
                .collect(),
        )
    }

    /// `<name>_count` of a histogram with exactly these labels.
    pub fn hist_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.histogram(name, labels)?.count.map(|c| c as f64)
    }

    /// `<name>_sum` of a histogram with exactly these labels.
    pub fn hist_sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.histogram(name, labels)?.sum.map(|s| s.as_f64())
    }

    /// Every gauge sample of `name` summed (0 when absent).
    pub fn gauge_total(&self, name: &str) -> f64 {
        let Some(f) = self.families.get(name) else {
            return 0.0;
        };
        f.samples
            .iter()
            .map(|s| match &s.value {
                PrometheusValue::Gauge(v) => v.as_f64(),
                other => panic!("{name} is not a gauge: {other:?}"),
            })
            .sum()
    }

    /// Asserts no gauge sample of `name` is negative.
    pub fn assert_no_negative(&self, name: &str) {
        let Some(f) = self.families.get(name) else {
            return;
        };
        for s in &f.samples {
            if let PrometheusValue::Gauge(v) = &s.value {
                assert!(
                    v.as_f64() >= 0.0,
                    "{name}{:?} is negative: {}",
                    s.labels,
                    v.as_f64()
                );
            }
        }
    }
}

/// Runs `promtool check metrics` on `text`; panics (never skips) when promtool is missing.
pub fn promtool_check(text: &str) {
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
