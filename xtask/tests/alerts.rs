//! ops/prometheus: the rules load in promtool, their unit tests pass, every alert is unit-tested
//! (fires, only pending before its `for:`), and every alert's runbook is a section of
//! docs/operations.md.

mod workspace;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

use workspace::{read, root};

fn yaml(rel: &str) -> Yaml {
    YamlLoader::load_from_str(&read(rel))
        .unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{rel} is empty"))
}

/// Runs promtool with `args` in the workspace root; panics with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is required (Debian package `prometheus`; `cargo xtask test` installs it): {e}"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// A Prometheus duration such as `5m`, `90s`, `1h`, `1h30m`.
fn duration(text: &str) -> Duration {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .unwrap_or_else(|_| panic!("bad duration {text:?}"));
        number.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => panic!("bad unit in duration {text:?}"),
        };
    }
    assert!(number.is_empty(), "duration {text:?} lacks a unit");
    Duration::from_secs(total)
}

/// Every alert rule of ops/prometheus/alerts.yml.
fn alerts() -> Vec<Yaml> {
    let doc = yaml("ops/prometheus/alerts.yml");
    let groups = doc["groups"].as_vec().expect("alerts.yml: groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_vec().expect("a group has rules").clone())
        .filter(|r| !r["alert"].is_badvalue())
        .collect()
}

/// GitHub's anchor of a heading: lower case, spaces to `-`, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn rules_load_and_their_unit_tests_pass() {
    let checked = promtool(&[
        "check",
        "rules",
        "ops/prometheus/recording.yml",
        "ops/prometheus/alerts.yml",
    ]);
    assert!(
        checked.matches("SUCCESS").count() == 2,
        "promtool check rules:\n{checked}"
    );
    let mut tests: Vec<String> = std::fs::read_dir(root().join("ops/prometheus/tests"))
        .expect("ops/prometheus/tests")
        .flatten()
        .map(|e| format!("ops/prometheus/tests/{}", e.file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".yml"))
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "no promtool test files");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let out = promtool(&args);
    assert!(out.contains("SUCCESS"), "promtool test rules:\n{out}");
}

/// The eval times of one alert in one test group: (firing, silent).
type EvalTimes = (Vec<Duration>, Vec<Duration>);

#[test]
fn every_alert_is_tested_firing_and_pending_before_its_for() {
    let doc = yaml("ops/prometheus/tests/alerts_test.yml");
    // alert -> (firing eval times, silent eval times), per test group.
    let mut seen: BTreeMap<String, Vec<EvalTimes>> = BTreeMap::new();
    for group in doc["tests"].as_vec().expect("alerts_test.yml: tests") {
        let mut in_group: BTreeMap<String, EvalTimes> = BTreeMap::new();
        for case in group["alert_rule_test"].as_vec().into_iter().flatten() {
            let name = case["alertname"].as_str().expect("alertname").to_owned();
            let at = duration(case["eval_time"].as_str().expect("eval_time"));
            let firing = !case["exp_alerts"].as_vec().expect("exp_alerts").is_empty();
            let entry = in_group.entry(name).or_default();
            if firing { &mut entry.0 } else { &mut entry.1 }.push(at);
        }
        for (name, times) in in_group {
            seen.entry(name).or_default().push(times);
        }
    }
    let alerts = alerts();
    assert!(alerts.len() >= 10, "too few alerts: {}", alerts.len());
    for rule in &alerts {
        let name = rule["alert"].as_str().expect("alert name");
        let hold = duration(
            rule["for"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no for:")),
        );
        assert!(!hold.is_zero(), "{name}: for: must not be 0");
        let groups = seen
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no promtool test"));
        // In one group: it fires at some time, and is silent at an earlier time less than
        // its `for:` before that (so pending is not firing).
        let pending_then_firing = groups.iter().any(|(firing, silent)| {
            firing
                .iter()
                .any(|f| silent.iter().any(|s| s < f && f.saturating_sub(*s) <= hold))
        });
        assert!(
            pending_then_firing,
            "{name}: no test where it is silent less than for: ({hold:?}) before it fires"
        );
    }
}

#[test]
fn every_alert_has_summary_description_and_a_runbook_section() {
    let manifest = read("Cargo.toml");
    let repository = manifest
        .lines()
        .find_map(|l| l.strip_prefix("repository = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("workspace repository in Cargo.toml");
    let prefix = format!("{repository}/blob/main/docs/operations.md#");
    let ops = read("docs/operations.md");
    let anchors: Vec<String> = ops
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    assert!(
        ops.contains("## Alerts and dashboard"),
        "docs/operations.md has no section \"Alerts and dashboard\""
    );
    for rule in alerts() {
        let name = rule["alert"].as_str().expect("alert name");
        let notes = &rule["annotations"];
        for key in ["summary", "description"] {
            assert!(
                notes[key].as_str().is_some_and(|t| t.len() > 10),
                "{name}: no {key} annotation"
            );
        }
        let url = notes["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no runbook_url"));
        let section = url
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not under {prefix}"));
        assert!(
            anchors.iter().any(|a| a == section),
            "{name}: runbook_url {url}: docs/operations.md has no section #{section}"
        );
        assert!(
            rule["labels"]["severity"].as_str().is_some(),
            "{name}: no severity label"
        );
    }
}
