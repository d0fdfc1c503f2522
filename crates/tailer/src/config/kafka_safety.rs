//! librdkafka options a user may not change, because the delivery guarantee rests on them.
//!
//! Order per partition across retries needs the idempotent producer with `acks=all` and at
//! most 5 requests in flight; nothing may be dropped after a timeout (`message.timeout.ms=0`
//! retries for ever while the broker is away); no record may reach a partition after an
//! earlier one of that partition failed (`enable.gapless.guarantee`); partitions are chosen by
//! the key with the tailer's partitioner. `-X` and `[kafka]` may tune anything else.

use crate::error::TailerError;

/// Why a setting is fixed, with the values it accepts (compared case-insensitively).
struct Fixed {
    keys: &'static [&'static str],
    allowed: &'static [&'static str],
    why: &'static str,
}

const FIXED: &[Fixed] = &[
    Fixed {
        keys: &["enable.idempotence"],
        allowed: &["true"],
        why: "the idempotent producer keeps each partition's order across retries",
    },
    Fixed {
        keys: &["acks", "request.required.acks"],
        allowed: &["all", "-1"],
        why: "an event is confirmed to PostgreSQL only once every in-sync replica has it",
    },
    Fixed {
        keys: &["message.timeout.ms", "delivery.timeout.ms"],
        allowed: &["0"],
        why: "a finite timeout drops records while the broker is away; the tailer waits instead",
    },
    Fixed {
        keys: &["enable.gapless.guarantee"],
        allowed: &["true"],
        why: "no record may reach a partition after an earlier one of that partition failed",
    },
    Fixed {
        keys: &["partitioner"],
        allowed: &[
            "murmur2",
            "murmur2_random",
            "consistent",
            "consistent_random",
        ],
        why: "the tailer places each key itself, by murmur2 (the Java producer's, the default) \
              or CRC-32 (librdkafka's consistent); a random placement would split an aggregate",
    },
    Fixed {
        keys: &["partitioner_cb"],
        allowed: &[],
        why: "the partition is chosen from the key by the tailer, so an aggregate stays on one",
    },
    Fixed {
        keys: &["transactional.id"],
        allowed: &[],
        why: "Kafka transactions are the tailer's own mode (`--exactly-once`)",
    },
];

/// The most requests in flight per connection that still keep order with idempotence.
const MAX_IN_FLIGHT: u32 = 5;

/// Refuse user options that would void the delivery guarantee, naming the setting and why.
pub fn check(options: &[(String, String)]) -> Result<(), TailerError> {
    for (key, value) in options {
        let refuse = |why: &str| {
            TailerError::Config(format!(
                "kafka option {key}={value} is refused: {why}. Remove it from -X / [kafka] \
                 (see docs/reliability.md)"
            ))
        };
        if let Some(fixed) = FIXED.iter().find(|f| f.keys.contains(&key.as_str())) {
            if !fixed.allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
                return Err(refuse(fixed.why));
            }
        }
        if matches!(
            key.as_str(),
            "max.in.flight.requests.per.connection" | "max.in.flight"
        ) && !value
            .parse::<u32>()
            .is_ok_and(|n| (1..=MAX_IN_FLIGHT).contains(&n))
        {
            return Err(refuse(
                "above 5 requests in flight the idempotent producer cannot keep order",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_owned(), v.to_owned())]
    }

    #[test]
    fn settings_that_void_the_guarantee_are_refused_by_name() {
        for (k, v) in [
            ("enable.idempotence", "false"),
            ("acks", "1"),
            ("request.required.acks", "0"),
            ("message.timeout.ms", "30000"),
            ("delivery.timeout.ms", "120000"),
            ("enable.gapless.guarantee", "false"),
            ("partitioner", "random"),
            ("partitioner", "fnv1a_random"),
            ("max.in.flight.requests.per.connection", "6"),
            ("max.in.flight", "1000"),
            ("transactional.id", "x"),
        ] {
            let e = check(&opt(k, v)).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{k}={v}")) && e.contains("refused"),
                "{e}"
            );
        }
    }

    #[test]
    fn harmless_and_equal_settings_pass() {
        for (k, v) in [
            ("enable.idempotence", "TRUE"),
            ("acks", "all"),
            ("acks", "-1"),
            ("message.timeout.ms", "0"),
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "20"),
            ("partitioner", "consistent_random"),
            ("partitioner", "murmur2_random"),
            ("security.protocol", "SASL_SSL"),
        ] {
            assert!(check(&opt(k, v)).is_ok(), "{k}={v}");
        }
    }
}
