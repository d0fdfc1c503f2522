//! Configuration: every setting declared once ([`args`]) with its flag, environment variable
//! and TOML key; the file layered under flags and environment ([`file`]); validation and
//! defaults ([`resolve`]) into the [`settings`] the rest of the tailer is built from.
//!
//! Precedence: flag, then environment variable, then the file, then the default. Secrets (the
//! PostgreSQL password, `sasl.password`/`ssl.key.password` Kafka options) never appear in
//! `Debug` output, logs, or `--help`.

pub mod args;
pub mod command_line;
pub mod file;
pub mod java_properties;
pub mod kafka_safety;
pub mod resolve;
pub mod route_args;
mod route_resolve;
pub mod secret;
pub mod settings;
pub mod show;
pub mod topic_template;

#[cfg(test)]
mod tests;

pub use args::{
    DatabaseArgs, LogFormat, PeekArgs, PollArgs, ReplayArgs, ReplayTarget, RunArgs, SetupArgs,
    StatusArgs, ThresholdArgs,
};
pub use command_line::{Command, CommandLine, ConfigArgs, ImportDebeziumArgs};
pub use resolve::PeekSettings;
pub use secret::Secret;
pub use settings::{
    describe_pg, AfterPublish, PollConfig, RouteConfig, SinkConfig, SlotThresholds, SourceConfig,
    TailerConfig, TransactionConfig,
};
