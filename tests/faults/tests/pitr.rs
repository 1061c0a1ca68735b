//! `pitr-drill` (`cargo xtask pitr-drill`) restores a throwaway cluster to a point in time and verifies it; when
//! the restore is wrong (replayed past the target), it says so and fails.

use std::process::{Command, Output};

fn drill(extra: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pitr-drill"))
        .args(extra)
        .output()
        .expect("run pitr-drill");
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn drill_restores_exactly_the_rows_before_the_target_time() {
    let (out, text) = drill(&[
        "--rows-before-backup",
        "40",
        "--rows-before-target",
        "73",
        "--rows-after-target",
        "29",
    ]);
    assert!(out.status.success(), "pitr-drill failed:\n{text}");
    // 40 before the backup + 73 after it = 113 rows at the target time; none of the 29 later ones.
    assert!(
        text.contains("✓ notifications: exactly the 113 rows committed before "),
        "row count not verified:\n{text}"
    );
    assert!(
        text.contains("(40 before the backup + 73 after it)"),
        "{text}"
    );
    assert!(
        text.contains("✓ notifications: 0 of the 29 rows written after the target time"),
        "{text}"
    );
    assert!(
        text.contains("✓ notifications: the 10 rows deleted after the target time are back"),
        "{text}"
    );
    assert!(
        text.contains("✓ templates: the dropped table is back with its 5 rows"),
        "{text}"
    );
    assert!(
        text.contains("recovery_target_time = '"),
        "target time not printed:\n{text}"
    );
    assert!(
        text.contains("log: recovery stopping before commit"),
        "server log line not shown:\n{text}"
    );
    assert!(!text.contains('✗'), "{text}");
    assert!(text.contains("pitr-drill passed in "), "{text}");
    // Every step is printed, in order.
    let mut at = 0;
    for n in 1..=12 {
        let tag = format!("[{n:>2}] ");
        let pos = text[at..]
            .find(&tag)
            .unwrap_or_else(|| panic!("step {n} missing or out of order:\n{text}"));
        at += pos + tag.len();
    }
}

#[test]
fn drill_fails_when_the_restore_goes_past_the_target() {
    // Self-test: replay to the end of the WAL instead of stopping at the target time. The later
    // rows are then present, the deleted rows and the dropped table are not: every check must fail.
    let (out, text) = drill(&[
        "--rows-before-backup",
        "20",
        "--rows-before-target",
        "30",
        "--rows-after-target",
        "15",
        "--ignore-target",
    ]);
    assert!(
        !out.status.success(),
        "pitr-drill passed although the restore replayed past the target:\n{text}"
    );
    assert!(
        text.contains("✗ MISMATCH notifications: 55 rows") && text.contains("expected 50 rows"),
        "row mismatch not reported:\n{text}"
    );
    assert!(
        text.contains("15 of the 15 rows written after the target time are present"),
        "{text}"
    );
    assert!(
        text.contains(
            "✗ MISMATCH notifications: 0 of the 10 rows deleted after the target time are back"
        ),
        "{text}"
    );
    assert!(
        text.contains("✗ MISMATCH templates: the dropped table is not back"),
        "{text}"
    );
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(last.contains("does not match the state at"), "{text}");
}

#[test]
fn drill_rejects_arguments_it_cannot_verify() {
    let (out, text) = drill(&["--rows-before-backup", "5"]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("--rows-before-backup must be > 10"), "{text}");
}
