//! The CRM-neutral objects and fields (Salesforce's standard names) and the HubSpot objects,
//! properties and associations each one is built from.

use leadscore_connector::FieldKind;

/// A CRM-neutral object this connector serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Canonical {
    User,
    Account,
    Contact,
    Lead,
    Opportunity,
    ContactRole,
    Task,
    Event,
}

/// One HubSpot object type feeding a canonical object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Source {
    /// CRM v3 object type, for example `companies`.
    pub object_type: &'static str,
    /// `Type` value of activities built from this source (`Call`, `Meeting`), empty otherwise.
    pub activity_type: &'static str,
}

const fn source(object_type: &'static str, activity_type: &'static str) -> Source {
    Source {
        object_type,
        activity_type,
    }
}

const COMPANIES: &[Source] = &[source("companies", "")];
const CONTACTS: &[Source] = &[source("contacts", "")];
const DEALS: &[Source] = &[source("deals", "")];
const MEETINGS: &[Source] = &[source("meetings", "Meeting")];
const TASK_SOURCES: &[Source] = &[
    source("tasks", "Task"),
    source("calls", "Call"),
    source("emails", "Email"),
    source("notes", "Note"),
];

/// Returns the property that contains an activity's subject or title, per engagement type.
/// Notes have none.
pub(crate) fn subject_property(object_type: &str) -> Option<&'static str> {
    match object_type {
        "tasks" => Some("hs_task_subject"),
        "calls" => Some("hs_call_title"),
        "emails" => Some("hs_email_subject"),
        "meetings" => Some("hs_meeting_title"),
        _ => None,
    }
}

/// A canonical field: its kind, and the HubSpot property it reads directly, if any.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CanonicalField {
    pub name: &'static str,
    pub kind: FieldKind,
    /// The property the value is read from unchanged; `None` for computed fields.
    pub property: Option<&'static str>,
    /// For references: the relationship name and target object.
    pub reference: Option<(&'static str, &'static str)>,
}

const fn prop(name: &'static str, kind: FieldKind, property: &'static str) -> CanonicalField {
    CanonicalField {
        name,
        kind,
        property: Some(property),
        reference: None,
    }
}

const fn computed(name: &'static str, kind: FieldKind) -> CanonicalField {
    CanonicalField {
        name,
        kind,
        property: None,
        reference: None,
    }
}

const fn reference(
    name: &'static str,
    property: Option<&'static str>,
    relationship: &'static str,
    target: &'static str,
) -> CanonicalField {
    CanonicalField {
        name,
        kind: FieldKind::Reference,
        property,
        reference: Some((relationship, target)),
    }
}

const OWNER: CanonicalField = reference("OwnerId", Some("hubspot_owner_id"), "Owner", "User");

/// The survivor a merge absorbed a record into. Live records read null. HubSpot records a
/// merge on the survivor only (`hs_merged_object_ids`), so the pull emits each absorbed id
/// as a deleted record whose `MasterRecordId` is the survivor.
const fn master_record(target: &'static str) -> CanonicalField {
    reference("MasterRecordId", None, "MasterRecord", target)
}

/// The property listing the ids a record absorbed in merges, `;`-separated.
pub(crate) const MERGED_IDS_PROPERTY: &str = "hs_merged_object_ids";

/// Owner fields that can be selected through `Owner.` on objects with an `OwnerId`.
pub(crate) const OWNER_FIELDS: &[&str] = &["Name", "Email", "IsActive"];

impl Canonical {
    pub const ALL: [Canonical; 8] = [
        Canonical::User,
        Canonical::Account,
        Canonical::Contact,
        Canonical::Lead,
        Canonical::Opportunity,
        Canonical::ContactRole,
        Canonical::Task,
        Canonical::Event,
    ];

    pub fn parse(name: &str) -> Option<Canonical> {
        Canonical::ALL
            .into_iter()
            .find(|object| object.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Canonical::User => "User",
            Canonical::Account => "Account",
            Canonical::Contact => "Contact",
            Canonical::Lead => "Lead",
            Canonical::Opportunity => "Opportunity",
            Canonical::ContactRole => "OpportunityContactRole",
            Canonical::Task => "Task",
            Canonical::Event => "Event",
        }
    }

    /// Returns the HubSpot object types records come from. Owners have no CRM object type and
    /// are read through `/crm/v3/owners` instead.
    pub fn sources(self) -> &'static [Source] {
        match self {
            Canonical::User => &[],
            Canonical::Account => COMPANIES,
            Canonical::Contact | Canonical::Lead => CONTACTS,
            Canonical::Opportunity | Canonical::ContactRole => DEALS,
            Canonical::Task => TASK_SOURCES,
            Canonical::Event => MEETINGS,
        }
    }

    /// Returns the HubSpot object type that updates of this object are written to.
    pub fn writable_type(self) -> Option<&'static str> {
        match self {
            Canonical::Account => Some("companies"),
            Canonical::Contact | Canonical::Lead => Some("contacts"),
            Canonical::Opportunity => Some("deals"),
            _ => None,
        }
    }

    /// Returns the canonical fields, besides `Id`.
    pub fn fields(self) -> Vec<CanonicalField> {
        use FieldKind::*;
        let created = prop("CreatedDate", DateTime, "createdate");
        match self {
            Canonical::User => vec![
                computed("Name", Text),
                computed("FirstName", Text),
                computed("LastName", Text),
                computed("Email", Text),
                computed("IsActive", Boolean),
                computed("CreatedDate", DateTime),
            ],
            Canonical::Account => vec![
                prop("Name", Text, "name"),
                OWNER,
                prop("BillingState", Text, "state"),
                prop("BillingCity", Text, "city"),
                reference("ParentId", None, "Parent", "Account"),
                created,
                master_record("Account"),
            ],
            Canonical::Contact => vec![
                reference("AccountId", None, "Account", "Account"),
                OWNER,
                prop("FirstName", Text, "firstname"),
                prop("LastName", Text, "lastname"),
                computed("Name", Text),
                prop("Title", Text, "jobtitle"),
                prop("Email", Text, "email"),
                prop("MailingState", Text, "state"),
                prop("MailingCity", Text, "city"),
                created,
                master_record("Contact"),
            ],
            Canonical::Lead => vec![
                prop("Company", Text, "company"),
                prop("State", Text, "state"),
                prop("City", Text, "city"),
                computed("IsConverted", Boolean),
                computed("ConvertedDate", Date),
                reference(
                    "ConvertedOpportunityId",
                    None,
                    "ConvertedOpportunity",
                    "Opportunity",
                ),
                reference("ConvertedAccountId", None, "ConvertedAccount", "Account"),
                reference("ConvertedContactId", None, "ConvertedContact", "Contact"),
                computed("CreatedDate", DateTime),
                OWNER,
                prop("FirstName", Text, "firstname"),
                prop("LastName", Text, "lastname"),
                computed("Name", Text),
                prop("Title", Text, "jobtitle"),
                prop("Email", Text, "email"),
                master_record("Lead"),
            ],
            Canonical::Opportunity => vec![
                reference("AccountId", None, "Account", "Account"),
                OWNER,
                prop("Name", Text, "dealname"),
                computed("StageName", Picklist),
                computed("IsClosed", Boolean),
                computed("IsWon", Boolean),
                prop("Amount", Number, "amount"),
                // Empty in a portal with one currency, which then means the company currency.
                prop("CurrencyIsoCode", Picklist, "deal_currency_code"),
                computed("CloseDate", Date),
                created,
            ],
            Canonical::ContactRole => vec![
                reference("OpportunityId", None, "Opportunity", "Opportunity"),
                reference("ContactId", None, "Contact", "Contact"),
                computed("Role", Picklist),
                computed("CreatedDate", DateTime),
            ],
            Canonical::Task | Canonical::Event => {
                let mut fields = vec![
                    reference("WhoId", None, "Who", "Contact"),
                    reference("WhatId", None, "What", "Opportunity"),
                    computed("ActivityDate", Date),
                    computed("Type", Picklist),
                    computed("Subject", Text),
                    computed("CreatedDate", DateTime),
                    OWNER,
                ];
                if self == Canonical::Event {
                    fields.push(computed("StartDateTime", DateTime));
                }
                fields
            }
        }
    }

    pub fn field(self, name: &str) -> Option<CanonicalField> {
        self.fields()
            .into_iter()
            .find(|field| field.name.eq_ignore_ascii_case(name))
    }

    pub fn has_owner(self) -> bool {
        self.field("OwnerId").is_some()
    }
}

/// Returns the property that changes on every write, which the incremental pull follows.
pub(crate) fn modstamp_property(object_type: &str) -> &'static str {
    if object_type == "contacts" {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    }
}

/// The data a set of requested fields needs beyond plain properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    /// Properties to request from every source.
    pub properties: Vec<String>,
    /// Association target types to read (`companies`, `deals`, `contacts`).
    pub associations: Vec<&'static str>,
    /// Deal pipelines, for stage labels and closed/won flags.
    pub pipelines: bool,
    /// Owners, for `Owner.` fields.
    pub owners: bool,
    /// Lifecycle stage options, for the lead conversion stage and the stages after it.
    pub lifecycle: bool,
    /// Properties of associated deals, for leads converted through a won deal.
    pub deal_details: bool,
}

impl Needs {
    fn property(&mut self, name: &str) {
        if !self.properties.iter().any(|known| known == name) {
            self.properties.push(name.to_string());
        }
    }

    fn association(&mut self, target: &'static str) {
        if !self.associations.contains(&target) {
            self.associations.push(target);
        }
    }

    /// Adds what canonical field `name` of `object` needs. Returns false when the object has
    /// no such canonical field.
    pub fn add_canonical(&mut self, object: Canonical, name: &str) -> bool {
        let Some(field) = object.field(name) else {
            return false;
        };
        if let Some(property) = field.property {
            self.property(property);
        }
        match (object, field.name) {
            (Canonical::Contact | Canonical::Lead, "Name") => {
                self.property("firstname");
                self.property("lastname");
            }
            (Canonical::Contact, "AccountId") => self.association("companies"),
            (Canonical::Account, "ParentId") => self.association("companies"),
            (Canonical::Lead, "CreatedDate") => {
                self.property("hs_lifecyclestage_lead_date");
                self.property("createdate");
            }
            (Canonical::Lead, "IsConverted" | "ConvertedDate" | "ConvertedContactId")
            | (Canonical::Lead, "ConvertedAccountId") => {
                self.lifecycle = true;
                self.deal_details = true;
                self.pipelines = true;
                self.association("deals");
                if field.name == "ConvertedAccountId" {
                    self.association("companies");
                }
            }
            (Canonical::Lead, "ConvertedOpportunityId") => self.association("deals"),
            (Canonical::Opportunity, "AccountId") => self.association("companies"),
            (Canonical::Account | Canonical::Contact | Canonical::Lead, "MasterRecordId") => {
                self.property(MERGED_IDS_PROPERTY)
            }
            (Canonical::Opportunity, "StageName" | "IsClosed" | "IsWon") => {
                self.pipelines = true;
                self.property("dealstage");
                self.property("pipeline");
            }
            (Canonical::Opportunity, "CloseDate") => self.property("closedate"),
            (Canonical::ContactRole, _) => {
                self.association("contacts");
                self.property("createdate");
            }
            (Canonical::Task | Canonical::Event, "WhoId") => self.association("contacts"),
            (Canonical::Task | Canonical::Event, "WhatId") => {
                self.association("deals");
                self.association("companies");
            }
            (Canonical::Task | Canonical::Event, "ActivityDate") => self.property("hs_timestamp"),
            (Canonical::Task | Canonical::Event, "Subject") => {
                for source in object.sources() {
                    if let Some(property) = subject_property(source.object_type) {
                        self.property(property);
                    }
                }
            }
            (Canonical::Task | Canonical::Event, "CreatedDate") => self.property("hs_createdate"),
            (Canonical::Event, "StartDateTime") => {
                self.property("hs_meeting_start_time");
                self.property("hs_timestamp");
            }
            _ => {}
        }
        true
    }

    /// Adds a HubSpot property requested under its own name.
    pub fn add_property(&mut self, name: &str) {
        self.property(name);
    }

    pub fn add_owner_field(&mut self) {
        self.owners = true;
        self.property("hubspot_owner_id");
    }
}
