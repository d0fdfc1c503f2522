//! The tailer's command line, built inside this package so the end-to-end suites can run it as
//! a process (`CARGO_BIN_EXE_outbox-tailer-under-test`) and kill it.

fn main() -> std::process::ExitCode {
    outbox_tailer::cli::main()
}
