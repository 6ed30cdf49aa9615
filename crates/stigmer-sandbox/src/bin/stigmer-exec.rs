//! `stigmer-exec internal exec [--workspace DIR --tmp DIR] [--timeout-ms N] -- CMD ARGS…`: the
//! resident wrapper without the rest of the `stigmer` binary, for this crate's tests (they need a
//! wrapper binary and cannot depend on `stigmer`). It takes the same arguments as
//! `stigmer internal exec` and runs the same [`stigmer_sandbox::exec_main`].

use std::io::Write;
use stigmer_sandbox::{EXIT_WRAPPER_FAILED, ExecArgs};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let role = (args.next(), args.next());
    let code = if role.0.as_deref() != Some("internal".as_ref())
        || role.1.as_deref() != Some("exec".as_ref())
    {
        let _ = writeln!(
            std::io::stderr(),
            "usage: stigmer-exec internal exec [--workspace DIR --tmp DIR] [--timeout-ms N] -- CMD ARGS…"
        );
        EXIT_WRAPPER_FAILED
    } else {
        match ExecArgs::parse(args) {
            Ok(args) => stigmer_sandbox::exec_main(args),
            Err(error) => {
                let _ = writeln!(std::io::stderr(), "stigmer-exec: {error}");
                EXIT_WRAPPER_FAILED
            }
        }
    };
    std::process::exit(code);
}
