//! testdb.
