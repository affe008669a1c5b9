//! Kafka's default partitioner for keyed records, bit-exact.
//!
//! A key must land on the same partition as it would with a Java Kafka
//! producer, so that meshlog and Kafka clients can share topics and
//! co-partitioned data. That means Kafka's MurmurHash2 variant (seed
//! `0x9747b28c`, little-endian 4-byte blocks) and its `toPositive` masking,
//! which is not the same as `abs`.

/// Kafka's murmur2 of the key bytes (seed 0x9747b28c), as Utils.murmur2 returns it (i32).
///
/// Kafka's `Utils.murmur2` is MurmurHash2 reading blocks little-endian, which
/// is the `murmur2` crate's endian-neutral `murmur2` with `KAFKA_SEED`; the
/// unit tests pin it to the vectors from Kafka's `UtilsTest`.
pub fn kafka_murmur2(key: &[u8]) -> i32 {
    // Java returns the same 32 bits as a signed int.
    murmur2::murmur2(key, murmur2::KAFKA_SEED) as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit. Unlike `abs` it maps
/// `i32::MIN` to 0 instead of overflowing, and Kafka relies on exactly this.
fn to_positive(n: i32) -> u32 {
    (n & 0x7fff_ffff) as u32
}

/// Utils.toPositive(murmur2(key)) % num_partitions, exactly as Kafka's
/// BuiltInPartitioner.partitionForKey.
///
/// `num_partitions` must be > 0; for 0 (a topic cannot have no partitions)
/// this returns 0 rather than panicking on the division.
pub fn partition_for_key(key: &[u8], num_partitions: u32) -> u32 {
    to_positive(kafka_murmur2(key)).checked_rem(num_partitions).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's `UtilsTest.testMurmur2`.
    const KAFKA_VECTORS: [(&str, i32); 6] = [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ];

    #[test]
    fn murmur2_matches_kafka_utils_test() {
        for (key, expected) in KAFKA_VECTORS {
            assert_eq!(kafka_murmur2(key.as_bytes()), expected, "key {key:?}");
        }
    }

    #[test]
    fn to_positive_is_a_mask_not_abs() {
        assert_eq!(to_positive(0), 0);
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(i32::MAX), i32::MAX as u32);
        assert_eq!(to_positive(-973932308), 1173551340);
    }

    #[test]
    fn partition_for_key_matches_kafka_formula() {
        // toPositive(-973932308) = 1173551340; 1173551340 % 3 = 0, % 7 = 3.
        assert_eq!(partition_for_key(b"21", 3), 0);
        assert_eq!(partition_for_key(b"21", 7), 3);
        // 479470107 % 10 = 7 (positive hash: mask is a no-op).
        assert_eq!(partition_for_key(b"abc", 10), 7);
        assert_eq!(partition_for_key(b"abc", 1), 0);
    }

    #[test]
    fn zero_partitions_does_not_panic() {
        assert_eq!(partition_for_key(b"abc", 0), 0);
    }

    #[test]
    fn result_is_always_in_range() {
        for n in 1..50u32 {
            for (key, _) in KAFKA_VECTORS {
                assert!(partition_for_key(key.as_bytes(), n) < n);
            }
        }
    }

    #[test]
    fn empty_key_hash_is_stable() {
        // MurmurHash2 of the empty input with Kafka's seed: h = seed ^ 0,
        // then the final avalanche only.
        let mut h: u32 = 0x9747_b28c;
        h ^= h >> 13;
        h = h.wrapping_mul(0x5bd1_e995);
        h ^= h >> 15;
        assert_eq!(kafka_murmur2(b""), h as i32);
    }
}
