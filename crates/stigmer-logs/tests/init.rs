//! Checks `init`, which installs a process-wide subscriber and therefore runs in its own test
//! binary, away from the unit tests' scoped subscribers.

use stigmer_logs::{InitError, Level, LogRecord, LogSink, RotationPolicy, SharedLogFile, init};

#[test]
fn init_rejects_bad_filters_installs_once_and_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/server.log");
    let file = SharedLogFile::open(&path, RotationPolicy::default()).unwrap();
    // `$STIGMER_LOG` overrides the filter given here, so the filter checks only hold without it.
    let overridden = std::env::var("STIGMER_LOG").is_ok_and(|value| !value.trim().is_empty());

    if !overridden {
        let error = init(
            "server",
            "info,stigmer=loudest",
            LogSink::File(file.clone()),
        );
        assert!(matches!(error, Err(InitError::Filter(_))), "{error:?}");
    }
    init("server", "debug", LogSink::File(file.clone())).unwrap();
    let again = init("server", "debug", LogSink::File(file));
    assert!(matches!(again, Err(InitError::AlreadySet(_))), "{again:?}");
    assert!(again.unwrap_err().to_string().contains("already"));

    tracing::info!(port = 7234u64, "Server started.");
    tracing::trace!("Filtered out.");

    if !overridden {
        let text = fs_err::read_to_string(&path).unwrap();
        let records: Vec<LogRecord> = text.lines().filter_map(LogRecord::parse).collect();
        assert_eq!(records.len(), 1, "{text}");
        assert_eq!(records[0].component, "server");
        assert_eq!(records[0].level, Level::Info);
        assert_eq!(records[0].message, "Server started.");
        assert_eq!(records[0].fields["port"], 7234);
    }
}
