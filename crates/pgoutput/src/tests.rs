//! Named edge cases for the decoder and the relation cache. Property tests, golden bytes from
//! a real server and the fuzz corpus live in `tests/`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::encode::encode;
use crate::*;

fn text(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn insert(values: Vec<TupleValue>) -> Message {
    Message::Insert(Insert {
        stream_xid: None,
        relation_oid: 16385,
        new: TupleData::new(values),
    })
}

fn outbox_relation() -> Relation {
    let col = |flags, name: &str, type_oid| Column {
        flags,
        name: name.to_owned(),
        type_oid,
        type_modifier: -1,
    };
    Relation {
        stream_xid: None,
        oid: 16385,
        namespace: "public".into(),
        name: "outbox".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![col(1, "id", 2950), col(0, "payload", 3802)],
    }
}

/// Builds raw bytes field by field, for malformed inputs the encoder cannot produce.
fn raw(build: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::new();
    build(&mut b);
    b.freeze()
}

/// An Insert header (tag, oid, 'N') followed by `tuple`.
fn insert_with_tuple(tuple: impl FnOnce(&mut BytesMut)) -> Bytes {
    raw(|b| {
        b.put_u8(b'I');
        b.put_u32(16385);
        b.put_u8(b'N');
        tuple(b);
    })
}

fn sample_messages() -> Vec<(Message, DecodeContext)> {
    let plain = DecodeContext { in_stream: false };
    let streamed = DecodeContext { in_stream: true };
    let ts = PgTimestamp::from_pg_micros(785_000_000_000_000);
    let tuple = TupleData::new(vec![
        TupleValue::Null,
        TupleValue::UnchangedToast,
        text("héllo"),
        TupleValue::Binary(Bytes::from_static(&[0, 1, 2])),
    ]);
    vec![
        (
            Message::Begin(Begin {
                final_lsn: Lsn::new(0x150C090),
                commit_time: ts,
                xid: 727,
            }),
            plain,
        ),
        (
            Message::Commit(Commit {
                flags: 0,
                commit_lsn: Lsn::new(0x150C090),
                end_lsn: Lsn::new(0x150C0C0),
                commit_time: ts,
            }),
            plain,
        ),
        (
            Message::Origin(Origin {
                commit_lsn: Lsn::new(7),
                name: "node_a".into(),
            }),
            plain,
        ),
        (Message::Relation(outbox_relation()), plain),
        (
            Message::Relation(Relation {
                stream_xid: Some(900),
                ..outbox_relation()
            }),
            streamed,
        ),
        (
            Message::Type(Type {
                stream_xid: None,
                oid: 16390,
                namespace: "public".into(),
                name: "mood".into(),
            }),
            plain,
        ),
        (insert(tuple.values.clone()), plain),
        (
            Message::Update(Update {
                stream_xid: Some(901),
                relation_oid: 1,
                old: Some(OldRow::Key(TupleData::new(vec![text("1")]))),
                new: tuple.clone(),
            }),
            streamed,
        ),
        (
            Message::Update(Update {
                stream_xid: None,
                relation_oid: 1,
                old: Some(OldRow::Full(tuple.clone())),
                new: tuple.clone(),
            }),
            plain,
        ),
        (
            Message::Update(Update {
                stream_xid: None,
                relation_oid: 1,
                old: None,
                new: tuple.clone(),
            }),
            plain,
        ),
        (
            Message::Delete(Delete {
                stream_xid: None,
                relation_oid: 1,
                old: OldRow::Full(tuple.clone()),
            }),
            plain,
        ),
        (
            Message::Truncate(Truncate {
                stream_xid: None,
                options: 3,
                relation_oids: vec![1, 2, 3],
            }),
            plain,
        ),
        (
            Message::LogicalMessage(LogicalMessage {
                stream_xid: None,
                flags: 1,
                lsn: Lsn::new(99),
                prefix: "outbox".into(),
                content: Bytes::from_static(b"\x00\xffpayload"),
            }),
            plain,
        ),
        (
            Message::StreamStart(StreamStart {
                xid: 900,
                first_segment: true,
            }),
            plain,
        ),
        (Message::StreamStop, plain),
        (
            Message::StreamCommit(StreamCommit {
                xid: 900,
                flags: 0,
                commit_lsn: Lsn::new(1),
                end_lsn: Lsn::new(2),
                commit_time: ts,
            }),
            plain,
        ),
        (
            Message::StreamAbort(StreamAbort {
                xid: 900,
                subxid: 901,
                abort: None,
            }),
            plain,
        ),
        (
            Message::StreamAbort(StreamAbort {
                xid: 900,
                subxid: 900,
                abort: Some(AbortPosition {
                    lsn: Lsn::new(5),
                    time: ts,
                }),
            }),
            plain,
        ),
        (
            Message::BeginPrepare(BeginPrepare {
                prepare_lsn: Lsn::new(1),
                end_lsn: Lsn::new(2),
                prepare_time: ts,
                xid: 5,
                gid: "g1".into(),
            }),
            plain,
        ),
        (
            Message::Prepare(Prepare {
                flags: 0,
                prepare_lsn: Lsn::new(1),
                end_lsn: Lsn::new(2),
                prepare_time: ts,
                xid: 5,
                gid: "g1".into(),
            }),
            plain,
        ),
        (
            Message::StreamPrepare(Prepare {
                flags: 0,
                prepare_lsn: Lsn::new(1),
                end_lsn: Lsn::new(2),
                prepare_time: ts,
                xid: 5,
                gid: "g2".into(),
            }),
            plain,
        ),
        (
            Message::CommitPrepared(CommitPrepared {
                flags: 0,
                commit_lsn: Lsn::new(1),
                end_lsn: Lsn::new(2),
                commit_time: ts,
                xid: 5,
                gid: "g1".into(),
            }),
            plain,
        ),
        (
            Message::RollbackPrepared(RollbackPrepared {
                flags: 0,
                prepare_end_lsn: Lsn::new(1),
                rollback_end_lsn: Lsn::new(2),
                prepare_time: ts,
                rollback_time: ts,
                xid: 5,
                gid: "g1".into(),
            }),
            plain,
        ),
    ]
}

#[test]
fn every_kind_round_trips() {
    let samples = sample_messages();
    for kind in MessageKind::ALL {
        assert!(
            samples.iter().any(|(m, _)| m.kind() == kind),
            "no sample for {kind}"
        );
        assert_eq!(MessageKind::from_tag(kind.tag()), Some(kind));
    }
    for (message, context) in samples {
        let bytes = encode(&message);
        assert_eq!(decode_with(&bytes, context).as_ref(), Ok(&message));
    }
}

#[test]
fn every_proper_prefix_is_rejected() {
    for (message, context) in sample_messages() {
        let bytes = encode(&message);
        for cut in 0..bytes.len() {
            let prefix = bytes.slice(..cut);
            // Stream Abort without its v4 fields is itself valid.
            if matches!(&message, Message::StreamAbort(a) if a.abort.is_some()) && cut == 9 {
                continue;
            }
            assert!(
                decode_with(&prefix, context).is_err(),
                "{}: prefix of {cut} bytes decoded",
                message.kind()
            );
        }
    }
}

#[test]
fn begin_exact_bytes() {
    let bytes = raw(|b| {
        b.put_u8(b'B');
        b.put_u64(0x150C090);
        b.put_i64(-1);
        b.put_u32(727);
    });
    assert_eq!(bytes.len(), 21);
    assert_eq!(
        decode(&bytes),
        Ok(Message::Begin(Begin {
            final_lsn: Lsn::new(0x150C090),
            commit_time: PgTimestamp::from_pg_micros(-1),
            xid: 727,
        }))
    );
}

#[test]
fn begin_too_short() {
    let bytes = Bytes::from_static(b"B\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    let err = decode(&bytes).unwrap_err();
    assert_eq!(
        err,
        DecodeError::Truncated {
            kind: MessageKind::Begin,
            field: "xid",
            offset: 17,
            needed: 4,
            remaining: 3,
        }
    );
    assert_eq!(
        err.to_string(),
        "Begin ('B'): truncated at byte 17: xid needs 4 bytes, 3 left"
    );
}

#[test]
fn commit_trailing_bytes() {
    let mut bytes = BytesMut::from(&encode(&sample_messages()[1].0)[..]);
    bytes.put_u8(0);
    let err = decode(&bytes.freeze()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TrailingBytes {
            kind: MessageKind::Commit,
            offset: 26,
            count: 1,
        }
    );
}

#[test]
fn empty_message() {
    assert_eq!(decode(&Bytes::new()), Err(DecodeError::Empty));
}

#[test]
fn unknown_tag() {
    let err = decode(&Bytes::from_static(b"w\0\0")).unwrap_err();
    assert_eq!(err, DecodeError::UnknownTag { tag: b'w' });
    assert_eq!(err.to_string(), "unknown pgoutput message tag 'w' (0x77)");
}

#[test]
fn insert_values_are_slices_of_the_input() {
    let bytes = encode(&insert(vec![text("abc"), TupleValue::Null]));
    let Ok(Message::Insert(i)) = decode(&bytes) else {
        panic!("not an insert")
    };
    let value = i.new.get(0).and_then(TupleValue::bytes).unwrap();
    let input = bytes.as_ptr_range();
    assert!(input.contains(&value.as_ptr()), "value was copied");
    assert_eq!(&value[..], b"abc");
    assert_eq!(i.new.get(1), Some(&TupleValue::Null));
}

#[test]
fn insert_truncated_in_tuple() {
    let bytes = insert_with_tuple(|b| {
        b.put_u16(2);
        b.put_u8(b't');
        b.put_i32(3);
        b.put_slice(b"abc");
        b.put_u8(b't');
        b.put_i32(10);
        b.put_slice(b"short");
    });
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::Truncated {
            kind: MessageKind::Insert,
            field: "column length",
            offset: 21,
            needed: 10,
            remaining: 5,
        })
    );
}

#[test]
fn insert_missing_new_tuple_marker() {
    let bytes = raw(|b| {
        b.put_u8(b'I');
        b.put_u32(1);
        b.put_u8(b'K');
        b.put_u16(0);
    });
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::UnexpectedByte {
            kind: MessageKind::Insert,
            field: "new tuple marker",
            offset: 5,
            expected: "'N'",
            found: b'K',
        })
    );
}

#[test]
fn tuple_negative_length() {
    let bytes = insert_with_tuple(|b| {
        b.put_u16(1);
        b.put_u8(b't');
        b.put_i32(-1);
    });
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::NegativeLength {
            kind: MessageKind::Insert,
            field: "column length",
            offset: 9,
            length: -1,
        })
    );
}

#[test]
fn tuple_huge_length_is_not_trusted() {
    let bytes = insert_with_tuple(|b| {
        b.put_u16(1);
        b.put_u8(b'b');
        b.put_i32(i32::MAX);
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::Truncated { needed, .. }) if needed == i32::MAX as usize
    ));
}

#[test]
fn tuple_invalid_kind() {
    let bytes = insert_with_tuple(|b| {
        b.put_u16(1);
        b.put_u8(b'x');
    });
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::InvalidTupleKind {
            kind: MessageKind::Insert,
            offset: 8,
            found: b'x',
        })
    );
}

#[test]
fn tuple_column_count_beyond_input() {
    let bytes = insert_with_tuple(|b| {
        b.put_u16(u16::MAX);
        b.put_u8(b'n');
    });
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::Truncated {
            kind: MessageKind::Insert,
            field: "tuple columns",
            offset: 8,
            needed: 65535,
            remaining: 1,
        })
    );
}

#[test]
fn relation_missing_nul() {
    let bytes = raw(|b| {
        b.put_u8(b'R');
        b.put_u32(1);
        b.put_slice(b"public");
    });
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::MissingNul {
            kind: MessageKind::Relation,
            field: "namespace",
            offset: 5,
        })
    );
}

#[test]
fn relation_name_not_utf8() {
    let bytes = raw(|b| {
        b.put_u8(b'R');
        b.put_u32(1);
        b.put_slice(b"public\0");
        b.put_slice(b"\xff\xfe\0");
    });
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::InvalidUtf8 {
            kind: MessageKind::Relation,
            field: "relation name",
            offset: 12,
        })
    );
}

#[test]
fn relation_invalid_replica_identity() {
    let mut bytes = BytesMut::from(&encode(&Message::Relation(outbox_relation()))[..]);
    let at = 1 + 4 + "public\0outbox\0".len();
    bytes[at] = b'x';
    let err = decode(&bytes.freeze()).unwrap_err();
    assert_eq!(err.offset(), at);
    assert!(err.to_string().contains("replica identity"), "{err}");
}

#[test]
fn relation_column_count_beyond_input() {
    let bytes = raw(|b| {
        b.put_u8(b'R');
        b.put_u32(1);
        b.put_slice(b"\0t\0d");
        b.put_u16(1000);
        b.put_slice(&[0; 20]);
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::Truncated {
            field: "relation columns",
            needed: 10_000,
            remaining: 20,
            ..
        })
    ));
}

#[test]
fn update_with_unexpected_marker() {
    let bytes = raw(|b| {
        b.put_u8(b'U');
        b.put_u32(1);
        b.put_u8(b'X');
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::UnexpectedByte {
            field: "tuple marker",
            offset: 5,
            found: b'X',
            ..
        })
    ));
}

#[test]
fn update_old_row_without_new_marker() {
    let bytes = raw(|b| {
        b.put_u8(b'U');
        b.put_u32(1);
        b.put_u8(b'O');
        b.put_u16(1);
        b.put_u8(b'n');
        b.put_u8(b'O');
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::UnexpectedByte {
            field: "new tuple marker",
            offset: 9,
            ..
        })
    ));
}

#[test]
fn delete_requires_old_row() {
    let bytes = raw(|b| {
        b.put_u8(b'D');
        b.put_u32(1);
        b.put_u8(b'N');
        b.put_u16(0);
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::UnexpectedByte {
            field: "old tuple marker",
            found: b'N',
            ..
        })
    ));
}

#[test]
fn truncate_negative_count() {
    let bytes = raw(|b| {
        b.put_u8(b'T');
        b.put_i32(-5);
        b.put_u8(0);
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::NegativeLength {
            field: "relation count",
            length: -5,
            offset: 1,
            ..
        })
    ));
}

#[test]
fn truncate_count_beyond_input() {
    let bytes = raw(|b| {
        b.put_u8(b'T');
        b.put_i32(i32::MAX);
        b.put_u8(0);
        b.put_u32(1);
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::Truncated {
            field: "relation oids",
            remaining: 4,
            ..
        })
    ));
}

#[test]
fn logical_message_negative_length() {
    let bytes = raw(|b| {
        b.put_u8(b'M');
        b.put_u8(1);
        b.put_u64(1);
        b.put_slice(b"p\0");
        b.put_i32(i32::MIN);
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::NegativeLength {
            field: "content length",
            ..
        })
    ));
}

#[test]
fn stream_xid_only_inside_stream() {
    let streamed = Message::Insert(Insert {
        stream_xid: Some(901),
        relation_oid: 16385,
        new: TupleData::new(vec![text("a")]),
    });
    let bytes = encode(&streamed);
    assert_eq!(
        decode_with(&bytes, DecodeContext { in_stream: true }).as_ref(),
        Ok(&streamed)
    );
    // Outside a block the xid is misread as the OID and the OID's bytes as the marker.
    assert!(decode(&bytes).is_err());
}

#[test]
fn stream_abort_v4_fields_must_be_complete() {
    let bytes = raw(|b| {
        b.put_u8(b'A');
        b.put_u32(900);
        b.put_u32(901);
        b.put_u64(5);
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::Truncated {
            kind: MessageKind::StreamAbort,
            field: "abort time",
            offset: 17,
            ..
        })
    ));
}

#[test]
fn decoder_tracks_stream_blocks() {
    let mut decoder = Decoder::new();
    let start = encode(&Message::StreamStart(StreamStart {
        xid: 900,
        first_segment: true,
    }));
    let streamed_insert = encode(&Message::Insert(Insert {
        stream_xid: Some(900),
        relation_oid: 16385,
        new: TupleData::new(vec![TupleValue::Null]),
    }));
    let plain_insert = encode(&insert(vec![TupleValue::Null]));

    assert!(decoder.decode(&plain_insert).is_ok());
    decoder.decode(&start).unwrap();
    assert!(decoder.in_stream());
    let Ok(Message::Insert(i)) = decoder.decode(&streamed_insert) else {
        panic!("streamed insert")
    };
    assert_eq!(i.stream_xid, Some(900));
    assert!(decoder.decode(&Bytes::from_static(b"?")).is_err());
    assert!(decoder.in_stream(), "an error must not change the state");
    decoder.decode(&encode(&Message::StreamStop)).unwrap();
    assert!(!decoder.in_stream());
    assert!(decoder.decode(&plain_insert).is_ok());

    decoder.decode(&start).unwrap();
    decoder.reset();
    assert!(!decoder.in_stream());
}

#[test]
fn cache_resolves_by_name_and_index() {
    let mut cache = RelationCache::new();
    assert!(cache.observe(&Message::Relation(outbox_relation())));
    let Message::Insert(row) = insert(vec![text("id-1"), text("{}")]) else {
        unreachable!()
    };
    let resolved = cache.resolve_insert(&row).unwrap();
    assert_eq!(
        resolved.column("payload").and_then(TupleValue::as_str),
        Some("{}")
    );
    assert_eq!(resolved.column("missing"), None);
    let idx = resolved.relation().column_index("id").unwrap();
    assert_eq!(resolved.get(idx).and_then(TupleValue::as_str), Some("id-1"));
    let names: Vec<_> = resolved.iter().map(|(c, _)| c.name.as_str()).collect();
    assert_eq!(names, ["id", "payload"]);
}

#[test]
fn cache_unknown_relation() {
    let cache = RelationCache::new();
    let tuple = TupleData::new(vec![]);
    assert_eq!(
        cache.resolve(42, &tuple).unwrap_err(),
        ResolveError::UnknownRelation { oid: 42 }
    );
}

#[test]
fn cache_column_count_mismatch() {
    let mut cache = RelationCache::new();
    cache.insert_relation(outbox_relation());
    let tuple = TupleData::new(vec![TupleValue::Null]);
    let err = cache.resolve(16385, &tuple).unwrap_err();
    assert_eq!(
        err.to_string(),
        "relation public.outbox (OID 16385) has 2 columns but the row has 1"
    );
}

#[test]
fn cache_replaces_relation_and_clears() {
    let mut cache = RelationCache::new();
    cache.insert_relation(outbox_relation());
    let mut altered = outbox_relation();
    altered.columns.pop();
    let previous = cache.insert_relation(altered);
    assert_eq!(previous.map(|r| r.columns.len()), Some(2));
    assert_eq!(cache.relation(16385).map(|r| r.columns.len()), Some(1));
    assert!(cache.observe(&Message::Type(Type {
        stream_xid: None,
        oid: 16390,
        namespace: "public".into(),
        name: "mood".into(),
    })));
    assert_eq!(
        cache.type_info(16390).map(|t| t.name.as_str()),
        Some("mood")
    );
    assert!(!cache.observe(&Message::StreamStop));
    cache.clear();
    assert!(cache.is_empty());
    assert!(cache.type_info(16390).is_none());
}
