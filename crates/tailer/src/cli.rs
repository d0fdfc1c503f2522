//! The command line: parse flags, set up logging, call the library. `main.rs` is one line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

use crate::config::{
    Command, CommandLine, ConfigArgs, ImportDebeziumArgs, LogFormat, PeekArgs, ReplayArgs,
    ReplayTarget, SetupArgs, StatusArgs,
};
use crate::error::TailerError;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in files or log collectors.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}

/// Run the command line in `std::env::args()`. The exit code says what to do about a failure
/// (see [`crate::error::Action`]): 2 fix the configuration, 3 fix the database, 4 operator
/// recovery, 5 retry, 70 a bug.
pub fn main() -> ExitCode {
    let matches = CommandLine::command().get_matches();
    let cli = CommandLine::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // One thread runs every task. The pipeline takes each replication message from the
    // replication worker's task over a channel; on the multi-threaded runtime nearly every
    // handover was a futex wake and a context switch between threads. librdkafka keeps its
    // own threads for Kafka IO.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(crate::error::Action::Retry.exit_code());
        }
    };
    rt.block_on(main_async(cli, matches))
}

async fn main_async(cli: CommandLine, matches: clap::ArgMatches) -> ExitCode {
    // The file may set the log format, so it is read before logging starts.
    let format = cli
        .command
        .settings_file()
        .and_then(|file| file.log_format())
        .map(|from_file| cli.log_format.or(from_file).unwrap_or(LogFormat::Text));
    init_tracing(*format.as_ref().unwrap_or(&LogFormat::Text));
    let json = matches!(format, Ok(LogFormat::Json));
    let result = match format {
        Ok(_) => dispatch(cli.command, &matches).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, kind = e.kind(), "outbox-tailer stopped");
            // A person reading text logs gets the error once more, last; a JSON log stays
            // JSON to its last line (the error is in the record above).
            if !json {
                eprintln!("error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(command: Command, matches: &clap::ArgMatches) -> Result<(), TailerError> {
    match command {
        Command::Run(args) => crate::run(args.resolve()?, shutdown_signal())
            .await
            .map(|_| ()),
        Command::Setup(args) => setup(&args).await,
        Command::Status(args) => status(&args).await,
        Command::Peek(args) => peek(&args).await,
        Command::Replay(args) => replay(&args).await,
        Command::Poll(args) => {
            let (config, poll) = args.resolve()?;
            crate::poll::poll(config, poll, shutdown_signal())
                .await
                .map(|_| ())
        }
        Command::ImportDebezium(args) => import_debezium(&args),
        Command::Config(args) => show_config(&args, matches),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            let mut cmd = CommandLine::command();
            clap_complete::generate(shell, &mut cmd, "outbox-tailer", &mut script);
            print_bytes(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(CommandLine::command())
                .render(&mut page)
                .map_err(|e| TailerError::Bug(format!("cannot render the man page: {e}")))?;
            print_bytes(&page)
        }
    }
}

/// Write to stdout; a reader that went away (`| head`) is not an error.
fn print_bytes(bytes: &[u8]) -> Result<(), TailerError> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(TailerError::Config(format!(
            "cannot write to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}

fn show_config(args: &ConfigArgs, matches: &clap::ArgMatches) -> Result<(), TailerError> {
    use crate::config::show;
    if args.example {
        print!("{}", show::example());
        return Ok(());
    }
    let config_matches = matches
        .subcommand_matches("config")
        .ok_or_else(|| TailerError::Bug("`config` without its matches".into()))?;
    let file = crate::config::file::SettingsFile::load(args.run.db.config.as_deref())?;
    let shown = show::effective(config_matches, &args.run, &file)?;
    // Resolving checks the combination, as `run` would at start.
    args.run.resolve()?;
    print!("{}", show::render(&shown));
    Ok(())
}

fn import_debezium(args: &ImportDebeziumArgs) -> Result<(), TailerError> {
    use crate::ops::import_debezium;
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| TailerError::Config(format!("cannot read {}: {e}", args.file.display())))?;
    let imported = import_debezium::import(&import_debezium::parse(&text)?)?;
    for (key, why) in &imported.unsupported {
        tracing::warn!("not honoured: {key}: {why}");
    }
    let toml = import_debezium::render(&imported, &args.file.display().to_string());
    match &args.output {
        Some(path) => std::fs::write(path, toml)
            .map_err(|e| TailerError::Config(format!("cannot write {}: {e}", path.display()))),
        None => {
            print!("{toml}");
            Ok(())
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, TailerError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| TailerError::Bug(format!("cannot print JSON: {e}")))
}

async fn setup(args: &SetupArgs) -> Result<(), TailerError> {
    let source = args.db.resolve()?;
    let report = crate::pg::setup::setup(&source).await?;
    for action in report.actions {
        println!("{action}");
    }
    if let Some(done) = crate::pg::setup::ensure_replay_slot(&source).await? {
        println!("{done}");
    }
    Ok(())
}

async fn status(args: &StatusArgs) -> Result<(), TailerError> {
    let (source, thresholds, args) = args.resolve()?;
    let status = crate::ops::status::status(&source, thresholds).await?;
    if args.json {
        println!("{}", to_json(&status)?);
    } else {
        print!("{}", crate::ops::status::render(&status));
    }
    Ok(())
}

async fn peek(args: &PeekArgs) -> Result<(), TailerError> {
    let peek = args.resolve()?;
    let opts = crate::ops::peek::PeekOptions {
        route: peek.config.route.clone(),
        message_prefix: peek.config.message_prefix.clone(),
        limit: peek.limit,
        show_payload: peek.show_payload,
    };
    let report = crate::ops::peek::peek(&peek.config.source, &opts).await?;
    if peek.json {
        println!("{}", to_json(&report)?);
    } else {
        print!("{}", crate::ops::peek::render(&report));
    }
    Ok(())
}

async fn replay(args: &ReplayArgs) -> Result<(), TailerError> {
    let (config, target) = args.resolve()?;
    let opts = crate::ops::replay::ReplayOptions {
        from: args.from_lsn,
        to: args.to_lsn,
        target,
        dry_run: args.dry_run,
        progress: true,
        chunk_changes: crate::ops::replay::DEFAULT_CHUNK_CHANGES,
    };
    let summary = crate::ops::replay::replay(&config, &opts, shutdown_signal()).await?;
    let text = crate::ops::replay::render(&summary);
    // Records own stdout when they go there.
    if target == ReplayTarget::Stdout && !args.dry_run {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if summary.complete {
        Ok(())
    } else {
        Err(TailerError::Interrupted(format!(
            "replay stopped before every event was acknowledged: run it again with \
             --from-lsn {}",
            summary.resume_from_lsn
        )))
    }
}
