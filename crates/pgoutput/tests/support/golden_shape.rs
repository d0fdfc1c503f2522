//! What each golden scenario must decode to. Shared by `tests/golden.rs` (checked-in bytes) and
//! the workspace's `tests/golden_capture.rs` (bytes from the live server), so the assertions
//! hold only for facts a re-capture keeps: names, values, order and framing — never OIDs,
//! xids, LSNs or times, which are compared with each other instead.

use crate::golden_file::Captured;
use pgoutput::{
    Decoder, Message, MessageKind, OldRow, RelationCache, ReplicaIdentity, TupleData, TupleValue,
};

pub const SCENARIOS: [&str; 7] = [
    "types",
    "replica_identity",
    "truncate",
    "messages",
    "origin",
    "two_phase",
    "streaming",
];

/// The scenarios a major can run: pgoutput's `two_phase` option arrived in 15.
pub fn scenarios_of(major: u32) -> Vec<&'static str> {
    SCENARIOS
        .iter()
        .copied()
        .filter(|s| major >= 15 || *s != "two_phase")
        .collect()
}

pub fn decode_all(messages: &[Captured]) -> Vec<Message> {
    let mut decoder = Decoder::new();
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            decoder
                .decode(&m.data)
                .unwrap_or_else(|e| panic!("message {i} (lsn {}): {e}", m.lsn))
        })
        .collect()
}

/// Check a capture of PostgreSQL `major` against the scenario's expectations.
pub fn check(scenario: &str, major: u32, captured: &[Captured]) {
    let messages = decode_all(captured);
    check_framing(scenario, &messages);
    match scenario {
        "types" => types(&messages),
        "replica_identity" => replica_identity(&messages, major),
        "truncate" => truncate(&messages),
        "messages" => logical_messages(&messages),
        "origin" => origin(&messages),
        "two_phase" => two_phase(&messages),
        "streaming" => streaming(&messages, major),
        other => panic!("no expectations for golden scenario {other:?}"),
    }
}

/// One letter per message (its pgoutput tag), streaming chunks and row runs included.
fn tags(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| char::from(m.kind().tag()))
        .collect()
}

/// Runs of the same tag collapsed, e.g. `BRIIIC` -> `BRI+C`.
fn shape(messages: &[Message]) -> String {
    let mut out = String::new();
    let mut prev = None;
    for c in tags(messages).chars() {
        if prev == Some(c) {
            if !out.ends_with('+') {
                out.push('+');
            }
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    out
}

fn text(value: &TupleValue) -> &str {
    match value {
        TupleValue::Text(_) => value.as_str().expect("UTF-8 text value"),
        other => panic!("expected a text value, got {other:?}"),
    }
}

fn texts(tuple: &TupleData) -> Vec<Option<&str>> {
    tuple
        .iter()
        .map(|v| match v {
            TupleValue::Null => None,
            TupleValue::UnchangedToast => Some("<unchanged toast>"),
            v => Some(text(v)),
        })
        .collect()
}

/// Begin/Commit and Stream Start/Stop pair up, LSNs agree, stream xids appear exactly inside
/// streaming blocks, and every row resolves against the Relation sent before it.
fn check_framing(scenario: &str, messages: &[Message]) {
    let mut cache = RelationCache::new();
    let mut open_begin = None;
    let mut in_stream = false;
    for (i, m) in messages.iter().enumerate() {
        let at = format!("{scenario} message {i} ({})", m.kind());
        cache.observe(m);
        let stream_xid = match m {
            Message::Relation(r) => Some(r.stream_xid),
            Message::Type(t) => Some(t.stream_xid),
            Message::Insert(x) => Some(x.stream_xid),
            Message::Update(x) => Some(x.stream_xid),
            Message::Delete(x) => Some(x.stream_xid),
            Message::Truncate(x) => Some(x.stream_xid),
            Message::LogicalMessage(x) => Some(x.stream_xid),
            _ => None,
        };
        if let Some(xid) = stream_xid {
            assert_eq!(xid.is_some(), in_stream, "{at}: stream xid {xid:?}");
        }
        let rows: Vec<(u32, &TupleData)> = match m {
            Message::Insert(x) => vec![(x.relation_oid, &x.new)],
            Message::Update(x) => {
                let mut rows = vec![(x.relation_oid, &x.new)];
                rows.extend(x.old.as_ref().map(|o| (x.relation_oid, o.tuple())));
                rows
            }
            Message::Delete(x) => vec![(x.relation_oid, x.old.tuple())],
            Message::Truncate(x) => {
                for oid in &x.relation_oids {
                    assert!(cache.relation(*oid).is_some(), "{at}: unknown OID {oid}");
                }
                vec![]
            }
            _ => vec![],
        };
        for (oid, tuple) in rows {
            cache
                .resolve(oid, tuple)
                .unwrap_or_else(|e| panic!("{at}: {e}"));
        }
        match m {
            Message::Begin(b) => {
                assert!(open_begin.is_none(), "{at}: nested Begin");
                open_begin = Some(b.final_lsn);
            }
            Message::Commit(c) => {
                assert_eq!(
                    open_begin.take(),
                    Some(c.commit_lsn),
                    "{at}: Begin.final_lsn"
                );
                assert_eq!(c.flags, 0, "{at}");
                assert!(c.end_lsn > c.commit_lsn, "{at}");
            }
            Message::StreamStart(_) => {
                assert!(!in_stream, "{at}: nested Stream Start");
                in_stream = true;
            }
            Message::StreamStop => {
                assert!(in_stream, "{at}: Stream Stop outside a block");
                in_stream = false;
            }
            Message::StreamCommit(c) => {
                assert!(!in_stream, "{at}");
                assert!(c.end_lsn > c.commit_lsn, "{at}");
            }
            _ => {}
        }
    }
    assert!(open_begin.is_none(), "{scenario}: unterminated transaction");
    assert!(!in_stream, "{scenario}: unterminated streaming block");
}

fn types(m: &[Message]) {
    assert_eq!(shape(m), "BYRICBICBICBICBI+C");
    let Message::Type(ty) = &m[1] else {
        unreachable!()
    };
    assert_eq!(
        (ty.namespace.as_str(), ty.name.as_str()),
        ("public", "mood")
    );
    assert!(ty.oid >= 10_000, "user-defined type OID");
    let Message::Relation(rel) = &m[2] else {
        unreachable!()
    };
    assert_eq!(
        (rel.namespace.as_str(), rel.name.as_str()),
        ("public", "golden_types")
    );
    assert_eq!(rel.replica_identity, ReplicaIdentity::Default);
    let columns: Vec<(&str, u32, bool)> = rel
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_oid, c.is_key()))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", 23, true),
            ("label", 25, false),
            ("amount", 1700, false),
            ("raw", 17, false),
            ("feeling", ty.oid, false),
            ("doc", 3802, false),
            ("big", 25, false),
            ("at", 1184, false),
        ]
    );
    let rows: Vec<&TupleData> = m
        .iter()
        .filter_map(|x| match x {
            Message::Insert(i) => Some(&i.new),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 7);
    assert_eq!(
        texts(rows[0]),
        [
            Some("1"),
            Some("plain"),
            Some("12.50"),
            Some(r"\xdeadbeef00"),
            Some("happy"),
            Some(r#"{"a": [1, 2], "b": null}"#),
            None,
            Some("2025-01-02 03:04:05.678901+00"),
        ]
    );
    assert_eq!(
        texts(rows[1]),
        [Some("2"), None, None, None, None, None, None, None]
    );
    assert_eq!(rows[2].get(1).map(text), Some("héllo wörld ✓ 🐘 日本語"));
    assert_eq!(rows[2].get(4).map(text), Some("sad"));
    // 3200 md5 hex digests: stored out of line, yet an INSERT carries the whole value.
    let big = rows[3].get(6).map(text).unwrap();
    assert_eq!(big.len(), 3200 * 32);
    assert!(
        big.starts_with("c4ca4238a0b923820dcc509a6f75849b"),
        "md5('1')"
    );
    let multi: Vec<_> = rows[4..].iter().map(|r| texts(r)[..2].to_vec()).collect();
    assert_eq!(
        multi,
        [
            [Some("5"), Some("five")],
            [Some("6"), Some("six")],
            [Some("7"), Some("seven")],
        ]
    );
    let Message::Begin(b) = &m[m.len() - 5] else {
        unreachable!()
    };
    let Message::Commit(c) = &m[m.len() - 1] else {
        unreachable!()
    };
    assert_eq!(
        b.commit_time, c.commit_time,
        "one transaction, one commit time"
    );
}

/// (tag, old row as (marker, values), new row values) of one Insert/Update/Delete.
type Change<'a> = (char, Option<(char, Values<'a>)>, Option<Values<'a>>);
type Values<'a> = Vec<Option<&'a str>>;

fn replica_identity(m: &[Message], major: u32) {
    // 14 also sends the transaction whose only change (an update) the insert-only
    // publication does not publish, as an empty Begin/Commit.
    let empty = if major == 14 { "BC" } else { "" };
    assert_eq!(shape(m), format!("BRUCBUCBDCBRUCBDCBRUCBUCBDCBRIC{empty}"));
    let relations: Vec<(&str, ReplicaIdentity, Vec<bool>)> = m
        .iter()
        .filter_map(|x| match x {
            Message::Relation(r) => Some((
                r.name.as_str(),
                r.replica_identity,
                r.columns.iter().map(|c| c.is_key()).collect(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        relations,
        [
            (
                "ri_default",
                ReplicaIdentity::Default,
                vec![true, false, false]
            ),
            ("ri_full", ReplicaIdentity::Full, vec![true, true, true]),
            ("ri_index", ReplicaIdentity::Index, vec![false, true, false]),
            ("ri_nothing", ReplicaIdentity::Nothing, vec![false, false]),
        ]
    );
    let changes: Vec<Change<'_>> = m
        .iter()
        .filter_map(|x| {
            fn old(o: &OldRow) -> (char, Vec<Option<&str>>) {
                match o {
                    OldRow::Key(t) => ('K', texts(t)),
                    OldRow::Full(t) => ('O', texts(t)),
                }
            }
            match x {
                Message::Update(u) => Some(('U', u.old.as_ref().map(old), Some(texts(&u.new)))),
                Message::Delete(d) => Some(('D', Some(old(&d.old)), None)),
                Message::Insert(i) => Some(('I', None, Some(texts(&i.new)))),
                _ => None,
            }
        })
        .collect();
    fn big_prefix(v: Option<&str>) -> Option<&str> {
        v.and_then(|s| s.get(..8))
    }
    let full_update = &changes[3];
    let (_, Some(('O', old)), Some(new)) = full_update else {
        panic!("RI FULL update carries the old row: {full_update:?}")
    };
    // RI FULL: the old row has every value, including the out-of-line one (4000 bytes).
    assert_eq!(old[..2], [Some("1"), Some("one")]);
    assert_eq!(old[2].map(str::len), Some(4000));
    assert_eq!(big_prefix(old[2]), Some("c4ca4238"));
    assert_eq!(
        new[..],
        [Some("1"), Some("one updated"), Some("<unchanged toast>")]
    );

    let expected_others = [
        (
            0,
            (
                'U',
                None,
                Some(vec![
                    Some("2"),
                    Some("two updated"),
                    Some("<unchanged toast>"),
                ]),
            ),
        ),
        (
            1,
            (
                'U',
                Some(('K', vec![Some("1"), None, None])),
                Some(vec![Some("10"), Some("one"), None]),
            ),
        ),
        (2, ('D', Some(('K', vec![Some("10"), None, None])), None)),
        (
            4,
            ('D', Some(('O', vec![Some("2"), Some("two"), None])), None),
        ),
        (
            5,
            (
                'U',
                Some(('K', vec![None, Some("A"), None])),
                Some(vec![Some("1"), Some("A2"), Some("one")]),
            ),
        ),
        (
            6,
            (
                'U',
                None,
                Some(vec![Some("2"), Some("B"), Some("two updated")]),
            ),
        ),
        (7, ('D', Some(('K', vec![None, Some("B"), None])), None)),
        (8, ('I', None, Some(vec![Some("1"), Some("nothing")]))),
    ];
    assert_eq!(
        changes.len(),
        9,
        "the UPDATE of ri_nothing is not published"
    );
    for (i, expected) in expected_others {
        assert_eq!(changes[i], expected, "change {i}");
    }
}

fn truncate(m: &[Message]) {
    assert_eq!(shape(m), "BRICBR+TCBRTC");
    let oid_of = |name: &str| {
        m.iter()
            .find_map(|x| match x {
                Message::Relation(r) if r.name == name => Some(r.oid),
                _ => None,
            })
            .unwrap()
    };
    let truncates: Vec<_> = m
        .iter()
        .filter_map(|x| match x {
            Message::Truncate(t) => {
                Some((t.relation_oids.clone(), t.cascade(), t.restart_identity()))
            }
            _ => None,
        })
        .collect();
    let (a, b) = (oid_of("trunc_a"), oid_of("trunc_b"));
    assert_eq!(
        truncates,
        [(vec![a, b], true, true), (vec![b], false, false)]
    );
}

fn logical_messages(m: &[Message]) {
    assert_eq!(shape(m), "BMCMBRIMC");
    let found: Vec<(bool, &str, &[u8])> = m
        .iter()
        .filter_map(|x| match x {
            Message::LogicalMessage(l) => {
                Some((l.is_transactional(), l.prefix.as_str(), &l.content[..]))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        found,
        [
            (true, "outbox", &b"transactional payload"[..]),
            (false, "heartbeat", &b"\x00\xff\x01"[..]),
            (true, "outbox", "ünïcödé".as_bytes()),
        ]
    );
    // A transactional message's LSN is the end of its record, at or before the commit record.
    let (Message::LogicalMessage(msg), Message::Commit(c)) = (&m[1], &m[2]) else {
        unreachable!()
    };
    assert!(msg.lsn <= c.commit_lsn);
}

fn origin(m: &[Message]) {
    assert_eq!(shape(m), "BORIC");
    let Message::Origin(o) = &m[1] else {
        unreachable!()
    };
    assert_eq!(o.name, "golden_origin");
    assert_eq!(o.commit_lsn, "0/AB01".parse().unwrap());
    let Message::Begin(b) = &m[0] else {
        unreachable!()
    };
    // pg_replication_origin_xact_setup's timestamp becomes the commit time.
    assert_eq!(b.commit_time.unix_micros(), 1_735_787_045_000_000);
}

fn two_phase(m: &[Message]) {
    let s = shape(m);
    assert!(
        s.starts_with("bRIPKbIPrSRI+E") && s.ends_with("EpK"),
        "two-phase shape {s}"
    );
    let gids: Vec<(MessageKind, &str)> = m
        .iter()
        .filter_map(|x| match x {
            Message::BeginPrepare(p) => Some((x.kind(), p.gid.as_str())),
            Message::Prepare(p) | Message::StreamPrepare(p) => Some((x.kind(), p.gid.as_str())),
            Message::CommitPrepared(p) => Some((x.kind(), p.gid.as_str())),
            Message::RollbackPrepared(p) => Some((x.kind(), p.gid.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        gids,
        [
            (MessageKind::BeginPrepare, "golden_commit"),
            (MessageKind::Prepare, "golden_commit"),
            (MessageKind::CommitPrepared, "golden_commit"),
            (MessageKind::BeginPrepare, "golden_rollback"),
            (MessageKind::Prepare, "golden_rollback"),
            (MessageKind::RollbackPrepared, "golden_rollback"),
            (MessageKind::StreamPrepare, "golden_stream"),
            (MessageKind::CommitPrepared, "golden_stream"),
        ]
    );
    let (Message::BeginPrepare(b), Message::Prepare(p), Message::CommitPrepared(k)) =
        (&m[0], &m[3], &m[4])
    else {
        unreachable!()
    };
    assert_eq!(
        (b.prepare_lsn, b.end_lsn, b.xid),
        (p.prepare_lsn, p.end_lsn, p.xid)
    );
    assert_eq!(k.xid, p.xid);
    assert!(k.commit_lsn >= p.end_lsn);
    let Some(Message::RollbackPrepared(r)) = m.get(8) else {
        panic!("Rollback Prepared")
    };
    assert!(r.rollback_end_lsn > r.prepare_end_lsn);
    let streamed: Vec<&str> = m
        .iter()
        .filter_map(|x| match x {
            Message::Insert(i) if i.stream_xid.is_some() => i.new.get(1).map(text),
            _ => None,
        })
        .collect();
    assert_eq!(streamed.len(), 1000);
    assert_eq!((streamed[0], streamed[999]), ("big 100", "big 1099"));
}

fn streaming(m: &[Message], major: u32) {
    let s = shape(m);
    let top = match &m[0] {
        Message::StreamStart(st) => {
            assert!(st.first_segment);
            st.xid
        }
        other => panic!("expected Stream Start, got {other:?}"),
    };
    assert!(s.starts_with("SYRI+E"), "streaming shape {s}");
    assert!(
        s.ends_with("BIC"),
        "the small transaction is not streamed: {s}"
    );
    let starts: Vec<(u32, bool)> = m
        .iter()
        .filter_map(|x| match x {
            Message::StreamStart(st) => Some((st.xid, st.first_segment)),
            _ => None,
        })
        .collect();
    assert!(
        starts.len() >= 3,
        "the first transaction spans several chunks"
    );
    assert!(starts
        .iter()
        .skip(1)
        .take_while(|(x, _)| *x == top)
        .all(|(_, first)| !first));

    let kept: Vec<&str> = m
        .iter()
        .filter_map(|x| match x {
            Message::Insert(i) if i.stream_xid == Some(top) => i.new.get(1).map(text),
            _ => None,
        })
        .collect();
    assert_eq!(kept.len(), 1000);
    assert!(kept.iter().all(|t| t.starts_with("kept ")));
    let inside: Vec<String> = m
        .iter()
        .filter_map(|x| match x {
            Message::LogicalMessage(l) => Some(format!("{:?}", (l.stream_xid, &l.content[..]))),
            _ => None,
        })
        .collect();
    assert_eq!(
        inside,
        [format!(
            "{:?}",
            (Some(top), &b"inside a streamed transaction"[..])
        )]
    );

    let aborts: Vec<(u32, u32)> = m
        .iter()
        .filter_map(|x| match x {
            Message::StreamAbort(a) => {
                assert_eq!(a.abort, None, "protocol 2 has no abort LSN");
                Some((a.xid, a.subxid))
            }
            _ => None,
        })
        .collect();
    // Read after the fact, 18 no longer streams a transaction it already knows aborted: only
    // the savepoint's abort inside the committed one remains.
    assert_eq!(aborts.len(), if major >= 18 { 1 } else { 2 }, "{s}");
    let sub_abort = aborts[0];
    assert_eq!(sub_abort.0, top);
    assert_ne!(
        sub_abort.1, top,
        "savepoint rollback aborts a subtransaction"
    );
    if let Some(top_abort) = aborts.get(1) {
        assert_eq!(
            top_abort.0, top_abort.1,
            "whole-transaction abort: subxid = xid"
        );
    }

    // After the savepoint rollback the changes run in a new subtransaction of the same top xid.
    let after: Vec<(MessageKind, Option<u32>)> = m
        .iter()
        .filter_map(|x| match x {
            Message::Update(u) => Some((x.kind(), u.stream_xid)),
            Message::Delete(d) => Some((x.kind(), d.stream_xid)),
            Message::Truncate(t) => Some((x.kind(), t.stream_xid)),
            _ => None,
        })
        .collect();
    assert_eq!(after.len(), 3);
    assert!(after
        .iter()
        .all(|(_, xid)| xid.is_some() && *xid != Some(top)));
    let commits: Vec<u32> = m
        .iter()
        .filter_map(|x| match x {
            Message::StreamCommit(c) => Some(c.xid),
            _ => None,
        })
        .collect();
    assert_eq!(commits, [top]);
    let no_aborted_rows = m.iter().all(|x| match x {
        Message::Insert(i) => i
            .new
            .get(1)
            .map(text)
            .is_some_and(|t| !t.starts_with("undone") && !t.starts_with("aborted")),
        _ => true,
    });
    assert!(
        no_aborted_rows,
        "PostgreSQL 15 stops a chunk at the first aborted change"
    );
}
