//! The command line: parse flags, set up logging, call the library. `main.rs` is one line.

use std::process::ExitCode;

use clap::Parser;

use crate::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(main_async(cli))
}

async fn main_async(cli: Cli) -> ExitCode {
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Setup(args) => match args.db.file().and_then(|f| args.db.resolve(&f)) {
            Ok(source) => crate::setup::setup(&source).await.map(|report| {
                for action in report.actions {
                    println!("{action}");
                }
            }),
            Err(e) => Err(e),
        },
        Command::Run(args) => match args.resolve() {
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
