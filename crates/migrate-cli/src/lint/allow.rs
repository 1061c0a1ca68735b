//! `lint-allow: rule: reason` exceptions: found in a migration's text, applied to its findings,
//! and reported when they lack a reason, name an unknown rule or are not used.

use squawk_linter::Rule;

use super::finding::Finding;

/// An exception comment: `lint-allow: rule: reason`.
pub(super) struct Allow {
    pub(super) rule: String,
    pub(super) reason: String,
    pub(super) file: String,
    pub(super) line: usize,
    pub(super) used: bool,
}

/// `lint-allow: rule: reason` comments (`--` or `//`) in a migration's text. Squawk's own
/// `-- squawk-ignore rule` comments work too, but need a reason after a second `--`
/// (`-- squawk-ignore rule -- reason`); without one they become `lint-allow-without-reason` entries.
pub(super) fn find_allows(text: &str, file: &str) -> Vec<Allow> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(p) = line.find("squawk-ignore") {
            let before = line[..p].trim_end();
            if before.ends_with("--") && !line[p..].contains("--") {
                let rule = line[p..]
                    .trim_start_matches("squawk-ignore-file")
                    .trim_start_matches("squawk-ignore")
                    .trim()
                    .trim_end_matches(['"', ')', ','])
                    .to_owned();
                out.push(Allow {
                    rule: if rule.is_empty() {
                        "squawk-ignore".into()
                    } else {
                        rule
                    },
                    reason: String::new(),
                    file: file.to_owned(),
                    line: n + 1,
                    used: false,
                });
            }
        }
        let Some(p) = line.find("lint-allow:") else {
            continue;
        };
        let before = line[..p].trim_end();
        if !(before.ends_with("--") || before.ends_with("//")) {
            continue;
        }
        let rest = line[p + "lint-allow:".len()..].trim();
        let (rule, reason) = rest.split_once(':').unwrap_or((rest, ""));
        out.push(Allow {
            rule: rule.trim().to_owned(),
            reason: reason
                .trim()
                .trim_end_matches(['"', ')', ','])
                .trim()
                .to_owned(),
            file: file.to_owned(),
            line: n + 1,
            used: false,
        });
    }
    out
}

const OWN_RULES: [&str; 3] = [
    "statement-refused-in-transaction",
    "missing-down",
    "update-or-delete-without-where",
];

/// Rules no exception covers: squawk cannot read the statement, or the runner refuses the
/// migration whatever the linter says.
const NOT_ALLOWABLE: [&str; 2] = ["syntax-error", "transaction-control-in-migration"];

/// Drops findings a valid exception covers; adds findings about bad or unused exceptions.
pub(super) fn apply_allows(found: Vec<Finding>, allows: &mut [Allow], id: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let meta = |a: &Allow, rule: &str, message: String, help: &str| Finding {
        file: a.file.clone(),
        line: a.line,
        rule: rule.into(),
        message,
        help: help.into(),
        migration: id.into(),
        direction: "up",
    };
    for a in allows.iter() {
        if a.reason.is_empty() {
            out.push(meta(
                a,
                "lint-allow-without-reason",
                format!("the exception for {} gives no reason", a.rule),
                "write `-- lint-allow: <rule>: <why it is safe here>`",
            ));
        } else if NOT_ALLOWABLE.contains(&a.rule.as_str()) {
            out.push(meta(
                a,
                "lint-allow-not-possible",
                format!("{} findings cannot be allowed", a.rule),
                "fix the statement instead (transaction control: split the migration, or make it \
                 non-transactional)",
            ));
        } else if a.rule.parse::<Rule>().is_err() && !OWN_RULES.contains(&a.rule.as_str()) {
            out.push(meta(
                a,
                "unknown-lint-rule",
                format!("lint-allow names an unknown rule {:?}", a.rule),
                "use a rule name as printed by a finding",
            ));
        }
    }
    for f in found {
        let allow = allows.iter_mut().find(|a| {
            a.rule == f.rule && !a.reason.is_empty() && !NOT_ALLOWABLE.contains(&f.rule.as_str())
        });
        match allow {
            Some(a) => a.used = true,
            None => out.push(f),
        }
    }
    for a in allows.iter() {
        if !a.used && !a.reason.is_empty() && out.iter().all(|f| f.line != a.line) {
            out.push(meta(
                a,
                "unused-lint-allow",
                format!("lint-allow: {} suppresses nothing in {id}", a.rule),
                "remove the exception",
            ));
        }
    }
    out.sort_by(|a, b| (&a.file, a.line, &a.rule).cmp(&(&b.file, b.line, &b.rule)));
    out
}
