//! Migration engine: filled by the migrate issue.
