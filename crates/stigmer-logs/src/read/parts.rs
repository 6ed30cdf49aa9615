//! A line taken apart for display: time, level, message and fields, without building a
//! [`LogRecord`] (whose map of fields costs more than the display of the line itself).

use super::Line;
use crate::record::{Level, LogRecord, format_ts};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;

/// What a line shows, borrowed from the line where it can be.
#[derive(Clone, Debug, PartialEq)]
pub struct LineParts<'a> {
    /// `2026-11-23T05:06:58.123Z`.
    pub ts: Cow<'a, str>,
    pub level: Level,
    pub message: Cow<'a, str>,
    /// In the order of the line.
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
}

/// A field's value: text, or any other JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue<'a> {
    Text(Cow<'a, str>),
    Json(Value),
}

impl FieldValue<'_> {
    fn from_value(value: &Value) -> FieldValue<'static> {
        match value {
            Value::String(text) => FieldValue::Text(Cow::Owned(text.clone())),
            other => FieldValue::Json(other.clone()),
        }
    }
}

impl LineParts<'_> {
    pub fn from_record(record: &LogRecord) -> LineParts<'static> {
        LineParts {
            ts: Cow::Owned(format_ts(record.ts)),
            level: record.level,
            message: Cow::Owned(record.message.clone()),
            fields: record
                .fields
                .iter()
                .map(|(key, value)| (Cow::Owned(key.clone()), FieldValue::from_value(value)))
                .collect(),
        }
    }
}

impl Line {
    /// The line's parts; for a line in the canonical layout the time and level come from its
    /// head and only the message and fields are parsed.
    pub fn parts(&self, component: &str) -> LineParts<'_> {
        if let Some(level) = self.canonical_level
            && let Some(ts) = self.text.get(super::head::TS_RANGE)
            && let Ok(body) = serde_json::from_str::<Body<'_>>(&self.text)
        {
            return LineParts {
                ts: Cow::Borrowed(ts),
                level,
                message: body.message,
                fields: body.fields,
            };
        }
        LineParts::from_record(&self.record(component))
    }
}

/// The message and the fields of a line in our format, in one pass over the object.
struct Body<'de> {
    message: Cow<'de, str>,
    fields: Vec<(Cow<'de, str>, FieldValue<'de>)>,
}

impl<'de> Deserialize<'de> for Body<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Body<'de>, D::Error> {
        deserializer.deserialize_map(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a log line object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body<'de>, A::Error> {
        let mut body = Body {
            message: Cow::Borrowed(""),
            fields: Vec::with_capacity(8),
        };
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                "ts" | "component" | "level" => {
                    map.next_value::<IgnoredAny>()?;
                }
                "message" => {
                    body.message = match map.next_value::<FieldValue<'de>>()? {
                        FieldValue::Text(text) => text,
                        FieldValue::Json(other) => Cow::Owned(other.to_string()),
                    };
                }
                _ => body.fields.push((key, map.next_value()?)),
            }
        }
        Ok(body)
    }
}

/// A string, borrowed from the line unless it has escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text<'de>, D::Error> {
        deserializer.deserialize_str(TextVisitor).map(Text)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E>(self, text: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(text))
    }
}

/// A value: strings borrowed where they can be, anything else as a JSON value.
impl<'de> Deserialize<'de> for FieldValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FieldValue<'de>, D::Error> {
        deserializer.deserialize_any(FieldValueVisitor)
    }
}

struct FieldValueVisitor;

impl<'de> Visitor<'de> for FieldValueVisitor {
    type Value = FieldValue<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<FieldValue<'de>, E> {
        Ok(FieldValue::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<FieldValue<'de>, E> {
        Ok(FieldValue::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<FieldValue<'de>, E> {
        Ok(FieldValue::Text(Cow::Owned(text)))
    }

    fn visit_bool<E>(self, value: bool) -> Result<FieldValue<'de>, E> {
        Ok(FieldValue::Json(Value::from(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<FieldValue<'de>, E> {
        Ok(FieldValue::Json(Value::from(value)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<FieldValue<'de>, E> {
        Ok(FieldValue::Json(Value::from(value)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<FieldValue<'de>, E> {
        Ok(FieldValue::Json(Value::from(value)))
    }

    fn visit_unit<E>(self) -> Result<FieldValue<'de>, E> {
        Ok(FieldValue::Json(Value::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<FieldValue<'de>, A::Error> {
        Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(FieldValue::Json)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldValue<'de>, A::Error> {
        Value::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(FieldValue::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parts_of_canonical_and_other_lines_agree_with_the_record() {
        let canonical = r#"{"ts":"2026-11-18T11:06:40.123Z","component":"server","level":"warn","message":"say \"hi\"","z":1,"a\nb":{"k":[true]},"execution_id":"aex-1"}"#;
        let line = Line::new(0, chrono::Utc::now(), canonical);
        let parts = line.parts("server");
        assert!(matches!(
            parts.ts,
            Cow::Borrowed("2026-11-18T11:06:40.123Z")
        ));
        assert_eq!(parts.level, Level::Warn);
        assert_eq!(parts.message, "say \"hi\"");
        assert_eq!(
            parts.fields,
            [
                ("z".into(), FieldValue::Json(json!(1))),
                ("a\nb".into(), FieldValue::Json(json!({"k": [true]}))),
                ("execution_id".into(), FieldValue::Text("aex-1".into())),
            ]
        );
        assert!(matches!(
            parts.fields[2],
            (Cow::Borrowed(_), FieldValue::Text(Cow::Borrowed(_)))
        ));
        let record = line.record("server");
        let mut from_record = LineParts::from_record(&record);
        from_record.fields.sort_by(|a, b| a.0.cmp(&b.0));
        let mut sorted = parts.clone();
        sorted.fields.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(from_record, sorted);

        let plain = Line::new(0, record.ts, "ERROR disk full");
        let parts = plain.parts("temporal");
        assert_eq!(parts.ts, "2026-11-18T11:06:40.123Z");
        assert_eq!(parts.level, Level::Error);
        assert_eq!(parts.message, "ERROR disk full");
        assert!(parts.fields.is_empty());
    }
}
