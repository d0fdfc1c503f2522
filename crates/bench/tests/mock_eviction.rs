//! The mock cluster drops a partition's records beyond its last 5 MB. Reading back ids from a
//! point it has already dropped must fail at once and say why, not wait for records that can
//! never come (what the behaviour scenario once did for ten minutes).

use std::time::Duration;

use outbox_bench::kafka::{self, Counting};
use outbox_testkit::MockKafka;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

#[test]
fn reading_ids_the_mock_cluster_dropped_fails_with_the_reason() -> anyhow::Result<()> {
    let mock = MockKafka::start_with_topics(1, &[(kafka::ORDER_TOPIC, 1)])?;
    let base = kafka::marks(
        mock.bootstrap_servers(),
        kafka::ORDER_TOPIC,
        Counting::Watermarks,
    )?;
    assert_eq!(base, vec![(0, 0)]);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("linger.ms", "5")
        .create()?;
    // 8 MB of 4 KiB records: well past what one partition keeps.
    let value = vec![b'x'; 4096];
    for i in 0..2_000u32 {
        let key = i.to_string();
        let record = BaseRecord::to(kafka::ORDER_TOPIC).key(&key).payload(&value);
        producer.send(record).map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;

    let err = kafka::ids_since(
        mock.bootstrap_servers(),
        kafka::ORDER_TOPIC,
        &base,
        Counting::Watermarks,
    )
    .expect_err("the first records are gone");
    let message = err.to_string();
    assert!(
        message.contains("dropped records") && message.contains("past 0"),
        "{message}"
    );
    Ok(())
}
