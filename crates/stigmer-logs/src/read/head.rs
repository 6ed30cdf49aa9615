//! Reading the start of a line in our format without parsing its JSON.
//!
//! Every line our writers produce begins `{"ts":"2026-11-23T05:06:58.123Z","component":"x",
//! "level":"info","message":` (see [`LogRecord::to_json_line`](crate::LogRecord::to_json_line)).
//! Sorting, time bounds and level filters need only that head, so it is read by position; a
//! line that does not start exactly so falls back to a full parse.

use crate::record::{Level, LogRecord};

/// What the head of a line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    pub component: &'a str,
    pub level: Level,
}

const TS_KEY: &[u8] = b"{\"ts\":\"";
const TS_LENGTH: usize = "2026-11-23T05:06:58.123Z".len();
/// Where the time is in a canonical line.
pub(crate) const TS_RANGE: std::ops::Range<usize> = TS_KEY.len()..TS_KEY.len() + TS_LENGTH;
const COMPONENT_KEY: &[u8] = b"\",\"component\":\"";
const LEVEL_KEY: &[u8] = b"\",\"level\":\"";
const MESSAGE_KEY: &[u8] = b"\",\"message\":";

/// The head of a line written in the canonical layout, or `None` for any other line.
pub(crate) fn head(line: &str) -> Option<Head<'_>> {
    head_cached(line, &mut DateCache::default())
}

/// [`head`], reusing the day number of the previous line's date (consecutive lines almost
/// always share it).
pub(crate) fn head_cached<'a>(line: &'a str, dates: &mut DateCache) -> Option<Head<'a>> {
    let bytes = line.as_bytes();
    let rest = bytes.strip_prefix(TS_KEY)?;
    let ts = dates.ts_millis(rest.get(..TS_LENGTH)?)?;
    let rest = rest.get(TS_LENGTH..)?.strip_prefix(COMPONENT_KEY)?;
    // Component names are short, plain words: a quote ends them, a backslash means escapes
    // (then the slow path decides).
    let end = rest.iter().position(|byte| matches!(byte, b'"' | b'\\'))?;
    if rest[end] != b'"' {
        return None;
    }
    let component_start = TS_KEY.len() + TS_LENGTH + COMPONENT_KEY.len();
    let component = line.get(component_start..component_start + end)?;
    let rest = rest[end..].strip_prefix(LEVEL_KEY)?;
    let end = rest.iter().take(6).position(|byte| *byte == b'"')?;
    let level = wire_level(&rest[..end])?;
    rest[end..].starts_with(MESSAGE_KEY).then_some(Head {
        ts,
        component,
        level,
    })
}

/// The time of a line in milliseconds: from its head, else from a full parse.
pub(crate) fn line_ts(line: &str) -> Option<i64> {
    match head(line) {
        Some(head) => Some(head.ts),
        None => LogRecord::parse(line).map(|record| record.ts.timestamp_millis()),
    }
}

/// The last date seen and its day number.
#[derive(Default)]
pub(crate) struct DateCache {
    date: [u8; 10],
    days: i64,
}

impl DateCache {
    fn ts_millis(&mut self, bytes: &[u8]) -> Option<i64> {
        if bytes.len() == TS_LENGTH && bytes[..10] == self.date {
            return time_of_day_millis(bytes).map(|ms| self.days * 86_400_000 + ms);
        }
        let ms = canonical_ts_millis(bytes)?;
        self.date.copy_from_slice(&bytes[..10]);
        self.days = ms.div_euclid(86_400_000);
        Some(ms)
    }
}

fn wire_level(text: &[u8]) -> Option<Level> {
    match text {
        b"trace" => Some(Level::Trace),
        b"debug" => Some(Level::Debug),
        b"info" => Some(Level::Info),
        b"warn" => Some(Level::Warn),
        b"error" => Some(Level::Error),
        _ => None,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in milliseconds since the epoch, or `None` if `bytes` is not
/// exactly that (the form [`format_ts`](crate::format_ts) writes).
pub(crate) fn canonical_ts_millis(bytes: &[u8]) -> Option<i64> {
    let time = time_of_day_millis(bytes)?;
    if bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (
        number(&bytes[0..4])?,
        number(&bytes[5..7])?,
        number(&bytes[8..10])?,
    );
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400_000 + time)
}

/// The `HH:MM:SS.mmm` of a canonical time, in milliseconds, checking the whole shape except
/// the date's digits.
fn time_of_day_millis(bytes: &[u8]) -> Option<i64> {
    if bytes.len() != TS_LENGTH
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
        || bytes[19] != b'.'
        || bytes[23] != b'Z'
    {
        return None;
    }
    let (hour, minute, second) = (
        number(&bytes[11..13])?,
        number(&bytes[14..16])?,
        number(&bytes[17..19])?,
    );
    let millis = number(&bytes[20..23])?;
    // 60 is a leap second, which chrono may print.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(((hour * 60 + minute) * 60 + second) * 1000 + millis)
}

fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |value, byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i64::from(byte - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format_ts;
    use chrono::DateTime;

    #[test]
    fn canonical_times_agree_with_chrono() {
        // Every day of a few centuries, at times that exercise each field.
        let mut ms = -2_208_988_800_000i64; // 1900-01-01
        while ms < 4_102_444_800_000 {
            // 2100-01-01
            let ts = DateTime::from_timestamp_millis(ms).unwrap();
            let text = format_ts(ts);
            assert_eq!(canonical_ts_millis(text.as_bytes()), Some(ms), "{text}");
            ms += 86_400_000 + 3_723_456;
        }
    }

    #[test]
    fn the_date_cache_gives_the_same_times() {
        let mut dates = DateCache::default();
        for text in [
            "2026-11-18T11:06:40.123Z",
            "2026-11-18T23:59:59.999Z",
            "2026-11-19T00:00:00.000Z",
            "2026-11-19T00:00:00.001Z",
            "2026-11-19T24:00:00.001Z",
            "1969-12-31T23:59:59.999Z",
        ] {
            assert_eq!(
                dates.ts_millis(text.as_bytes()),
                canonical_ts_millis(text.as_bytes()),
                "{text}"
            );
        }
    }

    #[test]
    fn other_time_forms_are_refused() {
        for text in [
            "2026-11-23T05:06:58Z",
            "2026-11-23T05:06:58.123+00:00",
            "2026-11-23 05:06:58.123Z",
            "2026-13-23T05:06:58.123Z",
            "2026-02-29T05:06:58.123Z",
            "2026-11-23T24:06:58.123Z",
            "2026-1a-23T05:06:58.123Z",
        ] {
            assert_eq!(canonical_ts_millis(text.as_bytes()), None, "{text}");
        }
        assert!(canonical_ts_millis(b"2024-02-29T05:06:58.123Z").is_some());
    }

    #[test]
    fn heads_are_read_by_position() {
        let line = r#"{"ts":"2026-11-18T11:06:40.123Z","component":"agent-runner","level":"warn","message":"m","k":1}"#;
        assert_eq!(
            head(line),
            Some(Head {
                ts: 1_795_000_000_123,
                component: "agent-runner",
                level: Level::Warn
            })
        );
        assert_eq!(line_ts(line), Some(1_795_000_000_123));
        // Another key order is still a record, read the slow way.
        let reordered =
            r#"{"component":"x","ts":"2026-11-18T11:06:40.123Z","level":"info","message":"m"}"#;
        assert_eq!(head(reordered), None);
        assert_eq!(line_ts(reordered), Some(1_795_000_000_123));
        assert_eq!(line_ts("plain text"), None);
        let odd_level =
            r#"{"ts":"2026-11-18T11:06:40.123Z","component":"x","level":"WARNING","message":"m"}"#;
        assert_eq!(head(odd_level), None);
    }
}
