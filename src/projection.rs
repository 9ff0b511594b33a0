//! Records as training and scoring hold them: only the fields the configuration pulls for
//! features, levels and leads, in one shared layout per object, without the write-back and
//! feedback fields that only the push and the pull read.
//!
//! A stored contact carries a dozen fields in a `BTreeMap`, about 2.4 KB in memory, most of it
//! the map's nodes, the field names and the reasons text written back. Projected, it keeps
//! only its values, in a slice ordered by its object's [`Layout`].

use std::collections::{BTreeSet, HashMap};
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

/// A record reduced to the fields of its object's [`Layout`].
#[derive(Clone, Debug)]
pub struct ProjectedRecord {
    pub id: String,
    /// The record's change stamp, as stored.
    pub modstamp: DateTime<Utc>,
    layout: Arc<Layout>,
    /// One value per field of `layout`, in its order; `Null` where the record had none.
    values: Box<[Value]>,
}

impl ProjectedRecord {
    /// Moves the kept fields out of `record` and drops the rest.
    pub fn project(record: Record, layout: &Arc<Layout>) -> ProjectedRecord {
        let Record {
            id,
            modstamp,
            mut fields,
            ..
        } = record;
        let values = layout
            .names
            .iter()
            .map(|name| fields.remove(name).unwrap_or(Value::Null))
            .collect();
        ProjectedRecord {
            id,
            modstamp,
            layout: layout.clone(),
            values,
        }
    }

    /// Keeps every field of `record`, in a layout of its own. Tests use it for records they
    /// build by hand.
    pub fn whole(record: Record) -> ProjectedRecord {
        let layout = Arc::new(Layout::new(record.fields.keys().cloned().collect()));
        ProjectedRecord::project(record, &layout)
    }

    /// Returns a field's value; `Null` when the record has none or the layout drops it.
    pub fn get(&self, field: &str) -> &Value {
        match self.layout.position(field) {
            Some(position) => &self.values[position],
            None => &Value::Null,
        }
    }

    /// Returns the fields that hold a value, sorted by name.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.layout
            .names
            .iter()
            .zip(self.values.iter())
            .filter(|(_, value)| !value.is_null())
            .map(|(name, value)| (name.as_str(), value))
    }
}

/// Projected records of one object sorted by id, looked up by binary search: a map without
/// a second copy of each id as its key and without tree nodes.
#[derive(Debug, Default)]
pub struct RecordsById {
    records: Vec<ProjectedRecord>,
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
        RecordsById { records: kept }
    }

    /// Returns the place of a record in id order.
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.records
            .binary_search_by(|record| record.id.as_str().cmp(id))
            .ok()
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
        let projected = ProjectedRecord::project(record, contact);
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
