//! PostgreSQL plumbing shared by `run`, the operator commands, the background tasks and
//! `poll`: connections (with TLS), setup and preflight, slots and their status, and the names
//! that go into SQL.

pub mod connect;
pub mod errors;
pub mod failover;
pub mod names;
pub mod server;
pub mod setup;
pub mod slot_status;
pub mod slots;
pub mod tls;
