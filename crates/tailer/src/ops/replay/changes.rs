//! The source `replay` feeds the pipeline from: the changes of a temporary slot copy, read
//! with the SQL decoding function instead of a replication connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use indicatif::ProgressBar;
use pgoutput::{Lsn, Message};
use tokio_postgres::{Client, RowStream};

use crate::config::SourceConfig;
use crate::error::TailerError;
use crate::ops::replay::ReplayPlan;
use crate::pg::names::quote_ident;
use crate::pg::slots;
use crate::relay::source::{Source, SourceEvent};

/// The changes of the temporary copy, fetched chunk by chunk with the SQL decoding function,
/// as the events a replication stream would deliver; ends after the last transaction whose
/// commit LSN is within the range.
pub(super) struct ChangesSource {
    client: Arc<Client>,
    copy: String,
    publication: String,
    from: Lsn,
    to: Lsn,
    chunk: i32,
    rows_in_chunk: i64,
    reading: Reading,
    pub(super) progress: ProgressBar,
    transactions: u64,
}

type PendingQuery = Pin<Box<dyn Future<Output = Result<RowStream, tokio_postgres::Error>> + Send>>;

/// Kept in the struct so that `next` stays cancel-safe: a chunk's rows are consumed from the
/// copy by the query itself, so neither the query nor its row stream may ever be dropped early.
enum Reading {
    Query(PendingQuery),
    Rows(Pin<Box<RowStream>>),
    Done,
}

impl ChangesSource {
    pub(super) fn new(
        client: Arc<Client>,
        copy: &str,
        source: &SourceConfig,
        plan: &ReplayPlan,
        chunk: i32,
        progress: ProgressBar,
    ) -> ChangesSource {
        let mut s = ChangesSource {
            client,
            copy: copy.to_owned(),
            publication: quote_ident(&source.publication),
            from: plan.from,
            to: plan.to,
            chunk: chunk.max(1),
            rows_in_chunk: 0,
            reading: Reading::Done,
            progress,
            transactions: 0,
        };
        s.reading = Reading::Query(s.query());
        s
    }

    fn query(&self) -> PendingQuery {
        let (client, copy, chunk, publication) = (
            Arc::clone(&self.client),
            self.copy.clone(),
            self.chunk,
            self.publication.clone(),
        );
        Box::pin(async move {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&copy, &chunk, &publication];
            client.query_raw(slots::CHANGES_SQL, params).await
        })
    }

    /// The event for one pgoutput message; `None` past the end of the range.
    fn event(&mut self, data: Bytes) -> Result<Option<SourceEvent>, TailerError> {
        let event = match data.first() {
            Some(b'B' | b'C' | b'M') => match pgoutput::decode(&data)? {
                Message::Begin(b) => {
                    if b.final_lsn > self.to {
                        return Ok(None);
                    }
                    if b.final_lsn < self.from {
                        return Err(TailerError::Bug(format!(
                            "the slot copy returned a transaction committed at {} before the \
                             requested start {}",
                            b.final_lsn, self.from
                        )));
                    }
                    SourceEvent::Begin {
                        final_lsn: b.final_lsn,
                        xid: b.xid,
                        commit_time: b.commit_time,
                    }
                }
                Message::Commit(c) => {
                    self.transactions += 1;
                    self.progress
                        .set_position(c.end_lsn.as_u64().saturating_sub(self.from.as_u64()));
                    self.progress.set_message(format!(
                        "{} transactions, at {}",
                        self.transactions, c.commit_lsn
                    ));
                    SourceEvent::Commit {
                        commit_lsn: c.commit_lsn,
                        end_lsn: c.end_lsn,
                    }
                }
                Message::LogicalMessage(m) => {
                    let transactional = m.flags & 1 == 1;
                    if !transactional && m.lsn > self.to {
                        return Ok(None);
                    }
                    SourceEvent::Message {
                        transactional,
                        lsn: m.lsn,
                        prefix: m.prefix,
                        content: m.content,
                    }
                }
                _ => SourceEvent::Data(data),
            },
            _ => SourceEvent::Data(data),
        };
        Ok(Some(event))
    }
}

impl Source for ChangesSource {
    async fn next(&mut self) -> Result<SourceEvent, TailerError> {
        loop {
            match &mut self.reading {
                Reading::Done => return Ok(SourceEvent::End),
                Reading::Query(query) => {
                    let rows = query.as_mut().await.map_err(|e| {
                        TailerError::postgres("reading changes from the slot copy", e)
                    })?;
                    self.rows_in_chunk = 0;
                    self.reading = Reading::Rows(Box::pin(rows));
                }
                Reading::Rows(rows) => match rows.next().await {
                    Some(row) => {
                        let row = row.map_err(|e| {
                            TailerError::postgres("reading changes from the slot copy", e)
                        })?;
                        self.rows_in_chunk += 1;
                        let data = Bytes::copy_from_slice(row.get::<_, &[u8]>(0));
                        match self.event(data)? {
                            Some(event) => return Ok(event),
                            None => self.reading = Reading::Done,
                        }
                    }
                    // A short chunk means the copy is drained: nothing more was committed.
                    None if self.rows_in_chunk < i64::from(self.chunk) => {
                        self.reading = Reading::Done
                    }
                    None => self.reading = Reading::Query(self.query()),
                },
            }
        }
    }

    /// The copy is temporary; there is nothing to confirm.
    fn confirm(&mut self, _lsn: Lsn) {}

    async fn close(self) {}
}
