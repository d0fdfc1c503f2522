//! Ephemeral services for tests, benchmarks and the demo: the one place in the workspace that
//! starts processes.
//!
//! - [`PgCluster`]: a throwaway PostgreSQL cluster (`initdb` into a temp directory,
//!   `wal_level=logical`, fsync off, a free port on 127.0.0.1), with a fresh database per test.
//! - [`TansuBroker`]: a real Kafka-protocol broker (tansu) on a free port.
//! - [`TlsFront`]: TLS in front of a tansu broker, which cannot serve TLS itself.
//! - [`MockKafka`]: librdkafka's in-process mock cluster, for tests that need Kafka transactions
//!   and for benchmarks that isolate the relay's own speed.
//!
//! Every handle stops its process and removes its files on drop, also while a test panics.
//! A service that cannot start is an error naming the fix, never a skip.

mod kafka;
mod mock;
mod net;
mod pg;
mod process;
mod standby;
mod tansu;
mod tls_front;

pub use kafka::{consume_until, create_topic, read_to_end, KafkaRecord};
pub use mock::MockKafka;
pub use net::free_port;
pub use pg::{
    ensure_server, pg_bin_of, pg_cache_dir, requested_major, PgCluster, PgConfig, ServerCert,
    StopMode, TestDb, IGNORE_SYSTEM_ENV,
};
pub use tansu::{TansuBroker, TansuStorage};
pub use tls_front::TlsFront;
