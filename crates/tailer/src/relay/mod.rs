//! The relay: the stages of the pipeline, one module each, in the order an event flows.
//!
//! ```text
//!   source ──▶ decode ──▶ route ──▶ sink (Kafka) ──acks──▶ progress
//!     ▲                                                       │
//!     └──────── standby status update: confirmed LSN ◀────────┘
//! ```
//!
//! [`pipeline`] runs them in one loop; [`stream`] keeps that loop going across reconnects for
//! `run`. The correctness argument is in `docs/architecture.md`; [`progress`] holds its core.

pub mod assemble;
pub mod decode;
pub mod pipeline;
pub mod progress;
pub mod read_pacing;
pub mod record;
pub mod route;
#[cfg(test)]
pub mod scripted_source;
pub mod sink;
pub mod source;
pub mod stream;
