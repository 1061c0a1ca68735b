//! `revision --autogenerate`: the difference between the schema the migration set produces at
//! head and a desired schema (a development database), written as migrations in their
//! zero-downtime form.
//!
//! [`catalog::read`] reads both databases into a structured [`Catalog`]; [`plan`] compares them and
//! orders the changes into [`Step`]s (one migration each): schema changes in a transaction,
//! `CONCURRENTLY` index builds and batched backfills outside one, then the validations that must
//! come in a later migration than their `NOT VALID`. [`write`] renders the steps as the project's
//! `.rs` or `.sql` files. Renames and type changes are never guessed: they come back as
//! [`Plan::unresolved`], written as a commented block.

pub mod barrel;
mod builder;
pub mod catalog;
pub mod command;
mod ddl;
mod diff;
mod error;
mod step;
mod tables;
mod write;

pub use catalog::Catalog;

pub use diff::plan;
pub use error::AutogenError;
pub use step::{Plan, Step, step_id};
pub use write::{GeneratedFile, render_files};
