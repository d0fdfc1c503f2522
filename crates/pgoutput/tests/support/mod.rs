//! Helpers shared by this crate's integration tests (and, via `#[path]`, the workspace's
//! golden capture test).

pub mod golden_file;
pub mod golden_shape;
