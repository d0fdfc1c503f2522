//! The tailer binary, built alongside the harness (see Cargo.toml).

fn main() -> std::process::ExitCode {
    outbox_tailer::cli::main()
}
