//! The binary form of a stored CRM record, and the decoding of stored records in either form.
//!
//! Loading the history decodes every stored account, contact and lead, and decoding JSON was
//! most of that work. In JSON each value is an object with a type tag, each name and text is
//! scanned for escapes, and each time is parsed from text. Records are now written in a length-prefixed
//! binary form whose first byte, [`BINARY_TAG`], can never start a JSON document, so records
//! written as JSON by an earlier version stay readable until the pull rewrites them.
//!
//! Layout, integers little-endian, lengths as LEB128 variable-length integers:
//!
//! ```text
//! record   = BINARY_TAG text(object) text(id) time(modstamp) u8(deleted) len(count) field*
//! field    = text(name) value
//! value    = 0 (null) | 1 (false) | 2 (true) | 3 f64 (number) | 4 text | 5 i32 (date, days
//!            from 0001-01-01 counted from 1) | 6 time
//! time     = i64 (seconds since 1970) u32 (nanoseconds)
//! text     = len bytes (UTF-8)
//! ```
//!
//! Fields are written in name order, the order of [`Record::fields`].

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use leadscore_connector::{Record, Value};

use super::store_db::{table, Commit};
use super::{Store, StoreError};

/// The `meta` key present once no record is stored as JSON any more.
pub(super) const CONVERTED_KEY: &str = "records_binary";

/// The first byte of a record in binary form. JSON starts with `{` or white space.
pub(crate) const BINARY_TAG: u8 = 0x01;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUMBER: u8 = 3;
const TEXT: u8 = 4;
const DATE: u8 = 5;
const DATE_TIME: u8 = 6;

/// Encodes `record` in the binary form.
pub(crate) fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + record.fields.len() * 24);
    out.push(BINARY_TAG);
    put_text(&mut out, &record.object);
    put_text(&mut out, &record.id);
    put_time(&mut out, &record.modstamp);
    out.push(u8::from(record.deleted));
    put_len(&mut out, record.fields.len());
    for (name, value) in &record.fields {
        put_text(&mut out, name);
        match value {
            Value::Null => out.push(NULL),
            Value::Bool(false) => out.push(FALSE),
            Value::Bool(true) => out.push(TRUE),
            Value::Number(number) => {
                out.push(NUMBER);
                out.extend_from_slice(&number.to_le_bytes());
            }
            Value::Text(text) => {
                out.push(TEXT);
                put_text(&mut out, text);
            }
            Value::Date(date) => {
                out.push(DATE);
                out.extend_from_slice(&date.num_days_from_ce().to_le_bytes());
            }
            Value::DateTime(time) => {
                out.push(DATE_TIME);
                put_time(&mut out, time);
            }
        }
    }
    out
}

/// Decodes a record stored in either form, keeping every field.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record, String> {
    match bytes.first() {
        Some(&BINARY_TAG) => decode_binary(bytes, None),
        _ => serde_json::from_slice(bytes).map_err(|err| err.to_string()),
    }
}

/// Decodes a record stored in either form, keeping only the fields named in `keep`. The
/// values of the others are skipped without being built.
pub(crate) fn decode_with(bytes: &[u8], keep: &[&str]) -> Result<Record, String> {
    match bytes.first() {
        Some(&BINARY_TAG) => decode_binary(bytes, Some(keep)),
        _ => {
            use serde::de::DeserializeSeed;
            let mut deserializer = serde_json::Deserializer::from_slice(bytes);
            super::record_fields::WithFields { keep }
                .deserialize(&mut deserializer)
                .and_then(|record| deserializer.end().map(|()| record))
                .map_err(|err| err.to_string())
        }
    }
}

/// Returns the change stamp of a record stored in either form, decoding nothing else of a
/// binary one.
pub(crate) fn modstamp(bytes: &[u8]) -> Result<DateTime<Utc>, String> {
    #[derive(serde::Deserialize)]
    struct Stamp {
        modstamp: DateTime<Utc>,
    }
    match bytes.first() {
        Some(&BINARY_TAG) => {
            let mut reader = Reader { bytes, at: 1 };
            reader.skip_text("object")?;
            reader.skip_text("id")?;
            reader.time("modstamp")
        }
        _ => serde_json::from_slice::<Stamp>(bytes)
            .map(|stamp| stamp.modstamp)
            .map_err(|err| err.to_string()),
    }
}

impl Store {
    /// Rewrites in binary form the records still stored as JSON, as in a store of the
    /// previous format, and returns how many it rewrote. It does nothing once the store
    /// is marked converted. Each chunk is read and rewritten in one durable write
    /// transaction, so a record a concurrent pull replaced is never overwritten by its older
    /// copy. Both forms
    /// stay readable throughout, so a conversion that `stop` (checked between chunks) or a
    /// crash interrupts is simply continued by the next call.
    pub(crate) fn convert_json_records(
        &self,
        stop: impl Fn() -> bool,
    ) -> Result<usize, StoreError> {
        if self.db.get("meta", CONVERTED_KEY.as_bytes())?.is_some() {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let mut converted = 0;
        for name in self.db.table_names()? {
            if !name.starts_with("records/") {
                continue;
            }
            let mut after: Option<Vec<u8>> = None;
            loop {
                if stop() {
                    tracing::info!(
                        records = converted,
                        "stop requested; the records left in JSON form are rewritten by the next pull"
                    );
                    return Ok(converted);
                }
                // Durable, because redb reuses the pages a commit frees only after a durable
                // commit: deferred chunks made a 6.3 GiB store of 1M contacts grow by 3.4 GiB.
                let done = self.db.write(Commit::Durable, |transaction| {
                    let chunk =
                        super::activity_index::read_chunk(transaction, &name, after.as_deref())?;
                    let mut records = transaction.open_table(table(&name))?;
                    for (key, bytes) in &chunk {
                        if bytes.first() == Some(&BINARY_TAG) {
                            continue;
                        }
                        let record = super::decode_record(&name, key, bytes)?;
                        records.insert(key.as_slice(), encode(&record).as_slice())?;
                        converted += 1;
                    }
                    if let Some((key, _)) = chunk.last() {
                        after = Some(key.clone());
                    }
                    Ok(chunk.len() < super::activity_index::BUILD_CHUNK)
                })?;
                if done {
                    break;
                }
            }
        }
        self.db.write(Commit::Durable, |transaction| {
            let mut meta = transaction.open_table(table("meta"))?;
            meta.insert(CONVERTED_KEY.as_bytes(), &[1u8][..])?;
            Ok(())
        })?;
        if converted > 0 {
            tracing::info!(
                records = converted,
                seconds = started.elapsed().as_secs_f64(),
                "records stored as JSON rewritten in binary form"
            );
        }
        Ok(converted)
    }
}

fn decode_binary(bytes: &[u8], keep: Option<&[&str]>) -> Result<Record, String> {
    let mut reader = Reader { bytes, at: 1 };
    let object = reader.text("object")?.to_string();
    let id = reader.text("id")?.to_string();
    let modstamp = reader.time("modstamp")?;
    let deleted = match reader.byte("deleted")? {
        0 => false,
        1 => true,
        other => return Err(format!("the deleted flag is {other}, not 0 or 1")),
    };
    let count = reader.len("field count")?;
    let mut fields = Vec::with_capacity(match keep {
        Some(keep) => keep.len().min(count),
        None => count.min(bytes.len()),
    });
    let mut previous: Option<&str> = None;
    for _ in 0..count {
        let name = reader.text("field name")?;
        if previous.is_some_and(|previous| previous >= name) {
            return Err(format!(
                "field {name:?} follows {:?}; names must be in ascending order",
                previous.unwrap_or_default()
            ));
        }
        previous = Some(name);
        let kept = keep.is_none_or(|keep| keep.contains(&name));
        let tag = reader.byte("value type")?;
        let value = match tag {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            NUMBER => Value::Number(f64::from_le_bytes(reader.array("number")?)),
            TEXT if kept => Value::Text(reader.text(name)?.to_string()),
            TEXT => {
                reader.skip_text(name)?;
                Value::Null
            }
            DATE => {
                let days = i32::from_le_bytes(reader.array("date")?);
                Value::Date(
                    NaiveDate::from_num_days_from_ce_opt(days)
                        .ok_or_else(|| format!("field {name:?} holds day {days}, out of range"))?,
                )
            }
            DATE_TIME => Value::DateTime(reader.time(name)?),
            other => return Err(format!("field {name:?} has value type {other}, unknown")),
        };
        if kept {
            fields.push((name.to_string(), value));
        }
    }
    if reader.at != bytes.len() {
        return Err(format!(
            "{} bytes follow the last field",
            bytes.len() - reader.at
        ));
    }
    Ok(Record {
        object,
        id,
        modstamp,
        deleted,
        // The names are in ascending order, which lets the map be built in one pass.
        fields: fields.into_iter().collect::<BTreeMap<_, _>>(),
    })
}

fn put_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_len(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn put_time(out: &mut Vec<u8>, time: &DateTime<Utc>) {
    out.extend_from_slice(&time.timestamp().to_le_bytes());
    out.extend_from_slice(&time.timestamp_subsec_nanos().to_le_bytes());
}

/// Reads the binary form from the front, naming the part that ends early or is invalid.
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, count: usize, part: &str) -> Result<&'b [u8], String> {
        let end = self
            .at
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("the record ends inside {part}"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self, part: &str) -> Result<u8, String> {
        Ok(self.take(1, part)?[0])
    }

    fn array<const N: usize>(&mut self, part: &str) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N, part)?);
        Ok(array)
    }

    fn len(&mut self, part: &str) -> Result<usize, String> {
        let mut len: usize = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(part)?;
            len |= usize::from(byte & 0x7f)
                .checked_shl(shift)
                .filter(|part| part >> shift == usize::from(byte & 0x7f))
                .ok_or_else(|| format!("the length of {part} overflows"))?;
            if byte & 0x80 == 0 {
                return Ok(len);
            }
        }
        Err(format!("the length of {part} overflows"))
    }

    fn text(&mut self, part: &str) -> Result<&'b str, String> {
        let len = self.len(part)?;
        let bytes = self.take(len, part)?;
        std::str::from_utf8(bytes).map_err(|err| format!("{part} is not UTF-8: {err}"))
    }

    fn skip_text(&mut self, part: &str) -> Result<(), String> {
        let len = self.len(part)?;
        self.take(len, part).map(|_| ())
    }

    fn time(&mut self, part: &str) -> Result<DateTime<Utc>, String> {
        let seconds = i64::from_le_bytes(self.array(part)?);
        let nanos = u32::from_le_bytes(self.array(part)?);
        DateTime::from_timestamp(seconds, nanos)
            .ok_or_else(|| format!("{part} holds {seconds} s and {nanos} ns, out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let mut fields = BTreeMap::new();
        fields.insert("AccountId".to_string(), Value::Text("001A".to_string()));
        fields.insert(
            "Description".to_string(),
            Value::Text("line one\nline \"two\" é".to_string()),
        );
        fields.insert("Beds".to_string(), Value::Number(412.5));
        fields.insert("Negative".to_string(), Value::Number(-0.0));
        fields.insert("IsActive".to_string(), Value::Bool(true));
        fields.insert("IsClosed".to_string(), Value::Bool(false));
        fields.insert("Empty".to_string(), Value::Null);
        fields.insert(
            "CloseDate".to_string(),
            Value::Date(NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()),
        );
        fields.insert(
            "CreatedDate".to_string(),
            Value::DateTime("1969-12-31T23:59:59.123456789Z".parse().unwrap()),
        );
        fields.insert(String::new(), Value::Text(String::new()));
        Record {
            object: "Contact".to_string(),
            id: "003A".to_string(),
            modstamp: "2026-01-02T03:04:05.678Z".parse().unwrap(),
            deleted: false,
            fields,
        }
    }

    #[test]
    fn binary_form_round_trips() {
        let whole = record();
        let bytes = encode(&whole);
        assert_eq!(bytes[0], BINARY_TAG);
        assert_eq!(decode(&bytes), Ok(whole.clone()));
        assert_eq!(modstamp(&bytes), Ok(whole.modstamp));
        let mut deleted = whole;
        deleted.deleted = true;
        deleted.fields.clear();
        assert_eq!(decode(&encode(&deleted)), Ok(deleted));
    }

    #[test]
    fn json_records_still_read() {
        let whole = record();
        let json = serde_json::to_vec(&whole).unwrap();
        assert_eq!(decode(&json), Ok(whole.clone()));
        assert_eq!(modstamp(&json), Ok(whole.modstamp));
        let keep = ["Beds", "AccountId", "Missing"];
        assert_eq!(
            decode_with(&json, &keep),
            decode_with(&encode(&whole), &keep)
        );
    }

    #[test]
    fn only_kept_fields_are_returned() {
        let whole = record();
        let partial = decode_with(&encode(&whole), &["Beds", "Description", "Missing"]).unwrap();
        let mut expected = whole.clone();
        expected
            .fields
            .retain(|name, _| name == "Beds" || name == "Description");
        assert_eq!(partial, expected);
        assert!(decode_with(&encode(&whole), &[]).unwrap().fields.is_empty());
    }

    #[test]
    fn long_texts_use_several_length_bytes() {
        let mut whole = record();
        let long = "x".repeat(70_000);
        whole.fields.insert("Long".to_string(), Value::Text(long));
        assert_eq!(decode(&encode(&whole)), Ok(whole));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&record());
        for cut in 1..bytes.len() {
            let error = decode(&bytes[..cut]).expect_err("a cut record must not decode");
            assert!(error.contains("ends inside"), "cut at {cut}: {error}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer)
            .unwrap_err()
            .contains("follow the last field"));
    }

    /// Random records round-trip, and random edits of their bytes decode or fail with a
    /// message. The seed is printed so that a failure can be replayed.
    #[test]
    fn random_records_and_edits() {
        use rand::{Rng, SeedableRng};
        let seed: u64 = rand::thread_rng().gen();
        eprintln!("record codec seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for case in 0..2_000 {
            let mut fields = BTreeMap::new();
            for _ in 0..rng.gen_range(0..12) {
                let name: String = (0..rng.gen_range(0..6))
                    .map(|_| char::from(rng.gen_range(b'A'..=b'z')))
                    .collect();
                let value = match rng.gen_range(0..6) {
                    0 => Value::Null,
                    1 => Value::Bool(rng.gen()),
                    2 => Value::Number(f64::from_bits(rng.gen())),
                    3 => Value::Text(
                        (0..rng.gen_range(0..200))
                            .map(|_| rng.gen::<char>())
                            .collect(),
                    ),
                    4 => Value::Date(
                        NaiveDate::from_num_days_from_ce_opt(rng.gen_range(-100_000..3_000_000))
                            .unwrap(),
                    ),
                    _ => Value::DateTime(
                        DateTime::from_timestamp(
                            rng.gen_range(-10_000_000_000..10_000_000_000),
                            rng.gen_range(0..1_000_000_000),
                        )
                        .unwrap(),
                    ),
                };
                fields.insert(name, value);
            }
            let whole = Record {
                fields,
                deleted: rng.gen(),
                ..record()
            };
            let bytes = encode(&whole);
            let decoded = decode(&bytes).unwrap_or_else(|e| panic!("seed {seed} case {case}: {e}"));
            // NaN is not equal to itself, so the numbers are compared by their bits.
            assert_eq!(encode(&decoded), bytes, "seed {seed} case {case}");

            let mut damaged = bytes.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..damaged.len());
                match rng.gen_range(0..3) {
                    0 => damaged[at] = rng.gen(),
                    1 => damaged.truncate(at.max(1)),
                    _ => damaged.insert(at.max(1), rng.gen()),
                }
            }
            let _ = decode(&damaged);
            let _ = decode_with(&damaged, &["A", "B"]);
            let _ = modstamp(&damaged);
        }
    }

    #[test]
    fn damaged_values_are_errors() {
        let bytes = encode(&record());
        // Every single-byte change either decodes or fails with a message; none panics.
        for at in 1..bytes.len() {
            for value in [0x00, 0x07, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] = value;
                let _ = decode(&damaged);
                let _ = decode_with(&damaged, &["Beds", "CreatedDate"]);
            }
        }
        let mut unordered = Record {
            fields: BTreeMap::new(),
            ..record()
        };
        unordered.fields.insert("B".into(), Value::Null);
        let mut bytes = encode(&unordered);
        // The record ends with the count 1 and the field "B". A second field "A" is appended.
        let count_at = bytes.len() - 4;
        assert_eq!(bytes[count_at], 1);
        bytes[count_at] = 2;
        bytes.extend_from_slice(&[1, b'A', NULL]);
        assert!(decode(&bytes).unwrap_err().contains("ascending order"));
        let mut huge_length = encode(&record());
        huge_length.truncate(1);
        huge_length.extend_from_slice(&[0xff; 11]);
        assert!(decode(&huge_length).unwrap_err().contains("overflows"));
    }
}
