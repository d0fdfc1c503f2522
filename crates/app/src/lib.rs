//! The producing side of the outbox pattern: an example orders service, a writer library that
//! emits events inside the caller's own transaction, a migrations runner and a load generator.
//!
//! ```text
//!   BEGIN; INSERT INTO orders …; writer::emit(&tx, &event) …; COMMIT
//!                                        │
//!                                        ▼  WAL ─▶ outbox-tailer ─▶ Kafka
//! ```
//!
//! This crate never talks to Kafka.
//!
//! - [`writer`]: [`emit`], [`emit_many`], [`emit_message`] — usable by any tokio-postgres service.
//! - [`orders`]: the example service, an order and its `OrderCreated` event in one transaction.
//! - [`migrate`]: forward-only SQL migrations, applied exactly once.
//! - [`load`]: the load generator.
//! - [`cli`]: the `outbox-app` command line.

pub mod cli;
pub mod connect;
pub mod duration;
pub mod error;
pub mod load;
pub mod migrate;
pub mod orders;
pub mod writer;

pub use error::{AppError, Result};
pub use writer::{
    emit, emit_many, emit_message, emit_messages, MessageEnvelope, NewEvent, OutboxColumns,
    OutboxTable, OutboxWriter, DEFAULT_MESSAGE_PREFIX, DEFAULT_OUTBOX_TABLE,
};
