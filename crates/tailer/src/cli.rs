//! The command line: parse flags, set up logging, call the library. `main.rs` is one line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::config::{
    AnyCommand, Command, CommandLine, LogFormat, PeekArgs, ReplayArgs, ReplayTarget, StatusArgs,
};
use crate::error::TailerError;
use tracing_subscriber::EnvFilter;

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

/// Run the command line in `std::env::args()`; the exit code is 2 for bad configuration, 1 for
/// any other failure.
pub fn main() -> ExitCode {
    let cli = CommandLine::parse();
    // One thread runs every task. The pipeline takes each replication message from the
    // replication worker's task over a channel; on the multi-threaded runtime (with the
    // pipeline in `block_on` on this thread) nearly every handover was a futex wake and a
    // context switch between threads. librdkafka keeps its own threads for Kafka IO.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(main_async(cli))
}

async fn main_async(cli: CommandLine) -> ExitCode {
    init_tracing(cli.log_format);
    let result = match cli.command {
        AnyCommand::Status(args) => status(&args).await,
        AnyCommand::Peek(args) => peek(&args).await,
        AnyCommand::Replay(args) => replay(&args).await,
        AnyCommand::Poll(args) => match args
            .run
            .resolve()
            .and_then(|c| Ok((c, args.poll_config()?)))
        {
            Ok((config, poll)) => crate::poll::poll(config, poll, shutdown_signal())
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        },
        AnyCommand::Core(Command::Setup(args)) => {
            match args.db.file().and_then(|f| args.db.resolve(&f)) {
                Ok(source) => match crate::setup::setup(&source).await {
                    Ok(report) => {
                        for action in report.actions {
                            println!("{action}");
                        }
                        crate::retention::ensure_replay_slot(&source)
                            .await
                            .map(|done| done.into_iter().for_each(|d| println!("{d}")))
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        AnyCommand::Core(Command::Run(args)) => match args.resolve() {
            Ok(config) => crate::run(config, shutdown_signal()).await.map(|_| ()),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "outbox-tailer stopped");
            eprintln!("error: {e}");
            ExitCode::from(if matches!(e, crate::TailerError::Config(_)) {
                2
            } else {
                1
            })
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, TailerError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| TailerError::Config(format!("cannot print JSON: {e}")))
}

async fn status(args: &StatusArgs) -> Result<(), TailerError> {
    let file = args.db.file()?;
    let source = args.db.resolve(&file)?;
    let thresholds = args.thresholds.resolve(&file);
    let status = crate::ops::status::status(&source, thresholds).await?;
    if args.json {
        println!("{}", to_json(&status)?);
    } else {
        print!("{}", crate::ops::status::render(&status));
    }
    Ok(())
}

async fn peek(args: &PeekArgs) -> Result<(), TailerError> {
    let config = args.run.resolve()?;
    let opts = crate::ops::peek::PeekOptions {
        route: config.route.clone(),
        message_prefix: config.message_prefix.clone(),
        limit: args.limit,
        show_payload: args.show_payload,
    };
    let report = crate::ops::peek::peek(&config.source, &opts).await?;
    if args.json {
        println!("{}", to_json(&report)?);
    } else {
        print!("{}", crate::ops::peek::render(&report));
    }
    Ok(())
}

async fn replay(args: &ReplayArgs) -> Result<(), TailerError> {
    let config = args.run.resolve()?;
    let opts = crate::ops::replay::ReplayOptions {
        from: args.from_lsn,
        to: args.to_lsn,
        target: args.to,
        dry_run: args.dry_run,
        progress: true,
        chunk_changes: crate::ops::replay::DEFAULT_CHUNK_CHANGES,
    };
    let summary = crate::ops::replay::replay(&config, &opts, shutdown_signal()).await?;
    let text = crate::ops::replay::render(&summary);
    // Records own stdout when they go there.
    if args.to == ReplayTarget::Stdout && !args.dry_run {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if summary.complete {
        Ok(())
    } else {
        Err(TailerError::Preflight(format!(
            "replay interrupted before every event was acknowledged: run it again with \
             --from-lsn {}",
            summary.resume_from_lsn
        )))
    }
}
