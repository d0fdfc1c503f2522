//! Property tests: every message survives encode → decode unchanged, and no input — random,
//! truncated or mutated — makes the decoder panic.

use bytes::Bytes;
use pgoutput::encode::encode;
use pgoutput::*;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    // pgoutput strings are NUL-terminated, so they cannot contain NUL.
    "[^\u{0}]{0,12}"
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn::new)
}

fn ts() -> impl Strategy<Value = PgTimestamp> {
    any::<i64>().prop_map(PgTimestamp::from_pg_micros)
}

fn value() -> impl Strategy<Value = TupleValue> {
    let bytes = prop::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from);
    prop_oneof![
        Just(TupleValue::Null),
        Just(TupleValue::UnchangedToast),
        bytes.clone().prop_map(TupleValue::Text),
        bytes.prop_map(TupleValue::Binary),
    ]
}

fn tuple() -> impl Strategy<Value = TupleData> {
    prop::collection::vec(value(), 0..8).prop_map(TupleData::new)
}

fn old_row() -> impl Strategy<Value = OldRow> {
    prop_oneof![
        tuple().prop_map(OldRow::Key),
        tuple().prop_map(OldRow::Full)
    ]
}

fn replica_identity() -> impl Strategy<Value = ReplicaIdentity> {
    prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ]
}

fn column() -> impl Strategy<Value = Column> {
    (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| Column {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    )
}

fn prepare() -> impl Strategy<Value = Prepare> {
    (any::<u8>(), lsn(), lsn(), ts(), any::<u32>(), name()).prop_map(
        |(flags, prepare_lsn, end_lsn, prepare_time, xid, gid)| Prepare {
            flags,
            prepare_lsn,
            end_lsn,
            prepare_time,
            xid,
            gid,
        },
    )
}

/// Any message, with `stream_xid` set only on the kinds that can carry one.
fn message() -> impl Strategy<Value = Message> {
    let sx = any::<Option<u32>>;
    prop_oneof![
        (lsn(), ts(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| Message::Begin(
            Begin {
                final_lsn,
                commit_time,
                xid
            }
        )),
        (any::<u8>(), lsn(), lsn(), ts()).prop_map(|(flags, commit_lsn, end_lsn, commit_time)| {
            Message::Commit(Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_time,
            })
        }),
        (lsn(), name()).prop_map(|(commit_lsn, name)| Message::Origin(Origin { commit_lsn, name })),
        (
            sx(),
            any::<u32>(),
            name(),
            name(),
            replica_identity(),
            prop::collection::vec(column(), 0..6)
        )
            .prop_map(
                |(stream_xid, oid, namespace, name, replica_identity, columns)| {
                    Message::Relation(Relation {
                        stream_xid,
                        oid,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    })
                }
            ),
        (sx(), any::<u32>(), name(), name()).prop_map(|(stream_xid, oid, namespace, name)| {
            Message::Type(Type {
                stream_xid,
                oid,
                namespace,
                name,
            })
        }),
        (sx(), any::<u32>(), tuple()).prop_map(|(stream_xid, relation_oid, new)| {
            Message::Insert(Insert {
                stream_xid,
                relation_oid,
                new,
            })
        }),
        (sx(), any::<u32>(), prop::option::of(old_row()), tuple()).prop_map(
            |(stream_xid, relation_oid, old, new)| Message::Update(Update {
                stream_xid,
                relation_oid,
                old,
                new
            })
        ),
        (sx(), any::<u32>(), old_row()).prop_map(|(stream_xid, relation_oid, old)| {
            Message::Delete(Delete {
                stream_xid,
                relation_oid,
                old,
            })
        }),
        (sx(), any::<u8>(), prop::collection::vec(any::<u32>(), 0..6)).prop_map(
            |(stream_xid, options, relation_oids)| Message::Truncate(Truncate {
                stream_xid,
                options,
                relation_oids
            })
        ),
        (
            sx(),
            any::<u8>(),
            lsn(),
            name(),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(stream_xid, flags, lsn, prefix, content)| {
                Message::LogicalMessage(LogicalMessage {
                    stream_xid,
                    flags,
                    lsn,
                    prefix,
                    content: Bytes::from(content),
                })
            }),
        (any::<u32>(), any::<bool>()).prop_map(|(xid, first_segment)| {
            Message::StreamStart(StreamStart { xid, first_segment })
        }),
        Just(Message::StreamStop),
        (any::<u32>(), any::<u8>(), lsn(), lsn(), ts()).prop_map(
            |(xid, flags, commit_lsn, end_lsn, commit_time)| Message::StreamCommit(StreamCommit {
                xid,
                flags,
                commit_lsn,
                end_lsn,
                commit_time
            })
        ),
        (
            any::<u32>(),
            any::<u32>(),
            prop::option::of((lsn(), ts()).prop_map(|(lsn, time)| AbortPosition { lsn, time }))
        )
            .prop_map(|(xid, subxid, abort)| Message::StreamAbort(StreamAbort {
                xid,
                subxid,
                abort
            })),
        (lsn(), lsn(), ts(), any::<u32>(), name()).prop_map(
            |(prepare_lsn, end_lsn, prepare_time, xid, gid)| Message::BeginPrepare(BeginPrepare {
                prepare_lsn,
                end_lsn,
                prepare_time,
                xid,
                gid
            })
        ),
        prepare().prop_map(Message::Prepare),
        prepare().prop_map(Message::StreamPrepare),
        (any::<u8>(), lsn(), lsn(), ts(), any::<u32>(), name()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_time, xid, gid)| Message::CommitPrepared(
                CommitPrepared {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                    xid,
                    gid
                }
            )
        ),
        (any::<u8>(), lsn(), lsn(), ts(), ts(), any::<u32>(), name()).prop_map(
            |(flags, prepare_end_lsn, rollback_end_lsn, prepare_time, rollback_time, xid, gid)| {
                Message::RollbackPrepared(RollbackPrepared {
                    flags,
                    prepare_end_lsn,
                    rollback_end_lsn,
                    prepare_time,
                    rollback_time,
                    xid,
                    gid,
                })
            }
        ),
    ]
}

fn in_stream(m: &Message) -> bool {
    match m {
        Message::Relation(x) => x.stream_xid.is_some(),
        Message::Type(x) => x.stream_xid.is_some(),
        Message::Insert(x) => x.stream_xid.is_some(),
        Message::Update(x) => x.stream_xid.is_some(),
        Message::Delete(x) => x.stream_xid.is_some(),
        Message::Truncate(x) => x.stream_xid.is_some(),
        Message::LogicalMessage(x) => x.stream_xid.is_some(),
        _ => false,
    }
}

/// Decodes in both contexts and, when decoding succeeds, checks it is a fixed point.
fn decode_never_panics(bytes: &Bytes) {
    for in_stream in [false, true] {
        let context = DecodeContext { in_stream };
        if let Ok(m) = decode_with(bytes, context) {
            assert_eq!(&encode(&m), bytes, "decoded bytes re-encode exactly");
            assert_eq!(decode_with(&encode(&m), context), Ok(m));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn encode_then_decode_is_identity(m in message()) {
        let bytes = encode(&m);
        let context = DecodeContext { in_stream: in_stream(&m) };
        prop_assert_eq!(decode_with(&bytes, context), Ok(m));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_never_panics(&Bytes::from(bytes));
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_tag_never_panic(
        tag in prop::sample::select(MessageKind::ALL.map(MessageKind::tag).to_vec()),
        rest in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut bytes = vec![tag];
        bytes.extend(rest);
        decode_never_panics(&Bytes::from(bytes));
    }

    #[test]
    fn truncated_valid_messages_fail_cleanly(m in message(), cut in any::<prop::sample::Index>()) {
        let bytes = encode(&m);
        let prefix = bytes.slice(..cut.index(bytes.len()));
        decode_never_panics(&prefix);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        m in message(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(&m).to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        decode_never_panics(&Bytes::from(bytes));
    }
}
