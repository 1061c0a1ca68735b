//! Metrics: filled by the metrics issue.
