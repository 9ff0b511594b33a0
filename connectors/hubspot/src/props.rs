//! HubSpot property metadata from the properties API, its mapping to `FieldKind`, and the
//! conversion of property values (always strings on the wire) to typed `Value`s and back.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use leadscore_connector::{FieldKind, FieldSchema, Value};
use serde::Deserialize;

/// One option of an enumeration property.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PropertyOption {
    pub value: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub display_order: Option<i64>,
    #[serde(default)]
    pub hidden: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModificationWire {
    #[serde(default)]
    read_only_value: bool,
}

/// One property as `GET /crm/v3/properties/{objectType}` lists it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Property {
    pub name: String,
    #[serde(rename = "type")]
    pub property_type: String,
    #[serde(default)]
    pub field_type: String,
    #[serde(default)]
    pub options: Vec<PropertyOption>,
    #[serde(default)]
    modification_metadata: Option<ModificationWire>,
    #[serde(default)]
    pub calculated: bool,
}

#[derive(Deserialize)]
pub(crate) struct PropertiesWire {
    pub results: Vec<Property>,
}

impl Property {
    pub fn read_only(&self) -> bool {
        self.modification_metadata
            .as_ref()
            .is_some_and(|meta| meta.read_only_value)
    }

    /// Maps the HubSpot type to the pipeline's field kinds. A `booleancheckbox` enumeration is
    /// a boolean, because its values are `true` and `false`.
    pub fn kind(&self) -> FieldKind {
        match (self.property_type.as_str(), self.field_type.as_str()) {
            ("number", _) => FieldKind::Number,
            ("bool", _) | ("enumeration", "booleancheckbox") => FieldKind::Boolean,
            ("enumeration", _) => FieldKind::Picklist,
            ("string", "textarea") | ("string", "html") => FieldKind::LongText,
            ("string", _) | ("phone_number", _) => FieldKind::Text,
            ("datetime", _) => FieldKind::DateTime,
            ("date", _) => FieldKind::Date,
            _ => FieldKind::Other,
        }
    }

    /// Returns the visible option values, in display order.
    pub fn option_values(&self) -> Vec<String> {
        let mut options: Vec<&PropertyOption> = self
            .options
            .iter()
            .filter(|option| !option.hidden)
            .collect();
        options.sort_by_key(|option| option.display_order.unwrap_or(i64::MAX));
        options.iter().map(|option| option.value.clone()).collect()
    }

    pub fn schema(&self) -> FieldSchema {
        let kind = self.kind();
        let picklist = kind == FieldKind::Picklist;
        FieldSchema {
            name: self.name.clone(),
            kind,
            updateable: !self.read_only() && !self.calculated,
            picklist_values: if picklist {
                self.option_values()
            } else {
                Vec::new()
            },
            restricted_picklist: picklist,
            length: None,
            relationship_name: None,
            reference_to: Vec::new(),
        }
    }

    /// Formats a value the way HubSpot accepts it for this property: numbers as text,
    /// enumeration internal values, datetimes as ISO 8601 in UTC, dates as epoch milliseconds
    /// at midnight UTC, booleans as `true`/`false`, and `""` to clear.
    pub fn format(&self, value: &Value) -> Result<String, String> {
        if value.is_null() {
            return Ok(String::new());
        }
        match self.kind() {
            FieldKind::Number => match value {
                Value::Number(n) if n.is_finite() => Ok(format_number(*n)),
                Value::Text(text) if text.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
                    Ok(text.trim().to_string())
                }
                other => Err(format!("{other} is not a finite number")),
            },
            FieldKind::Boolean => match value {
                Value::Bool(flag) => Ok(flag.to_string()),
                Value::Text(text) if matches!(text.as_str(), "true" | "false") => Ok(text.clone()),
                other => Err(format!("{other} is not true or false")),
            },
            FieldKind::Picklist => {
                let text = match value {
                    Value::Text(text) => text.clone(),
                    Value::Number(n) => format_number(*n),
                    Value::Bool(flag) => flag.to_string(),
                    other => return Err(format!("{other} is not an option value")),
                };
                if self.options.iter().any(|option| option.value == text) {
                    return Ok(text);
                }
                if let Some(option) = self.options.iter().find(|option| option.label == text) {
                    return Ok(option.value.clone());
                }
                Err(format!(
                    "{text:?} is not one of the options ({}); add the option to the property or \
                     change the value",
                    self.option_values().join(", ")
                ))
            }
            FieldKind::DateTime => match value.as_datetime() {
                Some(time) => Ok(time.to_rfc3339_opts(SecondsFormat::Millis, true)),
                None => match value {
                    Value::Text(text) => parse_datetime(text)
                        .map(|time| time.to_rfc3339_opts(SecondsFormat::Millis, true))
                        .ok_or_else(|| format!("{text:?} is not an ISO 8601 datetime")),
                    other => Err(format!("{other} is not a datetime")),
                },
            },
            FieldKind::Date => {
                let date = match value {
                    Value::Date(date) => *date,
                    Value::DateTime(time) => time.date_naive(),
                    Value::Text(text) => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                        .map_err(|_| format!("{text:?} is not a date in the form 2024-05-01"))?,
                    other => return Err(format!("{other} is not a date")),
                };
                Ok(midnight_millis(date).to_string())
            }
            FieldKind::Text | FieldKind::LongText | FieldKind::Other => Ok(value.to_string()),
            FieldKind::Id | FieldKind::Reference => Ok(value.to_string()),
        }
    }
}

/// Formats a number without a trailing `.0` for integers, so 87 is sent as `87`.
fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Returns the epoch milliseconds of midnight UTC at the start of `date`.
pub(crate) fn midnight_millis(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map(|time| time.and_utc().timestamp_millis())
        .unwrap_or_default()
}

/// Invalid values seen so far in this process, per property.
static INVALID_VALUES: std::sync::Mutex<Option<std::collections::HashMap<String, u64>>> =
    std::sync::Mutex::new(None);

/// Logs that `property` of `record` contained an invalid value, read as null, and returns
/// how many invalid values of `property` this process has seen. Only the first and every
/// power of ten of them (10, 100, ...) are warnings, so a property malformed on many records
/// does not log a line per record on every pull. The others go to the debug log.
pub(crate) fn report_invalid(record: &str, property: &str, error: &str) -> u64 {
    let count = {
        let mut counts = INVALID_VALUES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts
            .get_or_insert_with(Default::default)
            .entry(property.to_string())
            .or_insert(0);
        *count += 1;
        *count
    };
    if is_power_of_ten(count) {
        tracing::warn!(
            record,
            property,
            count,
            error,
            "invalid property value, read as null; count is the number of invalid values of this property so far, and only every power of ten of them is logged as a warning"
        );
    } else {
        tracing::debug!(
            record,
            property,
            count,
            error,
            "invalid property value, read as null"
        );
    }
    count
}

fn is_power_of_ten(mut number: u64) -> bool {
    while number >= 10 && number.is_multiple_of(10) {
        number /= 10;
    }
    number == 1
}

/// Converts a wire value to a typed value. Datetimes and dates come as ISO 8601 or as epoch
/// milliseconds; booleans as `true`/`false`.
pub(crate) fn parse_value(kind: FieldKind, text: &str) -> Result<Value, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Value::Null);
    }
    match kind {
        // Rust parses "NaN", "inf" and "1e400" as numbers, but no CRM number is one of them.
        FieldKind::Number => text
            .parse::<f64>()
            .ok()
            .filter(|number| number.is_finite())
            .map(Value::Number)
            .ok_or_else(|| format!("{text:?} is not a finite number")),
        FieldKind::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{text:?} is not true or false")),
        },
        FieldKind::DateTime => parse_datetime(text)
            .map(Value::DateTime)
            .ok_or_else(|| format!("{text:?} is not an ISO 8601 datetime or epoch milliseconds")),
        FieldKind::Date => parse_date(text)
            .map(Value::Date)
            .ok_or_else(|| format!("{text:?} is not a date or epoch milliseconds")),
        _ => Ok(Value::Text(text.to_string())),
    }
}

/// Parses ISO 8601 (with offset) or epoch milliseconds.
pub(crate) fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(millis) = text.parse::<i64>() {
        return Utc.timestamp_millis_opt(millis).single();
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc())
}

/// Parses `2024-05-01`, epoch milliseconds, or a datetime (whose UTC date is taken).
pub(crate) fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .ok()
        .or_else(|| parse_datetime(text).map(|time| time.date_naive()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_rejected() {
        for text in ["NaN", "nan", "inf", "-Infinity", "1e400"] {
            let error = parse_value(FieldKind::Number, text).expect_err(text);
            assert!(error.contains("not a finite number"), "{error}");
        }
        assert_eq!(
            parse_value(FieldKind::Number, " 1e3 "),
            Ok(Value::Number(1000.0))
        );
    }

    #[test]
    fn powers_of_ten_recognised() {
        let powers: Vec<u64> = (1..=1000).filter(|&n| is_power_of_ten(n)).collect();
        assert_eq!(powers, vec![1, 10, 100, 1000]);
        assert!(!is_power_of_ten(0));
    }

    #[test]
    fn invalid_values_counted_per_property() {
        let counts: Vec<u64> = (0..3)
            .map(|n| report_invalid(&format!("r{n}"), "counted_property_a", "not a number"))
            .collect();
        assert_eq!(counts, vec![1, 2, 3]);
        assert_eq!(
            report_invalid("r9", "counted_property_b", "not a number"),
            1
        );
    }

    fn property(property_type: &str, field_type: &str) -> Property {
        Property {
            name: "p".to_string(),
            property_type: property_type.to_string(),
            field_type: field_type.to_string(),
            options: vec![
                PropertyOption {
                    value: "a".to_string(),
                    label: "Tier A".to_string(),
                    display_order: Some(0),
                    hidden: false,
                },
                PropertyOption {
                    value: "b".to_string(),
                    label: "Tier B".to_string(),
                    display_order: Some(1),
                    hidden: false,
                },
            ],
            modification_metadata: None,
            calculated: false,
        }
    }

    #[test]
    fn kinds_by_type_and_field_type() {
        let cases = [
            ("number", "number", FieldKind::Number),
            ("enumeration", "select", FieldKind::Picklist),
            ("enumeration", "booleancheckbox", FieldKind::Boolean),
            ("bool", "booleancheckbox", FieldKind::Boolean),
            ("string", "text", FieldKind::Text),
            ("string", "textarea", FieldKind::LongText),
            ("datetime", "date", FieldKind::DateTime),
            ("date", "date", FieldKind::Date),
            ("object_coordinates", "text", FieldKind::Other),
        ];
        for (property_type, field_type, kind) in cases {
            assert_eq!(
                property(property_type, field_type).kind(),
                kind,
                "{property_type}/{field_type}"
            );
        }
    }

    #[test]
    fn formats_for_writes() {
        assert_eq!(
            property("number", "number")
                .format(&Value::Number(87.0))
                .unwrap(),
            "87"
        );
        assert_eq!(
            property("number", "number")
                .format(&Value::Number(87.5))
                .unwrap(),
            "87.5"
        );
        assert!(property("number", "number")
            .format(&Value::Number(f64::NAN))
            .is_err());
        let tier = property("enumeration", "select");
        assert_eq!(tier.format(&Value::Text("a".into())).unwrap(), "a");
        assert_eq!(tier.format(&Value::Text("Tier B".into())).unwrap(), "b");
        let error = tier.format(&Value::Text("z".into())).unwrap_err();
        assert!(error.contains("a, b"), "{error}");
        let date = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
        assert_eq!(
            property("date", "date").format(&Value::Date(date)).unwrap(),
            "1714521600000"
        );
        let time = Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 0).unwrap();
        assert_eq!(
            property("datetime", "date")
                .format(&Value::DateTime(time))
                .unwrap(),
            "2024-05-01T12:30:00.000Z"
        );
        assert_eq!(
            property("bool", "booleancheckbox")
                .format(&Value::Bool(false))
                .unwrap(),
            "false"
        );
        assert_eq!(property("string", "text").format(&Value::Null).unwrap(), "");
    }

    #[test]
    fn parses_both_date_forms() {
        let date = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
        assert_eq!(
            parse_value(FieldKind::Date, "2024-05-01").unwrap(),
            Value::Date(date)
        );
        assert_eq!(
            parse_value(FieldKind::Date, "1714521600000").unwrap(),
            Value::Date(date)
        );
        let time = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 3).unwrap()
            + chrono::Duration::milliseconds(201);
        assert_eq!(
            parse_value(FieldKind::DateTime, "2024-05-01T12:00:03.201Z").unwrap(),
            Value::DateTime(time)
        );
        assert_eq!(parse_value(FieldKind::Number, "").unwrap(), Value::Null);
        assert!(parse_value(FieldKind::Number, "lots").is_err());
        for text in ["Infinity", "-inf", "NaN", "1e999"] {
            assert!(parse_value(FieldKind::Number, text).is_err(), "{text}");
        }
    }
}
