//! The dashboard in a real browser: Chromium driven through its own ChromeDriver (WebDriver,
//! `thirtyfour`), against the real binary, Temporal and the scripted LLM. Each test signs in
//! with the link `stigmer dashboard` prints, follows a run live, and ends by asserting that the
//! page recorded no JavaScript error (`window.__errors`, filled by `assets/errors.js`).
//!
//! `scripts/setup-browser` installs Chromium and ChromeDriver. Without
//! `/usr/bin/chromedriver` the tests skip with a message, except in CI (`CI` set), where they
//! fail. A failing test leaves a screenshot in `target/dashboard-screenshots/<test>.png`.

mod browser;

use crate::runs::Stack;
use browser::{Browser, PAGE_DEADLINE, browser_available, browser_test, dashboard_link};
use serde_json::json;
use std::time::{Duration, Instant};
use stigmer_test::TestHome;
use stigmer_test::llm::{Fault, Turn};

/// Opens the sign-in link: the server swaps the token for the session cookie and the address
/// no longer holds the token.
fn sign_in(browser: &Browser, home: &TestHome) {
    let link = dashboard_link(home);
    browser.goto(&link);
    browser.wait_for_element("main h1");
    let address = browser.current_url();
    assert!(!address.contains("token="), "the token stayed in {address}");
    assert!(
        browser.cookie("stigmer_session").is_some(),
        "no session cookie after opening {address}"
    );
}

/// `stigmer run helper MESSAGE --no-follow`: the execution's id.
fn start_run(stack: &Stack, message: &str) -> String {
    let outcome = stack.home.run(&["run", "helper", message, "--no-follow"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    outcome.stdout.trim().to_owned()
}

/// Goes to a page of the dashboard without reloading it.
fn navigate(browser: &Browser, hash: &str) {
    browser.js(&format!("location.hash = {}; return null", json!(hash)));
}

fn row_selector(id: &str) -> String {
    format!("#executions tr[data-id='{id}']")
}

const ANSWER: &str = "The answer arrives one word at a time, so that the page has to show it \
                      growing while the model still streams the rest of it.";

#[test]
fn the_dashboard_signs_in_and_follows_a_run_live() {
    if !browser_available() {
        return;
    }
    let stack = Stack::start(
        "openai",
        vec![Turn::text(ANSWER).with_chunk_delay(Duration::from_millis(150))],
    );
    browser_test("the_dashboard_signs_in_and_follows_a_run_live", |browser| {
        sign_in(browser, &stack.home);
        // The overview lists the daemon's components, each state as a word.
        browser.wait_for_element("#components tr[data-component='temporal']");
        let state = browser.js(&Browser::text_script(
            "#components tr[data-component='temporal'] .state",
        ));
        assert_eq!(state, json!("running"), "temporal's state on the overview");

        // The list is live: a run started elsewhere appears without a reload.
        navigate(browser, "#/executions");
        browser.wait_for_text("#live", "live");
        browser.js("window.__notReloaded = true; return null");
        let id = start_run(&stack, "Tell me slowly");
        browser.wait_for_element(&row_selector(&id));

        // Its page shows the answer growing while it streams, then the end, still live.
        browser.click(&format!("{} a[href^='#/executions/']", row_selector(&id)));
        browser.wait_for_element("#answer");
        let mut lengths = Vec::new();
        let started = Instant::now();
        loop {
            let answer = browser.js(&Browser::text_script("#answer"));
            let answer = answer.as_str().unwrap_or_default().to_owned();
            assert!(
                ANSWER.starts_with(&answer),
                "#answer is not a prefix: {answer:?}"
            );
            if lengths.last() != Some(&answer.len()) {
                lengths.push(answer.len());
            }
            if answer == ANSWER {
                break;
            }
            assert!(
                started.elapsed() < PAGE_DEADLINE,
                "the answer did not complete: {answer:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let partial = lengths
            .iter()
            .filter(|length| **length > 0 && **length < ANSWER.len())
            .count();
        assert!(
            partial >= 2,
            "the answer did not grow on the page (lengths seen: {lengths:?})"
        );
        browser.wait_for_text("#phase", "completed");
        browser.wait_for_text("#stream-state", "ended");
        assert_eq!(
            browser.js("return window.__notReloaded === true"),
            json!(true)
        );
        // Every event is on the page once, in order.
        let seqs = browser.js("return [...document.querySelectorAll('#events [data-seq]')].map(n => Number(n.dataset.seq))");
        let seqs: Vec<u64> = serde_json::from_value(seqs).unwrap();
        assert!(!seqs.is_empty());
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

        // Back on the list, the row shows the end.
        navigate(browser, "#/executions?phase=completed");
        browser.wait_for_element(&format!("{}[data-phase='completed']", row_selector(&id)));

        // The other pages: resources with their YAML, the session's conversation.
        navigate(browser, "#/resources");
        browser.wait_for_element("#kinds tr[data-kind='Agent']");
        navigate(browser, "#/resources/agent/helper");
        browser.wait_for("the agent's YAML", &Browser::text_script("#yaml"), |yaml| {
            yaml.as_str()
                .is_some_and(|yaml| yaml.contains("name: helper"))
                .then_some(())
        });
        navigate(browser, "#/sessions");
        browser.wait_for_element("#sessions tr[data-id] a");
        browser.click("#sessions tr[data-id] a");
        browser.wait_for_element("#conversation .message[data-role='user']");
        browser.wait_for_element("#conversation .message[data-role='assistant']");
    });
}

/// An agent whose every tool call waits for a person.
const GUARDED_AGENT: &str = "\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: helper
spec:
  instructions: You help.
  approval:
    tools: [\"*\"]
";

#[test]
fn a_pending_call_is_approved_from_the_page_and_the_run_completes() {
    if !browser_available() {
        return;
    }
    let stack = Stack::start_with(
        "openai",
        vec![
            Turn::tool_call("ls", json!({"path": "."})),
            Turn::text("Listed."),
        ],
        "",
        GUARDED_AGENT,
    );
    browser_test(
        "a_pending_call_is_approved_from_the_page_and_the_run_completes",
        |browser| {
            sign_in(browser, &stack.home);
            let id = start_run(&stack, "List the files");
            navigate(browser, &format!("#/executions/{id}"));
            browser.wait_for_element("#approvals li[data-call-id]");
            browser.wait_for_text("#phase", "waiting");
            let call = browser
                .js("return document.querySelector('#approvals li[data-call-id]').dataset.callId");
            let call = call.as_str().expect("a call id").to_owned();
            let pending = format!("#approvals li[data-call-id='{call}']");
            let text = browser.js(&Browser::text_script(&pending));
            assert!(
                text.as_str().unwrap_or_default().contains("ls"),
                "the pending call does not name its tool: {text}"
            );
            browser.click(&format!("{pending} button.approve"));
            browser.wait_for_text("#phase", "completed");
            browser.wait_for_text("#answer", "Listed.");
            // Decided: no longer pending; the call ran.
            browser.wait_for(
                "the approval to leave the page",
                "return document.querySelectorAll('#approvals li').length",
                |count| (count == &json!(0)).then_some(()),
            );
            browser.wait_for_element("#waterfall tr[data-kind='tool'][data-state='ok']");
            browser.wait_for_element("#events li[data-kind='approval_decided']");
        },
    );
}

#[test]
fn a_failed_run_shows_its_reason_and_jumps_to_the_first_error() {
    if !browser_available() {
        return;
    }
    let stack = Stack::start(
        "openai",
        vec![
            Turn::tool_call(
                "write_todos",
                json!({"todos": [{"content": "read the host name", "status": "in_progress"}]}),
            ),
            Turn::tool_call("read_file", json!({"path": "../../../../etc/hostname"})),
            Turn::fault(Fault::Status(401, "Incorrect API key provided".into())),
        ],
    );
    browser_test(
        "a_failed_run_shows_its_reason_and_jumps_to_the_first_error",
        |browser| {
            sign_in(browser, &stack.home);
            let id = start_run(&stack, "Read the host name");
            navigate(browser, &format!("#/executions/{id}"));
            browser.wait_for_text("#phase", "failed");
            browser.wait_for(
                "the reason on the page",
                &Browser::text_script("#reason"),
                |reason| {
                    reason
                        .as_str()
                        .is_some_and(|reason| reason.contains("Incorrect API key provided"))
                        .then_some(())
                },
            );
            browser.wait_for_element("#todos li[data-status='in_progress']");
            // The first error is the refused read: the button scrolls to its row and focuses it.
            browser.wait_for_element("#first-error:not([hidden])");
            browser.js("window.scrollTo(0, 0); return null");
            browser.click("#first-error");
            let focused = browser.wait_for(
                "the first error to have the focus",
                "const node = document.activeElement; \
                 return node && node.dataset.error === 'true' \
                   ? { kind: node.dataset.kind || null, text: node.textContent, \
                       top: node.getBoundingClientRect().top, height: window.innerHeight } \
                   : null",
                |focused| (!focused.is_null()).then(|| focused.clone()),
            );
            assert_eq!(focused["kind"], "tool", "{focused}");
            assert!(
                focused["text"].as_str().unwrap().contains("read_file"),
                "{focused}"
            );
            let top = focused["top"].as_f64().unwrap();
            assert!(
                top >= 0.0 && top < focused["height"].as_f64().unwrap(),
                "the first error is not in view: {focused}"
            );
            // The failed turn is an error line too, and the phase is a word, not only a colour.
            browser.wait_for_element("#events li[data-kind='phase_changed'][data-error]");
        },
    );
}
