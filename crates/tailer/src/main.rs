//! The `outbox-tailer` binary; everything lives in the library (`outbox_tailer::cli`).

fn main() -> std::process::ExitCode {
    outbox_tailer::cli::main()
}
