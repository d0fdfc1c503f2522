//! librdkafka's in-process mock cluster, kept on its own thread because the handle is not `Send`.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::Context;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// What the test asks of the cluster's thread.
enum Command {
    /// Answer the next requests of this API with these errors, one per request.
    Errors(RDKafkaApiKey, Vec<RDKafkaRespErr>, mpsc::Sender<()>),
}

/// An in-process Kafka-protocol cluster; dropped with the handle. It accepts the transaction
/// APIs but neither fences an older producer nor hides aborted records from `read_committed`
/// consumers.
#[derive(Debug)]
pub struct MockKafka {
    bootstrap: String,
    stop: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl MockKafka {
    /// Start a mock cluster of `brokers` brokers.
    pub fn start(brokers: i32) -> anyhow::Result<MockKafka> {
        MockKafka::start_with_topics(brokers, &[])
    }

    /// Start a mock cluster with `(topic, partitions)` created up front (the mock cluster does
    /// not implement the CreateTopics admin request; it auto-creates topics on first produce).
    pub fn start_with_topics(brokers: i32, topics: &[(&str, i32)]) -> anyhow::Result<MockKafka> {
        let topics: Vec<(String, i32)> = topics.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                match MockCluster::new(brokers).and_then(|cluster| {
                    for (topic, partitions) in &topics {
                        cluster.create_topic(topic, *partitions, 1)?;
                    }
                    Ok(cluster)
                }) {
                    Ok(cluster) => {
                        let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                        // Serve commands until the handle is dropped.
                        while let Ok(Command::Errors(api, errors, done)) = stop_rx.recv() {
                            cluster.request_errors(api, &errors);
                            let _ = done.send(());
                        }
                        drop(cluster);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .context("spawning the mock cluster thread")?;
        let bootstrap = ready_rx
            .recv()
            .context("mock cluster thread ended early")?
            .context("creating librdkafka's mock cluster")?;
        Ok(MockKafka {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Answer the next requests of `api` with `errors`, one per request (then normally again).
    pub fn inject_errors(
        &self,
        api: RDKafkaApiKey,
        errors: &[RDKafkaRespErr],
    ) -> anyhow::Result<()> {
        let (done_tx, done_rx) = mpsc::channel();
        self.stop
            .as_ref()
            .context("mock cluster stopped")?
            .send(Command::Errors(api, errors.to_vec(), done_tx))
            .ok()
            .context("mock cluster thread ended")?;
        done_rx.recv().context("mock cluster thread ended")
    }

    /// `host:port,…` for `bootstrap.servers` (plain TCP on 127.0.0.1).
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
