//! Which lines to show: time bounds, a minimum level, a regular expression, an execution.

use super::Line;
use crate::record::{Level, LogRecord};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use regex::Regex;
use serde_json::Value;

/// The fields that name an execution: ours, and Temporal's (the workflow id of an agent
/// execution is its execution id).
const EXECUTION_KEYS: [&str; 3] = ["execution_id", "workflow_id", "wf-id"];

/// A line is shown when it passes every condition that is set.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only lines at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only lines at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only lines of this level or a more severe one.
    pub min_level: Option<Level>,
    /// Only lines whose message or fields (as `key=value`) match.
    pub grep: Option<Regex>,
    /// Only lines tagged with this execution id (`execution_id`, or Temporal's `wf-id`).
    pub execution: Option<String>,
}

impl Filter {
    /// The first millisecond a line may have (lines carry milliseconds, so a bound with a
    /// fraction of one rounds inwards).
    pub(crate) fn since_ms(&self) -> Option<i64> {
        self.since.map(|since| {
            let ms = since.timestamp_millis();
            if since.timestamp_subsec_nanos() % 1_000_000 == 0 {
                ms
            } else {
                ms + 1
            }
        })
    }

    pub(crate) fn until_ms(&self) -> Option<i64> {
        self.until.map(|until| until.timestamp_millis())
    }

    /// Whether a line at `ts` is before the time window.
    pub(crate) fn too_early(&self, ts: i64) -> bool {
        self.since_ms().is_some_and(|since| ts < since)
    }

    /// Whether a line at `ts` is after the time window.
    pub(crate) fn too_late(&self, ts: i64) -> bool {
        self.until_ms().is_some_and(|until| ts > until)
    }

    /// Whether `line` of `component` is shown.
    pub fn accepts(&self, line: &Line, component: &str) -> bool {
        if self.too_early(line.ts) || self.too_late(line.ts) {
            return false;
        }
        if let Some(execution) = &self.execution
            && !line.text().contains(execution.as_str())
        {
            return false;
        }
        if self.grep.is_none() && self.execution.is_none() {
            return match self.min_level {
                Some(min_level) => line.level(component) >= min_level,
                None => true,
            };
        }
        let record = line.record(component);
        if self
            .min_level
            .is_some_and(|min_level| record.level < min_level)
        {
            return false;
        }
        if let Some(execution) = &self.execution
            && !EXECUTION_KEYS
                .iter()
                .any(|key| record.fields.get(*key).and_then(Value::as_str) == Some(execution))
        {
            return false;
        }
        match &self.grep {
            Some(grep) => grep.is_match(&searchable_text(&record)),
            None => true,
        }
    }
}

/// What `--grep` searches: the message, then each field as `key=value` (strings unquoted).
pub fn searchable_text(record: &LogRecord) -> String {
    let mut text = record.message.clone();
    for (key, value) in &record.fields {
        text.push(' ');
        text.push_str(key);
        text.push('=');
        match value {
            Value::String(value) => text.push_str(value),
            other => text.push_str(&other.to_string()),
        }
    }
    text
}

/// Why a `--since`/`--until` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is neither a time (RFC 3339, e.g. 2026-11-23T05:06:58Z; UTC when it has no offset) \
     nor a duration before now (e.g. 45s, 10m, 1h30m, 2d)"
)]
pub struct TimeBoundError {
    pub text: String,
}

/// Reads a time bound: an RFC 3339 time (`2026-11-23T05:06:58Z`, `…+01:00`, a space instead
/// of `T`, fractions of a second; UTC when there is no offset), a date (`2026-11-23`, its
/// midnight UTC), or a duration before `now` (`500ms`, `45s`, `10m`, `1h30m`, `2d`, `1w`).
pub fn parse_time_bound(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, TimeBoundError> {
    let trimmed = text.trim();
    let refused = || TimeBoundError {
        text: text.to_owned(),
    };
    if let Some(duration) = parse_duration(trimmed) {
        return now.checked_sub_signed(duration).ok_or_else(refused);
    }
    let normalized = match trimmed.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &trimmed[..10], &trimmed[11..]),
        _ => trimmed.to_owned(),
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(&normalized) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(time) = NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(time.and_utc());
    }
    if let Ok(time) = NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M") {
        return Ok(time.and_utc());
    }
    if let Ok(date) = NaiveDate::parse_from_str(&normalized, "%Y-%m-%d") {
        return date
            .and_hms_opt(0, 0, 0)
            .map(|time| time.and_utc())
            .ok_or_else(refused);
    }
    Err(refused())
}

/// `1h30m`, `10m`, `500ms`: one or more whole numbers, each with a unit.
fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::zero();
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_length = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_length] {
            "ms" => Duration::try_milliseconds(number)?,
            "s" => Duration::try_seconds(number)?,
            "m" => Duration::try_minutes(number)?,
            "h" => Duration::try_hours(number)?,
            "d" => Duration::try_days(number)?,
            "w" => Duration::try_weeks(number)?,
            _ => return None,
        };
        rest = &rest[unit_length..];
        total = total.checked_add(&part)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn at(text: &str) -> String {
        crate::format_ts(parse_time_bound(text, now()).unwrap())
    }

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(at("10m"), "2026-11-23T11:50:00.000Z");
        assert_eq!(at("1h30m"), "2026-11-23T10:30:00.000Z");
        assert_eq!(at("45s"), "2026-11-23T11:59:15.000Z");
        assert_eq!(at("2d"), "2026-11-21T12:00:00.000Z");
        assert_eq!(at("1w"), "2026-11-16T12:00:00.000Z");
        assert_eq!(at(" 500ms "), "2026-11-23T11:59:59.500Z");
    }

    #[test]
    fn times_in_several_spellings() {
        assert_eq!(at("2026-11-23T05:06:58Z"), "2026-11-23T05:06:58.000Z");
        assert_eq!(at("2026-11-23T05:06:58.123Z"), "2026-11-23T05:06:58.123Z");
        assert_eq!(at("2026-11-23T06:06:58+01:00"), "2026-11-23T05:06:58.000Z");
        assert_eq!(at("2026-11-23 05:06:58Z"), "2026-11-23T05:06:58.000Z");
        assert_eq!(at("2026-11-23T05:06:58"), "2026-11-23T05:06:58.000Z");
        assert_eq!(at("2026-11-23 05:06"), "2026-11-23T05:06:00.000Z");
        assert_eq!(at("2026-11-23"), "2026-11-23T00:00:00.000Z");
    }

    #[test]
    fn nonsense_is_refused_with_examples() {
        for text in [
            "",
            "10",
            "10x",
            "m",
            "1h-5m",
            "yesterday",
            "2026-13-01",
            "99999999999999d",
        ] {
            let error = parse_time_bound(text, now()).unwrap_err();
            assert_eq!(error.text, text);
            assert!(error.to_string().contains("10m"), "{error}");
        }
    }

    #[test]
    fn bounds_are_inclusive_to_the_millisecond() {
        let filter = Filter {
            since: Some(parse_time_bound("2026-11-23T05:06:58.1005Z", now()).unwrap()),
            until: Some(parse_time_bound("2026-11-23T05:06:59.000Z", now()).unwrap()),
            ..Filter::default()
        };
        let ms = |text: &str| parse_time_bound(text, now()).unwrap().timestamp_millis();
        assert!(filter.too_early(ms("2026-11-23T05:06:58.100Z")));
        assert!(!filter.too_early(ms("2026-11-23T05:06:58.101Z")));
        assert!(!filter.too_late(ms("2026-11-23T05:06:59.000Z")));
        assert!(filter.too_late(ms("2026-11-23T05:06:59.001Z")));
    }
}
