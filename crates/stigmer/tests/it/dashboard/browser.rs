//! A real browser for the dashboard's tests and benchmark: Chromium under its own ChromeDriver
//! on a free port, with a fresh profile, behind a blocking facade over the async WebDriver
//! client (`thirtyfour`). Shared by `tests/it/dashboard.rs` and `benches/dashboard.rs`.

use serde_json::{Value, json};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stigmer_test::{ChildGuard, TestHome};
use thirtyfour::prelude::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a test waits for something on the page (a run includes Temporal's dispatch).
pub const PAGE_DEADLINE: Duration = Duration::from_secs(60);
/// How long ChromeDriver and the browser get to start.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// False (after saying why) when the browser tests cannot run here; in CI they never skip.
pub fn browser_available() -> bool {
    if Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMEDRIVER} is missing and CI is set: browser tests never skip in CI \
         (scripts/setup-browser installs chromium and chromium-driver)"
    );
    eprintln!(
        "skipping the dashboard browser test: {CHROMEDRIVER} is missing \
         (run scripts/setup-browser to install chromium and chromium-driver)"
    );
    false
}

/// The sign-in link of the home's dashboard: what `stigmer dashboard --no-open` prints on
/// stdout, which must be that one line and nothing else (made here from the state file and the
/// token, to check it is this home's).
pub fn dashboard_link(home: &TestHome) -> String {
    let printed = home.run(&["dashboard", "--no-open"]);
    assert_eq!(printed.code, 0, "stigmer dashboard failed:\n{printed}");
    let state = home.state().expect("the daemon recorded no state");
    let address = state["server_address"]
        .as_str()
        .expect("no server_address in run/state.json");
    let token = std::fs::read_to_string(home.path().join("run/api-token"))
        .expect("cannot read run/api-token");
    let link = format!("http://{address}/?token={}", token.trim());
    assert_eq!(printed.stdout, format!("{link}\n"), "{printed}");
    link
}

/// Chromium under its own ChromeDriver, with a fresh profile; a blocking facade over the
/// async WebDriver client. Dropping it ends the session and kills ChromeDriver (and with it
/// the browser), even when the test failed.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    driver: Option<WebDriver>,
    _chromedriver: ChildGuard,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn start() -> Browser {
        // thirtyfour's reqwest client needs a TLS provider even for the loopback driver; ring
        // is the one the workspace links. Installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("cannot build a Tokio runtime");
        let profile = tempfile::Builder::new()
            .prefix("stigmer-chromium-")
            .tempdir()
            .expect("cannot create a browser profile directory");
        let port = stigmer_test::free_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log"))
            .expect("cannot create the chromedriver log");
        let chromedriver = ChildGuard(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cannot share the log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|error| panic!("cannot start {CHROMEDRIVER}: {error}")),
        );
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < START_DEADLINE,
                "chromedriver did not listen on port {port} within {START_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        let driver = runtime.block_on(async {
            let mut capabilities = DesiredCapabilities::chrome();
            capabilities.set_binary(CHROMIUM)?;
            for argument in [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1280,2000",
            ] {
                capabilities.add_arg(argument)?;
            }
            capabilities.add_arg(&format!("--user-data-dir={}", profile.path().display()))?;
            // ChromeDriver listens a moment before it accepts sessions.
            loop {
                match WebDriver::new(format!("http://127.0.0.1:{port}"), capabilities.clone()).await
                {
                    Ok(driver) => return WebDriverResult::Ok(driver),
                    Err(error) if started.elapsed() > START_DEADLINE => return Err(error),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let driver = driver.unwrap_or_else(|error| {
            let log = std::fs::read_to_string(profile.path().join("chromedriver.log"))
                .unwrap_or_default();
            panic!("cannot start a browser session: {error}\nchromedriver log:\n{log}")
        });
        Browser {
            runtime,
            driver: Some(driver),
            _chromedriver: chromedriver,
            _profile: profile,
        }
    }

    fn driver(&self) -> &WebDriver {
        self.driver.as_ref().expect("the browser session has ended")
    }

    fn block_on<T>(&self, what: &str, future: impl Future<Output = WebDriverResult<T>>) -> T {
        self.runtime
            .block_on(future)
            .unwrap_or_else(|error| panic!("browser: {what}: {error}"))
    }

    pub fn goto(&self, url: &str) {
        self.block_on(&format!("open {url}"), self.driver().goto(url));
    }

    pub fn current_url(&self) -> String {
        self.block_on("read the address", self.driver().current_url())
            .to_string()
    }

    /// Runs `script` (a function body; `return` gives its value) in the page.
    pub fn js(&self, script: &str) -> Value {
        self.block_on(&format!("run {script}"), async {
            Ok(self
                .driver()
                .execute(script, Vec::new())
                .await?
                .json()
                .clone())
        })
    }

    /// Polls `script` until `accept` takes its value, failing the test with `what` and the
    /// last value after [`PAGE_DEADLINE`].
    pub fn wait_for<T>(&self, what: &str, script: &str, accept: impl Fn(&Value) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            let value = self.js(script);
            if let Some(accepted) = accept(&value) {
                return accepted;
            }
            assert!(
                started.elapsed() < PAGE_DEADLINE,
                "timed out after {PAGE_DEADLINE:?} waiting for {what}; last value: {value}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until `selector` matches an element.
    pub fn wait_for_element(&self, selector: &str) {
        let script = format!(
            "return document.querySelector({}) !== null",
            json!(selector)
        );
        self.wait_for(&format!("an element {selector}"), &script, |found| {
            (found == &Value::Bool(true)).then_some(())
        });
    }

    /// The text of the first element `selector` matches (`null` when none does).
    pub fn text_script(selector: &str) -> String {
        format!(
            "const node = document.querySelector({}); return node ? node.textContent : null",
            json!(selector)
        )
    }

    /// Waits until the text of `selector` is `expected`.
    pub fn wait_for_text(&self, selector: &str, expected: &str) {
        self.wait_for(
            &format!("{selector} to read {expected:?}"),
            &Browser::text_script(selector),
            |text| (text.as_str() == Some(expected)).then_some(()),
        );
    }

    pub fn click(&self, selector: &str) {
        self.block_on(&format!("click {selector}"), async {
            self.driver().find(By::Css(selector)).await?.click().await
        });
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.runtime
            .block_on(self.driver().get_named_cookie(name))
            .ok()
            .map(|cookie| cookie.value.clone())
    }

    /// Fails the test when the page recorded a JavaScript error.
    pub fn assert_no_errors(&self) {
        let errors = self.js("return window.__errors || ['window.__errors is missing']");
        assert_eq!(errors, json!([]), "the page recorded JavaScript errors");
    }

    fn screenshot(&self, test: &str) {
        let Some(driver) = &self.driver else {
            return;
        };
        let directory =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
        let path = directory.join(format!("{test}.png"));
        match self.runtime.block_on(driver.screenshot_as_png()) {
            Ok(png) => {
                let _ = std::fs::create_dir_all(&directory);
                match std::fs::write(&path, png) {
                    Ok(()) => eprintln!("screenshot: {}", path.display()),
                    Err(error) => eprintln!("cannot write {}: {error}", path.display()),
                }
            }
            Err(error) => eprintln!("cannot take a screenshot: {error}"),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            // Bounded: a hung browser must not hang the test; ChromeDriver is killed next.
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), driver.quit()).await
            });
        }
    }
}

/// Runs a browser test: a screenshot when it fails, no JavaScript error when it passes.
pub fn browser_test(test: &str, body: impl FnOnce(&Browser)) {
    let browser = Browser::start();
    match std::panic::catch_unwind(AssertUnwindSafe(|| body(&browser))) {
        Ok(()) => {
            // `DASHBOARD_SCREENSHOTS=1` keeps the last page of passing tests too, to look at.
            if std::env::var_os("DASHBOARD_SCREENSHOTS").is_some() {
                browser.screenshot(test);
            }
            browser.assert_no_errors();
        }
        Err(panic) => {
            browser.screenshot(test);
            if let Some(errors) = browser.driver.as_ref().and_then(|driver| {
                browser
                    .runtime
                    .block_on(driver.execute("return window.__errors || []", Vec::new()))
                    .ok()
            }) {
                eprintln!("window.__errors: {}", errors.json());
            }
            drop(browser);
            std::panic::resume_unwind(panic);
        }
    }
}
