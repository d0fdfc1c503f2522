//! The `outbox-app` command line: every option also reads an environment variable, so the
//! same binary is configured by flags locally and by env in a container. The connection
//! (`OUTBOX_POSTGRES`, `OUTBOX_POSTGRES_PASSWORD`) is shared with `outbox-tailer` and read the
//! same way; the app's own options read `OUTBOX_APP_*`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

use crate::connect::PgTarget;
use crate::duration::parse_duration;
use crate::error::{AppError, Result};
use crate::load::{self, Amount, LoadConfig, Via};
use crate::migrate;
use crate::orders::{self, FailPoint, NewOrder};
use crate::writer::{OutboxTable, OutboxWriter, DEFAULT_MESSAGE_PREFIX};

/// The example service of outbox-tailer: writes orders and their events to PostgreSQL.
///
/// Each business change and its event are written in one transaction, into the `orders` and
/// `outbox` tables; `outbox-tailer` then reads the events from the WAL and publishes them to
/// Kafka. This program never talks to Kafka.
///
/// First run `outbox-app migrate` (creates the tables), then `outbox-app create-order …` or
/// `outbox-app load …`. Logs go to stderr (set RUST_LOG=debug for more); results go to stdout.
#[derive(Debug, Parser)]
#[command(name = "outbox-app", version)]
pub struct Cli {
    /// PostgreSQL connection string, read as `outbox-tailer` reads it: `key=value` pairs
    /// (`host=db user=app dbname=shop sslmode=verify-full sslrootcert=ca.pem`) or a
    /// `postgresql://` URL, with TLS per `sslmode` (default prefer). OUTBOX_APP_POSTGRES is
    /// still read when OUTBOX_POSTGRES is not set (deprecated; removed in 0.2)
    /// [default: host=localhost user=postgres dbname=postgres].
    #[arg(long, global = true, env = "OUTBOX_POSTGRES", hide_env_values = true)]
    pub postgres: Option<String>,

    /// PostgreSQL password (overrides one in the connection string).
    #[arg(
        long,
        global = true,
        env = "OUTBOX_POSTGRES_PASSWORD",
        hide_env_values = true
    )]
    pub postgres_password: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update the tables (orders, outbox): applies each migration once, safe to
    /// run again and from several processes at once.
    Migrate(MigrateArgs),
    /// Create one order and its OrderCreated event in a single transaction.
    CreateOrder(CreateOrderArgs),
    /// Write outbox events at a steady rate and report the rate achieved.
    Load(LoadArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Directory of NNNN_name.sql files to apply instead of the migrations built into this
    /// binary (the repository's migrations/ at build time).
    #[arg(long, value_name = "DIR", env = "OUTBOX_APP_MIGRATIONS")]
    pub migrations: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CreateOrderArgs {
    /// Who places the order.
    #[arg(long, env = "OUTBOX_APP_CUSTOMER")]
    pub customer: String,

    /// Order total in cents (4200 = 42.00).
    #[arg(long, env = "OUTBOX_APP_AMOUNT_CENTS", value_parser = clap::value_parser!(i64).range(0..))]
    pub amount_cents: i64,

    /// Fail on purpose after inserting the order and before writing its event, to see that
    /// the transaction leaves neither behind.
    #[arg(long, env = "OUTBOX_APP_FAIL_AFTER_ORDER")]
    pub fail_after_order: bool,

    #[command(flatten)]
    pub outbox: OutboxArgs,
}

#[derive(Debug, Args)]
pub struct OutboxArgs {
    /// Outbox table, `table` or `schema.table` (used exactly as written, case included).
    #[arg(long, env = "OUTBOX_APP_OUTBOX_TABLE", default_value = "outbox", value_parser = parse_table)]
    pub outbox_table: OutboxTable,
}

/// How the load generator writes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViaArg {
    /// Insert rows into the outbox table.
    Table,
    /// pg_logical_emit_message with --message-prefix (no table; the tailer needs the same
    /// prefix configured).
    Message,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("amount").required(true).args(["duration", "count"])))]
pub struct LoadArgs {
    /// Events per second (a token-bucket schedule; falls behind only if PostgreSQL does).
    /// Required with --duration; without it --count runs as fast as possible.
    #[arg(long, env = "OUTBOX_APP_LOAD_RATE")]
    pub rate: Option<f64>,

    /// How long to run, e.g. 30s, 2m, 1h30m: writes exactly rate × duration events.
    #[arg(long, env = "OUTBOX_APP_LOAD_DURATION", value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,

    /// Write exactly this many events instead of running for a duration.
    #[arg(long, env = "OUTBOX_APP_LOAD_COUNT", conflicts_with = "duration")]
    pub count: Option<u64>,

    /// Events per transaction.
    #[arg(long, env = "OUTBOX_APP_LOAD_EVENTS_PER_TX", default_value_t = 1)]
    pub events_per_tx: u32,

    /// Connections writing in parallel.
    #[arg(long, env = "OUTBOX_APP_LOAD_CONCURRENCY", default_value_t = 1)]
    pub concurrency: u32,

    /// Where events go.
    #[arg(long, env = "OUTBOX_APP_LOAD_VIA", value_enum, default_value_t = ViaArg::Table)]
    pub via: ViaArg,

    /// Logical message prefix for --via message.
    #[arg(long, env = "OUTBOX_APP_MESSAGE_PREFIX", default_value = DEFAULT_MESSAGE_PREFIX)]
    pub message_prefix: String,

    /// Aggregate type of the events (default topic `outbox.event.<type>`).
    #[arg(long, env = "OUTBOX_APP_LOAD_AGGREGATE_TYPE", default_value = "load")]
    pub aggregate_type: String,

    /// Distinct aggregate ids (Kafka keys) the events cycle through.
    #[arg(long, env = "OUTBOX_APP_LOAD_AGGREGATES", default_value_t = 16)]
    pub aggregates: u32,

    /// Filler bytes added to each event's payload.
    #[arg(long, env = "OUTBOX_APP_LOAD_PAYLOAD_BYTES", default_value_t = 0)]
    pub payload_bytes: usize,

    /// Print the summary as one JSON object.
    #[arg(long, env = "OUTBOX_APP_LOAD_JSON")]
    pub json: bool,

    #[command(flatten)]
    pub outbox: OutboxArgs,
}

fn parse_table(s: &str) -> std::result::Result<OutboxTable, String> {
    OutboxTable::new(s).map_err(|e| e.to_string())
}

fn parse_duration_arg(s: &str) -> std::result::Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    let target = cli.target();
    match cli.command {
        Command::Migrate(args) => migrate_cmd(&target, args).await,
        Command::CreateOrder(args) => create_order_cmd(&target, args).await,
        Command::Load(args) => load_cmd(target, args).await,
    }
}

impl Cli {
    /// Where to connect: the flag or `OUTBOX_POSTGRES`, else the deprecated
    /// `OUTBOX_APP_POSTGRES`, else the local default.
    pub fn target(&self) -> PgTarget {
        let conn = self
            .postgres
            .clone()
            .or_else(|| std::env::var("OUTBOX_APP_POSTGRES").ok())
            .unwrap_or_else(|| "host=localhost user=postgres dbname=postgres".into());
        PgTarget::new(conn).with_password(self.postgres_password.clone())
    }
}

async fn migrate_cmd(postgres: &PgTarget, args: MigrateArgs) -> Result<()> {
    let migrations = match &args.migrations {
        Some(dir) => migrate::from_dir(dir)?,
        None => migrate::embedded(),
    };
    let mut client = postgres.connect().await?;
    let report = migrate::run(&mut client, &migrations).await?;
    for file in &report.applied {
        println!("applied          {file}");
    }
    for file in &report.already_applied {
        println!("already applied  {file}");
    }
    Ok(())
}

async fn create_order_cmd(postgres: &PgTarget, args: CreateOrderArgs) -> Result<()> {
    let mut client = postgres.connect().await?;
    let fail = if args.fail_after_order {
        FailPoint::AfterOrderInsert
    } else {
        FailPoint::Never
    };
    let order = NewOrder {
        customer: args.customer,
        amount_cents: args.amount_cents,
    };
    let writer = OutboxWriter::new(args.outbox.outbox_table);
    let created = orders::create_order(&mut client, &writer, &order, fail).await?;
    println!("order {} event {}", created.order_id, created.event_id);
    Ok(())
}

async fn load_cmd(postgres: PgTarget, args: LoadArgs) -> Result<()> {
    let amount = match (args.count, args.duration) {
        (Some(n), _) => Amount::Count(n),
        (None, Some(d)) => Amount::Duration(d),
        (None, None) => {
            return Err(AppError::InvalidConfig(
                "give --duration (with --rate) or --count".into(),
            ))
        }
    };
    let config = LoadConfig {
        rate: args.rate,
        events_per_tx: args.events_per_tx,
        concurrency: args.concurrency,
        via: match args.via {
            ViaArg::Table => Via::Table(Box::new(OutboxWriter::new(args.outbox.outbox_table))),
            ViaArg::Message => Via::Message {
                prefix: args.message_prefix,
            },
        },
        aggregate_type: args.aggregate_type,
        aggregates: args.aggregates,
        payload_bytes: args.payload_bytes,
        postgres,
        ..LoadConfig::new(String::new(), amount)
    };
    let bar = progress_bar(config.total_events()?);
    let on_commit = {
        let bar = bar.clone();
        move |n| bar.inc(n)
    };
    let summary = load::run_with(&config, on_commit, shutdown_signal()).await;
    bar.finish_and_clear();
    let summary = summary?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("summary serialises")
        );
    } else {
        println!("{summary}");
    }
    Ok(())
}

/// A bar on stderr when it is a terminal; hidden otherwise (logs and pipes stay clean).
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} events {per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn load_needs_a_duration_or_a_count_but_not_both() {
        assert!(Cli::try_parse_from(["outbox-app", "load", "--rate", "5"]).is_err());
        assert!(Cli::try_parse_from([
            "outbox-app",
            "load",
            "--rate",
            "5",
            "--count",
            "3",
            "--duration",
            "2s"
        ])
        .is_err());
        let cli = Cli::try_parse_from(["outbox-app", "load", "--rate", "5", "--duration", "1m30s"])
            .unwrap();
        let Command::Load(args) = cli.command else {
            panic!("load expected")
        };
        assert_eq!(args.duration, Some(Duration::from_secs(90)));
        assert_eq!(args.via, ViaArg::Table);
    }

    #[test]
    fn bad_table_names_are_refused_at_parse_time() {
        let err = Cli::try_parse_from([
            "outbox-app",
            "create-order",
            "--customer",
            "ada",
            "--amount-cents",
            "1",
            "--outbox-table",
            "outbox; drop table orders",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("invalid table name"));
    }
}
