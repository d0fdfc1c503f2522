//! outbox-tailer: tails the PostgreSQL WAL through a logical replication slot (`pgoutput`),
//! turns outbox inserts into events, publishes them to Kafka and confirms each LSN only after
//! Kafka acknowledged everything up to it.
//!
//! The tree is the architecture; imports flow one way, down this list:
//!
//! ```text
//!   cli, run, poll, ops        commands
//!   relay, background          the pipeline's stages; the tasks beside it
//!   pg, config, metrics        PostgreSQL plumbing; settings; the metrics registry
//!   error, shutdown, backoff   leaves
//! ```
//!
//! The correctness argument is in `docs/architecture.md`; [`relay::progress`] holds its core.

pub mod background;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod error;
pub mod metrics;
pub mod ops;
pub mod pg;
pub mod poll;
pub mod relay;
pub mod run;
pub mod shutdown;

pub use config::TailerConfig;
pub use error::TailerError;
pub use relay::pipeline::Stats;
pub use run::run;
pub use shutdown::Shutdown;

/// jemalloc for Rust and (through its `override_allocator_on_supported_platforms` feature) for
/// librdkafka's C code: records are allocated on one thread and freed on another, which glibc's
/// malloc pays for in consolidation and locking (docs/bench/profile/README.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
