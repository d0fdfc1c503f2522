//! Before streaming: do the Kafka settings get past the broker's authentication?
//!
//! librdkafka treats a refused SASL login or TLS handshake like a broker that is away: it
//! retries, and with `message.timeout.ms = 0` records would wait in its queue forever while
//! the tailer looks healthy. So `run` and `poll` first ask the broker for metadata with the
//! same settings:
//!
//! ```text
//!   metadata answered ─────────────────────────▶ go
//!   authentication / TLS / SASL error ─────────▶ stop, saying which settings to check
//!   broker away (refused, all brokers down) ───▶ go: the sink waits for it like any outage
//! ```
//!
//! Credentials that stop working while running are reported by librdkafka's error log only.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::SinkConfig;
use crate::error::TailerError;

/// What the broker check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Answered,
    /// Authentication or TLS refused: the reason (librdkafka's, which names no secret).
    Refused(String),
    Away(String),
}

#[derive(Default)]
struct SeenErrors {
    verdict: Mutex<Option<Verdict>>,
    /// The API keys a broker said it supports (librdkafka's `feature` debug lines).
    api_keys: Mutex<Vec<i16>>,
}

/// The Kafka API keys a transactional producer needs: InitProducerId, AddPartitionsToTxn,
/// EndTxn.
const TRANSACTION_APIS: [(i16, &str); 3] = [
    (22, "InitProducerId"),
    (24, "AddPartitionsToTxn"),
    (26, "EndTxn"),
];

/// The key of a librdkafka line like `…:   ApiKey EndTxn (26) Versions 0..3`.
fn api_key_of(line: &str) -> Option<i16> {
    let rest = &line[line.find("ApiKey ")?..];
    let open = rest.find('(')?;
    let close = rest[open..].find(')')? + open;
    rest[open + 1..close].trim().parse().ok()
}

impl SeenErrors {
    fn record(&self, verdict: Verdict) {
        if let Ok(mut seen) = self.verdict.lock() {
            // A refusal is the more useful news: keep it over "away".
            if !matches!(*seen, Some(Verdict::Refused(_))) {
                *seen = Some(verdict);
            }
        }
    }
}

/// librdkafka's words for a protocol mismatch, which it logs but does not report as an error:
/// a TLS client at a plaintext listener times out in the handshake; a plaintext client at a
/// TLS listener is disconnected "(… incorrect security.protocol configuration …)".
fn is_protocol_mismatch(text: &str) -> bool {
    text.contains("SSL_HANDSHAKE") || text.contains("security.protocol")
}

impl ClientContext for SeenErrors {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) && is_protocol_mismatch(message) {
            self.record(Verdict::Refused(message.to_owned()));
        }
        if fac == "APIVERSION" {
            if let (Some(key), Ok(mut keys)) = (api_key_of(message), self.api_keys.lock()) {
                keys.push(key);
            }
            return;
        }
        crate::relay::sink::log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use RDKafkaErrorCode as C;
        let verdict = match error.rdkafka_error_code() {
            Some(
                C::Authentication
                | C::SaslAuthenticationFailed
                | C::UnsupportedSASLMechanism
                | C::IllegalSASLState
                | C::SSL,
            ) => Verdict::Refused(format!("{error}: {reason}")),
            _ if is_protocol_mismatch(reason) => Verdict::Refused(format!("{error}: {reason}")),
            Some(C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve) => {
                Verdict::Away(format!("{error}: {reason}"))
            }
            _ => return,
        };
        self.record(verdict);
    }
}

impl ProducerContext for SeenErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Fail when the broker refuses the configured credentials or TLS settings; wait at most
/// `within` for an answer.
pub async fn check_broker(config: &SinkConfig, within: Duration) -> Result<(), TailerError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.brokers)
        .set("client.id", "outbox-tailer-check");
    // Within the check's own wait, so a handshake that never completes is reported.
    let setup_ms = within.as_millis().saturating_sub(2000).max(1000);
    cc.set("socket.connection.setup.timeout.ms", setup_ms.to_string());
    for (k, v) in &config.options {
        cc.set(k, v);
    }
    if config.transactions.is_some() {
        // The broker's API versions are logged in the `feature` debug context.
        let debug = match cc.get("debug") {
            Some(d) if !d.is_empty() => format!("{d},feature"),
            _ => "feature".to_owned(),
        };
        cc.set("debug", debug).set_log_level(RDKafkaLogLevel::Debug);
    }
    let producer: BaseProducer<SeenErrors> = cc
        .create_with_context(SeenErrors::default())
        .map_err(|source| TailerError::Kafka {
            context: "creating the producer (check the -X options)",
            source,
        })?;
    let (verdict, api_keys) = tokio::task::spawn_blocking(move || {
        let verdict = ask(&producer, within);
        // Serve the log lines of the answer.
        producer.poll(Duration::from_millis(100));
        let keys = producer
            .context()
            .api_keys
            .lock()
            .map(|k| k.clone())
            .unwrap_or_default();
        (verdict, keys)
    })
    .await
    .map_err(|e| TailerError::Config(format!("the broker check did not finish: {e}")))?;
    match verdict {
        Verdict::Answered if config.transactions.is_some() => transactions_supported(&api_keys),
        Verdict::Answered => Ok(()),
        Verdict::Away(reason) => {
            tracing::warn!(reason = %reason, "Kafka is not reachable yet; records wait for it");
            Ok(())
        }
        Verdict::Refused(reason) => Err(TailerError::Refused(format!(
            "Kafka at {} refused the connection: {reason}. Check security.protocol, \
             sasl.mechanism, sasl.username and sasl.password, and for TLS ssl.ca.location \
             (set with -X key=value or the [kafka] table of the config file); the broker's \
             listener must expect the same protocol",
            config.brokers
        ))),
    }
}

/// `--exactly-once` needs the transaction APIs; a broker that answered without them (tansu
/// 0.6 has no EndTxn) is refused before anything is sent.
fn transactions_supported(api_keys: &[i16]) -> Result<(), TailerError> {
    if api_keys.is_empty() {
        return Err(crate::relay::sink::transaction::unsupported(
            "the broker's API versions could not be read",
        ));
    }
    let missing: Vec<&str> = TRANSACTION_APIS
        .iter()
        .filter(|(key, _)| !api_keys.contains(key))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(crate::relay::sink::transaction::unsupported(&format!(
            "it does not offer {}",
            missing.join(", ")
        )))
    }
}

fn ask(producer: &BaseProducer<SeenErrors>, within: Duration) -> Verdict {
    let deadline = Instant::now() + within;
    loop {
        let answered = producer
            .client()
            .fetch_metadata(None, Duration::from_millis(250))
            .is_ok();
        if answered {
            return Verdict::Answered;
        }
        // Serves the error callbacks.
        producer.poll(Duration::from_millis(50));
        let verdict = producer
            .context()
            .verdict
            .lock()
            .ok()
            .and_then(|v| v.clone());
        match verdict {
            Some(v) => return v,
            None if Instant::now() >= deadline => {
                return Verdict::Away(format!("no answer within {within:?}"))
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_read_from_librdkafka_feature_lines() {
        let line = "127.0.0.1:9092/bootstrap:   ApiKey EndTxn (26) Versions 0..3";
        assert_eq!(api_key_of(line), Some(26));
        assert_eq!(api_key_of("Broker API support:"), None);
        assert_eq!(
            api_key_of("  ApiKey Unknown-75? (75) Versions 0..0"),
            Some(75)
        );
    }

    #[test]
    fn a_broker_without_end_txn_is_refused_for_exactly_once() {
        assert!(transactions_supported(&[0, 1, 22, 24, 26]).is_ok());
        let e = transactions_supported(&[0, 1, 22, 24]).expect_err("no EndTxn");
        assert!(e.to_string().contains("EndTxn"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(transactions_supported(&[]).is_err());
    }
}
