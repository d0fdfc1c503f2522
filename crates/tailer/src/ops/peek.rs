//! `outbox-tailer peek`: the events waiting in the slot, routed as `run` would publish them.
//!
//! The live slot is never read, so it never moves and a running tailer is not disturbed:
//!
//! ```text
//!   live slot ──pg_copy_logical_replication_slot(live, tmp, temporary)──▶ tmp (this session only)
//!   tmp ──pg_logical_slot_get_binary_changes(tmp, NULL, chunk, pgoutput options)──▶ rows
//!   rows ──▶ TxnAssembler ──▶ OutboxEvent::route ──▶ what would be published
//! ```
//!
//! The assembler and the router are the pipeline's own, so every event is placed, numbered and
//! routed by the same code that publishes it in `run`.
//!
//! The copy starts at the live slot's `confirmed_flush_lsn`, so what it shows is exactly what
//! a (re)started tailer would publish next. It is consumed chunk by chunk (the SQL functions
//! count *changes* — Begin, Relation, Insert, Commit rows — not events, so chunks are fetched
//! until `limit` events are found or the slot is drained) and dropped with the session.

use bytes::Bytes;
use serde::Serialize;

use crate::config::{RouteConfig, SourceConfig};
use crate::error::TailerError;
use crate::pg::names::quote_ident;
use crate::pg::slots::{self, TempCopy};
use crate::relay::assemble::{event_from_pgoutput, OutboxEvent, Step, TxnAssembler};
use crate::relay::decode::EventDecoder;
use crate::relay::route::Router;

/// One event as it would be published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeekedEvent {
    /// The transaction's commit LSN (header `outbox-lsn`).
    pub commit_lsn: String,
    /// Index in the transaction (header `outbox-seq`).
    pub seq: u32,
    pub xid: u32,
    /// Microseconds since the Unix epoch (header `outbox-commit-time-us`); none for a
    /// non-transactional logical message, which never commits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_time_us: Option<i64>,
    pub topic: String,
    pub key: Option<String>,
    pub headers: Vec<Header>,
    pub payload_bytes: usize,
    /// Only with `--show-payload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Set when the event cannot be routed: it goes to the dead-letter topic (`topic`), or,
    /// without one, stops `run` (`topic` is then empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unroutable: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    pub name: String,
    /// `None`: a header with a null value.
    pub value: Option<String>,
}

/// What `peek` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeekReport {
    pub slot: String,
    pub confirmed_flush_lsn: String,
    pub events: Vec<PeekedEvent>,
    /// More events wait beyond `limit`.
    pub more: bool,
}

/// Options of one peek.
#[derive(Debug, Clone)]
pub struct PeekOptions {
    pub route: RouteConfig,
    pub message_prefix: Option<String>,
    pub limit: usize,
    pub show_payload: bool,
}

/// Read up to `limit` waiting events through a temporary copy of the slot.
pub async fn peek(config: &SourceConfig, opts: &PeekOptions) -> Result<PeekReport, TailerError> {
    let client = crate::pg::connect::connect(config).await?;
    let Some(slot) = slots::slot_info(&client, &config.slot).await? else {
        return Err(TailerError::Database(format!(
            "replication slot {} does not exist: nothing to peek at",
            config.slot
        )));
    };
    if slot.lost {
        return Err(TailerError::SlotInvalidated(format!(
            "slot {} is invalidated (wal_status = lost): its events can no longer be read; see \
             `outbox-tailer status` and docs/operations.md",
            config.slot
        )));
    }
    let confirmed = slot.confirmed_flush_lsn.to_string();
    let copy = TempCopy::create(&client, &config.slot, "peek").await?;
    let result = read_events(&client, &copy.name, config, opts).await;
    copy.drop(&client).await;
    let (events, more) = result?;
    Ok(PeekReport {
        slot: config.slot.clone(),
        confirmed_flush_lsn: confirmed,
        events,
        more,
    })
}

async fn read_events(
    client: &tokio_postgres::Client,
    copy: &str,
    config: &SourceConfig,
    opts: &PeekOptions,
) -> Result<(Vec<PeekedEvent>, bool), TailerError> {
    let decoder = EventDecoder::new(config.table.clone(), opts.route.clone())?;
    let mut assembler = TxnAssembler::new(decoder, opts.message_prefix.clone());
    // Signed like the records `run` publishes from this slot.
    let source = slots::source_id(client, &config.slot).await?;
    let router = Router::new(opts.route.clone())?.with_source(&source);
    let publication = quote_ident(&config.publication);
    // Changes, not events: Begin, Relation and Commit rows count too.
    let chunk = i32::try_from(opts.limit.saturating_mul(2).saturating_add(64)).unwrap_or(i32::MAX);
    let mut events = Vec::new();
    loop {
        let rows = client
            .query(slots::CHANGES_SQL, &[&copy, &chunk, &publication])
            .await
            .map_err(|e| TailerError::postgres("reading changes from the slot copy", e))?;
        let drained = rows.len() < chunk as usize;
        for row in rows {
            let data = Bytes::from(row.get::<_, Vec<u8>>(0));
            let event = match assembler.step(event_from_pgoutput(data)?)? {
                Step::Event(event) | Step::Standalone { event, .. } => event,
                Step::Skip | Step::Begin | Step::Commit { .. } => continue,
            };
            if events.len() == opts.limit {
                return Ok((events, true));
            }
            events.push(peeked(&router, &event, opts.show_payload));
        }
        if drained {
            return Ok((events, false));
        }
    }
}

/// The event as `run` publishes it, or why `run` cannot.
fn peeked(router: &Router, event: &OutboxEvent, show_payload: bool) -> PeekedEvent {
    let position = event.position;
    let lossy = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let base = PeekedEvent {
        commit_lsn: position.commit_lsn.to_string(),
        seq: event.seq,
        xid: position.xid,
        commit_time_us: position.commit_time.map(|t| t.unix_micros()),
        topic: String::new(),
        key: None,
        headers: Vec::new(),
        payload_bytes: 0,
        payload: None,
        unroutable: None,
    };
    match event.route(router) {
        Ok(r) => PeekedEvent {
            topic: r.record.topic.clone(),
            key: r.record.key.as_ref().map(lossy),
            headers: r
                .record
                .headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.to_string(),
                    value: value.as_ref().map(lossy),
                })
                .collect(),
            payload_bytes: r.record.payload.as_ref().map_or(0, Bytes::len),
            payload: if show_payload {
                r.record.payload.as_ref().map(lossy)
            } else {
                None
            },
            unroutable: r.dead_letter_reason,
            ..base
        },
        Err(TailerError::Unroutable { reason, .. }) => PeekedEvent {
            unroutable: Some(format!("{reason} (no dead-letter topic: `run` stops here)")),
            ..base
        },
        Err(other) => PeekedEvent {
            unroutable: Some(other.to_string()),
            ..base
        },
    }
}

/// The table `peek` prints.
pub fn render(report: &PeekReport) -> String {
    let mut out = format!(
        "slot {} (confirmed_flush_lsn {}): {} event(s) waiting{}\n",
        report.slot,
        report.confirmed_flush_lsn,
        report.events.len(),
        if report.more {
            ", more beyond --limit"
        } else {
            ""
        }
    );
    if report.events.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "{:<14} {:>4} {:<32} {:<24} {:<36} {:>8}\n",
        "COMMIT LSN", "SEQ", "TOPIC", "KEY", "ID", "BYTES"
    ));
    for e in &report.events {
        let id = e
            .headers
            .iter()
            .find(|h| h.name == crate::relay::route::HEADER_ID)
            .and_then(|h| h.value.as_deref())
            .unwrap_or("-");
        out.push_str(&format!(
            "{:<14} {:>4} {:<32} {:<24} {:<36} {:>8}\n",
            e.commit_lsn,
            e.seq,
            if e.topic.is_empty() { "-" } else { &e.topic },
            e.key.as_deref().unwrap_or("-"),
            id,
            e.payload_bytes
        ));
        if let Some(reason) = &e.unroutable {
            out.push_str(&format!("    unroutable: {reason}\n"));
        }
        if let Some(payload) = &e.payload {
            out.push_str(&format!("    payload: {payload}\n"));
        }
    }
    out
}
