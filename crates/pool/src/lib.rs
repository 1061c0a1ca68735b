//! Pool crate: filled by the pool issue.
