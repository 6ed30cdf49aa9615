//! MCP test servers: `@modelcontextprotocol/server-everything`, installed by `scripts/setup`
//! into `target/fixtures/mcp` (tests never download), run over stdio by the tests themselves
//! ([`everything_script`]) or over streamable HTTP on a free port ([`EverythingHttp`], killed
//! with its process group on drop).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `dist/index.js` of the installed server-everything; panics when it is not installed.
pub fn everything_script() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join(
        "target/fixtures/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    );
    assert!(
        script.is_file(),
        "{} is missing: run scripts/setup to install the MCP test servers",
        script.display()
    );
    script
}

/// server-everything over streamable HTTP on a free loopback port (it binds every interface
/// and has no auth, hence a random port). Its process group is killed on drop.
pub struct EverythingHttp {
    child: Child,
    port: u16,
}

impl EverythingHttp {
    /// Starts the server and waits until its port accepts connections.
    pub fn start() -> EverythingHttp {
        let script = everything_script();
        let mut failures = Vec::new();
        // A free port can be taken by a parallel test before node binds it: retry on another.
        for _ in 0..3 {
            let port = crate::free_port();
            let child = Command::new("node")
                .arg(&script)
                .arg("streamableHttp")
                .env("PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("cannot start node (install Node.js)");
            let mut server = EverythingHttp { child, port };
            let until = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = server.child.try_wait() {
                    failures.push(format!("port {port}: exited ({status})"));
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                if Instant::now() > until {
                    failures.push(format!("port {port}: not listening after 30 s"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("server-everything did not start over HTTP: {failures:#?}");
    }

    /// `http://127.0.0.1:<port>/mcp`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid (and process group id) of the node process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EverythingHttp {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
