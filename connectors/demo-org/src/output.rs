//! Conversion of the simulated org into Salesforce-shaped JSON records with real-looking ids.
//!
//! Ids are handed out per object in `CreatedDate` order, so sorting by `Id` also sorts by
//! creation, as it roughly does in a real org.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::ids::record_id;
use crate::sim::{ActivityKind, Audit, Org, Who};
use crate::RecordMap;

/// `Buying_Role__c` values, indexed by `Contact::role` and `Lead::role`.
pub(crate) const BUYING_ROLES: [&str; 5] = [
    "Surgeon Champion",
    "Administrator",
    "Materials Manager",
    "Finance",
    "Patient Safety",
];

/// Formats a timestamp as Salesforce REST does in this project: `2024-05-01T12:00:03.000Z`.
pub(crate) fn timestamp(time: DateTime<Utc>) -> Value {
    Value::String(time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn date(day: NaiveDate) -> Value {
    Value::String(day.format("%Y-%m-%d").to_string())
}

fn text(value: &str) -> Value {
    Value::String(value.to_string())
}

fn optional_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, text)
}

fn optional_number(value: Option<f64>) -> Value {
    value.map_or(Value::Null, Value::from)
}

/// Ids of one object: `ids[i]` is the id of entity `i`, and `order` lists entity indices by
/// creation time (ties by index).
struct IdPlan {
    ids: Vec<String>,
    order: Vec<usize>,
}

fn plan_ids(key_prefix: &str, created: &[DateTime<Utc>]) -> IdPlan {
    let mut order: Vec<usize> = (0..created.len()).collect();
    order.sort_by_key(|&index| (created[index], index));
    let mut ids = vec![String::new(); created.len()];
    for (rank, &index) in order.iter().enumerate() {
        ids[index] = record_id(key_prefix, rank as u64 + 1);
    }
    IdPlan { ids, order }
}

fn base(id: &str, audit: &Audit) -> RecordMap {
    let mut record = RecordMap::new();
    record.insert("Id".into(), text(id));
    record.insert("IsDeleted".into(), Value::Bool(false));
    record.insert("CreatedDate".into(), timestamp(audit.created));
    record.insert("LastModifiedDate".into(), timestamp(audit.modified));
    record.insert("SystemModstamp".into(), timestamp(audit.stamp));
    record
}

/// Records by object name, P(won) by opportunity id and P(convert) by lead id.
pub(crate) struct Output {
    pub records: BTreeMap<String, Vec<RecordMap>>,
    pub win_probability: BTreeMap<String, f64>,
    pub conversion_probability: BTreeMap<String, f64>,
}

/// Turns the simulated org into records. With `ccn_only`, hospital accounts keep the CCN as
/// their only CMS value: the fields in [`CMS_DETAIL_FIELDS`] are null.
pub(crate) fn records(org: &Org, ccn_only: bool) -> Output {
    let users = plan_ids(
        "005",
        &org.reps
            .iter()
            .map(|rep| rep.audit.created)
            .collect::<Vec<_>>(),
    );
    let account_created: Vec<DateTime<Utc>> = org
        .systems
        .iter()
        .map(|system| system.audit.created)
        .chain(org.hospitals.iter().map(|hospital| hospital.audit.created))
        .collect();
    let accounts = plan_ids("001", &account_created);
    let system_count = org.systems.len();
    let contacts = plan_ids(
        "003",
        &org.contacts
            .iter()
            .map(|c| c.audit.created)
            .collect::<Vec<_>>(),
    );
    let leads = plan_ids(
        "00Q",
        &org.leads
            .iter()
            .map(|lead| lead.audit.created)
            .collect::<Vec<_>>(),
    );
    let deals = plan_ids(
        "006",
        &org.deals
            .iter()
            .map(|deal| deal.audit.created)
            .collect::<Vec<_>>(),
    );
    let roles = plan_ids(
        "00K",
        &org.contact_roles
            .iter()
            .map(|r| r.audit.created)
            .collect::<Vec<_>>(),
    );

    let mut records = BTreeMap::new();

    let user_records = users
        .order
        .iter()
        .map(|&index| {
            let rep = &org.reps[index];
            let mut record = base(&users.ids[index], &rep.audit);
            record.insert(
                "Name".into(),
                Value::String(format!("{} {}", rep.first_name, rep.last_name)),
            );
            record.insert("Email".into(), text(&rep.email));
            record.insert("IsActive".into(), Value::Bool(rep.active));
            let territory = (!rep.territory.is_empty()).then(|| rep.territory.join(";"));
            record.insert("Territory__c".into(), optional_text(territory.as_deref()));
            record
        })
        .collect();
    records.insert("User".to_string(), user_records);

    let account_records = accounts
        .order
        .iter()
        .map(|&index| {
            if index < system_count {
                let system = &org.systems[index];
                let mut record = base(&accounts.ids[index], &system.audit);
                record.insert("Name".into(), text(&system.name));
                record.insert("Type".into(), text("Health System"));
                record.insert("ParentId".into(), Value::Null);
                record.insert("OwnerId".into(), text(&users.ids[system.owner]));
                record.insert("BillingCity".into(), Value::Null);
                record.insert("BillingState".into(), text(&system.state));
                for field in HOSPITAL_ONLY_FIELDS {
                    record.insert(field.into(), Value::Null);
                }
                record
            } else {
                let hospital = &org.hospitals[index - system_count];
                let cms = &hospital.cms;
                let discharges = &cms.discharges;
                let mut record = base(&accounts.ids[index], &hospital.audit);
                record.insert("Name".into(), text(&cms.name));
                record.insert("Type".into(), text("Hospital"));
                let parent = hospital.parent.map(|system| accounts.ids[system].as_str());
                record.insert("ParentId".into(), optional_text(parent));
                record.insert("OwnerId".into(), text(&users.ids[hospital.owner]));
                record.insert("BillingCity".into(), optional_text(cms.city.as_deref()));
                record.insert("BillingState".into(), text(&cms.state));
                record.insert("CMS_Certification_Number__c".into(), text(&cms.ccn));
                record.insert("Hospital_Type__c".into(), text(&cms.hospital_type));
                record.insert(
                    "Hospital_Ownership__c".into(),
                    optional_text(cms.ownership.as_deref()),
                );
                record.insert(
                    "Emergency_Services__c".into(),
                    cms.emergency_services.map_or(Value::Null, Value::Bool),
                );
                record.insert(
                    "CMS_Overall_Rating__c".into(),
                    optional_number(cms.rating.map(f64::from)),
                );
                let counts = [
                    ("Hip_Knee_Discharges__c", discharges.hip_knee),
                    ("CABG_Discharges__c", discharges.cabg),
                    ("AMI_Discharges__c", discharges.ami),
                    ("HF_Discharges__c", discharges.heart_failure),
                    ("PN_Discharges__c", discharges.pneumonia),
                    ("COPD_Discharges__c", discharges.copd),
                ];
                for (field, count) in counts {
                    record.insert(field.into(), optional_number(count.map(f64::from)));
                }
                if ccn_only {
                    for field in CMS_DETAIL_FIELDS {
                        record.insert(field.into(), Value::Null);
                    }
                }
                record.insert(
                    "Incumbent_Competitor__c".into(),
                    optional_text(hospital.competitor),
                );
                record
            }
        })
        .collect();
    records.insert("Account".to_string(), account_records);

    let contact_records = contacts
        .order
        .iter()
        .map(|&index| {
            let contact = &org.contacts[index];
            let hospital = &org.hospitals[contact.hospital];
            let mut record = base(&contacts.ids[index], &contact.audit);
            record.insert(
                "AccountId".into(),
                text(&accounts.ids[system_count + contact.hospital]),
            );
            record.insert("OwnerId".into(), text(&users.ids[hospital.owner]));
            record.insert("FirstName".into(), text(contact.first_name));
            record.insert("LastName".into(), text(contact.last_name));
            // Salesforce derives the read-only Name from the two parts; exports carry it.
            let name = format!("{} {}", contact.first_name, contact.last_name);
            record.insert("Name".into(), Value::String(name));
            record.insert("Title".into(), text(contact.title));
            record.insert("Email".into(), text(&contact.email));
            record.insert("Buying_Role__c".into(), text(BUYING_ROLES[contact.role]));
            record.insert("Specialty__c".into(), optional_text(contact.specialty));
            record
        })
        .collect();
    records.insert("Contact".to_string(), contact_records);

    let mut conversion_probability = BTreeMap::new();
    let lead_records = leads
        .order
        .iter()
        .map(|&index| {
            let lead = &org.leads[index];
            let id = &leads.ids[index];
            conversion_probability.insert(id.clone(), lead.probability);
            let mut record = base(id, &lead.audit);
            record.insert("OwnerId".into(), text(&users.ids[lead.owner]));
            record.insert("FirstName".into(), text(lead.first_name));
            record.insert("LastName".into(), text(lead.last_name));
            let name = format!("{} {}", lead.first_name, lead.last_name);
            record.insert("Name".into(), Value::String(name));
            record.insert("Company".into(), text(&lead.company));
            record.insert("Title".into(), text(lead.title));
            record.insert("Email".into(), text(&lead.email));
            record.insert("State".into(), text(&lead.state));
            record.insert("Status".into(), text(lead.status));
            record.insert("LeadSource".into(), text(lead.source));
            record.insert("Buying_Role__c".into(), text(BUYING_ROLES[lead.role]));
            let converted = lead.conversion.as_ref();
            record.insert("IsConverted".into(), Value::Bool(converted.is_some()));
            let converted_date = converted.map(|conversion| conversion.at.date_naive());
            record.insert(
                "ConvertedDate".into(),
                converted_date.map_or(Value::Null, date),
            );
            let account = converted
                .and(lead.hospital)
                .map(|hospital| accounts.ids[system_count + hospital].as_str());
            record.insert("ConvertedAccountId".into(), optional_text(account));
            let contact = converted.map(|conversion| contacts.ids[conversion.contact].as_str());
            record.insert("ConvertedContactId".into(), optional_text(contact));
            let deal = converted
                .and_then(|conversion| conversion.deal)
                .map(|deal| deals.ids[deal].as_str());
            record.insert("ConvertedOpportunityId".into(), optional_text(deal));
            record
        })
        .collect();
    records.insert("Lead".to_string(), lead_records);

    let mut win_probability = BTreeMap::new();
    let deal_records = deals
        .order
        .iter()
        .map(|&index| {
            let deal = &org.deals[index];
            let id = &deals.ids[index];
            win_probability.insert(id.clone(), deal.probability);
            let mut record = base(id, &deal.audit);
            record.insert(
                "AccountId".into(),
                text(&accounts.ids[system_count + deal.hospital]),
            );
            record.insert("OwnerId".into(), text(&users.ids[deal.owner]));
            record.insert("Name".into(), text(&deal.name));
            record.insert("StageName".into(), text(deal.stage));
            record.insert("IsClosed".into(), Value::Bool(deal.is_closed));
            record.insert("IsWon".into(), Value::Bool(deal.is_won));
            record.insert("Amount".into(), Value::from(deal.amount));
            record.insert("CloseDate".into(), date(deal.close_date));
            record
        })
        .collect();
    records.insert("Opportunity".to_string(), deal_records);

    let role_records = roles
        .order
        .iter()
        .map(|&index| {
            let role = &org.contact_roles[index];
            let mut record = base(&roles.ids[index], &role.audit);
            record.insert("OpportunityId".into(), text(&deals.ids[role.deal]));
            record.insert("ContactId".into(), text(&contacts.ids[role.contact]));
            record.insert(
                "Role".into(),
                text(BUYING_ROLES[org.contacts[role.contact].role]),
            );
            record.insert("IsPrimary".into(), Value::Bool(role.is_primary));
            record
        })
        .collect();
    records.insert("OpportunityContactRole".to_string(), role_records);

    let people = People {
        users: &users.ids,
        hospitals: &accounts.ids[system_count..],
        contacts: &contacts.ids,
        leads: &leads.ids,
    };
    let (tasks, events) = activity_records(org, &people);
    records.insert("Task".to_string(), tasks);
    records.insert("Event".to_string(), events);

    Output {
        records,
        win_probability,
        conversion_probability,
    }
}

/// CMS values of a hospital account beyond its CCN: the fields that `ccn_only` leaves null.
pub(crate) const CMS_DETAIL_FIELDS: [&str; 10] = [
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
];

/// Account fields that only hospital accounts fill.
const HOSPITAL_ONLY_FIELDS: [&str; 12] = [
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
];

/// Ids that activity records point at, each list indexed like the simulated entities.
struct People<'a> {
    users: &'a [String],
    hospitals: &'a [String],
    contacts: &'a [String],
    leads: &'a [String],
}

fn activity_records(org: &Org, people: &People<'_>) -> (Vec<RecordMap>, Vec<RecordMap>) {
    let task_indices: Vec<usize> = (0..org.activities.len())
        .filter(|&i| org.activities[i].kind == ActivityKind::Task)
        .collect();
    let event_indices: Vec<usize> = (0..org.activities.len())
        .filter(|&i| org.activities[i].kind == ActivityKind::Event)
        .collect();
    let task_created: Vec<DateTime<Utc>> = task_indices
        .iter()
        .map(|&i| org.activities[i].audit.created)
        .collect();
    let event_created: Vec<DateTime<Utc>> = event_indices
        .iter()
        .map(|&i| org.activities[i].audit.created)
        .collect();
    let task_ids = plan_ids("00T", &task_created);
    let event_ids = plan_ids("00U", &event_created);

    let common = |id: &str, index: usize| {
        let activity = &org.activities[index];
        let mut record = base(id, &activity.audit);
        match activity.who {
            Who::Contact { hospital, contact } => {
                record.insert("WhoId".into(), text(&people.contacts[contact]));
                record.insert("WhatId".into(), text(&people.hospitals[hospital]));
            }
            Who::Lead(lead) => {
                record.insert("WhoId".into(), text(&people.leads[lead]));
                record.insert("WhatId".into(), Value::Null);
            }
        }
        record.insert("OwnerId".into(), text(&people.users[activity.owner]));
        record.insert("Subject".into(), text(activity.subject));
        record.insert("Type".into(), text(activity.activity_type));
        record
    };

    let tasks = task_ids
        .order
        .iter()
        .map(|&position| {
            let index = task_indices[position];
            let activity = &org.activities[index];
            let mut record = common(&task_ids.ids[position], index);
            record.insert("ActivityDate".into(), date(activity.date));
            record.insert("Status".into(), text("Completed"));
            record.insert("Priority".into(), text(activity.priority));
            record.insert("Description".into(), Value::Null);
            record
        })
        .collect();
    let events = event_ids
        .order
        .iter()
        .map(|&position| {
            let index = event_indices[position];
            let activity = &org.activities[index];
            let mut record = common(&event_ids.ids[position], index);
            record.insert("StartDateTime".into(), timestamp(activity.start));
            record.insert("EndDateTime".into(), timestamp(activity.end));
            record
        })
        .collect();
    (tasks, events)
}
