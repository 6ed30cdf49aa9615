//! Writes large, realistic component logs for `benches/logs.sh`: one file per component, each
//! in time order, the components interleaving at different rates with some equal times.
//!
//! ```sh
//! cargo run --release -p stigmer-logs --example generate_logs -- DIR MEGABYTES [COMPONENT ...]
//! ```

use chrono::DateTime;
use serde_json::{Map, Value};
use std::io::Write;
use stigmer_logs::{Level, LogRecord};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(megabytes)) = (args.next(), args.next()) else {
        eprintln!("usage: generate_logs DIR MEGABYTES [COMPONENT ...]");
        std::process::exit(2);
    };
    let megabytes: u64 = megabytes.parse().expect("MEGABYTES is a number");
    let mut components: Vec<String> = args.collect();
    if components.is_empty() {
        components = ["daemon", "server", "agent-runner"]
            .map(String::from)
            .to_vec();
    }
    fs_err::create_dir_all(&dir)?;
    for (index, component) in components.iter().enumerate() {
        let path = std::path::Path::new(&dir).join(format!("{component}.log"));
        write_log(&path, component, index as u64, megabytes * 1024 * 1024)?;
    }
    Ok(())
}

fn write_log(
    path: &std::path::Path,
    component: &str,
    index: u64,
    bytes: u64,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, fs_err::File::create(path)?);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (index + 1);
    let mut random = move |below: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % below
    };
    // 2026-11-18T11:06:40Z; each component advances 0–3 ms per line, so the files cover about
    // the same time span and share many timestamps.
    let mut ms = 1_795_000_000_000_i64;
    let mut written = 0u64;
    let mut line_number = 0u64;
    while written < bytes {
        ms += random(4) as i64;
        line_number += 1;
        let mut fields = Map::new();
        let (level, message) = match random(100) {
            0 => (Level::Error, "Cannot record events."),
            1..=4 => (Level::Warn, "Cannot record a heartbeat."),
            5..=30 => (Level::Debug, "Polling the task queue."),
            _ => (Level::Info, "Model turn finished."),
        };
        fields.insert(
            "execution_id".into(),
            Value::from(format!("aex-{:016x}", random(50) * 0x1234_5678_9abc)),
        );
        fields.insert("turn".into(), Value::from(random(20)));
        fields.insert("attempt".into(), Value::from(1 + random(2)));
        fields.insert("tokens".into(), Value::from(random(4000)));
        fields.insert("line".into(), Value::from(line_number));
        fields.insert(
            "target".into(),
            Value::from(format!("stigmer_{}::agent", component.replace('-', "_"))),
        );
        let record = LogRecord {
            ts: DateTime::from_timestamp_millis(ms).expect("a valid time"),
            component: component.to_owned(),
            level,
            message: message.to_owned(),
            fields,
        };
        let line = record.to_json_line();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        written += line.len() as u64 + 1;
    }
    out.flush()
}
