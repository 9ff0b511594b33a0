//! Checks of the generated inbound leads: their fields and company names, their activities,
//! their conversions, the conversion formula recomputed from the records, the oracle AUC, the
//! `ccn_only` option, and lead conversion in a running sandbox.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use leadscore_demo_org::truth::{self, LeadFeatures, LEAD_ENGAGEMENT_WINDOW_DAYS};
use leadscore_demo_org::{generate, DemoOptions, DemoOrg, RecordMap};
use leadscore_sandbox::{Sandbox, SandboxError, SandboxOptions};
use serde_json::{json, Value};

const SOURCES: [&str; 5] = [
    "Webinar",
    "Content Download",
    "Conference List",
    "Web Form",
    "Purchased List",
];
/// Age at which an unconverted lead is closed as not converted, in days.
const STALE_DAYS: i64 = 180;
/// Account fields that `ccn_only` leaves null.
const CMS_DETAIL_FIELDS: [&str; 10] = [
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

/// Returns the full default org, generated once per test binary.
fn full_org() -> &'static DemoOrg {
    static ORG: OnceLock<DemoOrg> = OnceLock::new();
    ORG.get_or_init(|| generate(&DemoOptions::default()).expect("the embedded CMS files generate"))
}

fn small_options(max_hospitals: usize) -> DemoOptions {
    DemoOptions {
        max_hospitals: Some(max_hospitals),
        ..DemoOptions::default()
    }
}

fn records<'a>(org: &'a DemoOrg, object: &str) -> &'a [RecordMap] {
    org.records.get(object).map_or(&[], Vec::as_slice)
}

fn by_id<'a>(org: &'a DemoOrg, object: &str) -> HashMap<&'a str, &'a RecordMap> {
    records(org, object)
        .iter()
        .map(|record| (text(record, "Id"), record))
        .collect()
}

fn text<'a>(record: &'a RecordMap, field: &str) -> &'a str {
    record
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{field} is not text in {record:?}"))
}

fn timestamp(record: &RecordMap, field: &str) -> DateTime<Utc> {
    let value = text(record, field);
    chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.3fZ")
        .map(|time| time.and_utc())
        .unwrap_or_else(|error| panic!("invalid timestamp {value}: {error}"))
}

fn date(record: &RecordMap, field: &str) -> NaiveDate {
    let value = text(record, field);
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .unwrap_or_else(|error| panic!("invalid date {value}: {error}"))
}

/// Returns the date an activity counts on: a Task's ActivityDate, an Event's StartDateTime date.
fn activity_date(record: &RecordMap) -> NaiveDate {
    if record.contains_key("ActivityDate") {
        date(record, "ActivityDate")
    } else {
        timestamp(record, "StartDateTime").date_naive()
    }
}

/// Returns the Tasks and Events of each lead, by lead id.
fn lead_activities(org: &DemoOrg) -> HashMap<&str, Vec<&RecordMap>> {
    let mut by_lead: HashMap<&str, Vec<&RecordMap>> = HashMap::new();
    for record in records(org, "Task").iter().chain(records(org, "Event")) {
        let who = text(record, "WhoId");
        if who.starts_with("00Q") {
            by_lead.entry(who).or_default().push(record);
        }
    }
    by_lead
}

/// Returns whether a lead was decided by `as_of` (converted, or unconverted and older than
/// 180 days), with its decision date and outcome.
fn decision(org: &DemoOrg, lead: &RecordMap) -> Option<(NaiveDate, bool)> {
    if lead["IsConverted"] == Value::Bool(true) {
        return Some((date(lead, "ConvertedDate"), true));
    }
    let created = timestamp(lead, "CreatedDate");
    (org.as_of - created > TimeDelta::days(STALE_DAYS))
        .then(|| ((created + TimeDelta::days(STALE_DAYS)).date_naive(), false))
}

/// Reduces a company or account name to a canonical form that undoes the variants people
/// type: case, punctuation, "Saint"/"St.", "and"/"&", a leading "The", a trailing "Inc" or
/// "LLC", and "Ctr" for "Center".
fn canonical(name: &str) -> String {
    let cleaned = name.replace(['\'', '.', ','], "");
    let mut words: Vec<String> = cleaned
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .filter(|word| word != "and")
        .map(|word| match word.as_str() {
            "saint" => "st".to_string(),
            "ctr" => "center".to_string(),
            _ => word,
        })
        .collect();
    if words.len() > 1 && words[0] == "the" {
        words.remove(0);
    }
    if words.len() > 1 && matches!(words.last().map(String::as_str), Some("inc" | "llc")) {
        words.pop();
    }
    words.join(" ")
}

#[test]
fn default_org_has_inbound_leads() {
    let org = full_org();
    let leads = records(org, "Lead");
    assert!(
        (6000..=9000).contains(&leads.len()),
        "{} leads",
        leads.len()
    );
    let lead_ids: HashSet<&str> = leads.iter().map(|lead| text(lead, "Id")).collect();
    let probability_ids: HashSet<&str> = org
        .conversion_probability
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(lead_ids, probability_ids);

    let users = by_id(org, "User");
    let history_start = org.as_of - TimeDelta::days(1096);
    let mut per_year = [0usize; 3];
    let mut clinic_leads = 0;
    for lead in leads {
        let id = text(lead, "Id");
        assert!(SOURCES.contains(&text(lead, "LeadSource")), "{lead:?}");
        for field in ["FirstName", "LastName", "Title", "Buying_Role__c", "Email"] {
            assert!(!text(lead, field).is_empty(), "{field} of {id}");
        }
        assert_eq!(text(lead, "State").len(), 2, "{lead:?}");
        assert!(users.contains_key(text(lead, "OwnerId")), "{lead:?}");
        let probability = org.conversion_probability[id];
        if probability == 0.0 {
            clinic_leads += 1;
            assert_eq!(lead["IsConverted"], Value::Bool(false), "{lead:?}");
        } else {
            assert!(
                probability > 0.0 && probability < 1.0,
                "{id}: {probability}"
            );
        }
        let created = timestamp(lead, "CreatedDate");
        assert!(created >= history_start, "{lead:?}");
        let year = ((created - history_start).num_days() / 366).clamp(0, 2) as usize;
        per_year[year] += 1;
    }
    assert!(
        (300..=400).contains(&clinic_leads),
        "{clinic_leads} clinic leads"
    );
    for (year, count) in per_year.iter().enumerate() {
        assert!(
            *count > leads.len() / 4,
            "year {year} of the history has only {count} leads"
        );
    }
}

#[test]
fn company_names_vary_like_typed_names() {
    let org = full_org();
    let mut exact_names: HashSet<(&str, &str)> = HashSet::new();
    let mut canonical_names: HashSet<(&str, String)> = HashSet::new();
    for account in records(org, "Account") {
        let (name, state) = (text(account, "Name"), text(account, "BillingState"));
        exact_names.insert((state, name));
        canonical_names.insert((state, canonical(name)));
        if let Some(city) = account["BillingCity"].as_str() {
            let with_city = format!("{} {}", canonical(name), canonical(city));
            canonical_names.insert((state, with_city));
        }
    }

    let hospital_leads: Vec<&RecordMap> = records(org, "Lead")
        .iter()
        .filter(|lead| org.conversion_probability[text(lead, "Id")] > 0.0)
        .collect();
    let (mut exact, mut recoverable) = (0, 0);
    for lead in &hospital_leads {
        let (company, state) = (text(lead, "Company"), text(lead, "State"));
        if exact_names.contains(&(state, company)) {
            exact += 1;
        }
        if canonical_names.contains(&(state, canonical(company))) {
            recoverable += 1;
        }
    }
    let total = hospital_leads.len() as f64;
    let exact_share = exact as f64 / total;
    let unmatched_share = 1.0 - recoverable as f64 / total;
    assert!(
        (0.45..=0.55).contains(&exact_share),
        "exact share {exact_share}"
    );
    assert!(
        (0.01..=0.06).contains(&unmatched_share),
        "unmatched share {unmatched_share}"
    );
}

#[test]
fn converted_leads_point_at_new_records() {
    let org = full_org();
    let today = org.as_of.date_naive();
    let accounts = by_id(org, "Account");
    let contacts = by_id(org, "Contact");
    let deals = by_id(org, "Opportunity");
    let mut primary_contact: HashMap<&str, &str> = HashMap::new();
    for role in records(org, "OpportunityContactRole") {
        if role["IsPrimary"] == Value::Bool(true) {
            primary_contact.insert(text(role, "OpportunityId"), text(role, "ContactId"));
        }
    }

    let (mut converted, mut with_deal) = (0, 0);
    for lead in records(org, "Lead") {
        let id = text(lead, "Id");
        let created = timestamp(lead, "CreatedDate");
        let status = text(lead, "Status");
        if lead["IsConverted"] != Value::Bool(true) {
            for field in [
                "ConvertedDate",
                "ConvertedAccountId",
                "ConvertedContactId",
                "ConvertedOpportunityId",
            ] {
                assert!(lead[field].is_null(), "{field} of unconverted {id}");
            }
            if org.as_of - created > TimeDelta::days(STALE_DAYS) {
                assert_eq!(status, "Closed - Not Converted", "{id}");
            } else {
                assert!(
                    ["Open - Not Contacted", "Working - Contacted"].contains(&status),
                    "{id}: {status}"
                );
            }
            continue;
        }
        converted += 1;
        assert_eq!(status, "Closed - Converted", "{id}");
        let converted_date = date(lead, "ConvertedDate");
        let delay = (converted_date - created.date_naive()).num_days();
        assert!(
            (15..=150).contains(&delay),
            "{id}: converted after {delay} days"
        );
        assert!(
            converted_date < today,
            "{id}: converted on {converted_date}"
        );
        assert_eq!(
            timestamp(lead, "LastModifiedDate").date_naive(),
            converted_date,
            "{id}: last edit is not the conversion"
        );

        let account_id = text(lead, "ConvertedAccountId");
        let account = accounts[account_id];
        assert_eq!(text(account, "Type"), "Hospital", "{id}");
        assert_eq!(text(account, "BillingState"), text(lead, "State"), "{id}");

        let contact = contacts[text(lead, "ConvertedContactId")];
        assert_eq!(text(contact, "AccountId"), account_id, "{id}");
        assert_eq!(
            timestamp(contact, "CreatedDate").date_naive(),
            converted_date,
            "{id}: contact not created at conversion"
        );
        for field in ["FirstName", "LastName", "Title", "Email", "Buying_Role__c"] {
            assert_eq!(text(contact, field), text(lead, field), "{field} of {id}");
        }

        if let Some(deal_id) = lead["ConvertedOpportunityId"].as_str() {
            with_deal += 1;
            let deal = deals[deal_id];
            assert_eq!(text(deal, "AccountId"), account_id, "{id}");
            assert_eq!(
                timestamp(deal, "CreatedDate").date_naive(),
                converted_date,
                "{id}: opportunity not created at conversion"
            );
            assert!(
                timestamp(deal, "CreatedDate") > timestamp(contact, "CreatedDate"),
                "{id}: opportunity created before its contact"
            );
            assert_eq!(
                primary_contact.get(deal_id),
                Some(&text(contact, "Id")),
                "{id}: the converted contact is not the primary role"
            );
            assert!(org.win_probability.contains_key(deal_id), "{deal_id}");
        }
    }
    let deal_share = with_deal as f64 / converted as f64;
    assert!(converted > 1000, "only {converted} converted leads");
    assert!(
        (0.35..=0.45).contains(&deal_share),
        "deal share {deal_share}"
    );
}

#[test]
fn lead_activities_follow_the_lead() {
    let org = full_org();
    let leads = by_id(org, "Lead");
    let users = by_id(org, "User");
    let by_lead = lead_activities(org);
    let (mut total, mut first_month, mut events) = (0, 0, 0);
    for (lead_id, activities) in &by_lead {
        let lead = leads[lead_id];
        let created = timestamp(lead, "CreatedDate");
        let converted = lead["ConvertedDate"]
            .as_str()
            .map(|_| date(lead, "ConvertedDate"));
        for activity in activities {
            total += 1;
            assert!(activity["WhatId"].is_null(), "{activity:?}");
            assert!(
                users.contains_key(text(activity, "OwnerId")),
                "{activity:?}"
            );
            assert!(
                timestamp(activity, "CreatedDate") > created,
                "{activity:?} was created before its lead"
            );
            let day = activity_date(activity);
            let age = (day - created.date_naive()).num_days();
            assert!(age >= 0, "{activity:?}");
            if let Some(converted) = converted {
                assert!(day < converted, "{activity:?} is after the conversion");
            }
            first_month += usize::from(age <= 30);
            events += usize::from(activity.contains_key("StartDateTime"));
        }
    }
    assert!(
        by_lead.len() > leads.len() / 2,
        "{} leads have activities",
        by_lead.len()
    );
    let first_month_share = first_month as f64 / total as f64;
    assert!(
        first_month_share > 0.8,
        "first-month share {first_month_share}"
    );
    assert!(events > 100, "only {events} lead events");
}

/// Recomputes the formula inputs of the hospital leads whose hospital the records identify:
/// converted leads through ConvertedAccountId, and leads whose Company is exactly the name of
/// an account that no other account of their state resembles. (Another hospital's name
/// variant can equal an account name, as "X - Catskills" written without punctuation.)
fn lead_features_from_records(org: &DemoOrg) -> BTreeMap<String, LeadFeatures> {
    let accounts = by_id(org, "Account");
    let mut named: HashMap<(&str, String), Vec<&str>> = HashMap::new();
    for account in records(org, "Account") {
        let key = (
            text(account, "BillingState"),
            canonical(text(account, "Name")),
        );
        named.entry(key).or_default().push(text(account, "Id"));
    }
    let by_lead = lead_activities(org);
    let mut features = BTreeMap::new();
    for lead in records(org, "Lead") {
        let id = text(lead, "Id");
        let account_id = match lead["ConvertedAccountId"].as_str() {
            Some(account) => account,
            None => {
                let company = text(lead, "Company");
                match named.get(&(text(lead, "State"), canonical(company))) {
                    Some(ids) if ids.len() == 1 && text(accounts[ids[0]], "Name") == company => {
                        ids[0]
                    }
                    _ => continue,
                }
            }
        };
        let account = accounts[account_id];
        let window_end = timestamp(lead, "CreatedDate").date_naive()
            + TimeDelta::days(LEAD_ENGAGEMENT_WINDOW_DAYS);
        let mut window_activities = BTreeMap::new();
        for activity in by_lead.get(id).map_or(&[][..], Vec::as_slice) {
            if activity_date(activity) < window_end {
                *window_activities
                    .entry(text(activity, "Type").to_string())
                    .or_insert(0) += 1;
            }
        }
        let number = |field: &str| account[field].as_f64();
        features.insert(
            id.to_string(),
            LeadFeatures {
                lead_source: text(lead, "LeadSource").to_string(),
                buying_role: text(lead, "Buying_Role__c").to_string(),
                window_activities,
                hip_knee_discharges: number("Hip_Knee_Discharges__c"),
                cabg_discharges: number("CABG_Discharges__c"),
                ami_discharges: number("AMI_Discharges__c"),
                hospital_type: text(account, "Hospital_Type__c").to_string(),
                star_rating: number("CMS_Overall_Rating__c"),
            },
        );
    }
    features
}

#[test]
fn conversion_probability_follows_records() {
    let org = full_org();
    let features = lead_features_from_records(org);
    let hospital_leads = org
        .conversion_probability
        .values()
        .filter(|probability| **probability > 0.0)
        .count();
    assert!(
        features.len() > hospital_leads / 2,
        "only {} of {hospital_leads} leads identify their hospital",
        features.len()
    );
    let mut engaged = 0;
    for (id, lead_features) in &features {
        let expected = truth::conversion_probability(lead_features);
        let actual = org.conversion_probability[id];
        assert!(
            (expected - actual).abs() < 1e-12,
            "{id}: P {actual} but the records give {expected}"
        );
        engaged += usize::from(!lead_features.window_activities.is_empty());
    }
    // The engagement term must vary, or the formula reduces to attributes.
    assert!(engaged > features.len() / 3, "only {engaged} leads engaged");
    assert!(engaged < features.len(), "every lead engaged");
}

#[test]
fn lead_oracle_auc_is_in_band() {
    let org = full_org();
    let mut closed: Vec<(NaiveDate, bool, f64)> = records(org, "Lead")
        .iter()
        .filter_map(|lead| {
            let (decided, converted) = decision(org, lead)?;
            Some((
                decided,
                converted,
                org.conversion_probability[text(lead, "Id")],
            ))
        })
        .collect();
    let converted = closed.iter().filter(|lead| lead.1).count();
    let share = converted as f64 / closed.len() as f64;
    assert!((0.15..=0.30).contains(&share), "converted share {share}");

    closed.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.total_cmp(&b.2)));
    let holdout = &closed[closed.len() - closed.len() / 5..];
    let scores: Vec<f64> = holdout.iter().map(|lead| lead.2).collect();
    let labels: Vec<bool> = holdout.iter().map(|lead| lead.1).collect();
    let auc = truth::roc_auc(&scores, &labels).expect("the holdout has both classes");
    assert!(
        (0.75..=0.90).contains(&auc),
        "oracle AUC {auc} on the latest 20%"
    );
}

#[test]
fn small_org_has_enough_closed_leads() {
    let org = generate(&small_options(400)).expect("400 hospitals generate");
    let outcomes: Vec<bool> = records(&org, "Lead")
        .iter()
        .filter_map(|lead| decision(&org, lead).map(|(_, converted)| converted))
        .collect();
    let converted = outcomes.iter().filter(|converted| **converted).count();
    let lost = outcomes.len() - converted;
    assert!(outcomes.len() >= 200, "{} closed leads", outcomes.len());
    assert!(
        converted.min(lost) >= 40,
        "{converted} converted, {lost} lost"
    );
}

#[test]
fn ccn_only_strips_cms_columns() {
    let full = generate(&small_options(300)).expect("full accounts generate");
    let stripped = generate(&DemoOptions {
        ccn_only: true,
        ..small_options(300)
    })
    .expect("CCN-only accounts generate");
    assert_eq!(full.win_probability, stripped.win_probability);
    assert_eq!(full.conversion_probability, stripped.conversion_probability);
    for (object, list) in &full.records {
        if object != "Account" {
            assert_eq!(list, &stripped.records[object], "{object} records differ");
        }
    }

    let full_accounts = records(&full, "Account");
    let stripped_accounts = records(&stripped, "Account");
    assert_eq!(full_accounts.len(), stripped_accounts.len());
    let mut hospitals = 0;
    for (before, after) in full_accounts.iter().zip(stripped_accounts) {
        let id = text(before, "Id");
        assert_eq!(before.len(), after.len(), "{id}");
        let is_hospital = text(before, "Type") == "Hospital";
        hospitals += usize::from(is_hospital);
        for (field, value) in before {
            if is_hospital && CMS_DETAIL_FIELDS.contains(&field.as_str()) {
                assert!(
                    after[field].is_null(),
                    "{field} of {id} is {}",
                    after[field]
                );
            } else {
                assert_eq!(&after[field], value, "{field} of {id}");
            }
        }
        if is_hospital {
            assert!(
                !text(after, "CMS_Certification_Number__c").is_empty(),
                "{id}"
            );
        }
    }
    assert_eq!(hospitals, 300);
    // The full accounts did carry values there, so the option changed something.
    assert!(full_accounts
        .iter()
        .any(|account| !account["Hospital_Type__c"].is_null()));
}

/// Returns an access token from the sandbox's refresh-token grant.
async fn access_token(client: &reqwest::Client, url: &str, options: &SandboxOptions) -> String {
    let response: Value = client
        .post(format!("{url}/services/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", options.client_id.as_str()),
            ("client_secret", options.client_secret.as_str()),
            ("refresh_token", options.refresh_token.as_str()),
        ])
        .send()
        .await
        .expect("token request is sent")
        .json()
        .await
        .expect("token response is JSON");
    response["access_token"]
        .as_str()
        .expect("token response has an access_token")
        .to_string()
}

#[tokio::test]
async fn sandbox_converts_scored_lead() {
    let org = generate(&small_options(60)).expect("60 hospitals generate");
    let lead = records(&org, "Lead")
        .iter()
        .find(|lead| lead["IsConverted"] == Value::Bool(false))
        .expect("an unconverted lead");
    let lead_id = text(lead, "Id").to_string();
    let deal = &records(&org, "Opportunity")[0];
    let account_id = text(deal, "AccountId").to_string();
    let deal_id = text(deal, "Id").to_string();
    let contact_id = records(&org, "Contact")
        .iter()
        .find(|contact| text(contact, "AccountId") == account_id)
        .map(|contact| text(contact, "Id").to_string())
        .expect("the account has a contact");

    let options = SandboxOptions::default();
    let running = Sandbox::new(org.records.clone(), options.clone())
        .expect("the sandbox accepts the org")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("the sandbox listens on loopback");
    let handle = running.handle();
    let before = handle.record("Lead", &lead_id).expect("the lead exists");
    let at = Utc
        .with_ymd_and_hms(2026, 12, 2, 15, 30, 0)
        .single()
        .expect("valid time");
    handle
        .convert_lead(&lead_id, &account_id, Some(&contact_id), Some(&deal_id), at)
        .expect("the lead converts");

    let client = reqwest::Client::new();
    let url = running.url();
    let token = access_token(&client, &url, &options).await;
    let soql = format!(
        "SELECT Id, IsConverted, Status, ConvertedDate, ConvertedAccountId, ConvertedContactId, \
         ConvertedOpportunityId, SystemModstamp FROM Lead WHERE Id = '{lead_id}'"
    );
    let page: Value = client
        .get(format!("{url}/services/data/v59.0/query"))
        .query(&[("q", soql.as_str())])
        .bearer_auth(&token)
        .send()
        .await
        .expect("query is sent")
        .json()
        .await
        .expect("query response is JSON");
    let row = &page["records"][0];
    assert_eq!(row["IsConverted"], json!(true), "{page}");
    assert_eq!(row["Status"], json!("Closed - Converted"));
    assert_eq!(row["ConvertedDate"], json!("2026-12-02"));
    assert_eq!(row["ConvertedAccountId"], json!(account_id));
    assert_eq!(row["ConvertedContactId"], json!(contact_id));
    assert_eq!(row["ConvertedOpportunityId"], json!(deal_id));
    assert_ne!(row["SystemModstamp"], before["SystemModstamp"]);

    // A converted lead is read-only for the API, so a score write fails.
    let write: Value = client
        .patch(format!("{url}/services/data/v59.0/composite/sobjects"))
        .bearer_auth(&token)
        .json(&json!({
            "allOrNone": false,
            "records": [{"attributes": {"type": "Lead"}, "id": lead_id, "LS_Sales_Ready__c": true}]
        }))
        .send()
        .await
        .expect("update is sent")
        .json()
        .await
        .expect("update response is JSON");
    assert_eq!(
        write[0]["errors"][0]["statusCode"],
        json!("CANNOT_UPDATE_CONVERTED_LEAD"),
        "{write}"
    );

    let again = handle.convert_lead(&lead_id, &account_id, None, None, at);
    assert!(
        matches!(&again, Err(SandboxError::InvalidValue { field, .. }) if field == "IsConverted"),
        "{again:?}"
    );
    let other_lead = records(&org, "Lead")
        .iter()
        .find(|other| other["IsConverted"] == Value::Bool(false) && text(other, "Id") != lead_id)
        .map(|other| text(other, "Id").to_string())
        .expect("a second unconverted lead");
    let missing = handle.convert_lead(&other_lead, "001000000000zzzAAA", None, None, at);
    assert!(
        matches!(&missing, Err(SandboxError::RecordNotFound { object, .. }) if object == "Account"),
        "{missing:?}"
    );
    running.shutdown().await;
}
