//! The connector against the HubSpot sandbox seeded with the demo world, over HTTP on
//! loopback. Every object's pull is checked against the seeded Salesforce-shaped records.
//! Further tests cover more than 10,000 contacts sharing one stamp, OAuth tokens expiring
//! mid-pull, and write-back with property setup and a failing record.

#[path = "support/capture.rs"]
mod capture;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use leadscore_connector::{
    Connector, ConnectorError, Cursor, Page, PullSpec, Record, RecordUpdate, Value,
};
use leadscore_demo_org::{generate, DemoOptions};
use leadscore_hubspot::{HubSpotAuth, HubSpotConfig, HubSpotConnector, PropertySpec};
use leadscore_sandbox::hubspot::ObjectType;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, RecordMap, RunningHubSpot};
use secrecy::SecretString;
use url::Url;

async fn start(max_hospitals: usize) -> (RunningHubSpot, BTreeMap<String, Vec<RecordMap>>) {
    let demo = generate(&DemoOptions {
        max_hospitals: Some(max_hospitals),
        ..DemoOptions::default()
    })
    .unwrap();
    let sandbox = HubSpotSandbox::new(demo.records.clone(), HubSpotOptions::default()).unwrap();
    let running = sandbox.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    running.handle().set_search_per_second_limit(1_000);
    (running, demo.records)
}

fn config(running: &RunningHubSpot, oauth: bool) -> HubSpotConfig {
    let options = running.options();
    let base = Url::parse(&running.url()).unwrap();
    let auth = if oauth {
        HubSpotAuth::OAuth {
            token_url: base.join("/oauth/v1/token").unwrap(),
            client_id: options.client_id.clone(),
            client_secret: SecretString::from(options.client_secret.clone()),
            refresh_token: SecretString::from(options.refresh_token.clone()),
        }
    } else {
        HubSpotAuth::PrivateApp(SecretString::from(options.private_app_token.clone()))
    };
    let mut config = HubSpotConfig::new(base, auth);
    config.timeout = Duration::from_secs(20);
    config.retry_base_delay = Duration::from_millis(10);
    config.search_per_second = 1_000;
    config
}

fn spec(object: &str, fields: &[&str]) -> PullSpec {
    PullSpec {
        object: object.to_string(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        include_deleted: true,
    }
}

async fn pull_all(
    connector: &HubSpotConnector,
    spec: &PullSpec,
    cursor: Option<&Cursor>,
) -> Result<Vec<Record>, ConnectorError> {
    let mut page: Page = connector.pull_first(spec, cursor).await?;
    let mut records = Vec::new();
    loop {
        records.append(&mut page.records);
        match page.next.take() {
            Some(next) => page = connector.pull_next(spec, cursor, &next).await?,
            None => return Ok(records),
        }
    }
}

fn assert_ordered(records: &[Record]) {
    for pair in records.windows(2) {
        assert!(
            pair[0].modstamp <= pair[1].modstamp,
            "{} before {}",
            pair[0].id,
            pair[1].id
        );
    }
}

fn text<'a>(record: &'a RecordMap, field: &str) -> Option<&'a str> {
    record.get(field).and_then(|value| value.as_str())
}

fn flag(record: &RecordMap, field: &str) -> bool {
    record
        .get(field)
        .and_then(|value| value.as_bool())
        .unwrap_or(false)
}

#[tokio::test]
async fn demo_world_pulls_match_seed() {
    let (running, demo) = start(70).await;
    let ids = running.id_map();
    let handle = running.handle();
    let connector = HubSpotConnector::new(config(&running, false)).unwrap();
    let usage = connector.check().await.unwrap();
    assert!(usage.max > 0, "{usage:?}");

    let accounts = pull_all(
        &connector,
        &spec(
            "Account",
            &[
                "Name",
                "OwnerId",
                "Owner.IsActive",
                "ParentId",
                "CreatedDate",
                "hospital_type",
            ],
        ),
        None,
    )
    .await
    .unwrap();
    assert_ordered(&accounts);
    assert_eq!(accounts.len(), handle.count(ObjectType::Companies));
    let by_id: BTreeMap<&str, &Record> = accounts.iter().map(|r| (r.id.as_str(), r)).collect();
    for account in &demo["Account"] {
        let id = &ids[text(account, "Id").unwrap()];
        let record = by_id[id.as_str()];
        assert_eq!(
            record.get("Name").as_str(),
            text(account, "Name"),
            "account {id}"
        );
        let parent = text(account, "ParentId").map(|parent| ids[parent].as_str());
        assert_eq!(
            record.get("ParentId").as_str(),
            parent,
            "parent of account {id}"
        );
    }

    let with_parent = demo["Account"]
        .iter()
        .filter(|a| text(a, "ParentId").is_some())
        .count();
    assert!(with_parent > 0, "the seed has child accounts");

    let deals = pull_all(
        &connector,
        &spec(
            "Opportunity",
            &[
                "AccountId",
                "StageName",
                "IsClosed",
                "IsWon",
                "Amount",
                "CloseDate",
            ],
        ),
        None,
    )
    .await
    .unwrap();
    assert_ordered(&deals);
    let by_id: BTreeMap<&str, &Record> = deals.iter().map(|r| (r.id.as_str(), r)).collect();
    assert_eq!(deals.len(), demo["Opportunity"].len());
    for deal in &demo["Opportunity"] {
        let id = &ids[text(deal, "Id").unwrap()];
        let record = by_id[id.as_str()];
        assert_eq!(
            record.get("StageName").as_str(),
            text(deal, "StageName"),
            "deal {id}"
        );
        assert_eq!(
            record.get("IsWon"),
            &Value::Bool(flag(deal, "IsWon")),
            "deal {id}"
        );
        assert_eq!(
            record.get("IsClosed"),
            &Value::Bool(flag(deal, "IsClosed")),
            "deal {id}"
        );
        let account = text(deal, "AccountId").map(|a| ids[a].as_str());
        assert_eq!(
            record.get("AccountId").as_str(),
            account,
            "account of deal {id}"
        );
    }

    let leads = pull_all(
        &connector,
        &spec(
            "Lead",
            &[
                "Company",
                "IsConverted",
                "ConvertedDate",
                "ConvertedOpportunityId",
                "CreatedDate",
                "lead_source",
            ],
        ),
        None,
    )
    .await
    .unwrap();
    assert_ordered(&leads);
    assert_eq!(leads.len(), demo["Lead"].len());
    let by_id: BTreeMap<&str, &Record> = leads.iter().map(|r| (r.id.as_str(), r)).collect();
    for lead in &demo["Lead"] {
        let id = &ids[text(lead, "Id").unwrap()];
        let record = by_id[id.as_str()];
        assert_eq!(
            record.get("IsConverted"),
            &Value::Bool(flag(lead, "IsConverted")),
            "lead {id}"
        );
        let opportunity = text(lead, "ConvertedOpportunityId").map(|o| ids[o].as_str());
        if opportunity.is_some() {
            assert_eq!(
                record.get("ConvertedOpportunityId").as_str(),
                opportunity,
                "lead {id}"
            );
        }
    }

    let converted = leads
        .iter()
        .filter(|l| l.get("IsConverted") == &Value::Bool(true))
        .count();
    assert!(
        converted > 0 && converted < leads.len(),
        "{converted} of {} leads converted",
        leads.len()
    );

    let roles = pull_all(
        &connector,
        &spec(
            "OpportunityContactRole",
            &["OpportunityId", "ContactId", "Role"],
        ),
        None,
    )
    .await
    .unwrap();
    assert_ordered(&roles);
    let pairs: HashSet<(String, String)> = demo["OpportunityContactRole"]
        .iter()
        .map(|role| {
            (
                ids[text(role, "OpportunityId").unwrap()].clone(),
                ids[text(role, "ContactId").unwrap()].clone(),
            )
        })
        .collect();
    assert_eq!(
        roles.len(),
        pairs.len(),
        "one role per (deal, contact) pair"
    );
    for role in &roles {
        let pair = (
            role.get("OpportunityId").to_string(),
            role.get("ContactId").to_string(),
        );
        assert!(pairs.contains(&pair), "unexpected pair {pair:?}");
        assert!(!role.get("Role").is_null(), "role {} has a label", role.id);
    }

    let users = pull_all(
        &connector,
        &spec("User", &["Name", "Email", "IsActive"]),
        None,
    )
    .await
    .unwrap();
    let (active, archived) = handle.owner_counts();
    assert_eq!(users.len(), active + archived);
    let inactive = users
        .iter()
        .filter(|u| u.get("IsActive") == &Value::Bool(false))
        .count();
    assert_eq!(inactive, archived);

    let tasks = pull_all(
        &connector,
        &spec(
            "Task",
            &["WhoId", "WhatId", "Type", "ActivityDate", "CreatedDate"],
        ),
        None,
    )
    .await
    .unwrap();
    assert_ordered(&tasks);
    assert_eq!(tasks.len(), demo["Task"].len());
    let events = pull_all(
        &connector,
        &spec(
            "Event",
            &["WhoId", "WhatId", "Type", "StartDateTime", "CreatedDate"],
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(events.len(), demo.get("Event").map_or(0, Vec::len));
    assert!(events
        .iter()
        .all(|e| e.get("Type") == &Value::Text("Meeting".into())));
    let contacts = pull_all(
        &connector,
        &spec("Contact", &["AccountId", "Name", "Title"]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(contacts.len(), handle.count(ObjectType::Contacts));
}

#[tokio::test]
async fn tied_stamps_over_cap() {
    let (running, _) = start(1).await;
    let handle = running.handle();
    let at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let added = handle.add_contacts(10_050, at);
    let connector = HubSpotConnector::new(config(&running, false)).unwrap();
    let cursor = Cursor {
        modstamp: at,
        id: String::new(),
    };
    let records = pull_all(&connector, &spec("Contact", &["FirstName"]), Some(&cursor))
        .await
        .unwrap();
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(records.len(), 10_050);
    assert_eq!(ids.len(), 10_050);
    assert!(added.iter().all(|id| ids.contains(id.as_str())));
}

#[tokio::test]
async fn oauth_expiry_mid_pull_and_clean_logs() {
    let log = capture::global_log();
    let (running, _) = start(6).await;
    let handle = running.handle();
    let mut config = config(&running, true);
    config.page_size = 20;
    let connector = HubSpotConnector::new(config).unwrap();
    let spec = spec("Contact", &["Name"]);
    let mut page = connector.pull_first(&spec, None).await.unwrap();
    let mut count = page.records.len();
    let mut pages = 1;
    while let Some(next) = page.next.take() {
        if pages == 2 {
            handle.expire_access_tokens();
        }
        page = connector.pull_next(&spec, None, &next).await.unwrap();
        count += page.records.len();
        pages += 1;
    }
    assert!(pages > 3, "pages: {pages}");
    assert_eq!(count, handle.count(ObjectType::Contacts));
    let text = log.text();
    assert!(text.contains("access token rejected, renewing"));
    let options = running.options();
    for secret in [
        &options.client_secret,
        &options.refresh_token,
        &options.private_app_token,
    ] {
        assert!(!text.contains(secret.as_str()), "log contains a secret");
    }
    let tokens: Vec<String> = handle
        .request_log()
        .iter()
        .filter_map(|request| request.authorization.clone())
        .filter_map(|header| header.strip_prefix("Bearer ").map(str::to_string))
        .collect();
    assert!(!tokens.is_empty());
    for token in tokens {
        assert!(!text.contains(&token), "log contains an access token");
    }
}

#[tokio::test]
async fn write_back_round_trip() {
    let (running, _) = start(4).await;
    let handle = running.handle();
    let connector = HubSpotConnector::new(config(&running, false)).unwrap();
    let mut specs = PropertySpec::standard("Account", &["A", "B", "C", "D"], false);
    specs.extend(PropertySpec::standard(
        "Contact",
        &["A", "B", "C", "D"],
        true,
    ));
    let report = connector.ensure_properties(&specs).await.unwrap();
    assert_eq!(report.created.len(), 11, "{report:?}");
    assert!(report.mismatched.is_empty(), "{report:?}");

    let contacts = handle.ids(ObjectType::Contacts);
    let failing = contacts[1].clone();
    handle.fail_updates(ObjectType::Contacts, &failing).unwrap();
    let scored_at = Utc.with_ymd_and_hms(2026, 11, 30, 8, 15, 0).unwrap();
    let updates: Vec<RecordUpdate> = contacts
        .iter()
        .take(5)
        .enumerate()
        .map(|(n, id)| RecordUpdate {
            object: "Contact".into(),
            id: id.clone(),
            fields: BTreeMap::from([
                (
                    "leadscore_score".to_string(),
                    Value::Number(50.5 + n as f64),
                ),
                ("leadscore_tier".to_string(), Value::Text("B".into())),
                (
                    "leadscore_scored_at".to_string(),
                    Value::DateTime(scored_at),
                ),
                ("leadscore_sales_ready".to_string(), Value::Bool(n % 2 == 0)),
                (
                    "leadscore_reasons".to_string(),
                    Value::Text("3 meetings in 30 days".into()),
                ),
            ]),
        })
        .collect();
    let outcomes = connector.update(&updates).await.unwrap();
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.id.as_str())
        .collect();
    assert_eq!(failed, vec![failing.as_str()]);

    let fields = [
        "leadscore_score",
        "leadscore_tier",
        "leadscore_scored_at",
        "leadscore_sales_ready",
        "leadscore_reasons",
    ];
    let records = pull_all(&connector, &spec("Contact", &fields), None)
        .await
        .unwrap();
    let by_id: BTreeMap<&str, &Record> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    for update in &updates {
        if update.id == failing {
            continue;
        }
        let record = by_id[update.id.as_str()];
        for (field, value) in &update.fields {
            assert_eq!(record.get(field), value, "{field} of {}", update.id);
        }
    }
}
