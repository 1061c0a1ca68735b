//! The notify-db migration set.
