//! Where `replay`'s records go (Kafka, stdout as JSON lines, nowhere for a dry run), its
//! progress bar, and the summary it prints.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::error::TailerError;
use crate::ops::replay::{ReplayPlan, ReplaySummary};
use crate::relay::progress::Ticket;
use crate::relay::route::Record;
use crate::relay::sink::{Ack, KafkaSink, Sink};

pub(super) fn progress_bar(plan: &ReplayPlan) -> ProgressBar {
    let total = plan.to.as_u64().saturating_sub(plan.from.as_u64()).max(1);
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "replay {bar:40} {percent:>3}% of the WAL range · {msg} · {elapsed_precise}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Where replayed records go.
pub(super) enum Target {
    Kafka(Box<KafkaSink>),
    /// One JSON object per line on stdout; acked once written.
    Stdout(mpsc::UnboundedSender<Ack>),
    /// `--dry-run`: acked at once, nothing written.
    Discard(mpsc::UnboundedSender<Ack>),
}

/// A sink that counts records per topic before handing them to the target.
pub(super) struct CountingSink {
    pub(super) inner: Target,
    pub(super) by_topic: BTreeMap<String, u64>,
}

impl Sink for CountingSink {
    async fn send(&mut self, record: Record, ticket: Ticket) -> Result<(), TailerError> {
        *self.by_topic.entry(record.topic.clone()).or_default() += 1;
        let acks = match &mut self.inner {
            Target::Kafka(kafka) => return kafka.send(record, ticket).await,
            Target::Stdout(acks) => {
                println!("{}", json_line(&record)?);
                acks
            }
            Target::Discard(acks) => acks,
        };
        let _ = acks.send(Ack {
            ticket,
            result: Ok(()),
        });
        Ok(())
    }
}

/// A record as one JSON object: topic, key, headers, and the payload as text when it is
/// UTF-8 (JSON payloads are), else as hex in `payload_hex`.
fn json_line(record: &Record) -> Result<String, TailerError> {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let mut line = serde_json::Map::new();
    line.insert("topic".into(), record.topic.clone().into());
    line.insert(
        "key".into(),
        record
            .key
            .as_ref()
            .map(text)
            .map_or(serde_json::Value::Null, Into::into),
    );
    let headers: serde_json::Map<String, serde_json::Value> = record
        .headers
        .iter()
        .map(|(k, v)| {
            let value = v
                .as_ref()
                .map_or(serde_json::Value::Null, |v| text(v).into());
            (k.to_string(), value)
        })
        .collect();
    line.insert("headers".into(), headers.into());
    match &record.payload {
        None => {
            line.insert("payload".into(), serde_json::Value::Null);
        }
        Some(p) => match std::str::from_utf8(p) {
            Ok(s) => {
                line.insert("payload".into(), s.into());
            }
            Err(_) => {
                let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
                line.insert("payload_hex".into(), hex.into());
            }
        },
    }
    serde_json::to_string(&line)
        .map_err(|e| TailerError::Bug(format!("cannot print a record as JSON: {e}")))
}

/// The summary `replay` prints (on stderr when records go to stdout).
pub fn render(s: &ReplaySummary) -> String {
    let verb = if s.dry_run {
        "would replay"
    } else if s.complete {
        "replayed"
    } else {
        "INTERRUPTED after replaying"
    };
    let mut out = format!(
        "{verb} {} event(s) from {} transaction(s) committed in {}..={} (read from a copy of \
         slot {}) to {} in {:.1} s\n",
        s.events,
        s.transactions,
        s.from_lsn,
        s.to_lsn,
        s.read_from_slot,
        s.target,
        Duration::from_millis(s.elapsed_ms).as_secs_f64()
    );
    for (topic, n) in &s.events_by_topic {
        out.push_str(&format!("  {n:>10}  {topic}\n"));
    }
    if s.dead_lettered > 0 {
        out.push_str(&format!(
            "  ({} to the dead-letter topic)\n",
            s.dead_lettered
        ));
    }
    if !s.complete && !s.dry_run {
        out.push_str(&format!(
            "not every event was acked: run again with --from-lsn {} to finish (events acked \
             before it are not sent again)\n",
            s.resume_from_lsn
        ));
    }
    out
}
