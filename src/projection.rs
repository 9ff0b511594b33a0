//! Records as training and scoring hold them: only the fields the configuration pulls for
//! features, levels and leads, in one shared layout per object, without the write-back and
//! feedback fields that only the push and the pull read.
//!
//! A stored contact carries a dozen fields in a `BTreeMap`, about 2.4 KB in memory, most of it
//! the map's nodes, the field names and the reasons text written back. Projected, it keeps
//! a row of 4-byte codes, one per field of its object's [`Layout`], into tables that hold
//! each distinct value of the field once for all the object's records (see [`Projector`]).

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadscore_connector::{Record, Value};

use crate::config::{AttributeFeature, Config};
use crate::features::fields;
use crate::level::Level;
use crate::sync::CURRENCY_FIELD;

/// The fields one object's projected records keep, sorted by name.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    names: Vec<String>,
}

impl Layout {
    fn new(names: BTreeSet<String>) -> Layout {
        Layout {
            names: names.into_iter().collect(),
        }
    }

    /// Returns the position of a field, or `None` when the layout does not keep it.
    #[cfg(test)]
    fn position(&self, field: &str) -> Option<usize> {
        self.names
            .binary_search_by(|name| name.as_str().cmp(field))
            .ok()
    }

    /// Returns the names of the fields kept, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Read access to a record's fields, shared by whole and projected records.
pub trait ReadFields {
    /// Returns the record's CRM id.
    fn id(&self) -> &str;
    /// Returns a field's value, `Null` when the record has none.
    fn get(&self, field: &str) -> &Value;
}

impl ReadFields for Record {
    fn id(&self) -> &str {
        &self.id
    }

    fn get(&self, field: &str) -> &Value {
        Record::get(self, field)
    }
}

impl ReadFields for ProjectedRecord {
    fn id(&self) -> &str {
        &self.id
    }

    fn get(&self, field: &str) -> &Value {
        ProjectedRecord::get(self, field)
    }
}

/// The values of one object's projected records, shared by all of them: one table of values
/// per field and one row of codes per record, each code a place in its field's table.
///
/// A field whose values repeat (an account id on five contacts, an owner, a role, a
/// specialty) keeps each value once. A record then costs four bytes for it, not a 32-byte
/// [`Value`] and a heap copy of the text.
#[derive(Debug, Default)]
struct Columns {
    names: Vec<String>,
    /// Per field, its distinct values. Code 0 is `Null` in every table.
    tables: Vec<Vec<Value>>,
    /// `names.len()` codes per record, rows in the order the records were projected.
    codes: Vec<u32>,
}

/// A record reduced to the fields of its object's [`Layout`]. Its values live in value
/// tables it shares with the other records projected with it.
#[derive(Clone)]
pub struct ProjectedRecord {
    pub id: String,
    /// The record's change stamp, as stored.
    pub modstamp: DateTime<Utc>,
    columns: Arc<Columns>,
    /// The record's row in `columns.codes`.
    row: u32,
}

impl ProjectedRecord {
    /// Keeps every field of `record`, in a layout of its own. Tests use it for records they
    /// build by hand.
    pub fn whole(record: Record) -> ProjectedRecord {
        let layout = Layout::new(record.fields.keys().cloned().collect());
        let mut projector = Projector::new(&layout);
        let mut records = vec![projector.project(record)];
        projector.finish(&mut records);
        records.pop().expect("one record was projected")
    }

    /// Returns a field's value; `Null` when the record has none or the layout drops it.
    pub fn get(&self, field: &str) -> &Value {
        let columns = &*self.columns;
        let Ok(position) = columns
            .names
            .binary_search_by(|name| name.as_str().cmp(field))
        else {
            return &Value::Null;
        };
        let code = columns.codes[self.row as usize * columns.names.len() + position];
        &columns.tables[position][code as usize]
    }

    /// Returns the fields that hold a value, sorted by name.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        let columns = &*self.columns;
        let width = columns.names.len();
        let start = self.row as usize * width;
        columns.names[..]
            .iter()
            .zip(&columns.tables)
            .zip(&columns.codes[start..start + width])
            .map(|((name, table), &code)| (name.as_str(), &table[code as usize]))
            .filter(|(_, value)| !value.is_null())
    }
}

/// Shows the record's own fields, not the tables it shares with every record of its object.
impl std::fmt::Debug for ProjectedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectedRecord")
            .field("id", &self.id)
            .field("modstamp", &self.modstamp)
            .field("fields", &self.fields().collect::<Vec<_>>())
            .finish()
    }
}

/// After this many records, a field with more distinct values than half of them stops
/// looking its values up. Its values are nearly all different (names, creation times), so a
/// lookup map would only double their memory while loading.
const DISTINCT_SAMPLE: usize = 4096;

/// The distinct values of one field while records are projected.
struct TableBuilder {
    values: Vec<Value>,
    /// Codes of the values seen so far, or `None` once the field proved nearly unique.
    lookup: Option<Lookup>,
}

/// Codes by value: text by its string, everything else by a copy of its bits.
#[derive(Default)]
struct Lookup {
    text: HashMap<String, u32>,
    other: HashMap<OtherKey, u32>,
}

impl Lookup {
    fn len(&self) -> usize {
        self.text.len() + self.other.len()
    }

    /// Returns the code of a value seen before, or records `next` as the code of a new one
    /// and returns `None`. `value` is not `Null`.
    fn find_or_insert(&mut self, value: &Value, next: u32) -> Option<u32> {
        let key = match value {
            // Text is looked up by reference, so only a new value costs a copy of its string.
            Value::Text(text) => {
                if let Some(&code) = self.text.get(text.as_str()) {
                    return Some(code);
                }
                self.text.insert(text.clone(), next);
                return None;
            }
            Value::Null => return Some(0),
            Value::Bool(b) => OtherKey::Bool(*b),
            Value::Number(n) => OtherKey::Number(n.to_bits()),
            Value::Date(d) => OtherKey::Date(*d),
            Value::DateTime(t) => OtherKey::DateTime(*t),
        };
        match self.other.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => Some(*entry.get()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(next);
                None
            }
        }
    }
}

/// A value other than text or `Null`, as a map key: numbers by their bits.
#[derive(Hash, PartialEq, Eq)]
enum OtherKey {
    Bool(bool),
    Number(u64),
    Date(chrono::NaiveDate),
    DateTime(DateTime<Utc>),
}

impl TableBuilder {
    fn new() -> TableBuilder {
        TableBuilder {
            values: vec![Value::Null],
            lookup: Some(Lookup::default()),
        }
    }

    /// Returns the code of `value`, adding it to the table when it is new. `seen` counts the
    /// records projected so far, this one included.
    fn code(&mut self, value: Value, seen: usize) -> u32 {
        if value.is_null() {
            return 0;
        }
        let next = u32::try_from(self.values.len()).expect("fewer than 2^32 values per field");
        if let Some(lookup) = &mut self.lookup {
            if let Some(code) = lookup.find_or_insert(&value, next) {
                return code;
            }
            if seen >= DISTINCT_SAMPLE && lookup.len() * 2 > seen {
                self.lookup = None;
            }
        }
        self.values.push(value);
        next
    }
}

/// Projects the records of one object and hands them their shared value tables once the
/// last one is in.
pub struct Projector {
    /// The layout's field names, in order.
    names: Vec<String>,
    tables: Vec<TableBuilder>,
    codes: Vec<u32>,
    rows: usize,
    /// Shared by the records until [`Projector::finish`] gives them the real columns.
    pending: Arc<Columns>,
}

impl Projector {
    /// Starts a projector for the fields of `layout`.
    pub fn new(layout: &Layout) -> Projector {
        Projector {
            names: layout.names.clone(),
            tables: layout.names.iter().map(|_| TableBuilder::new()).collect(),
            codes: Vec::new(),
            rows: 0,
            pending: Arc::new(Columns::default()),
        }
    }

    /// Moves the kept fields out of `record` and drops the rest. The returned record reads
    /// as empty until [`Projector::finish`].
    pub fn project(&mut self, record: Record) -> ProjectedRecord {
        let Record {
            id,
            modstamp,
            mut fields,
            ..
        } = record;
        let row = self.rows;
        self.rows += 1;
        for (name, table) in self.names.iter().zip(&mut self.tables) {
            let value = fields.remove(name).unwrap_or(Value::Null);
            let code = table.code(value, self.rows);
            self.codes.push(code);
        }
        ProjectedRecord {
            id,
            modstamp,
            columns: self.pending.clone(),
            row: u32::try_from(row).expect("fewer than 2^32 records per object"),
        }
    }

    /// Gives `records`, all projected by this projector, their shared values.
    pub fn finish(self, records: &mut [ProjectedRecord]) {
        let mut codes = self.codes;
        codes.shrink_to_fit();
        let columns = Arc::new(Columns {
            names: self.names,
            tables: self
                .tables
                .into_iter()
                .map(|table| {
                    let mut values = table.values;
                    values.shrink_to_fit();
                    values
                })
                .collect(),
            codes,
        });
        for record in records {
            debug_assert!(Arc::ptr_eq(&record.columns, &self.pending));
            record.columns = columns.clone();
        }
    }
}

/// Projected records of one object sorted by id, found through a hash table of their
/// positions: a map without a second copy of each id as its key and without tree nodes.
///
/// A binary search over a million ids that share their first characters compares about 20
/// of them per lookup. A hash lookup compares one.
#[derive(Debug, Default)]
pub struct RecordsById {
    records: Vec<ProjectedRecord>,
    /// Positions in `records`, by the hash of the id.
    index: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl RecordsById {
    /// Sorts `records` by id; of two records with one id, the later one stays.
    pub fn new(mut records: Vec<ProjectedRecord>) -> RecordsById {
        // Stable, so the later of two equal ids stays after the earlier one.
        records.sort_by(|a, b| a.id.cmp(&b.id));
        let mut kept: Vec<ProjectedRecord> = Vec::with_capacity(records.len());
        for record in records {
            match kept.last_mut() {
                Some(last) if last.id == record.id => *last = record,
                _ => kept.push(record),
            }
        }
        kept.shrink_to_fit();
        let hasher = hashbrown::DefaultHashBuilder::default();
        let hash = |id: &str| hasher.hash_one(id);
        let mut index = hashbrown::HashTable::with_capacity(kept.len());
        for (position, record) in kept.iter().enumerate() {
            let position = u32::try_from(position).expect("fewer than 2^32 records per object");
            index.insert_unique(hash(&record.id), position, |&p| hash(&kept[p as usize].id));
        }
        RecordsById {
            records: kept,
            index,
            hasher,
        }
    }

    /// Returns the place of a record in id order.
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        self.index
            .find(hash, |&p| self.records[p as usize].id == id)
            .map(|&p| p as usize)
    }

    /// Returns the record at a place in id order.
    pub(crate) fn at(&self, position: usize) -> Option<&ProjectedRecord> {
        self.records.get(position)
    }

    pub fn get(&self, id: &str) -> Option<&ProjectedRecord> {
        self.position(id).map(|position| &self.records[position])
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.position(id).is_some()
    }

    /// Returns the ids and records in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ProjectedRecord)> {
        self.records.iter().map(|record| (&record.id, record))
    }

    /// Returns the ids in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.records.iter().map(|record| &record.id)
    }

    /// Returns the records in id order.
    pub fn values(&self) -> impl Iterator<Item = &ProjectedRecord> {
        self.records.iter()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl<'a> IntoIterator for &'a RecordsById {
    type Item = (&'a String, &'a ProjectedRecord);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, ProjectedRecord>,
        fn(&'a ProjectedRecord) -> (&'a String, &'a ProjectedRecord),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.records.iter().map(|record| (&record.id, record))
    }
}

/// The layout of every object training and scoring read as whole records.
#[derive(Debug)]
pub struct Projection {
    layouts: HashMap<&'static str, Arc<Layout>>,
}

impl Projection {
    /// Builds the layouts from the fields `config` pulls for accounts, contacts and leads,
    /// plus the fields `enrichment` adds. It leaves out the fields that training and scoring
    /// never read from a loaded record: the write-back and feedback fields, `MasterRecordId`
    /// (read by the pull's merge handling) and `CurrencyIsoCode` (read by the currency
    /// conversion before the projection). Any of them that is also a feature stays.
    pub fn new(config: &Config, enrichment: &[(&str, &[AttributeFeature])]) -> Projection {
        let mut excluded: BTreeSet<&str> = BTreeSet::new();
        for level in Level::ALL {
            let writeback = config.writeback_for(level);
            excluded.extend([
                writeback.score_field.as_str(),
                writeback.tier_field.as_str(),
                writeback.reasons_field.as_str(),
                writeback.model_version_field.as_str(),
                writeback.scored_at_field.as_str(),
            ]);
        }
        excluded.insert(config.lead.sales_ready_field.as_str());
        let feedback_flag = config.feedback.field_for(&config.connector);
        let feedback_comment = config.feedback.comment_field_for(&config.connector);
        excluded.insert(feedback_flag.as_str());
        excluded.insert(feedback_comment.as_str());
        excluded.insert("MasterRecordId");
        excluded.insert(CURRENCY_FIELD);
        let features: BTreeSet<&str> = config
            .features
            .attributes
            .iter()
            .chain(&config.features.contact_attributes)
            .chain(&config.features.lead_attributes)
            .map(|a| a.field.as_str())
            .collect();

        let specs = crate::pipeline::pull_specs(config);
        let mut layouts = HashMap::new();
        for object in [fields::ACCOUNT, fields::CONTACT, fields::LEAD] {
            let mut names: BTreeSet<String> = BTreeSet::new();
            for spec in specs.iter().filter(|spec| spec.object == object) {
                names.extend(spec.fields.iter().cloned());
            }
            for (table_object, added) in enrichment {
                if table_object.eq_ignore_ascii_case(object) {
                    names.extend(added.iter().map(|a| a.field.clone()));
                }
            }
            names.retain(|name| {
                !excluded.contains(name.as_str()) || features.contains(name.as_str())
            });
            layouts.insert(object, Arc::new(Layout::new(names)));
        }
        Projection { layouts }
    }

    /// Returns the layout of `object` (`Account`, `Contact` or `Lead`).
    ///
    /// # Panics
    ///
    /// Panics for any other object, which is a bug in the caller.
    pub fn layout(&self, object: &str) -> &Arc<Layout> {
        self.layouts
            .get(object)
            .unwrap_or_else(|| panic!("no projection layout for {object}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use std::collections::BTreeMap;

    fn config() -> Config {
        crate::demo::parse_test_config(&crate::demo::sandbox_config("http://127.0.0.1:1", "store"))
    }

    #[test]
    fn projection_drops_written_fields() {
        let config = config();
        let projection = Projection::new(&config, &[]);
        let contact = projection.layout(fields::CONTACT);
        for kept in [
            "AccountId",
            "CreatedDate",
            "Name",
            "OwnerId",
            "Buying_Role__c",
        ] {
            assert!(contact.position(kept).is_some(), "{kept} dropped");
        }
        for dropped in [
            "LS_Score__c",
            "LS_Reasons__c",
            "LS_Tier__c",
            "LS_Feedback__c",
            "MasterRecordId",
            "CurrencyIsoCode",
        ] {
            assert!(contact.position(dropped).is_none(), "{dropped} kept");
        }
        let account = projection.layout(fields::ACCOUNT);
        assert!(account.position("Hip_Knee_Discharges__c").is_some());
        assert!(account.position("LS_Model_Version__c").is_none());

        let record = Record {
            object: "Contact".into(),
            id: "003A".into(),
            modstamp: Utc::now(),
            deleted: false,
            fields: BTreeMap::from([
                ("AccountId".to_string(), Value::Text("001A".into())),
                ("LS_Reasons__c".to_string(), Value::Text("+ volume".into())),
                ("Unmapped__c".to_string(), Value::Number(3.0)),
            ]),
        };
        let mut projector = Projector::new(contact);
        let mut records = vec![projector.project(record)];
        projector.finish(&mut records);
        let projected = &records[0];
        assert_eq!(projected.id, "003A");
        assert_eq!(projected.get("AccountId"), &Value::Text("001A".into()));
        assert_eq!(projected.get("LS_Reasons__c"), &Value::Null);
        assert_eq!(projected.get("Unmapped__c"), &Value::Null);
        let held: Vec<&str> = projected.fields().map(|(name, _)| name).collect();
        assert_eq!(held, ["AccountId"]);
    }

    #[test]
    fn projection_keeps_written_feature_field() {
        let text = crate::demo::sandbox_config("http://127.0.0.1:1", "store").replacen(
            "field = \"BillingState\"",
            "field = \"LS_Tier__c\"",
            1,
        );
        let config = crate::demo::parse_test_config(&text);
        let projection = Projection::new(&config, &[]);
        assert!(projection
            .layout(fields::ACCOUNT)
            .position("LS_Tier__c")
            .is_some());
    }

    #[test]
    fn projector_shares_repeated_values() {
        let layout = Layout::new(BTreeSet::from([
            "AccountId".to_string(),
            "Name".to_string(),
            "Score".to_string(),
        ]));
        let mut projector = Projector::new(&layout);
        // More records than DISTINCT_SAMPLE, so the unique names stop being looked up.
        let count = DISTINCT_SAMPLE * 3;
        let mut records: Vec<ProjectedRecord> = (0..count)
            .map(|i| {
                let mut fields = BTreeMap::from([
                    (
                        "AccountId".to_string(),
                        Value::Text(format!("001{}", i % 10)),
                    ),
                    ("Name".to_string(), Value::Text(format!("name {i}"))),
                    ("Dropped".to_string(), Value::Bool(true)),
                ]);
                if i % 4 != 0 {
                    fields.insert("Score".to_string(), Value::Number((i % 3) as f64));
                }
                projector.project(Record {
                    object: "Contact".into(),
                    id: format!("003{i:06}"),
                    modstamp: Utc::now(),
                    deleted: false,
                    fields,
                })
            })
            .collect();
        assert_eq!(
            records[5].get("AccountId"),
            &Value::Null,
            "read before finish"
        );
        projector.finish(&mut records);

        for (i, record) in records.iter().enumerate() {
            assert_eq!(
                record.get("AccountId"),
                &Value::Text(format!("001{}", i % 10))
            );
            assert_eq!(record.get("Name"), &Value::Text(format!("name {i}")));
            let score = if i % 4 == 0 {
                Value::Null
            } else {
                Value::Number((i % 3) as f64)
            };
            assert_eq!(record.get("Score"), &score);
            assert_eq!(record.get("Dropped"), &Value::Null);
        }
        let present: Vec<&str> = records[0].fields().map(|(name, _)| name).collect();
        assert_eq!(present, ["AccountId", "Name"]);
        // Debug output shows one record's fields, not its object's shared tables.
        let debug_text = format!("{:?}", records[1]);
        assert!(debug_text.contains("name 1"), "{debug_text}");
        assert!(!debug_text.contains("name 2"), "{debug_text}");
        // Null, then each distinct value once; every name is distinct.
        let tables: Vec<usize> = records[0].columns.tables.iter().map(Vec::len).collect();
        assert_eq!(tables, [11, count + 1, 4]);
    }

    #[test]
    fn records_by_id_keep_later_duplicate() {
        let record = |id: &str, name: &str| {
            ProjectedRecord::whole(Record {
                object: "Account".into(),
                id: id.into(),
                modstamp: Utc::now(),
                deleted: false,
                fields: BTreeMap::from([("Name".to_string(), Value::Text(name.into()))]),
            })
        };
        let records = RecordsById::new(vec![
            record("001C", "third"),
            record("001A", "first"),
            record("001B", "old"),
            record("001B", "new"),
        ]);
        assert_eq!(records.len(), 3);
        let ids: Vec<&String> = records.keys().collect();
        assert_eq!(ids, ["001A", "001B", "001C"]);
        assert_eq!(
            records.get("001B").map(|r| r.get("Name")),
            Some(&Value::Text("new".into()))
        );
        assert_eq!(records.position("001C"), Some(2));
        assert!(records.get("001D").is_none());
        assert!(!records.contains_key(""));
    }
}
