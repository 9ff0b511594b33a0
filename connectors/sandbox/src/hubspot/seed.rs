//! Seeding a portal from Salesforce-shaped records, such as those of the demo world.
//!
//! Users become owners (inactive ones archived), accounts companies (health systems are
//! parent companies), contacts and leads contacts, opportunities deals in the
//! `hospital-capital` pipeline, contact roles labelled deal-to-contact associations, tasks
//! tasks, calls or emails by `Type`, and events meetings.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value as Json;

use crate::hubspot::portal::{
    iso, now_ms, parse_time, ObjectType, Owner, Portal, RecordKey, BUYING_ROLES, CHILD_TO_PARENT,
    CONTACT_TO_COMPANY, CONTACT_TO_COMPANY_PRIMARY, DEAL_TO_COMPANY, DEAL_TO_COMPANY_PRIMARY,
    DEAL_TO_CONTACT, HOSPITAL_PIPELINE, HOSPITAL_STAGES,
};
use crate::{RecordMap, SandboxError};

const KNOWN_OBJECTS: [&str; 8] = [
    "User",
    "Account",
    "Contact",
    "Lead",
    "Opportunity",
    "OpportunityContactRole",
    "Task",
    "Event",
];

const AUDIT_FIELDS: [&str; 6] = [
    "Id",
    "IsDeleted",
    "CreatedDate",
    "LastModifiedDate",
    "SystemModstamp",
    "attributes",
];

/// Salesforce fields each seeded object accepts, beyond the audit fields.
fn accepted_fields(object: &str) -> &'static [&'static str] {
    match object {
        "User" => &["Name", "Email", "IsActive", "Territory__c"],
        "Account" => &[
            "Name",
            "Type",
            "ParentId",
            "OwnerId",
            "BillingCity",
            "BillingState",
            "CMS_Certification_Number__c",
            "Hospital_Type__c",
            "Hospital_Ownership__c",
            "Emergency_Services__c",
            "CMS_Overall_Rating__c",
            "Hip_Knee_Discharges__c",
            "CABG_Discharges__c",
            "AMI_Discharges__c",
            "HF_Discharges__c",
            "PN_Discharges__c",
            "COPD_Discharges__c",
            "Incumbent_Competitor__c",
        ],
        "Contact" => &[
            "AccountId",
            "OwnerId",
            "FirstName",
            "LastName",
            "Name",
            "Title",
            "Email",
            "Buying_Role__c",
            "Specialty__c",
        ],
        "Lead" => &[
            "OwnerId",
            "FirstName",
            "LastName",
            "Name",
            "Company",
            "Title",
            "Email",
            "State",
            "Status",
            "LeadSource",
            "Buying_Role__c",
            "IsConverted",
            "ConvertedDate",
            "ConvertedAccountId",
            "ConvertedContactId",
            "ConvertedOpportunityId",
        ],
        "Opportunity" => &[
            "AccountId",
            "OwnerId",
            "Name",
            "StageName",
            "IsClosed",
            "IsWon",
            "Amount",
            "CloseDate",
        ],
        "OpportunityContactRole" => &["OpportunityId", "ContactId", "Role", "IsPrimary"],
        "Task" => &[
            "WhoId",
            "WhatId",
            "OwnerId",
            "Subject",
            "Type",
            "ActivityDate",
            "Status",
            "Priority",
            "Description",
        ],
        "Event" => &[
            "WhoId",
            "WhatId",
            "OwnerId",
            "Subject",
            "Type",
            "StartDateTime",
            "EndDateTime",
        ],
        _ => &[],
    }
}

/// One Salesforce record being converted, with its object name and id for error messages.
struct Source<'a> {
    object: &'a str,
    id: String,
    record: &'a RecordMap,
}

impl<'a> Source<'a> {
    fn new(object: &'a str, index: usize, record: &'a RecordMap) -> Result<Self, SandboxError> {
        let id = record
            .get("Id")
            .and_then(Json::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| SandboxError::MissingId {
                object: object.to_string(),
                index,
            })?
            .to_string();
        let accepted = accepted_fields(object);
        for field in record.keys() {
            if !AUDIT_FIELDS.contains(&field.as_str()) && !accepted.contains(&field.as_str()) {
                return Err(SandboxError::UnknownField {
                    object: object.to_string(),
                    id,
                    field: field.clone(),
                });
            }
        }
        Ok(Source { object, id, record })
    }

    fn invalid(&self, field: &str, value: &Json, expected: &str) -> SandboxError {
        SandboxError::InvalidValue {
            object: self.object.to_string(),
            id: self.id.clone(),
            field: field.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }

    /// Returns a field as HubSpot property text: strings as they are, numbers without a
    /// trailing `.0`, booleans `true`/`false`; `None` for null or a missing field.
    fn text(&self, field: &str) -> Option<String> {
        match self.record.get(field)? {
            Json::Null => None,
            Json::String(text) => Some(text.clone()),
            Json::Bool(flag) => Some(flag.to_string()),
            Json::Number(number) => Some(match number.as_f64() {
                Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
                _ => number.to_string(),
            }),
            other => Some(other.to_string()),
        }
    }

    fn flag(&self, field: &str) -> Result<bool, SandboxError> {
        match self.record.get(field) {
            None | Some(Json::Null) => Ok(false),
            Some(Json::Bool(flag)) => Ok(*flag),
            Some(other) => Err(self.invalid(field, other, "a boolean")),
        }
    }

    /// Returns a date or datetime field as epoch milliseconds.
    fn time(&self, field: &str) -> Result<Option<i64>, SandboxError> {
        match self.record.get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(text)) => parse_time(text).map(Some).ok_or_else(|| {
                self.invalid(
                    field,
                    &Json::String(text.clone()),
                    "an RFC 3339 datetime or a YYYY-MM-DD date",
                )
            }),
            Some(other) => Err(self.invalid(field, other, "a datetime string")),
        }
    }

    /// Returns (created, modified) epoch milliseconds: CreatedDate (now when absent) and the
    /// later of LastModifiedDate and SystemModstamp (CreatedDate when both are absent).
    fn audit(&self) -> Result<(i64, i64), SandboxError> {
        let created = self.time("CreatedDate")?.unwrap_or_else(now_ms);
        let modified = [self.time("LastModifiedDate")?, self.time("SystemModstamp")?]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(created);
        Ok((created, modified.max(created)))
    }
}

/// Properties under construction; empty values are left out.
struct Properties(HashMap<String, String>);

impl Default for Properties {
    /// Reserves room for a seeded record's usual number of properties, which keeps rehashing
    /// out of seeding the full demo world.
    fn default() -> Self {
        Properties(HashMap::with_capacity(14))
    }
}

impl Properties {
    fn set(&mut self, name: &str, value: Option<String>) {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.0.insert(name.to_string(), value);
        }
    }
}

/// State of one seeding run.
struct Seeder<'p> {
    portal: &'p mut Portal,
}

impl Seeder<'_> {
    fn owner(&self, source: &Source<'_>) -> Result<Option<String>, SandboxError> {
        let Some(user) = source.text("OwnerId") else {
            return Ok(None);
        };
        match self.portal.owner_map.get(&user) {
            Some(owner) => Ok(Some(owner.to_string())),
            None => Err(source.invalid("OwnerId", &Json::String(user), "the Id of a seeded User")),
        }
    }

    /// Resolves a reference field to a seeded record, or `None` when the field is empty.
    fn reference(
        &self,
        source: &Source<'_>,
        field: &str,
        expected: &[ObjectType],
    ) -> Result<Option<RecordKey>, SandboxError> {
        let Some(id) = source.text(field) else {
            return Ok(None);
        };
        match self.portal.id_map.get(&id) {
            Some(key) if expected.contains(&key.0) => Ok(Some(*key)),
            _ => {
                let names: Vec<&str> = expected.iter().map(|o| o.singular()).collect();
                let expected = format!(
                    "the Id of a seeded record that becomes a HubSpot {}",
                    names.join(" or ")
                );
                Err(source.invalid(field, &Json::String(id), &expected))
            }
        }
    }

    fn insert(
        &mut self,
        source: &Source<'_>,
        object: ObjectType,
        properties: Properties,
    ) -> Result<u64, SandboxError> {
        if self.portal.id_map.contains_key(&source.id) {
            return Err(SandboxError::DuplicateId {
                object: source.object.to_string(),
                id: source.id.clone(),
            });
        }
        let (created, modified) = source.audit()?;
        let id = self.portal.insert(object, properties.0, created, modified);
        if source.flag("IsDeleted")? {
            if let Some(record) = self.portal.records_mut(object).get_mut(&id) {
                record.archived_at = Some(modified);
            }
        }
        self.portal.id_map.insert(source.id.clone(), (object, id));
        Ok(id)
    }
}

/// Seeds `portal` from Salesforce-shaped records keyed by object name.
pub(crate) fn seed(
    portal: &mut Portal,
    records: &BTreeMap<String, Vec<RecordMap>>,
) -> Result<(), SandboxError> {
    for object in records.keys() {
        if !KNOWN_OBJECTS.contains(&object.as_str()) {
            return Err(SandboxError::UnknownObject {
                object: object.clone(),
                known: KNOWN_OBJECTS.join(", "),
            });
        }
    }
    let sources = |object: &'static str| -> Result<Vec<Source<'_>>, SandboxError> {
        records
            .get(object)
            .map(|rows| {
                rows.iter()
                    .enumerate()
                    .map(|(index, record)| Source::new(object, index, record))
                    .collect()
            })
            .unwrap_or_else(|| Ok(Vec::new()))
    };
    let mut seeder = Seeder { portal };
    seed_users(&mut seeder, &sources("User")?)?;
    seed_accounts(&mut seeder, &sources("Account")?)?;
    let leads = sources("Lead")?;
    let contacts = sources("Contact")?;
    let pending_deals = seed_people(&mut seeder, &contacts, &leads)?;
    seed_deals(&mut seeder, &sources("Opportunity")?)?;
    let leads_by_id: HashMap<&str, &Source<'_>> =
        leads.iter().map(|lead| (lead.id.as_str(), lead)).collect();
    for (contact, source) in pending_deals {
        let Some(lead) = leads_by_id.get(source.as_str()) else {
            continue;
        };
        if let Some(deal) =
            seeder.reference(lead, "ConvertedOpportunityId", &[ObjectType::Deals])?
        {
            seeder.portal.associate(deal, contact, DEAL_TO_CONTACT);
        }
    }
    seed_roles(&mut seeder, &sources("OpportunityContactRole")?)?;
    seed_activities(&mut seeder, &sources("Task")?, false)?;
    seed_activities(&mut seeder, &sources("Event")?, true)?;
    Ok(())
}

fn seed_users(seeder: &mut Seeder<'_>, users: &[Source<'_>]) -> Result<(), SandboxError> {
    for (index, user) in users.iter().enumerate() {
        if seeder.portal.owner_map.contains_key(&user.id) {
            return Err(SandboxError::DuplicateId {
                object: "User".into(),
                id: user.id.clone(),
            });
        }
        let (created, modified) = user.audit()?;
        let name = user.text("Name").unwrap_or_default();
        let (first, last) = name.split_once(' ').unwrap_or((name.as_str(), ""));
        let id = 41_000_001 + index as u64;
        seeder.portal.owners.push(Owner {
            id,
            user_id: 9_100_001 + index as u64,
            email: user.text("Email").unwrap_or_default(),
            first_name: first.to_string(),
            last_name: last.to_string(),
            created_at: created,
            updated_at: modified,
            archived: !user.flag("IsActive")?,
        });
        seeder.portal.owner_map.insert(user.id.clone(), id);
    }
    Ok(())
}

fn seed_accounts(seeder: &mut Seeder<'_>, accounts: &[Source<'_>]) -> Result<(), SandboxError> {
    let fields = [
        ("Name", "name"),
        ("BillingCity", "city"),
        ("BillingState", "state"),
        ("CMS_Certification_Number__c", "cms_certification_number"),
        ("Hospital_Type__c", "hospital_type"),
        ("Hospital_Ownership__c", "hospital_ownership"),
        ("Emergency_Services__c", "emergency_services"),
        ("CMS_Overall_Rating__c", "cms_overall_rating"),
        ("Hip_Knee_Discharges__c", "hip_knee_discharges"),
        ("CABG_Discharges__c", "cabg_discharges"),
        ("AMI_Discharges__c", "ami_discharges"),
        ("HF_Discharges__c", "hf_discharges"),
        ("PN_Discharges__c", "pn_discharges"),
        ("COPD_Discharges__c", "copd_discharges"),
        ("Incumbent_Competitor__c", "incumbent_competitor"),
    ];
    for account in accounts {
        let mut properties = Properties::default();
        for (field, property) in fields {
            properties.set(property, account.text(field));
        }
        properties.set("hubspot_owner_id", seeder.owner(account)?);
        seeder.insert(account, ObjectType::Companies, properties)?;
    }
    for account in accounts {
        let companies = [ObjectType::Companies];
        let child = seeder.reference(account, "Id", &companies)?;
        let parent = seeder.reference(account, "ParentId", &companies)?;
        if let (Some(child), Some(parent)) = (child, parent) {
            seeder.portal.associate(child, parent, CHILD_TO_PARENT);
        }
    }
    Ok(())
}

/// Properties of a Salesforce Contact or Lead that map one to one.
fn person_properties(
    seeder: &Seeder<'_>,
    source: &Source<'_>,
    properties: &mut Properties,
) -> Result<(), SandboxError> {
    let fields = [
        ("FirstName", "firstname"),
        ("LastName", "lastname"),
        ("Email", "email"),
        ("Title", "jobtitle"),
        ("Buying_Role__c", "buying_role"),
        ("Specialty__c", "specialty"),
        ("Company", "company"),
        ("State", "state"),
        ("LeadSource", "lead_source"),
    ];
    for (field, property) in fields {
        properties.set(property, source.text(field));
    }
    properties.set("hubspot_owner_id", seeder.owner(source)?);
    Ok(())
}

fn associate_company(seeder: &mut Seeder<'_>, contact: RecordKey, company: Option<RecordKey>) {
    if let Some(company) = company {
        let portal = &mut seeder.portal;
        portal.associate(contact, company, CONTACT_TO_COMPANY_PRIMARY);
        portal.associate(contact, company, CONTACT_TO_COMPANY);
    }
}

/// Seeds contacts and leads. A converted lead and its converted contact become one HubSpot
/// contact. Returns (contact, lead id) pairs whose deal association waits for the deals.
fn seed_people(
    seeder: &mut Seeder<'_>,
    contacts: &[Source<'_>],
    leads: &[Source<'_>],
) -> Result<Vec<(RecordKey, String)>, SandboxError> {
    let mut converted: HashMap<String, &Source<'_>> = HashMap::new();
    for lead in leads {
        if lead.flag("IsConverted")? {
            if let Some(contact) = lead.text("ConvertedContactId") {
                converted.insert(contact, lead);
            }
        }
    }
    let companies = [ObjectType::Companies];
    let mut merged: HashSet<String> = HashSet::new();
    for contact in contacts {
        if converted.contains_key(&contact.id) {
            continue;
        }
        let mut properties = Properties::default();
        person_properties(seeder, contact, &mut properties)?;
        // NOTE: contacts that never were leads get the `other` lifecycle stage, so that only
        // former leads carry `hs_lifecyclestage_lead_date`. HubSpot itself would default a
        // new contact to `lead`.
        properties.set("lifecyclestage", Some("other".into()));
        properties.set(
            "hs_lifecyclestage_other_date",
            Some(iso(contact.audit()?.0)),
        );
        let id = seeder.insert(contact, ObjectType::Contacts, properties)?;
        let company = seeder.reference(contact, "AccountId", &companies)?;
        associate_company(seeder, (ObjectType::Contacts, id), company);
    }

    let by_id: HashMap<&str, &Source<'_>> = contacts.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut pending = Vec::new();
    for lead in leads {
        let (lead_created, lead_modified) = lead.audit()?;
        let mut properties = Properties::default();
        person_properties(seeder, lead, &mut properties)?;
        properties.set("hs_lifecyclestage_lead_date", Some(iso(lead_created)));
        let mut stage = "lead";
        let contact = lead
            .text("ConvertedContactId")
            .filter(|_| lead.flag("IsConverted").unwrap_or(false))
            .map(|id| {
                by_id.get(id.as_str()).copied().ok_or_else(|| {
                    lead.invalid(
                        "ConvertedContactId",
                        &Json::String(id),
                        "the Id of a seeded Contact",
                    )
                })
            })
            .transpose()?;
        let mut modified = lead_modified;
        if let Some(contact) = contact {
            // The converted contact's values win over the lead's where both have one.
            person_properties(seeder, contact, &mut properties)?;
            modified = modified.max(contact.audit()?.1);
            let converted_at = lead.time("ConvertedDate")?.unwrap_or(modified);
            properties.set(
                "hs_lifecyclestage_salesqualifiedlead_date",
                Some(iso(converted_at)),
            );
            stage = "salesqualifiedlead";
            if lead.text("ConvertedOpportunityId").is_some() {
                stage = "opportunity";
                properties.set(
                    "hs_lifecyclestage_opportunity_date",
                    Some(iso(converted_at)),
                );
            }
        }
        properties.set("lifecyclestage", Some(stage.into()));
        let id = seeder.insert(lead, ObjectType::Contacts, properties)?;
        let key = (ObjectType::Contacts, id);
        seeder.portal.touch(ObjectType::Contacts, id, modified);
        if let Some(contact) = contact {
            if !merged.insert(contact.id.clone()) {
                return Err(SandboxError::DuplicateId {
                    object: "Contact".into(),
                    id: contact.id.clone(),
                });
            }
            seeder.portal.id_map.insert(contact.id.clone(), key);
            let company = match seeder.reference(lead, "ConvertedAccountId", &companies)? {
                Some(company) => Some(company),
                None => seeder.reference(contact, "AccountId", &companies)?,
            };
            associate_company(seeder, key, company);
            if lead.text("ConvertedOpportunityId").is_some() {
                pending.push((key, lead.id.clone()));
            }
        }
    }
    Ok(pending)
}

fn seed_deals(seeder: &mut Seeder<'_>, deals: &[Source<'_>]) -> Result<(), SandboxError> {
    for deal in deals {
        let mut properties = Properties::default();
        properties.set("dealname", deal.text("Name"));
        properties.set("amount", deal.text("Amount"));
        properties.set("closedate", deal.time("CloseDate")?.map(iso));
        properties.set("hubspot_owner_id", seeder.owner(deal)?);
        properties.set("pipeline", Some(HOSPITAL_PIPELINE.into()));
        let stage_name = deal.text("StageName").unwrap_or_default();
        let Some((stage, _, closed, probability)) = HOSPITAL_STAGES
            .iter()
            .find(|(_, label, _, _)| *label == stage_name)
        else {
            let names: Vec<&str> = HOSPITAL_STAGES.iter().map(|s| s.1).collect();
            return Err(deal.invalid(
                "StageName",
                &Json::String(stage_name),
                &format!("one of {}", names.join(", ")),
            ));
        };
        properties.set("dealstage", Some(stage.to_string()));
        properties.set("hs_is_closed", Some(closed.to_string()));
        let won = *closed && *probability >= 1.0;
        properties.set("hs_is_closed_won", Some(won.to_string()));
        let id = seeder.insert(deal, ObjectType::Deals, properties)?;
        if let Some(company) = seeder.reference(deal, "AccountId", &[ObjectType::Companies])? {
            let key = (ObjectType::Deals, id);
            seeder
                .portal
                .associate(key, company, DEAL_TO_COMPANY_PRIMARY);
            seeder.portal.associate(key, company, DEAL_TO_COMPANY);
        }
    }
    Ok(())
}

fn seed_roles(seeder: &mut Seeder<'_>, roles: &[Source<'_>]) -> Result<(), SandboxError> {
    for role in roles {
        let deal = seeder.reference(role, "OpportunityId", &[ObjectType::Deals])?;
        let contact = seeder.reference(role, "ContactId", &[ObjectType::Contacts])?;
        let (Some(deal), Some(contact)) = (deal, contact) else {
            continue;
        };
        seeder.portal.associate(deal, contact, DEAL_TO_CONTACT);
        if let Some(label) = role.text("Role") {
            let type_id = seeder
                .portal
                .association_type(ObjectType::Deals, ObjectType::Contacts, Some(&label))
                .map(|t| t.type_id)
                .ok_or_else(|| {
                    role.invalid(
                        "Role",
                        &Json::String(label.clone()),
                        &format!("one of {}", BUYING_ROLES.join(", ")),
                    )
                })?;
            seeder.portal.associate(deal, contact, type_id);
        }
    }
    Ok(())
}

/// Seeds Salesforce tasks (as calls, emails or tasks by `Type`) or events (as meetings).
fn seed_activities(
    seeder: &mut Seeder<'_>,
    activities: &[Source<'_>],
    events: bool,
) -> Result<(), SandboxError> {
    for activity in activities {
        let subject = activity.text("Subject");
        let mut properties = Properties::default();
        properties.set("hubspot_owner_id", seeder.owner(activity)?);
        let object = if events {
            let start = activity.time("StartDateTime")?;
            properties.set("hs_meeting_title", subject);
            properties.set("hs_meeting_start_time", start.map(iso));
            properties.set(
                "hs_meeting_end_time",
                activity.time("EndDateTime")?.map(iso),
            );
            properties.set("hs_meeting_outcome", Some("COMPLETED".into()));
            properties.set("hs_timestamp", start.map(iso));
            ObjectType::Meetings
        } else {
            let due = activity.time("ActivityDate")?.map(iso);
            properties.set("hs_timestamp", due);
            match activity.text("Type").as_deref() {
                Some("Call") => {
                    properties.set("hs_call_title", subject);
                    properties.set("hs_call_status", Some("COMPLETED".into()));
                    properties.set("hs_call_direction", Some("OUTBOUND".into()));
                    ObjectType::Calls
                }
                Some("Email") => {
                    properties.set("hs_email_subject", subject);
                    properties.set("hs_email_status", Some("SENT".into()));
                    properties.set("hs_email_direction", Some("EMAIL".into()));
                    ObjectType::Emails
                }
                _ => {
                    properties.set("hs_task_subject", subject);
                    properties.set("hs_task_body", activity.text("Description"));
                    let done = activity.text("Status").as_deref() == Some("Completed");
                    let status = if done { "COMPLETED" } else { "NOT_STARTED" };
                    properties.set("hs_task_status", Some(status.into()));
                    let priority = match activity.text("Priority").as_deref() {
                        Some("High") => "HIGH",
                        Some("Low") => "LOW",
                        _ => "MEDIUM",
                    };
                    properties.set("hs_task_priority", Some(priority.into()));
                    properties.set("hs_task_type", Some("TODO".into()));
                    ObjectType::Tasks
                }
            }
        };
        if !properties.0.contains_key("hs_timestamp") {
            properties.set("hs_timestamp", Some(iso(activity.audit()?.0)));
        }
        let id = seeder.insert(activity, object, properties)?;
        let key = (object, id);
        let who_contact = seeder.reference(activity, "WhoId", &[ObjectType::Contacts])?;
        let what_record = seeder.reference(
            activity,
            "WhatId",
            &[ObjectType::Companies, ObjectType::Deals],
        )?;
        for target in [who_contact, what_record].into_iter().flatten() {
            let type_id = seeder
                .portal
                .association_type(object, target.0, None)
                .map(|t| t.type_id);
            if let Some(type_id) = type_id {
                seeder.portal.associate(key, target, type_id);
            }
        }
    }
    Ok(())
}

/// Adds `count` minimal contacts whose creation and modification time is `at`, and returns
/// their ids. They have a name and an email and no associations.
pub(crate) fn add_synthetic_contacts(portal: &mut Portal, count: usize, at: i64) -> Vec<u64> {
    (0..count)
        .map(|n| {
            let mut properties = HashMap::new();
            properties.insert("firstname".to_string(), "Synthetic".to_string());
            properties.insert("lastname".to_string(), format!("Contact {n}"));
            properties.insert("email".to_string(), format!("synthetic.{n}@example.test"));
            properties.insert("lifecyclestage".to_string(), "other".to_string());
            portal.insert(ObjectType::Contacts, properties, at, at)
        })
        .collect()
}
