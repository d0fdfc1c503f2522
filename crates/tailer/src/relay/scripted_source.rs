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
    /// Once the script is done, wait for more instead of ending the stream.
    pub wait_when_done: bool,
}

impl Source for ScriptedSource {
    async fn next(&mut self) -> Result<SourceEvent, TailerError> {
        match self.events.pop_front() {
            Some(e) => Ok(e),
            None if self.wait_when_done => std::future::pending().await,
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
