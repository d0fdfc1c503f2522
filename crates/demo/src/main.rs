//! `outbox-demo`: the whole outbox pattern on one machine, from nothing, in one command.

use std::process::ExitCode;

use clap::Parser;
use outbox_demo::DemoOptions;

#[tokio::main]
async fn main() -> ExitCode {
    let options = DemoOptions::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,outbox_tailer=info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in files or CI logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let interrupted = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match outbox_demo::run(&options, interrupted, &mut std::io::stdout()).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
