//! A [`Host`] in the process: real HTTP calls through [`http::execute`], tokio timers, the
//! system clock. For tests, benchmarks and tools; the workflow runner binds Temporal instead.

use crate::error::Problem;
use crate::http::{self, HttpCall, HttpLimits};
use crate::interp::{AgentCall, Host, TaskEvent, TaskRef, WorkflowCall};
use crate::secrets::Secrets;
use futures::future::LocalBoxFuture;
use serde_json::Value;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Answers `call: agent` in the process (tests script it).
pub type AgentFn = Box<dyn Fn(AgentCall) -> LocalBoxFuture<'static, Result<Value, Problem>>>;

/// An in-process host; records every task event.
pub struct LocalHost {
    client: reqwest::Client,
    secrets: Secrets,
    limits: HttpLimits,
    events: Mutex<Vec<TaskEvent>>,
    counter: AtomicU64,
    agent: Option<AgentFn>,
}

impl LocalHost {
    pub fn new(secrets: Secrets) -> LocalHost {
        let _ = rustls::crypto::ring::default_provider().install_default();
        LocalHost {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            secrets,
            limits: HttpLimits::default(),
            events: Mutex::default(),
            counter: AtomicU64::new(0),
            agent: None,
        }
    }

    /// Answers `call: agent` with `agent`.
    pub fn with_agent(mut self, agent: AgentFn) -> LocalHost {
        self.agent = Some(agent);
        self
    }

    /// Every task event so far, in order.
    pub fn events(&self) -> Vec<TaskEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Host for LocalHost {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn uuid(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let a = nanos ^ n.rotate_left(17);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a & 0xfff) as u16,
            (n & 0xfff) as u16,
            (nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15)) & 0xffff_ffff_ffff
        )
    }

    fn random(&self) -> f64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let x = (n ^ 0x2545_F491_4F6C_DD1D).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }

    async fn call_http(&self, _task: &TaskRef, call: HttpCall) -> Result<Value, Problem> {
        http::execute(&self.client, &call, &self.secrets, self.limits).await
    }

    async fn call_agent(&self, _task: &TaskRef, call: AgentCall) -> Result<Value, Problem> {
        match &self.agent {
            Some(agent) => agent(call).await,
            None => Err(Problem::runtime(format!(
                "no agent runs here: cannot call agent {:?}",
                call.agent
            ))),
        }
    }

    async fn run_workflow(&self, _task: &TaskRef, call: WorkflowCall) -> Result<Value, Problem> {
        Err(Problem::runtime(format!(
            "no workflow store here: cannot run workflow {}/{}",
            call.namespace, call.name
        )))
    }

    fn event(&self, event: TaskEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}
