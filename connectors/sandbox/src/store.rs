//! In-memory record storage with typed values, shared by queries, writes and the test handle.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde_json::Value as Json;

use crate::schema::{FieldDef, FieldType, ObjectDef};
use crate::RecordMap;

/// A stored field value, typed by the field's schema type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Text(String),
    Number(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
}

impl Value {
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// One object's rows. Rows are never removed (a delete sets `IsDeleted`), so row indexes stay
/// valid for the lifetime of the sandbox and query locators can hold them.
pub(crate) struct Table {
    pub def: ObjectDef,
    /// Column index by lower-cased field name.
    columns: HashMap<String, usize>,
    pub rows: Vec<Vec<Value>>,
    pub by_id: HashMap<String, usize>,
    pub id_col: usize,
    pub deleted_col: usize,
    pub created_col: usize,
    pub last_modified_col: usize,
    pub modstamp_col: usize,
    /// Columns of `FirstName`, `LastName` and the read-only `Name` built from them, on objects
    /// that have all three (Contact and Lead).
    full_name: Option<FullNameColumns>,
    /// Columns hidden from the API user by field-level security: describe leaves them out,
    /// and queries and writes that name them fail as for an unknown field.
    hidden: std::collections::BTreeSet<usize>,
}

/// Column indexes of a person name: the two parts and the read-only full name.
#[derive(Clone, Copy)]
struct FullNameColumns {
    first: usize,
    last: usize,
    name: usize,
}

impl Table {
    fn new(def: ObjectDef) -> Table {
        let columns: HashMap<String, usize> = def
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.to_ascii_lowercase(), i))
            .collect();
        // Every object gets these from `schema::system_fields`, so the lookups cannot miss.
        let col = |name: &str| {
            columns
                .get(&name.to_ascii_lowercase())
                .copied()
                .unwrap_or(0)
        };
        let (id_col, deleted_col, created_col, last_modified_col, modstamp_col) = (
            col("Id"),
            col("IsDeleted"),
            col("CreatedDate"),
            col("LastModifiedDate"),
            col("SystemModstamp"),
        );
        let lookup = |name: &str| columns.get(&name.to_ascii_lowercase()).copied();
        let full_name = match (lookup("FirstName"), lookup("LastName"), lookup("Name")) {
            (Some(first), Some(last), Some(name)) if !def.fields[name].updateable => {
                Some(FullNameColumns { first, last, name })
            }
            _ => None,
        };
        Table {
            def,
            columns,
            rows: Vec::new(),
            by_id: HashMap::new(),
            id_col,
            deleted_col,
            created_col,
            last_modified_col,
            modstamp_col,
            full_name,
            hidden: std::collections::BTreeSet::new(),
        }
    }

    /// Sets a field's field-level security for the API user: an unreadable field disappears
    /// from describe, queries and writes, and a readable but not updateable one rejects
    /// writes with `INVALID_FIELD_FOR_INSERT_UPDATE`. Returns false for an unknown field.
    pub(crate) fn set_access(&mut self, name: &str, readable: bool, updateable: bool) -> bool {
        let key = name.to_ascii_lowercase();
        let column = match self.columns.get(&key) {
            Some(&column) => column,
            None => match self
                .hidden
                .iter()
                .copied()
                .find(|&c| self.def.fields[c].name.eq_ignore_ascii_case(name))
            {
                Some(column) => column,
                None => return false,
            },
        };
        self.def.fields[column].updateable = updateable;
        if readable {
            self.hidden.remove(&column);
            self.columns.insert(key, column);
        } else {
            self.hidden.insert(column);
            self.columns.remove(&key);
        }
        true
    }

    /// Appends a field to the object, with its default value in every existing row, and
    /// returns its column. A field added hidden stays out of describe, queries and writes
    /// until [`Table::set_access`] makes it readable.
    pub(crate) fn add_field(&mut self, field: FieldDef, readable: bool) -> usize {
        let column = self.def.fields.len();
        let default = default_value(&field);
        for row in &mut self.rows {
            row.push(default.clone());
        }
        let key = field.name.to_ascii_lowercase();
        self.def.fields.push(field);
        if readable {
            self.columns.insert(key, column);
        } else {
            self.hidden.insert(column);
        }
        column
    }

    /// Finds a column by field name among visible and hidden fields alike.
    pub(crate) fn any_column(&self, name: &str) -> Option<usize> {
        self.def
            .fields
            .iter()
            .position(|field| field.name.eq_ignore_ascii_case(name))
    }

    /// Returns the object as the API user's describe shows it, without hidden fields.
    pub(crate) fn visible_def(&self) -> ObjectDef {
        let mut def = self.def.clone();
        let mut column = 0;
        def.fields.retain(|_| {
            let keep = !self.hidden.contains(&column);
            column += 1;
            keep
        });
        def
    }

    /// Finds a column by field name, ignoring ASCII case as Salesforce does.
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        self.columns.get(&name.to_ascii_lowercase()).copied()
    }

    pub(crate) fn field(&self, column: usize) -> &FieldDef {
        &self.def.fields[column]
    }

    pub(crate) fn is_deleted(&self, row: usize) -> bool {
        matches!(self.rows[row][self.deleted_col], Value::Bool(true))
    }

    pub(crate) fn id(&self, row: usize) -> &str {
        self.rows[row][self.id_col].as_text().unwrap_or("")
    }

    /// Sets `LastModifiedDate` and `SystemModstamp` to `at`, as any user-visible edit does.
    pub(crate) fn touch(&mut self, row: usize, at: DateTime<Utc>) {
        let (last_modified, modstamp) = (self.last_modified_col, self.modstamp_col);
        self.rows[row][last_modified] = Value::DateTime(at);
        self.rows[row][modstamp] = Value::DateTime(at);
    }

    /// Changes one value of a row for load tests: the first custom number field other than
    /// leadscore's own (`LS_`) goes up by one (a null becomes 1), or else `StartDateTime` or
    /// `ActivityDate` moves a day earlier. Returns false when the object has none of these.
    pub(crate) fn edit_value(&mut self, row: usize) -> bool {
        let number = self.def.fields.iter().position(|field| {
            field.name.ends_with("__c")
                && !field.name.starts_with("LS_")
                && matches!(
                    field.field_type,
                    FieldType::Double | FieldType::Int | FieldType::Currency
                )
        });
        if let Some(column) = number {
            let cell = &mut self.rows[row][column];
            *cell = match cell {
                Value::Number(value) => Value::Number(*value + 1.0),
                _ => Value::Number(1.0),
            };
            return true;
        }
        for name in ["StartDateTime", "ActivityDate"] {
            let Some(column) = self.column(name) else {
                continue;
            };
            let cell = &mut self.rows[row][column];
            match cell {
                Value::Date(date) => *date -= chrono::Duration::days(1),
                Value::DateTime(time) => *time -= chrono::Duration::days(1),
                _ => continue,
            }
            return true;
        }
        false
    }

    /// Returns whether the column is the `Name` that the sandbox builds from `FirstName` and
    /// `LastName`, so no write may set it directly.
    pub(crate) fn is_full_name(&self, column: usize) -> bool {
        self.full_name.is_some_and(|c| c.name == column)
    }

    /// Rebuilds a Contact's or Lead's `Name` from `FirstName` and `LastName` as Salesforce does:
    /// "First Last", only the part that is set, or null when both are null. Objects without
    /// that name field are left unchanged.
    pub(crate) fn refresh_full_name(&mut self, row: usize) {
        let Some(columns) = self.full_name else {
            return;
        };
        let cells = &self.rows[row];
        let parts: Vec<&str> = [columns.first, columns.last]
            .iter()
            .filter_map(|&column| cells[column].as_text())
            .collect();
        self.rows[row][columns.name] = if parts.is_empty() {
            Value::Null
        } else {
            Value::Text(parts.join(" "))
        };
    }

    /// Renders every field of a row in REST API format.
    pub(crate) fn row_to_map(&self, row: usize) -> RecordMap {
        self.def
            .fields
            .iter()
            .enumerate()
            .map(|(column, field)| {
                let value = crate::query::field_json(self, row, column);
                (field.name.to_string(), value)
            })
            .collect()
    }
}

/// The furthest the org's clock may run ahead of this host's, about ten years, which keeps
/// every stamp far inside chrono's range.
const MAX_CLOCK_AHEAD_DAYS: i64 = 3_650;

/// Every object of the schema with its rows.
pub(crate) struct Store {
    pub tables: Vec<Table>,
    by_name: HashMap<String, usize>,
    by_prefix: HashMap<&'static str, usize>,
    next_id: u64,
    /// How far the org's clock runs ahead of this host's (`POST /__sandbox/clock`). Change
    /// stamps, creation times and the `Date` header all read [`Store::now`].
    clock_ahead: chrono::Duration,
}

impl Store {
    /// Builds an empty store of the given objects.
    pub(crate) fn with_objects(objects: Vec<ObjectDef>) -> Store {
        let tables: Vec<Table> = objects.into_iter().map(Table::new).collect();
        let by_name = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.def.name.to_ascii_lowercase(), i))
            .collect();
        let by_prefix = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.def.key_prefix, i))
            .collect();
        Store {
            tables,
            by_name,
            by_prefix,
            next_id: 1,
            clock_ahead: chrono::Duration::zero(),
        }
    }

    /// Returns the org's current time truncated to whole seconds: Salesforce datetime fields,
    /// the change stamps among them, store no fractions, so records written in the same second
    /// share a stamp and the API shows `.000`.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        (Utc::now() + self.clock_ahead).trunc_subsecs(0)
    }

    /// Returns how far the org's clock runs ahead of this host's.
    pub(crate) fn clock_ahead(&self) -> chrono::Duration {
        self.clock_ahead
    }

    /// Moves the org's clock `seconds` further ahead, so a load test can model the time
    /// between scheduled runs without waiting for it. Returns the new lead over this host's
    /// clock, or an error when it would pass [`MAX_CLOCK_AHEAD_DAYS`].
    pub(crate) fn advance_clock(&mut self, seconds: u64) -> Result<chrono::Duration, String> {
        let limit = chrono::Duration::days(MAX_CLOCK_AHEAD_DAYS);
        let ahead = i64::try_from(seconds)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .and_then(|step| self.clock_ahead.checked_add(&step))
            .filter(|ahead| *ahead <= limit)
            .ok_or_else(|| {
                format!(
                    "advance_secs {seconds} would put the clock more than {MAX_CLOCK_AHEAD_DAYS} days ahead (it is {} s ahead now)",
                    self.clock_ahead.num_seconds()
                )
            })?;
        self.clock_ahead = ahead;
        Ok(ahead)
    }

    /// Finds an object by API name, ignoring ASCII case.
    pub(crate) fn table_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// Removes an object from every lookup by name, as for a user without access to it: the
    /// REST API then answers 404 for its describe, queries and writes.
    pub(crate) fn hide(&mut self, name: &str) {
        self.by_name.remove(&name.to_ascii_lowercase());
    }

    /// Returns true when the object can be looked up by name.
    pub(crate) fn is_visible(&self, name: &str) -> bool {
        self.by_name.contains_key(&name.to_ascii_lowercase())
    }

    pub(crate) fn table_by_name(&self, name: &str) -> Option<&Table> {
        self.table_index(name).map(|i| &self.tables[i])
    }

    /// Finds the object an id belongs to from its three-character key prefix.
    pub(crate) fn table_for_id(&self, id: &str) -> Option<usize> {
        id.get(..3)
            .and_then(|prefix| self.by_prefix.get(prefix).copied())
    }

    /// Finds the object and row of an id.
    pub(crate) fn locate(&self, id: &str) -> Option<(usize, usize)> {
        let table = self.table_for_id(id)?;
        let row = self.tables[table].by_id.get(id).copied()?;
        Some((table, row))
    }

    /// Creates an 18-character id with the object's key prefix that no stored row uses yet.
    pub(crate) fn new_id(&mut self, table: usize) -> String {
        loop {
            let sequence = self.next_id;
            self.next_id += 1;
            let id = with_case_suffix(&format!(
                "{}Sb{}",
                self.tables[table].def.key_prefix,
                base62(sequence, 10)
            ));
            if self.locate(&id).is_none() {
                return id;
            }
        }
    }

    /// Appends a row and builds its derived `Name`. The caller has checked that the id is new.
    pub(crate) fn insert(&mut self, table: usize, row: Vec<Value>) -> usize {
        let t = &mut self.tables[table];
        let index = t.rows.len();
        if let Some(id) = row[t.id_col].as_text() {
            t.by_id.insert(id.to_string(), index);
        }
        t.rows.push(row);
        t.refresh_full_name(index);
        index
    }
}

fn base62(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends the three-character case suffix that turns a 15-character Salesforce id into its
/// case-insensitive 18-character form: each suffix character encodes which of five id
/// characters are upper-case letters.
pub(crate) fn with_case_suffix(id15: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let bytes = id15.as_bytes();
    let mut out = id15.to_string();
    for chunk in bytes.chunks(5) {
        let mut bits = 0usize;
        for (i, b) in chunk.iter().enumerate() {
            if b.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out.push(ALPHABET[bits] as char);
    }
    out
}

/// Formats a datetime the way the REST API returns it: `2024-05-01T12:00:03.000+0000`.
pub(crate) fn format_datetime(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Parses an RFC 3339 datetime (`2024-05-01T12:00:03.000Z`) or the API form with a colon-less
/// offset (`2024-05-01T12:00:03.000+0000`), truncated to milliseconds.
pub(crate) fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()?;
    Some(parsed.with_timezone(&Utc).trunc_subsecs(3))
}

/// Renders a stored value as the REST API does for this field.
pub(crate) fn value_to_json(field: &FieldDef, value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Text(s) => Json::String(s.clone()),
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) if field.field_type == FieldType::Int => Json::from(n.round() as i64),
        Value::Number(n) => serde_json::Number::from_f64(*n)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::Date(d) => Json::String(d.format("%Y-%m-%d").to_string()),
        Value::DateTime(t) => Json::String(format_datetime(t)),
    }
}

/// Converts a JSON value into the stored value for `field`. The error describes the expected
/// JSON form. Empty strings become null, as Salesforce stores them.
pub(crate) fn value_from_json(field: &FieldDef, json: &Json) -> Result<Value, String> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    match field.field_type {
        FieldType::Id
        | FieldType::Reference
        | FieldType::String
        | FieldType::Textarea
        | FieldType::Picklist
        | FieldType::Email => match json {
            Json::String(s) if s.is_empty() => Ok(Value::Null),
            Json::String(s) => Ok(Value::Text(s.clone())),
            _ => Err("a JSON string".to_string()),
        },
        FieldType::Boolean => json
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| "a JSON boolean (true or false)".to_string()),
        FieldType::Double | FieldType::Currency => json
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Value::Number)
            .ok_or_else(|| "a JSON number".to_string()),
        FieldType::Int => match json.as_i64() {
            Some(n) => Ok(Value::Number(n as f64)),
            None => Err("a whole JSON number".to_string()),
        },
        FieldType::Date => json
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .map(Value::Date)
            .ok_or_else(|| "a date string in the form YYYY-MM-DD".to_string()),
        // Salesforce datetime fields keep whole seconds only.
        FieldType::Datetime => json
            .as_str()
            .and_then(parse_datetime)
            .map(|at| Value::DateTime(at.trunc_subsecs(0)))
            .ok_or_else(|| {
                "a datetime string such as 2024-05-01T12:00:03.000Z or 2024-05-01T12:00:03.000+0000"
                    .to_string()
            }),
        FieldType::Address => Err(format!(
            "unset, because {} is a compound field; set its component fields instead",
            field.name
        )),
    }
}

/// Returns the value a field gets when a record omits it: `false` for checkboxes, which
/// Salesforce never stores as null, and null for everything else.
pub(crate) fn default_value(field: &FieldDef) -> Value {
    if field.field_type == FieldType::Boolean {
        Value::Bool(false)
    } else {
        Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_suffix_matches_known_id() {
        // Chunks 001A0, 00000 and 6Vm9r have upper-case letters at bit 3, none and bit 1.
        assert_eq!(with_case_suffix("001A0000006Vm9r"), "001A0000006Vm9rIAC");
    }

    #[test]
    fn datetime_forms_parse_alike() {
        let rfc = parse_datetime("2024-05-01T12:00:03.000Z");
        let api = parse_datetime("2024-05-01T12:00:03.000+0000");
        assert!(rfc.is_some());
        assert_eq!(rfc, api);
        let shifted = parse_datetime("2024-05-01T14:00:03+02:00");
        assert_eq!(shifted, rfc);
    }
}
