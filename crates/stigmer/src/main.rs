//! The `stigmer` binary: every role (CLI, daemon, runners) lives in the `stigmer` library.

fn main() -> std::process::ExitCode {
    stigmer::main()
}
