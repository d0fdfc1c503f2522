//! `outbox-app`: the example orders service. Its commands arrive with the app issue; until then
//! every command says so and exits non-zero, so nobody mistakes it for a working demo.

use std::process::ExitCode;

fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_default();
    eprintln!(
        "outbox-app {command}: not built yet. The orders service, writer library, load generator \
         and the one-command demo arrive with the app issue; until then see README.md \
         (\"Set up on a fresh machine\") and run `scripts/test` to see the tailer work \
         end to end against real PostgreSQL and Kafka-protocol brokers."
    );
    ExitCode::from(2)
}
