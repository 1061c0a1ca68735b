//! What doctor reports: its options, its outcome, and the report it writes line by line.

use std::fmt::Display;
use std::io::Write;

/// Where the suggested fixes are explained.
pub(super) const DOC: &str = "docs/operations.md";

/// What doctor may accept.
#[derive(Debug, Clone, PartialEq)]
pub struct DoctorOptions {
    /// Replica lag (seconds) above which the lag check fails (30).
    pub max_lag_seconds: f64,
}

impl Default for DoctorOptions {
    fn default() -> DoctorOptions {
        DoctorOptions {
            max_lag_seconds: 30.0,
        }
    }
}

/// What doctor found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoctorReport {
    /// The checks that failed.
    pub failed: usize,
    /// The settings could not be loaded (so nothing else was checked).
    pub settings_failed: bool,
}

impl DoctorReport {
    /// `doctor found N problem(s)` when anything failed (the line a command ends with).
    pub fn problems(&self) -> Option<String> {
        match (self.failed, self.settings_failed) {
            (0, _) => None,
            (_, true) => Some("doctor found 1 problem".to_owned()),
            (n, false) => Some(format!("doctor found {n} problem(s)")),
        }
    }
}

/// Doctor could not write its report.
#[derive(Debug, thiserror::Error)]
#[error("writing the doctor report: {0}")]
pub struct DoctorError(#[source] pub std::io::Error);

/// The checks' outcome so far, written line by line to `out`.
pub(super) struct Report<'a> {
    /// Where the lines go.
    pub(super) out: &'a mut dyn Write,
    /// The checks that failed so far.
    pub(super) failed: usize,
    /// The first write that failed (the checks go on; the run reports it at the end).
    pub(super) write_error: Option<std::io::Error>,
}

impl Report<'_> {
    /// Writes one line (the first failed write is kept for the end).
    pub(super) fn line(&mut self, text: std::fmt::Arguments<'_>) {
        if self.write_error.is_none()
            && let Err(e) = writeln!(self.out, "{text}")
        {
            self.write_error = Some(e);
        }
    }

    /// A check that passed.
    pub(super) fn ok(&mut self, check: &str, detail: impl Display) {
        self.line(format_args!("✓ {check}: {detail}"));
    }

    /// A check that failed, with its fix.
    pub(super) fn fail(&mut self, check: &str, detail: impl Display, fix: impl Display) {
        self.line(format_args!("✗ {check}: {detail}"));
        self.line(format_args!("    fix: {fix}"));
        self.failed += 1;
    }
}
