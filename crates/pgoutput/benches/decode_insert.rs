//! Decoding Insert messages shaped like real outbox rows, alone and resolved through the
//! relation cache. Reproduce with `cargo bench -p pgoutput --bench decode_insert`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgoutput::encode::encode;
use pgoutput::{
    decode, Column, Insert, Message, Relation, RelationCache, ReplicaIdentity, TupleData,
    TupleValue,
};

const OUTBOX_OID: u32 = 16_385;
const BATCH: usize = 1_000;

fn outbox_relation() -> Relation {
    let column = |flags, name: &str, type_oid| Column {
        flags,
        name: name.to_owned(),
        type_oid,
        type_modifier: -1,
    };
    Relation {
        stream_xid: None,
        oid: OUTBOX_OID,
        namespace: "public".to_owned(),
        name: "outbox".to_owned(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column(1, "id", 2950),
            column(0, "aggregatetype", 25),
            column(0, "aggregateid", 25),
            column(0, "type", 25),
            column(0, "payload", 3802),
        ],
    }
}

/// `n` distinct encoded Inserts: uuid, two short texts, a type name, a ~300-byte jsonb payload.
fn outbox_inserts(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let payload = format!(
                r#"{{"orderId": "ord-{i:08}", "customerId": "cus-{:06}", "currency": "EUR", "total": {}.{:02}, "lines": [{{"sku": "SKU-{:05}", "qty": 2, "price": 19.99}}, {{"sku": "SKU-{:05}", "qty": 1, "price": 5.49}}], "shipping": {{"method": "standard", "country": "DE", "postcode": "10115"}}, "createdAt": "2025-11-23T21:37:00.{:06}Z"}}"#,
                i % 100_000,
                i % 1000,
                i % 100,
                i % 50_000,
                (i + 7) % 50_000,
                i % 1_000_000
            );
            let text = |s: String| TupleValue::Text(Bytes::from(s));
            let insert = Message::Insert(Insert {
                stream_xid: None,
                relation_oid: OUTBOX_OID,
                new: TupleData::new(vec![
                    text(format!("0198a6c4-7e2b-7c3d-9f10-{i:012x}")),
                    text("order".to_owned()),
                    text(format!("ord-{i:08}")),
                    text("OrderCreated".to_owned()),
                    text(payload),
                ]),
            });
            encode(&insert)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let messages = outbox_inserts(BATCH);
    let mean_len = messages.iter().map(Bytes::len).sum::<usize>() / BATCH;
    let mut group = c.benchmark_group(format!("outbox_insert_{mean_len}B"));
    group.throughput(Throughput::Elements(BATCH as u64));

    group.bench_function("decode", |b| {
        b.iter(|| {
            for m in &messages {
                black_box(decode(black_box(m)).ok());
            }
        })
    });

    let mut cache = RelationCache::new();
    let relation = outbox_relation();
    let columns = ["id", "aggregatetype", "aggregateid", "type", "payload"]
        .map(|name| relation.column_index(name).expect("outbox column"));
    cache.insert_relation(relation);
    group.bench_function("decode_resolve", |b| {
        b.iter(|| {
            for m in &messages {
                let Ok(Message::Insert(insert)) = decode(black_box(m)) else {
                    panic!("not an insert");
                };
                let row = cache.resolve_insert(&insert).expect("known relation");
                for index in columns {
                    black_box(row.get(index).and_then(TupleValue::bytes));
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
