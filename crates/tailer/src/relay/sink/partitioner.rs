//! Which partition a record goes to, chosen by the tailer itself rather than by librdkafka: the
//! resume check must know a record's partition before it is sent, and Java clients (Debezium,
//! Kafka Connect, Kafka Streams) place keys the same way, so an aggregate lands where they
//! would put it.

/// The partition of `key` among `partitions` under `partitioner` (no key: partition 0).
pub fn partition(partitioner: Partitioner, key: Option<&[u8]>, partitions: i32) -> i32 {
    match (partitioner, key) {
        (Partitioner::Murmur2, key) => partition_of(key, partitions),
        (Partitioner::Crc32, None) => 0,
        (Partitioner::Crc32, Some(key)) => {
            let hash = crc32fast::hash(key);
            i32::try_from(hash % partitions.max(1) as u32).unwrap_or(0)
        }
    }
}

use crate::config::settings::Partitioner;

/// The seed of Kafka's `Utils.murmur2`.
const KAFKA_SEED: u32 = 0x9747_b28c;

/// The partition of `key` among `partitions`, as the Java client's default partitioner picks
/// it: `toPositive(murmur2(key)) % partitions`. A record without a key goes to partition 0, so
/// its place is as deterministic as a keyed one's.
pub fn partition_of(key: Option<&[u8]>, partitions: i32) -> i32 {
    let Some(key) = key else { return 0 };
    let positive = murmur2::murmur2(key, KAFKA_SEED) & 0x7fff_ffff;
    // `partitions` is at least 1 (a topic's count from the broker); the result fits an i32.
    i32::try_from(positive % partitions.max(1) as u32).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors (`UtilsTest.testMurmur2` in the Java client).
    #[test]
    fn the_hash_is_kafkas_murmur2() {
        for (key, expected) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            let hash = murmur2::murmur2(key.as_bytes(), KAFKA_SEED) as i32;
            assert_eq!(hash, expected, "{key}");
        }
    }

    #[test]
    fn partitions_are_the_positive_hash_modulo_the_count() {
        let hash = (-973_932_308_i32 & 0x7fff_ffff) as u32;
        assert_eq!(partition_of(Some(b"21"), 7), (hash % 7) as i32);
        assert_eq!(partition_of(Some(b"21"), 1), 0);
        assert_eq!(partition_of(None, 12), 0);
    }

    #[test]
    fn crc32_is_librdkafkas_consistent_partitioner() {
        // rd_crc32 is the IEEE CRC-32 (zlib's): crc32("123456789") = 0xCBF43926.
        let p = Partitioner::from_librdkafka("consistent_random").unwrap();
        assert_eq!(
            partition(p, Some(b"123456789"), 1000),
            (0xCBF4_3926_u32 % 1000) as i32
        );
        assert_eq!(Partitioner::from_librdkafka("random"), None);
    }
}
