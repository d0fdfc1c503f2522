//! The binary's command line: the commands and the global flags, over the settings of
//! [`crate::config::args`].

use clap::{Parser, Subcommand};

use crate::config::args::{
    LogFormat, PeekArgs, PollArgs, ReplayArgs, RunArgs, SetupArgs, StatusArgs,
};

/// Tails PostgreSQL's WAL and publishes transactional-outbox events to Kafka.
///
/// Events are read from a logical replication slot (pgoutput), published in commit order
/// (key = aggregate id), and the slot is advanced only after Kafka acknowledged them.
/// First time: `outbox-tailer setup` creates the publication and the slot; then
/// `outbox-tailer run`. On call: `outbox-tailer status` and `outbox-tailer peek`.
#[derive(Debug, Parser)]
#[command(name = "outbox-tailer", version, propagate_version = true)]
pub struct CommandLine {
    /// Log format: text or json [default: text].
    #[arg(long, env = "OUTBOX_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream outbox inserts from the slot to Kafka until SIGINT/SIGTERM.
    Run(Box<RunArgs>),
    /// Create the publication (FOR TABLE <outbox> WITH (publish = 'insert')) and then the slot,
    /// if missing. Idempotent; prints what it did.
    Setup(SetupArgs),
    /// Show the slot, its lag and WAL retention, the publication, and a verdict with what to do.
    Status(StatusArgs),
    /// Show the events waiting in the slot, exactly as `run` would publish them, without
    /// consuming them (reads a temporary copy of the slot; the slot itself never moves).
    Peek(PeekArgs),
    /// Re-publish the outbox events committed between two LSNs (a commit's LSN is in every
    /// record's `outbox-lsn` header) without moving the live slot: reads a temporary copy of
    /// the replay slot (`--replay-slot`) or of the live slot, whichever still holds the range.
    Replay(ReplayArgs),
    /// The polling relay: publish unpublished outbox rows every interval, then mark them
    /// published (or delete them). A baseline, and a fallback where logical replication is not
    /// available; needs the `seq` and `published_at` columns (migrations/0003).
    Poll(Box<PollArgs>),
    /// Convert a Debezium PostgreSQL connector configuration (Kafka Connect's JSON, or a
    /// `.properties` file) with the Outbox Event Router into a TOML file for `--config`,
    /// listing every option it cannot honour; unknown options are refused by name.
    ImportDebezium(ImportDebeziumArgs),
    /// Print the settings `run` would use with these flags, environment and file, each with
    /// where its value came from (secrets redacted); `--example` prints a file with every key.
    Config(Box<ConfigArgs>),
    /// Print a shell completion script: `outbox-tailer completions bash > /etc/bash_completion.d/outbox-tailer`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `outbox-tailer man > /usr/local/share/man/man1/outbox-tailer.1`.
    Man,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Print the example configuration file (every key, commented) instead.
    #[arg(long)]
    pub example: bool,
}

#[derive(Debug, clap::Args)]
pub struct ImportDebeziumArgs {
    /// The connector configuration: JSON (`{"name":…,"config":{…}}` or the config map) or
    /// `.properties`.
    pub file: std::path::PathBuf,
    /// Write the TOML here instead of standard output.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
}
