//! Integration tests of the MCP client against real servers: server-everything over stdio and
//! streamable HTTP, an in-process rmcp server with bearer auth, and servers that misbehave.
//! Every test waits with deadlines and checks that no process of a server's group is left.

mod bad;
mod everything_http;
mod everything_stdio;
mod list_changed;
mod own_server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stigmer_mcp::{Connection, Notice, Progress, ServerConfig, ServerFailure, Transport};
use tokio::sync::mpsc;

/// The live (non-zombie) processes whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return members;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // state, ppid, pgrp
        if fields
            .first()
            .is_some_and(|state| *state == "Z" || *state == "X")
        {
            continue;
        }
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            members.push(pid);
        }
    }
    members
}

/// Waits until no live process is in group `pgid`, failing after `limit`.
pub async fn wait_group_gone(pgid: u32, limit: Duration) {
    let until = Instant::now() + limit;
    loop {
        let members = group_members(pgid);
        if members.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "process group {pgid} still has {members:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stdio command the way the runner prepares one: scrubbed env, own process group.
pub fn command(program: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".to_owned()),
        )
        .process_group(0);
    command
}

pub fn stdio_config(name: &str, command: tokio::process::Command, display: &str) -> ServerConfig {
    ServerConfig {
        name: name.to_owned(),
        transport: Transport::Stdio {
            command,
            display: display.to_owned(),
        },
        enabled_tools: None,
        startup_timeout: Duration::from_secs(30),
        tool_timeout: Duration::from_secs(30),
    }
}

pub fn http_config(name: &str, url: &str, headers: Vec<(String, String)>) -> ServerConfig {
    ServerConfig {
        name: name.to_owned(),
        transport: Transport::Http {
            url: url.to_owned(),
            headers,
        },
        enabled_tools: None,
        startup_timeout: Duration::from_secs(15),
        tool_timeout: Duration::from_secs(30),
    }
}

pub async fn connect(
    config: ServerConfig,
) -> (
    Result<Connection, ServerFailure>,
    mpsc::UnboundedReceiver<Notice>,
) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (Connection::connect(config, sender).await, receiver)
}

/// Collects the progress a call reports.
#[derive(Default, Clone)]
pub struct Recorder(Arc<Mutex<Vec<Progress>>>);

impl Recorder {
    pub fn callback(&self) -> impl Fn(Progress) + Send + Sync + use<> {
        let seen = self.0.clone();
        move |progress| seen.lock().unwrap().push(progress)
    }

    pub fn seen(&self) -> Vec<Progress> {
        self.0.lock().unwrap().clone()
    }
}

pub fn no_progress(_: Progress) {}
