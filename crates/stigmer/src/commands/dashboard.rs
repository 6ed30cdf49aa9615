//! `stigmer dashboard`: the address of the web dashboard with a sign-in token, printed on stdout
//! and opened in a browser on a desktop. The API server serves the dashboard on its own port
//! and swaps the token for a session cookie (`stigmer-server`'s `http/auth.rs`).

use crate::cli::DashboardArgs;
use crate::failure::Failure;
use crate::printer::{Printer, print_data};
use std::process::{ExitCode, Stdio};
use stigmer_client::home::{RunState, read_api_token};

pub async fn open(args: DashboardArgs) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    // Started (and waited for) when it is not running, as `run` does.
    super::server::ensure_running(&home).await?;
    let address = RunState::load(&home)
        .and_then(|state| state.server_address)
        .ok_or_else(|| {
            Failure::new("the running daemon has not recorded its API address")
                .with_hint(Some("see `stigmer server status`".into()))
        })?;
    let token = read_api_token(&home).ok_or_else(|| {
        Failure::new(format!(
            "the API token is missing ({})",
            home.token_file().display()
        ))
        .with_hint(Some("restart the stack: `stigmer server restart`".into()))
    })?;
    let url = dashboard_url(&address, &token);
    print_data(&url);
    if args.no_open {
        return Ok(ExitCode::SUCCESS);
    }
    let printer = Printer::stderr();
    match opener() {
        Some(program) => {
            let opened = std::process::Command::new(program)
                .arg(&url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Err(error) = opened {
                printer.hint(&format!(
                    "cannot start {program} ({error}): open the address above in a browser"
                ));
            }
        }
        None => printer.hint(
            "open the address above in a browser on this machine (the dashboard answers on \
             loopback only; the token in it works once per browser, then a cookie takes over)",
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `http://127.0.0.1:PORT/?token=…`.
fn dashboard_url(address: &str, token: &str) -> String {
    format!("http://{address}/?token={token}")
}

/// The program that opens an address in the desktop's browser, when there is a desktop.
fn opener() -> Option<&'static str> {
    if cfg!(target_os = "macos") {
        return Some("open");
    }
    let desktop = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    desktop.then_some("xdg-open")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_carries_the_token() {
        assert_eq!(
            dashboard_url("127.0.0.1:7234", "abc"),
            "http://127.0.0.1:7234/?token=abc"
        );
    }
}
