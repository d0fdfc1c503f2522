//! The scenarios, each on a fresh cluster and broker, every relay on the same data.

mod database;
mod drain;
mod env;
mod live;

pub use drain::{backlog, huge};
pub use env::{Env, Tools};
pub use live::live;
