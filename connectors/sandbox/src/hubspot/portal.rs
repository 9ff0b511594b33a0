//! The portal's data: CRM objects with string property values, property definitions,
//! owners, deal pipelines and labelled associations.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};

/// The CRM object types the sandbox serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectType {
    Contacts,
    Companies,
    Deals,
    Calls,
    Meetings,
    Notes,
    Emails,
    Tasks,
}

impl ObjectType {
    pub const ALL: [ObjectType; 8] = [
        ObjectType::Contacts,
        ObjectType::Companies,
        ObjectType::Deals,
        ObjectType::Calls,
        ObjectType::Meetings,
        ObjectType::Notes,
        ObjectType::Emails,
        ObjectType::Tasks,
    ];

    /// Parses a path segment: the plural name (`contacts`), the singular (`contact`) or the
    /// numeric type id (`0-1`).
    pub fn parse(text: &str) -> Option<ObjectType> {
        let lower = text.to_ascii_lowercase();
        ObjectType::ALL.into_iter().find(|object| {
            lower == object.name() || lower == object.singular() || lower == object.type_id()
        })
    }

    /// Returns the plural API name, as in `/crm/v3/objects/contacts`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Contacts => "contacts",
            ObjectType::Companies => "companies",
            ObjectType::Deals => "deals",
            ObjectType::Calls => "calls",
            ObjectType::Meetings => "meetings",
            ObjectType::Notes => "notes",
            ObjectType::Emails => "emails",
            ObjectType::Tasks => "tasks",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            ObjectType::Contacts => "contact",
            ObjectType::Companies => "company",
            ObjectType::Deals => "deal",
            ObjectType::Calls => "call",
            ObjectType::Meetings => "meeting",
            ObjectType::Notes => "note",
            ObjectType::Emails => "email",
            ObjectType::Tasks => "task",
        }
    }

    fn type_id(self) -> &'static str {
        match self {
            ObjectType::Contacts => "0-1",
            ObjectType::Companies => "0-2",
            ObjectType::Deals => "0-3",
            ObjectType::Calls => "0-48",
            ObjectType::Meetings => "0-47",
            ObjectType::Notes => "0-46",
            ObjectType::Emails => "0-49",
            ObjectType::Tasks => "0-27",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Returns the property that contains the last modification time: `lastmodifieddate` on contacts,
    /// `hs_lastmodifieddate` on every other object.
    pub fn modified_property(self) -> &'static str {
        match self {
            ObjectType::Contacts => "lastmodifieddate",
            _ => "hs_lastmodifieddate",
        }
    }

    /// Returns the property that contains the creation time.
    pub fn created_property(self) -> &'static str {
        match self {
            ObjectType::Contacts | ObjectType::Companies | ObjectType::Deals => "createdate",
            _ => "hs_createdate",
        }
    }

    /// Returns the OAuth scope family that guards the object. HubSpot documents engagements under
    /// the contacts scopes.
    pub(crate) fn scope_family(self) -> &'static str {
        match self {
            ObjectType::Companies => "companies",
            ObjectType::Deals => "deals",
            _ => "contacts",
        }
    }

    /// Returns the upper-case name used in HubSpot error messages, such as `CONTACT`.
    pub(crate) fn upper(self) -> String {
        self.singular().to_ascii_uppercase()
    }

    /// Properties a list, get or search returns when the request names none.
    pub(crate) fn default_properties(self) -> &'static [&'static str] {
        match self {
            ObjectType::Contacts => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            ObjectType::Companies => &[
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ],
            ObjectType::Deals => &[
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
            _ => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        }
    }

    /// First id handed out for the object. Each type gets its own range so that an id sent
    /// to the wrong object type is not found.
    fn first_id(self) -> u64 {
        match self {
            ObjectType::Contacts => 1_000_001,
            ObjectType::Companies => 3_000_001,
            ObjectType::Deals => 5_000_001,
            ObjectType::Calls => 7_000_001,
            ObjectType::Meetings => 9_000_001,
            ObjectType::Notes => 11_000_001,
            ObjectType::Emails => 13_000_001,
            ObjectType::Tasks => 15_000_001,
        }
    }
}

/// One CRM record. Every property value is a string; a missing key is an empty value.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub id: u64,
    pub properties: HashMap<String, String>,
    /// `createdAt`, epoch milliseconds.
    pub created_at: i64,
    /// `updatedAt`, epoch milliseconds; equal to the modified-date property.
    pub updated_at: i64,
    pub archived_at: Option<i64>,
}

/// A property definition as the properties API returns it.
#[derive(Clone, Debug)]
pub(crate) struct PropertyDef {
    pub name: String,
    pub label: String,
    pub kind: String,
    pub field_type: String,
    pub group: String,
    pub description: String,
    /// Enumeration options as (label, value).
    pub options: Vec<(String, String)>,
    pub hubspot_defined: bool,
    pub read_only_value: bool,
    pub calculated: bool,
    pub created_at: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct PropertyGroup {
    pub name: String,
    pub label: String,
    pub display_order: i64,
}

/// An owner as `/crm/v3/owners` returns it.
#[derive(Clone, Debug)]
pub(crate) struct Owner {
    pub id: u64,
    pub user_id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub archived: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Stage {
    pub id: String,
    pub label: String,
    pub is_closed: bool,
    pub probability: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Pipeline {
    pub id: String,
    pub label: String,
    pub created_at: i64,
    pub stages: Vec<Stage>,
}

/// One association type: a direction between two object types, with an optional label.
#[derive(Clone, Debug)]
pub(crate) struct AssociationType {
    pub from: ObjectType,
    pub to: ObjectType,
    pub type_id: u32,
    /// The type id of the same association read from the other side.
    pub inverse: u32,
    pub user_defined: bool,
    pub label: Option<String>,
    /// The `type` string of the v3 inline `associations` form.
    pub v3_name: String,
}

/// Key of a record in any object type.
pub(crate) type RecordKey = (ObjectType, u64);

/// Every object, definition and association of the sandbox portal.
pub(crate) struct Portal {
    pub objects: Vec<BTreeMap<u64, Record>>,
    pub properties: Vec<BTreeMap<String, PropertyDef>>,
    pub groups: Vec<Vec<PropertyGroup>>,
    pub owners: Vec<Owner>,
    pub pipelines: Vec<Pipeline>,
    pub association_types: Vec<AssociationType>,
    /// From record -> (to record -> association type ids).
    pub associations: HashMap<RecordKey, BTreeMap<RecordKey, Vec<u32>>>,
    /// Demo (Salesforce) id -> portal record.
    pub id_map: HashMap<String, RecordKey>,
    /// Demo user id -> owner id.
    pub owner_map: HashMap<String, u64>,
    /// Absorbed id -> surviving id, after merges.
    pub merged_into: HashMap<RecordKey, u64>,
    next_id: Vec<u64>,
    /// Property definitions hidden from the app by field-level permissions: the properties
    /// API leaves them out and reads return no values for them.
    pub hidden_properties: HashMap<(ObjectType, String), PropertyDef>,
}

/// Formats epoch milliseconds as HubSpot returns datetimes: `2024-05-01T12:00:03.201Z`.
pub(crate) fn iso(ms: i64) -> String {
    let at = Utc
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH);
    // Formatted by hand, because chrono's format strings are slow enough to show up when
    // seeding the full demo world.
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.timestamp_subsec_millis()
    )
}

/// Parses a datetime given as epoch milliseconds, RFC 3339 or a `YYYY-MM-DD` date
/// (midnight UTC) into epoch milliseconds.
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Some(at) = crate::store::parse_datetime(text) {
        return Some(at.timestamp_millis());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc().timestamp_millis())
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The default lifecycle stages of a HubSpot portal, in funnel order.
pub(crate) const LIFECYCLE_STAGES: [(&str, &str); 8] = [
    ("Subscriber", "subscriber"),
    ("Lead", "lead"),
    ("Marketing Qualified Lead", "marketingqualifiedlead"),
    ("Sales Qualified Lead", "salesqualifiedlead"),
    ("Opportunity", "opportunity"),
    ("Customer", "customer"),
    ("Evangelist", "evangelist"),
    ("Other", "other"),
];

/// Values of the `buying_role` contact property and of the deal-to-contact labels.
pub(crate) const BUYING_ROLES: [&str; 5] = [
    "Surgeon Champion",
    "Administrator",
    "Materials Manager",
    "Finance",
    "Patient Safety",
];

/// Values of the custom `lead_source` contact property.
pub(crate) const LEAD_SOURCES: [&str; 5] = [
    "Webinar",
    "Content Download",
    "Conference List",
    "Web Form",
    "Purchased List",
];

/// Label of the company-to-company association type that points at the parent company.
pub const PARENT_COMPANY_LABEL: &str = "Parent Company";
/// Type id of child -> parent company (the target is the parent).
pub(crate) const CHILD_TO_PARENT: u32 = 14;
pub(crate) const PARENT_TO_CHILD: u32 = 13;
pub(crate) const CONTACT_TO_COMPANY_PRIMARY: u32 = 1;
pub(crate) const CONTACT_TO_COMPANY: u32 = 279;
pub(crate) const DEAL_TO_COMPANY_PRIMARY: u32 = 5;
pub(crate) const DEAL_TO_COMPANY: u32 = 341;
pub(crate) const DEAL_TO_CONTACT: u32 = 3;
/// First type id of the user-defined deal-to-contact role labels; each role takes two ids,
/// deal -> contact and contact -> deal.
const FIRST_ROLE_TYPE_ID: u32 = 101;

impl Portal {
    pub(crate) fn new(created_at: i64) -> Portal {
        let mut portal = Portal {
            objects: ObjectType::ALL.iter().map(|_| BTreeMap::new()).collect(),
            properties: ObjectType::ALL.iter().map(|_| BTreeMap::new()).collect(),
            groups: ObjectType::ALL.iter().map(|_| Vec::new()).collect(),
            owners: Vec::new(),
            pipelines: default_pipelines(created_at),
            association_types: association_types(),
            associations: HashMap::new(),
            id_map: HashMap::new(),
            owner_map: HashMap::new(),
            merged_into: HashMap::new(),
            next_id: ObjectType::ALL.iter().map(|o| o.first_id()).collect(),
            hidden_properties: HashMap::new(),
        };
        crate::hubspot::properties::define_standard(&mut portal, created_at);
        portal
    }

    pub(crate) fn next_id(&mut self, object: ObjectType) -> u64 {
        let id = self.next_id[object.index()];
        self.next_id[object.index()] += 1;
        id
    }

    pub(crate) fn records(&self, object: ObjectType) -> &BTreeMap<u64, Record> {
        &self.objects[object.index()]
    }

    pub(crate) fn records_mut(&mut self, object: ObjectType) -> &mut BTreeMap<u64, Record> {
        &mut self.objects[object.index()]
    }

    pub(crate) fn property(&self, object: ObjectType, name: &str) -> Option<&PropertyDef> {
        self.properties[object.index()].get(name)
    }

    /// Inserts a new record with the given properties. `hs_object_id` and the creation and
    /// modification properties are filled from `created_at` and `updated_at`.
    pub(crate) fn insert(
        &mut self,
        object: ObjectType,
        mut properties: HashMap<String, String>,
        created_at: i64,
        updated_at: i64,
    ) -> u64 {
        let id = self.next_id(object);
        properties.insert("hs_object_id".into(), id.to_string());
        properties.insert(object.created_property().into(), iso(created_at));
        properties.insert(object.modified_property().into(), iso(updated_at));
        if object == ObjectType::Contacts || object == ObjectType::Companies {
            properties.insert("hs_lastmodifieddate".into(), iso(updated_at));
        }
        let record = Record {
            id,
            properties,
            created_at,
            updated_at,
            archived_at: None,
        };
        self.records_mut(object).insert(id, record);
        id
    }

    /// Sets the modification time of a record, in `updatedAt` and the modified-date property.
    pub(crate) fn touch(&mut self, object: ObjectType, id: u64, at: i64) {
        if let Some(record) = self.records_mut(object).get_mut(&id) {
            record.updated_at = at;
            record
                .properties
                .insert(object.modified_property().into(), iso(at));
            if object == ObjectType::Contacts {
                record
                    .properties
                    .insert("hs_lastmodifieddate".into(), iso(at));
            }
        }
    }

    /// Finds the association type of `from -> to` with this label (`None` for the unlabelled
    /// default type).
    pub(crate) fn association_type(
        &self,
        from: ObjectType,
        to: ObjectType,
        label: Option<&str>,
    ) -> Option<&AssociationType> {
        self.association_types.iter().find(|t| {
            t.from == from
                && t.to == to
                && match label {
                    None => t.label.is_none(),
                    Some(label) => t.label.as_deref() == Some(label),
                }
        })
    }

    /// Adds an association type id from one record to another, and its inverse.
    pub(crate) fn associate(&mut self, from: RecordKey, to: RecordKey, type_id: u32) {
        let inverse = self
            .association_types
            .iter()
            .find(|t| t.from == from.0 && t.to == to.0 && t.type_id == type_id)
            .map(|t| t.inverse);
        add_type(self.associations.entry(from).or_default(), to, type_id);
        if let Some(inverse) = inverse {
            add_type(self.associations.entry(to).or_default(), from, inverse);
        }
    }

    /// Returns the associations of a record to one object type, sorted by target id, with
    /// archived targets left out.
    pub(crate) fn associations_to(&self, from: RecordKey, to: ObjectType) -> Vec<(u64, &[u32])> {
        let Some(targets) = self.associations.get(&from) else {
            return Vec::new();
        };
        targets
            .range((to, 0)..=(to, u64::MAX))
            .filter(|((object, id), _)| {
                self.records(*object)
                    .get(id)
                    .is_some_and(|record| record.archived_at.is_none())
            })
            .map(|((_, id), types)| (*id, types.as_slice()))
            .collect()
    }

    /// Looks up an association type by its direction and id.
    pub(crate) fn type_by_id(
        &self,
        from: ObjectType,
        to: ObjectType,
        type_id: u32,
    ) -> Option<&AssociationType> {
        self.association_types
            .iter()
            .find(|t| t.from == from && t.to == to && t.type_id == type_id)
    }

    /// Resolves an id that may have been merged away to its surviving record's id.
    /// Returns whether field-level permissions hide this property from the app.
    pub(crate) fn is_hidden(&self, object: ObjectType, name: &str) -> bool {
        self.hidden_properties
            .contains_key(&(object, name.to_string()))
    }

    pub(crate) fn resolve(&self, object: ObjectType, id: u64) -> u64 {
        let mut current = id;
        while let Some(next) = self.merged_into.get(&(object, current)) {
            current = *next;
        }
        current
    }
}

fn add_type(targets: &mut BTreeMap<RecordKey, Vec<u32>>, to: RecordKey, type_id: u32) {
    let types = targets.entry(to).or_default();
    if !types.contains(&type_id) {
        types.push(type_id);
        types.sort_unstable();
    }
}

/// Builds the sandbox's association types. The HubSpot-defined ids of one direction follow
/// HubSpot's published defaults (task -> contact 204, deal -> contact 3).
// NOTE: the reverse ids of engagement types (contact -> task 203, one less than the forward
// id) and the ids of the role labels (from 101) are assumptions; real portals assign
// user-defined ids themselves.
fn association_types() -> Vec<AssociationType> {
    use ObjectType::*;
    let mut types = Vec::new();
    let mut pair = |from: ObjectType,
                    to: ObjectType,
                    forward: u32,
                    backward: u32,
                    label: Option<(&str, &str)>,
                    user_defined: bool,
                    names: (&str, &str)| {
        types.push(AssociationType {
            from,
            to,
            type_id: forward,
            inverse: backward,
            user_defined,
            label: label.map(|(l, _)| l.to_string()),
            v3_name: names.0.to_string(),
        });
        types.push(AssociationType {
            from: to,
            to: from,
            type_id: backward,
            inverse: forward,
            user_defined,
            label: label.map(|(_, l)| l.to_string()),
            v3_name: names.1.to_string(),
        });
    };
    pair(
        Contacts,
        Companies,
        CONTACT_TO_COMPANY_PRIMARY,
        2,
        Some(("Primary", "Primary")),
        false,
        ("contact_to_company", "company_to_contact"),
    );
    pair(
        Contacts,
        Companies,
        CONTACT_TO_COMPANY,
        280,
        None,
        false,
        (
            "contact_to_company_unlabeled",
            "company_to_contact_unlabeled",
        ),
    );
    pair(
        Deals,
        Companies,
        DEAL_TO_COMPANY_PRIMARY,
        6,
        Some(("Primary", "Primary")),
        false,
        ("deal_to_company", "company_to_deal"),
    );
    pair(
        Deals,
        Companies,
        DEAL_TO_COMPANY,
        342,
        None,
        false,
        ("deal_to_company_unlabeled", "company_to_deal_unlabeled"),
    );
    pair(
        Deals,
        Contacts,
        DEAL_TO_CONTACT,
        4,
        None,
        false,
        ("deal_to_contact", "contact_to_deal"),
    );
    for (index, role) in BUYING_ROLES.iter().enumerate() {
        let forward = FIRST_ROLE_TYPE_ID + 2 * index as u32;
        let name = role.to_ascii_lowercase().replace(' ', "_");
        pair(
            Deals,
            Contacts,
            forward,
            forward + 1,
            Some((role, role)),
            true,
            (&name, &name),
        );
    }
    // Engagement defaults: (object, to contact, to company, to deal).
    let engagements = [
        (Tasks, 204, 192, 216),
        (Calls, 194, 182, 206),
        (Meetings, 200, 188, 212),
        (Notes, 202, 190, 214),
        (Emails, 198, 186, 210),
    ];
    for (object, contact, company, deal) in engagements {
        for (to, id) in [(Contacts, contact), (Companies, company), (Deals, deal)] {
            let forward = format!("{}_to_{}", object.singular(), to.singular());
            let backward = format!("{}_to_{}", to.singular(), object.singular());
            pair(object, to, id, id - 1, None, false, (&forward, &backward));
        }
    }
    // Company to company: from a parent, type 13 points at a child ("Child Company"); from a
    // child, type 14 points at its parent ("Parent Company").
    types.push(AssociationType {
        from: Companies,
        to: Companies,
        type_id: PARENT_TO_CHILD,
        inverse: CHILD_TO_PARENT,
        user_defined: false,
        label: Some("Child Company".into()),
        v3_name: "parent_to_child_company".into(),
    });
    types.push(AssociationType {
        from: Companies,
        to: Companies,
        type_id: CHILD_TO_PARENT,
        inverse: PARENT_TO_CHILD,
        user_defined: false,
        label: Some(PARENT_COMPANY_LABEL.into()),
        v3_name: "child_to_parent_company".into(),
    });
    types
}

/// Builds the portal's deal pipelines: HubSpot's default `Sales Pipeline`, which no seeded
/// deal uses, and `hospital-capital` with numeric stage ids.
fn default_pipelines(created_at: i64) -> Vec<Pipeline> {
    let stage = |id: &str, label: &str, is_closed: bool, probability: f64| Stage {
        id: id.to_string(),
        label: label.to_string(),
        is_closed,
        probability,
    };
    vec![
        Pipeline {
            id: "default".into(),
            label: "Sales Pipeline".into(),
            created_at: 0,
            stages: vec![
                stage("appointmentscheduled", "Appointment Scheduled", false, 0.2),
                stage("qualifiedtobuy", "Qualified To Buy", false, 0.4),
                stage(
                    "presentationscheduled",
                    "Presentation Scheduled",
                    false,
                    0.6,
                ),
                stage(
                    "decisionmakerboughtin",
                    "Decision Maker Bought-In",
                    false,
                    0.8,
                ),
                stage("contractsent", "Contract Sent", false, 0.9),
                stage("closedwon", "Closed Won", true, 1.0),
                stage("closedlost", "Closed Lost", true, 0.0),
            ],
        },
        Pipeline {
            id: HOSPITAL_PIPELINE.into(),
            label: "Hospital capital equipment".into(),
            created_at,
            stages: HOSPITAL_STAGES
                .iter()
                .map(|(id, label, closed, probability)| stage(id, label, *closed, *probability))
                .collect(),
        },
    ]
}

/// Id of the pipeline seeded deals are in.
pub const HOSPITAL_PIPELINE: &str = "hospital-capital";

/// Stages of the hospital pipeline: (id, label = Salesforce stage name, isClosed, probability).
pub(crate) const HOSPITAL_STAGES: [(&str, &str, bool, f64); 6] = [
    ("110001", "Prospecting", false, 0.1),
    ("110002", "Evaluation", false, 0.3),
    ("110003", "Value Analysis Committee", false, 0.5),
    ("110004", "Negotiation", false, 0.7),
    ("110005", "Closed Won", true, 1.0),
    ("110006", "Closed Lost", true, 0.0),
];
