//! Decodes a stored record with only some of its fields, skipping the values of the rest
//! without building them.
//!
//! Loading the history reads every stored task and event for five of their fields.
//! Decoding whole records would build a map entry and a string for each of the others.
//!
//! NOTE: skipped values are not validated, so a corrupt value in an unread field passes here
//! and fails only where whole records are decoded.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use leadscore_connector::{Record, Value};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Decodes a [`Record`] as stored (JSON), keeping the fields named in `keep` and leaving
/// the others out of [`Record::fields`].
pub(crate) struct WithFields<'k> {
    pub keep: &'k [&'k str],
}

impl<'de> DeserializeSeed<'de> for WithFields<'_> {
    type Value = Record;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Record, D::Error> {
        deserializer.deserialize_map(RecordVisitor { keep: self.keep })
    }
}

struct RecordVisitor<'k> {
    keep: &'k [&'k str],
}

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = Record;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a stored record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let mut object: Option<String> = None;
        let mut id: Option<String> = None;
        let mut modstamp: Option<DateTime<Utc>> = None;
        let mut deleted: Option<bool> = None;
        let mut fields: Option<BTreeMap<String, Value>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "object" => object = Some(map.next_value()?),
                "id" => id = Some(map.next_value()?),
                "modstamp" => modstamp = Some(map.next_value()?),
                "deleted" => deleted = Some(map.next_value()?),
                "fields" => fields = Some(map.next_value_seed(FieldsSeed { keep: self.keep })?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = |name| serde::de::Error::missing_field(name);
        Ok(Record {
            object: object.ok_or_else(|| missing("object"))?,
            id: id.ok_or_else(|| missing("id"))?,
            modstamp: modstamp.ok_or_else(|| missing("modstamp"))?,
            deleted: deleted.ok_or_else(|| missing("deleted"))?,
            fields: fields.ok_or_else(|| missing("fields"))?,
        })
    }
}

struct FieldsSeed<'k> {
    keep: &'k [&'k str],
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = BTreeMap<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = BTreeMap<String, Value>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a map of field names to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = BTreeMap::new();
        while let Some(name) = map.next_key_seed(KeptName { keep: self.keep })? {
            match name {
                Some(name) => {
                    fields.insert(name, map.next_value()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// A field name, returned only when it is kept, so a skipped name costs no allocation.
struct KeptName<'k> {
    keep: &'k [&'k str],
}

impl<'de> DeserializeSeed<'de> for KeptName<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeptName<'_> {
    type Value = Option<String>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.keep.contains(&name).then(|| name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let mut fields = BTreeMap::new();
        fields.insert("WhoId".to_string(), Value::Text("003A".to_string()));
        fields.insert(
            "Subject".to_string(),
            Value::Text("Call \"quoted\"".to_string()),
        );
        fields.insert("Duration".to_string(), Value::Number(30.0));
        fields.insert("Empty".to_string(), Value::Null);
        Record {
            object: "Task".to_string(),
            id: "00T1".to_string(),
            modstamp: "2026-01-02T03:04:05Z".parse().unwrap(),
            deleted: false,
            fields,
        }
    }

    fn decode(bytes: &[u8], keep: &[&str]) -> Result<Record, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        WithFields { keep }.deserialize(&mut deserializer)
    }

    #[test]
    fn keeps_only_the_named_fields() {
        let whole = record();
        let bytes = serde_json::to_vec(&whole).unwrap();
        let partial = decode(&bytes, &["WhoId", "Subject", "Missing"]).unwrap();
        let mut expected = whole.clone();
        expected
            .fields
            .retain(|name, _| name == "WhoId" || name == "Subject");
        assert_eq!(partial, expected);
        assert_eq!(decode(&bytes, &[]).unwrap().fields.len(), 0);
    }

    #[test]
    fn escaped_names_match_their_text() {
        let bytes = br#"{"object":"Task","id":"1","modstamp":"2026-01-02T03:04:05Z","deleted":false,"fields":{"Who\u0049d":{"t":"Text","v":"003A"}}}"#;
        let partial = decode(bytes, &["WhoId"]).unwrap();
        assert_eq!(partial.get("WhoId"), &Value::Text("003A".to_string()));
    }

    #[test]
    fn malformed_records_are_errors() {
        let missing_id =
            br#"{"object":"Task","modstamp":"2026-01-02T03:04:05Z","deleted":false,"fields":{}}"#;
        let err = decode(missing_id, &["WhoId"]).unwrap_err();
        assert!(err.to_string().contains("missing field `id`"), "{err}");
        let bad_value = br#"{"object":"Task","id":"1","modstamp":"2026-01-02T03:04:05Z","deleted":false,"fields":{"WhoId":{"t":"Nope"}}}"#;
        assert!(decode(bad_value, &["WhoId"]).is_err());
        assert!(decode(b"[1,2]", &["WhoId"]).is_err());
    }
}
