//! An in-memory [`Sink`] for unit tests.

use tokio::sync::mpsc;

use crate::error::TailerError;
use crate::relay::progress::Ticket;
use crate::relay::route::Record;
use crate::relay::sink::{Ack, Sink};

/// An in-memory sink for unit tests: records are kept, acks sent at once or held back.
#[derive(Debug)]
pub struct MemorySink {
    pub records: Vec<(Record, Ticket)>,
    acks: mpsc::UnboundedSender<Ack>,
    pub auto_ack: bool,
}

impl MemorySink {
    pub fn new(acks: mpsc::UnboundedSender<Ack>, auto_ack: bool) -> Self {
        MemorySink {
            records: Vec::new(),
            acks,
            auto_ack,
        }
    }

    /// Ack the record at `index` now.
    pub fn ack(&self, index: usize) {
        let _ = self.acks.send(Ack {
            ticket: self.records[index].1,
            result: Ok(()),
        });
    }
}

impl Sink for MemorySink {
    async fn send(&mut self, record: Record, ticket: Ticket) -> Result<(), TailerError> {
        if self.auto_ack {
            let _ = self.acks.send(Ack {
                ticket,
                result: Ok(()),
            });
        }
        self.records.push((record, ticket));
        Ok(())
    }
}
