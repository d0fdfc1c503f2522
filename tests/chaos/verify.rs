//! The verifier: every topic read from the beginning, judged against the database.
//!
//! - **nothing lost**: every outbox row in the database (what committed) is in Kafka;
//! - **nothing invented**: no record of a rolled-back transaction, no id the database lacks;
//! - **order**: per aggregate, after removing duplicates (first copy wins), the sequence
//!   numbers in partition order are exactly 0, 1, 2, … — the commit order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use outbox_testkit::{read_to_end, KafkaRecord};
use tokio_postgres::Client;

use crate::workload::{aggregate_type_of, AGGREGATE_TYPES};

/// One committed event, as the database has it.
#[derive(Debug, Clone)]
pub struct Committed {
    pub id: String,
    pub aggregate_id: String,
    pub seq: i64,
}

/// What the database says committed.
pub async fn committed_events(client: &Client) -> anyhow::Result<Vec<Committed>> {
    let rows = client
        .query(
            "SELECT id::text, aggregateid, (payload->>'seq')::bigint FROM outbox",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Committed {
            id: r.get(0),
            aggregate_id: r.get(1),
            seq: r.get(2),
        })
        .collect())
}

/// The verdict, with what is needed to debug a failure.
#[derive(Debug, Default)]
pub struct Verdict {
    pub committed: usize,
    pub records: usize,
    pub duplicates: usize,
    /// Duplicates whose copies carry the same CreateTime: the producer retried one record
    /// (a broker restart lost its sequence state), the relay sent it once.
    pub producer_retries: usize,
    pub missing: Vec<String>,
    pub rolled_back_seen: Vec<String>,
    pub unknown: Vec<String>,
    pub order_violations: Vec<String>,
}

impl Verdict {
    /// Duplicates the relay itself sent again (a new CreateTime): what idempotent resume must
    /// prevent after tailer kills and PostgreSQL restarts.
    pub fn republished(&self) -> usize {
        self.duplicates - self.producer_retries
    }

    pub fn passed(&self) -> bool {
        self.missing.is_empty()
            && self.rolled_back_seen.is_empty()
            && self.unknown.is_empty()
            && self.order_violations.is_empty()
    }

    pub fn problems(&self) -> String {
        let few = |v: &[String]| v.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
        format!(
            "missing {} (first: {}); from rolled-back transactions {} ({}); unknown ids {} ({}); \
             order violations {} ({})",
            self.missing.len(),
            few(&self.missing),
            self.rolled_back_seen.len(),
            few(&self.rolled_back_seen),
            self.unknown.len(),
            few(&self.unknown),
            self.order_violations.len(),
            few(&self.order_violations)
        )
    }
}

/// Read every topic to its end and judge it against `committed` and `rolled_back`.
pub async fn verify(
    bootstrap: &str,
    committed: &[Committed],
    rolled_back: &[String],
) -> anyhow::Result<Verdict> {
    let mut records = Vec::new();
    for ty in AGGREGATE_TYPES {
        let topic = format!("outbox.event.{ty}");
        records.extend(read_to_end(bootstrap, &topic, Duration::from_secs(180)).await?);
    }
    Ok(judge(&records, committed, rolled_back))
}

fn judge(records: &[KafkaRecord], committed: &[Committed], rolled_back: &[String]) -> Verdict {
    let by_id: HashMap<&str, &Committed> = committed.iter().map(|c| (c.id.as_str(), c)).collect();
    let rolled_back: HashSet<&str> = rolled_back.iter().map(String::as_str).collect();
    let mut verdict = Verdict {
        committed: committed.len(),
        records: records.len(),
        ..Verdict::default()
    };
    // First copy of each id: its CreateTime.
    let mut seen: HashMap<&str, Option<i64>> = HashMap::new();
    // Per aggregate: the sequence numbers of first copies, in partition/offset order.
    let mut sequences: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for r in records {
        let id = r.header("id").unwrap_or("<no id header>");
        if let Some(first) = seen.get(id) {
            verdict.duplicates += 1;
            if *first == r.timestamp {
                verdict.producer_retries += 1;
            }
            continue;
        }
        seen.insert(id, r.timestamp);
        match by_id.get(id) {
            Some(c) => {
                let topic_ok =
                    r.topic == format!("outbox.event.{}", aggregate_type_of(&c.aggregate_id));
                if !topic_ok || r.key_str() != Some(c.aggregate_id.as_str()) {
                    verdict.order_violations.push(format!(
                        "{id} on {} with key {:?}, expected aggregate {}",
                        r.topic,
                        r.key_str(),
                        c.aggregate_id
                    ));
                }
                sequences
                    .entry(c.aggregate_id.as_str())
                    .or_default()
                    .push(c.seq);
            }
            None if rolled_back.contains(id) => verdict.rolled_back_seen.push(id.to_owned()),
            None => verdict.unknown.push(id.to_owned()),
        }
    }
    verdict.missing = committed
        .iter()
        .filter(|c| !seen.contains_key(c.id.as_str()))
        .map(|c| format!("{} ({} seq {})", c.id, c.aggregate_id, c.seq))
        .collect();
    for (agg, seqs) in sequences {
        if let Some(at) = seqs.iter().enumerate().position(|(i, s)| *s != i as i64) {
            verdict.order_violations.push(format!(
                "aggregate {agg}: position {at} holds seq {} (around: {:?})",
                seqs[at],
                &seqs[at.saturating_sub(3)..(at + 3).min(seqs.len())]
            ));
        }
    }
    verdict
}

/// The workload's own promise: each aggregate's committed sequence numbers are 0..n without
/// gaps or repeats. If this fails, the harness is wrong, not the tailer.
pub fn check_workload(committed: &[Committed]) -> anyhow::Result<()> {
    let mut by_agg: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for c in committed {
        by_agg
            .entry(c.aggregate_id.as_str())
            .or_default()
            .push(c.seq);
    }
    for (agg, mut seqs) in by_agg {
        seqs.sort_unstable();
        let expected: Vec<i64> = (0..seqs.len() as i64).collect();
        anyhow::ensure!(
            seqs == expected,
            "harness bug: aggregate {agg} committed sequence numbers {seqs:?}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(id: &str, agg: &str, seq: i64) -> Committed {
        Committed {
            id: id.into(),
            aggregate_id: agg.into(),
            seq,
        }
    }

    fn record(id: &str, agg: &str, offset: i64) -> KafkaRecord {
        KafkaRecord {
            topic: format!("outbox.event.{}", aggregate_type_of(agg)),
            partition: 0,
            offset,
            key: Some(agg.as_bytes().to_vec()),
            payload: None,
            headers: vec![("id".into(), id.as_bytes().to_vec())],
            timestamp: Some(offset),
        }
    }

    const AGG: &str = "w0-order-0";

    /// A copy with the first one's CreateTime is a producer retry; a new one, a re-send.
    #[test]
    fn duplicates_are_told_apart_by_create_time() {
        let committed = [Committed {
            id: "a".into(),
            aggregate_id: AGG.into(),
            seq: 0,
        }];
        let first = record("a", AGG, 1);
        let mut retried = record("a", AGG, 2);
        retried.timestamp = first.timestamp;
        let resent = record("a", AGG, 3);
        let v = judge(&[first, retried, resent], &committed, &[]);
        assert_eq!(
            (v.duplicates, v.producer_retries, v.republished()),
            (2, 1, 1)
        );
    }

    /// The verifier itself can fail: each kind of wrong stream is caught.
    #[test]
    fn the_verifier_catches_loss_invention_and_reordering() {
        let db = [
            committed("a", AGG, 0),
            committed("b", AGG, 1),
            committed("c", AGG, 2),
        ];
        let rolled_back = ["r".to_owned()];

        let ok = [
            record("a", AGG, 0),
            record("b", AGG, 1),
            record("a", AGG, 2),
            record("c", AGG, 3),
        ];
        let v = judge(&ok, &db, &rolled_back);
        assert!(v.passed(), "{}", v.problems());
        assert_eq!(v.duplicates, 1);

        let lost = [record("a", AGG, 0), record("c", AGG, 1)];
        let v = judge(&lost, &db, &rolled_back);
        assert!(
            v.missing.len() == 1 && v.missing[0].starts_with("b "),
            "{v:?}"
        );

        let invented = [
            record("a", AGG, 0),
            record("b", AGG, 1),
            record("c", AGG, 2),
            record("r", AGG, 3),
            record("x", AGG, 4),
        ];
        let v = judge(&invented, &db, &rolled_back);
        assert_eq!((v.rolled_back_seen.len(), v.unknown.len()), (1, 1), "{v:?}");

        let reordered = [
            record("b", AGG, 0),
            record("a", AGG, 1),
            record("c", AGG, 2),
        ];
        let v = judge(&reordered, &db, &rolled_back);
        assert_eq!(v.order_violations.len(), 1, "{v:?}");
        assert!(!v.passed());
    }
}
