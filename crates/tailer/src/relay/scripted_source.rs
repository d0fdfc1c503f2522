//! A scripted [`Source`] for unit tests.

use pgoutput::Lsn;

use crate::error::TailerError;
use crate::relay::source::{Source, SourceEvent};

/// A scripted source for unit tests: yields its events, then ends the stream with a transient
/// error; records what was confirmed.
#[derive(Debug, Default)]
pub struct ScriptedSource {
    pub events: std::collections::VecDeque<SourceEvent>,
    pub confirmed: Vec<Lsn>,
}

impl Source for ScriptedSource {
    async fn next(&mut self) -> Result<SourceEvent, TailerError> {
        match self.events.pop_front() {
            Some(e) => Ok(e),
            None => Err(TailerError::Replication {
                message: "script ended".into(),
                sqlstate: None,
                action: crate::error::Action::Retry,
            }),
        }
    }

    fn confirm(&mut self, lsn: Lsn) {
        self.confirmed.push(lsn);
    }

    async fn close(self) {}
}
