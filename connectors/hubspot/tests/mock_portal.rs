//! Connector behaviour against a scripted HubSpot portal on loopback: the search cap, equal
//! timestamps, association paging, token expiry mid-pull, 429 handling, 207 results, value
//! formats, lead conversion, property setup and logs free of secrets.

#[path = "support/capture.rs"]
mod capture;
#[path = "support/mock.rs"]
mod mock;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use leadscore_connector::{
    Connector, ConnectorError, Cursor, FieldKind, Page, PullSpec, Record, RecordUpdate, Value,
};
use leadscore_hubspot::{HubSpotAuth, HubSpotConfig, HubSpotConnector, PropertySpec};
use mock::{iso, property, Injected, Link, MockPortal, Object};
use secrecy::SecretString;
use serde_json::json;
use url::Url;

const PRIVATE_TOKEN: &str = "pat-na1-private-secret";

fn lifecycle_options() -> Vec<&'static str> {
    vec![
        "subscriber",
        "lead",
        "marketingqualifiedlead",
        "salesqualifiedlead",
        "opportunity",
        "customer",
        "evangelist",
        "other",
    ]
}

/// Starts a portal with the standard properties, one pipeline and two owners.
async fn portal() -> MockPortal {
    let portal = MockPortal::start().await;
    portal.with(|state| {
        state.valid_tokens.push(PRIVATE_TOKEN.to_string());
        let common = |extra: Vec<serde_json::Value>| {
            let mut list = vec![
                property("hs_lastmodifieddate", "datetime", "date", &[], true),
                property("createdate", "datetime", "date", &[], true),
                property("hubspot_owner_id", "enumeration", "select", &[], false),
                property("hs_timestamp", "datetime", "date", &[], false),
                property("hs_createdate", "datetime", "date", &[], true),
            ];
            list.extend(extra);
            list
        };
        let writeback = || {
            vec![
                property("leadscore_score", "number", "number", &[], false),
                property("leadscore_tier", "enumeration", "select", &["A", "B", "C", "D"], false),
                property("leadscore_reasons", "string", "textarea", &[], false),
                property("leadscore_scored_at", "datetime", "date", &[], false),
                property("leadscore_sales_ready", "bool", "booleancheckbox", &["true", "false"], false),
                property("leadscore_review_date", "date", "date", &[], false),
            ]
        };
        let mut contacts = common(vec![
            property("lastmodifieddate", "datetime", "date", &[], true),
            property("firstname", "string", "text", &[], false),
            property("lastname", "string", "text", &[], false),
            property("jobtitle", "string", "text", &[], false),
            property("email", "string", "text", &[], false),
            property("company", "string", "text", &[], false),
            property("state", "string", "text", &[], false),
            property("lifecyclestage", "enumeration", "select", &lifecycle_options(), false),
            property("hs_lifecyclestage_lead_date", "datetime", "date", &[], true),
            property("hs_lifecyclestage_salesqualifiedlead_date", "datetime", "date", &[], true),
            property("hs_lifecyclestage_opportunity_date", "datetime", "date", &[], true),
            property("buying_role", "enumeration", "select", &["economic_buyer", "clinical_champion"], false),
        ]);
        contacts.extend(writeback());
        let mut companies = common(vec![
            property("name", "string", "text", &[], false),
            property("state", "string", "text", &[], false),
            property("city", "string", "text", &[], false),
            property("hospital_type", "enumeration", "select", &["acute", "critical_access"], false),
            property("emergency_services", "bool", "booleancheckbox", &["true", "false"], false),
            property("hip_knee_discharges", "number", "number", &[], false),
        ]);
        companies.extend(writeback());
        let deals = common(vec![
            property("dealname", "string", "text", &[], false),
            property("amount", "number", "number", &[], false),
            property("dealstage", "enumeration", "select", &["s1", "won", "lost"], false),
            property("pipeline", "enumeration", "select", &["hospital-capital"], false),
            property("closedate", "datetime", "date", &[], false),
        ]);
        state.properties.insert("contacts".into(), contacts);
        state.properties.insert("companies".into(), companies);
        state.properties.insert("deals".into(), deals);
        for engagement in ["tasks", "calls", "emails", "notes", "meetings"] {
            state.properties.insert(engagement.into(), common(vec![property("hs_meeting_start_time", "datetime", "date", &[], false)]));
        }
        state.pipelines = json!({"results": [{"id": "hospital-capital", "label": "Hospital capital equipment", "stages": [
            {"id": "s1", "label": "Qualification", "metadata": {"isClosed": "false", "probability": "0.2"}},
            {"id": "won", "label": "Closed Won", "metadata": {"isClosed": "true", "probability": "1.0"}},
            {"id": "lost", "label": "Closed Lost", "metadata": {"isClosed": "true", "probability": "0.0"}}]}]});
        state.owners = vec![
            json!({"id": "501", "email": "rep.one@example.test", "firstName": "Rep", "lastName": "One", "createdAt": "2023-01-10T10:00:00Z", "updatedAt": "2024-04-01T10:00:00Z", "archived": false}),
            json!({"id": "502", "email": "rep.two@example.test", "firstName": "Rep", "lastName": "Two", "createdAt": "2023-01-10T10:00:00Z", "updatedAt": "2024-04-02T10:00:00Z", "archived": true}),
        ];
    });
    portal
}

fn config(portal: &MockPortal) -> HubSpotConfig {
    let mut config = HubSpotConfig::new(
        portal.url.clone(),
        HubSpotAuth::PrivateApp(SecretString::from(PRIVATE_TOKEN)),
    );
    config.timeout = Duration::from_secs(10);
    config.retry_base_delay = Duration::from_millis(5);
    config.burst_backoff = Duration::from_millis(300);
    config.secondly_backoff = Duration::from_millis(50);
    config.search_per_second = 10_000;
    config.burst_share = 1.0;
    config
}

fn oauth_config(portal: &MockPortal) -> HubSpotConfig {
    let mut config = config(portal);
    config.auth = HubSpotAuth::OAuth {
        token_url: Url::parse(&format!("{}oauth/v1/token", portal.url)).unwrap(),
        client_id: "client-1".to_string(),
        client_secret: SecretString::from("client-secret-7"),
        refresh_token: SecretString::from("refresh-secret-9"),
    };
    config
}

fn spec(object: &str, fields: &[&str], include_deleted: bool) -> PullSpec {
    PullSpec {
        object: object.to_string(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        include_deleted,
    }
}

fn stamp(seconds: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
}

fn object(id: u64, properties: &[(&str, String)]) -> Object {
    Object {
        id,
        properties: properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        archived: false,
    }
}

/// Pulls every page and returns the records and the number of pages.
async fn pull_all(
    connector: &HubSpotConnector,
    spec: &PullSpec,
    cursor: Option<&Cursor>,
) -> Result<(Vec<Record>, usize), ConnectorError> {
    let mut page: Page = connector.pull_first(spec, cursor).await?;
    let mut records = Vec::new();
    let mut pages = 1;
    loop {
        records.append(&mut page.records);
        match page.next.take() {
            Some(next) => {
                page = connector.pull_next(spec, cursor, &next).await?;
                pages += 1;
                assert!(pages < 1000, "pull does not end");
            }
            None => return Ok((records, pages)),
        }
    }
}

fn assert_ordered_once(records: &[Record], expected: usize) {
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(records.len(), expected, "record count");
    assert_eq!(ids.len(), expected, "each record exactly once");
    for pair in records.windows(2) {
        assert!(
            pair[0].modstamp <= pair[1].modstamp,
            "stamps out of order: {} then {}",
            pair[0].id,
            pair[1].id
        );
    }
}

#[tokio::test]
async fn search_cap_crossed() {
    let portal = portal().await;
    portal.with(|state| {
        let contacts = (1..=10_500u64)
            .map(|id| {
                object(
                    id,
                    &[
                        ("lastmodifieddate", iso(stamp((id / 3) as i64))),
                        ("firstname", format!("F{id}")),
                    ],
                )
            })
            .collect();
        state.objects.insert("contacts".into(), contacts);
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let (records, pages) = pull_all(&connector, &spec("Contact", &["FirstName"], false), None)
        .await
        .unwrap();
    assert_ordered_once(&records, 10_500);
    assert!(pages > 50, "pages: {pages}");
    assert_eq!(records[0].get("FirstName"), &Value::Text("F1".into()));
    let failures = portal
        .seen()
        .iter()
        .filter(|seen| seen.status >= 400)
        .count();
    assert_eq!(failures, 0, "no search hit the 10,000 cap");
}

#[tokio::test]
async fn equal_timestamps_over_cap() {
    let portal = portal().await;
    portal.with(|state| {
        let mut companies: Vec<Object> = (1..=10_050u64)
            .map(|id| {
                object(
                    id,
                    &[
                        ("hs_lastmodifieddate", iso(stamp(100))),
                        ("name", format!("H{id}")),
                    ],
                )
            })
            .collect();
        companies.push(object(
            20_001,
            &[
                ("hs_lastmodifieddate", iso(stamp(50))),
                ("name", "early".into()),
            ],
        ));
        companies.push(object(
            20_002,
            &[
                ("hs_lastmodifieddate", iso(stamp(200))),
                ("name", "late".into()),
            ],
        ));
        state.objects.insert("companies".into(), companies);
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let (records, _) = pull_all(&connector, &spec("Account", &["Name"], false), None)
        .await
        .unwrap();
    assert_ordered_once(&records, 10_052);
    assert_eq!(records.first().unwrap().id, "20001");
    assert_eq!(records.last().unwrap().id, "20002");
    let tied: Vec<u64> = records[1..records.len() - 1]
        .iter()
        .map(|r| r.id.parse().unwrap())
        .collect();
    assert!(
        tied.windows(2).all(|w| w[0] < w[1]),
        "ids within one stamp are ascending"
    );
    let failures = portal
        .seen()
        .iter()
        .filter(|seen| seen.status >= 400)
        .count();
    assert_eq!(failures, 0);
}

#[tokio::test]
async fn cursor_restarts_at_its_stamp() {
    let portal = portal().await;
    portal.with(|state| {
        let contacts = (1..=20u64)
            .map(|id| object(id, &[("lastmodifieddate", iso(stamp(id as i64)))]))
            .collect();
        state.objects.insert("contacts".into(), contacts);
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let cursor = Cursor {
        modstamp: stamp(15),
        id: "15".into(),
    };
    let (records, _) = pull_all(&connector, &spec("Contact", &[], false), Some(&cursor))
        .await
        .unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["15", "16", "17", "18", "19", "20"]);
}

#[tokio::test]
async fn association_paging_and_labels() {
    let portal = portal().await;
    portal.with(|state| {
        state.association_page = 2;
        state.objects.insert(
            "contacts".into(),
            vec![object(7, &[("lastmodifieddate", iso(stamp(1)))])],
        );
        let companies = vec![
            Link {
                to: 900,
                types: vec![(279, None)],
            },
            Link {
                to: 901,
                types: vec![(279, None)],
            },
            Link {
                to: 902,
                types: vec![(279, None)],
            },
            Link {
                to: 903,
                types: vec![(279, None)],
            },
            Link {
                to: 904,
                types: vec![(279, None)],
            },
        ];
        // The primary company sits on the last page, listed again under a second label.
        let mut with_primary = companies.clone();
        with_primary.push(Link {
            to: 905,
            types: vec![(279, None)],
        });
        with_primary.push(Link {
            to: 905,
            types: vec![(1, Some("Primary".into()))],
        });
        state.links.insert(
            ("contacts".into(), "companies".into()),
            BTreeMap::from([(7, with_primary)]),
        );
        state.objects.insert(
            "deals".into(),
            vec![object(
                30,
                &[
                    ("hs_lastmodifieddate", iso(stamp(2))),
                    ("createdate", iso(stamp(0))),
                ],
            )],
        );
        state.links.insert(
            ("deals".into(), "contacts".into()),
            BTreeMap::from([(
                30,
                vec![
                    Link {
                        to: 7,
                        types: vec![(3, None), (40, Some("Decision maker".into()))],
                    },
                    Link {
                        to: 8,
                        types: vec![(3, None)],
                    },
                    Link {
                        to: 9,
                        types: vec![(41, Some("Clinical champion".into()))],
                    },
                    Link {
                        to: 7,
                        types: vec![(42, Some("Budget holder".into()))],
                    },
                ],
            )]),
        );
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let (contacts, _) = pull_all(&connector, &spec("Contact", &["AccountId"], false), None)
        .await
        .unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].get("AccountId"), &Value::Text("905".into()));
    let association_reads = portal
        .seen()
        .iter()
        .filter(|s| s.path.contains("/contacts/companies/batch/read"))
        .count();
    assert_eq!(
        association_reads, 4,
        "seven links at two per page take four reads"
    );

    let (roles, _) = pull_all(
        &connector,
        &spec(
            "OpportunityContactRole",
            &["OpportunityId", "ContactId", "Role", "CreatedDate"],
            false,
        ),
        None,
    )
    .await
    .unwrap();
    let ids: Vec<&str> = roles.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["30-7", "30-8", "30-9"],
        "a contact under two labels counts once"
    );
    assert_eq!(roles[0].get("Role"), &Value::Text("Decision maker".into()));
    assert_eq!(roles[1].get("Role"), &Value::Null);
    assert_eq!(roles[2].get("ContactId"), &Value::Text("9".into()));
    assert_eq!(roles[0].get("CreatedDate"), &Value::DateTime(stamp(0)));
}

#[tokio::test]
async fn token_expires_mid_pull() {
    let log = capture::global_log();
    let portal = portal().await;
    portal.with(|state| {
        state.expire_after_calls = Some(4);
        let contacts = (1..=1_000u64)
            .map(|id| object(id, &[("lastmodifieddate", iso(stamp(id as i64)))]))
            .collect();
        state.objects.insert("contacts".into(), contacts);
    });
    let connector = HubSpotConnector::new(oauth_config(&portal)).unwrap();
    let (records, _) = pull_all(&connector, &spec("Contact", &["CreatedDate"], false), None)
        .await
        .unwrap();
    assert_eq!(records.len(), 1_000);
    let issued = portal.with(|state| state.issued_tokens);
    assert!(
        issued >= 2,
        "a new token was issued after expiry, {issued} in all"
    );
    let rejected = portal.seen().iter().filter(|s| s.status == 401).count() as u64;
    assert_eq!(rejected, issued - 1, "each expiry costs one rejected call");
    let text = log.text();
    assert!(
        text.contains("access token rejected, renewing"),
        "renewal is logged"
    );
    for secret in [
        "access-secret-",
        "refresh-secret-9",
        "client-secret-7",
        PRIVATE_TOKEN,
    ] {
        assert!(!text.contains(secret), "log contains {secret}");
    }
}

#[tokio::test]
async fn rate_limit_with_retry_after() {
    let portal = portal().await;
    portal.with(|state| {
        state.objects.insert("contacts".into(), vec![object(1, &[("lastmodifieddate", iso(stamp(1)))])]);
        state.injected.push_back(Injected {
            path_prefix: "/crm/v3/objects/contacts/search".into(),
            status: 429,
            body: json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}),
            retry_after: Some("1".into()),
        });
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let started = Instant::now();
    let (records, _) = pull_all(&connector, &spec("Contact", &[], false), None)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
    let searches: Vec<_> = portal
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/search"))
        .collect();
    assert_eq!(searches.len(), 2);
    assert_eq!(searches[0].status, 429);
    assert!(searches[1].at.duration_since(searches[0].at) >= Duration::from_millis(950));
}

#[tokio::test]
async fn rate_limit_without_retry_after() {
    let portal = portal().await;
    portal.with(|state| {
        state.objects.insert("contacts".into(), vec![object(1, &[("lastmodifieddate", iso(stamp(1)))])]);
        for _ in 0..2 {
            state.injected.push_back(Injected {
                path_prefix: "/crm/v3/objects/contacts/search".into(),
                status: 429,
                body: json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.", "category": "RATE_LIMITS", "policyName": "TEN_SECONDLY_ROLLING"}),
                retry_after: None,
            });
        }
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let (records, _) = pull_all(&connector, &spec("Contact", &[], false), None)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let searches: Vec<_> = portal
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/search"))
        .collect();
    assert_eq!(searches.len(), 3);
    // The configured burst backoff is 300 ms, times the attempt number.
    assert!(searches[1].at.duration_since(searches[0].at) >= Duration::from_millis(290));
    assert!(searches[2].at.duration_since(searches[1].at) >= Duration::from_millis(590));
}

#[tokio::test]
async fn daily_limit_not_retried() {
    let portal = portal().await;
    portal.with(|state| {
        state.injected.push_back(Injected {
            path_prefix: "/crm/v3/objects/contacts/search".into(),
            status: 429,
            body: json!({"status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT", "policyName": "DAILY"}),
            retry_after: None,
        });
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let error = connector
        .pull_first(&spec("Contact", &[], false), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConnectorError::LimitExceeded(_)),
        "{error:?}"
    );
    let searches = portal
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/search"))
        .count();
    assert_eq!(searches, 1);
}

#[tokio::test]
async fn search_per_second_limit_kept() {
    let portal = portal().await;
    portal.with(|state| {
        let contacts = (1..=6u64)
            .map(|id| object(id, &[("lastmodifieddate", iso(stamp(id as i64)))]))
            .collect();
        state.objects.insert("contacts".into(), contacts);
    });
    let mut config = config(&portal);
    config.search_per_second = 4;
    config.page_size = 1;
    let connector = HubSpotConnector::new(config).unwrap();
    let (records, _) = pull_all(&connector, &spec("Contact", &[], false), None)
        .await
        .unwrap();
    assert_eq!(records.len(), 6);
    let searches: Vec<Instant> = portal
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/search"))
        .map(|s| s.at)
        .collect();
    assert!(searches.len() >= 6);
    for window in searches.windows(5) {
        assert!(
            window[4].duration_since(window[0]) >= Duration::from_millis(950),
            "five searches within one second"
        );
    }
}

#[tokio::test]
async fn batch_207_two_failed() {
    let portal = portal().await;
    portal.with(|state| {
        let contacts = (1..=100u64)
            .map(|id| object(id, &[("lastmodifieddate", iso(stamp(1)))]))
            .collect();
        state.objects.insert("contacts".into(), contacts);
        state.missing_ids = vec![17, 64];
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let updates: Vec<RecordUpdate> = (1..=100u64)
        .map(|id| RecordUpdate {
            object: "Contact".into(),
            id: id.to_string(),
            fields: BTreeMap::from([("leadscore_score".to_string(), Value::Number(id as f64))]),
        })
        .collect();
    let outcomes = connector.update(&updates).await.unwrap();
    assert_eq!(outcomes.len(), 100);
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.id.as_str())
        .collect();
    assert_eq!(failed, vec!["17", "64"]);
    let error = outcomes[16].result.as_ref().unwrap_err();
    assert_eq!(error.code, "OBJECT_NOT_FOUND");
    assert!(!error.retryable);
    let writes = portal
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/batch/update"))
        .count();
    assert_eq!(writes, 1);
    let stored = portal.with(|state| {
        state.objects["contacts"][41]
            .properties
            .get("leadscore_score")
            .cloned()
    });
    assert_eq!(stored.as_deref(), Some("42"));
}

#[tokio::test]
async fn whole_batch_400_bisected() {
    let portal = portal().await;
    portal.with(|state| {
        let contacts = (1..=8u64)
            .map(|id| object(id, &[("lastmodifieddate", iso(stamp(1)))]))
            .collect();
        state.objects.insert("contacts".into(), contacts);
        state.invalid_ids = vec![6];
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let mut updates: Vec<RecordUpdate> = (1..=8u64)
        .map(|id| RecordUpdate {
            object: "Contact".into(),
            id: id.to_string(),
            fields: BTreeMap::from([("leadscore_tier".to_string(), Value::Text("A".into()))]),
        })
        .collect();
    updates.push(RecordUpdate {
        object: "Contact".into(),
        id: "3".into(),
        fields: BTreeMap::from([("leadscore_tier".to_string(), Value::Text("Z".into()))]),
    });
    updates.push(RecordUpdate {
        object: "Contact".into(),
        id: "4".into(),
        fields: BTreeMap::from([("no_such_property".to_string(), Value::Text("x".into()))]),
    });
    let outcomes = connector.update(&updates).await.unwrap();
    let codes: Vec<Option<&str>> = outcomes
        .iter()
        .map(|o| o.result.as_ref().err().map(|e| e.code.as_str()))
        .collect();
    assert_eq!(
        codes,
        vec![
            None,
            None,
            None,
            None,
            None,
            Some("VALIDATION_ERROR"),
            None,
            None,
            Some("INVALID_VALUE"),
            Some("INVALID_FIELD")
        ]
    );
    let message = &outcomes[8].result.as_ref().unwrap_err().message;
    assert!(
        message.contains("\"Z\"") && message.contains("A, B, C, D"),
        "{message}"
    );
    let tiers = portal.with(|state| {
        state.objects["contacts"]
            .iter()
            .filter(|o| o.properties.get("leadscore_tier").map(String::as_str) == Some("A"))
            .count()
    });
    assert_eq!(tiers, 7);
}

#[tokio::test]
async fn values_read_back_equal() {
    let portal = portal().await;
    portal.with(|state| {
        state.objects.insert(
            "contacts".into(),
            vec![object(
                11,
                &[
                    ("lastmodifieddate", iso(stamp(1))),
                    ("leadscore_tier", "D".into()),
                ],
            )],
        );
        state.objects.insert(
            "companies".into(),
            vec![object(12, &[("hs_lastmodifieddate", iso(stamp(1)))])],
        );
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let scored_at =
        Utc.with_ymd_and_hms(2024, 6, 3, 14, 5, 9).unwrap() + chrono::Duration::milliseconds(250);
    let values = BTreeMap::from([
        ("leadscore_score".to_string(), Value::Number(87.5)),
        ("leadscore_tier".to_string(), Value::Text("B".into())),
        (
            "leadscore_reasons".to_string(),
            Value::Text("Opened 4 emails; 2 meetings".into()),
        ),
        (
            "leadscore_scored_at".to_string(),
            Value::DateTime(scored_at),
        ),
        ("leadscore_sales_ready".to_string(), Value::Bool(true)),
        (
            "leadscore_review_date".to_string(),
            Value::Date(NaiveDate::from_ymd_opt(2024, 6, 10).unwrap()),
        ),
    ]);
    let outcomes = connector
        .update(&[
            RecordUpdate {
                object: "Contact".into(),
                id: "11".into(),
                fields: values.clone(),
            },
            RecordUpdate {
                object: "Account".into(),
                id: "12".into(),
                fields: BTreeMap::from([("leadscore_score".to_string(), Value::Number(3.0))]),
            },
        ])
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    let sent = portal.with(|state| state.objects["contacts"][0].properties.clone());
    assert_eq!(sent["leadscore_score"], "87.5");
    assert_eq!(sent["leadscore_sales_ready"], "true");
    assert_eq!(sent["leadscore_review_date"], "1717977600000");

    let fields: Vec<&str> = values.keys().map(String::as_str).collect();
    let (records, _) = pull_all(&connector, &spec("Contact", &fields, false), None)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    for (field, value) in &values {
        assert_eq!(records[0].get(field), value, "{field}");
    }
    let (accounts, _) = pull_all(
        &connector,
        &spec("Account", &["leadscore_score"], false),
        None,
    )
    .await
    .unwrap();
    assert_eq!(accounts[0].get("leadscore_score"), &Value::Number(3.0));
}

#[tokio::test]
async fn lead_conversion_rules() {
    let portal = portal().await;
    portal.with(|state| {
        state.objects.insert(
            "contacts".into(),
            vec![
                object(
                    1,
                    &[
                        ("lastmodifieddate", iso(stamp(1))),
                        ("hs_lifecyclestage_lead_date", iso(stamp(-86_400))),
                        (
                            "hs_lifecyclestage_salesqualifiedlead_date",
                            iso(stamp(3_600)),
                        ),
                        ("company", "Mercy".into()),
                    ],
                ),
                object(
                    2,
                    &[
                        ("lastmodifieddate", iso(stamp(2))),
                        ("hs_lifecyclestage_lead_date", iso(stamp(-100))),
                        ("createdate", iso(stamp(-500))),
                    ],
                ),
                object(
                    3,
                    &[
                        ("lastmodifieddate", iso(stamp(3))),
                        ("hs_lifecyclestage_lead_date", iso(stamp(-100))),
                    ],
                ),
                object(
                    4,
                    &[
                        ("lastmodifieddate", iso(stamp(4))),
                        ("firstname", "Not".into()),
                        ("lastname", "Lead".into()),
                    ],
                ),
                object(
                    5,
                    &[
                        ("lastmodifieddate", iso(stamp(5))),
                        ("hs_lifecyclestage_lead_date", iso(stamp(-100))),
                        ("hs_lifecyclestage_opportunity_date", iso(stamp(7_200))),
                    ],
                ),
            ],
        );
        state.objects.insert(
            "deals".into(),
            vec![
                object(
                    40,
                    &[
                        ("hs_lastmodifieddate", iso(stamp(1))),
                        ("dealstage", "won".into()),
                        ("closedate", iso(stamp(86_400 * 3))),
                    ],
                ),
                object(
                    41,
                    &[
                        ("hs_lastmodifieddate", iso(stamp(1))),
                        ("dealstage", "lost".into()),
                        ("closedate", iso(stamp(86_400))),
                    ],
                ),
            ],
        );
        state.links.insert(
            ("contacts".into(), "deals".into()),
            BTreeMap::from([
                (
                    2,
                    vec![
                        Link {
                            to: 41,
                            types: vec![(4, None)],
                        },
                        Link {
                            to: 40,
                            types: vec![(4, None)],
                        },
                    ],
                ),
                (
                    3,
                    vec![Link {
                        to: 41,
                        types: vec![(4, None)],
                    }],
                ),
            ]),
        );
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let fields = [
        "Company",
        "IsConverted",
        "ConvertedDate",
        "ConvertedOpportunityId",
        "ConvertedContactId",
        "CreatedDate",
    ];
    let (leads, _) = pull_all(&connector, &spec("Lead", &fields, false), None)
        .await
        .unwrap();
    let ids: Vec<&str> = leads.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["1", "2", "3", "5"],
        "contact 4 never entered as a lead"
    );
    assert_eq!(leads[0].get("IsConverted"), &Value::Bool(true));
    assert_eq!(
        leads[0].get("ConvertedDate"),
        &Value::Date(stamp(3_600).date_naive())
    );
    assert_eq!(leads[0].get("Company"), &Value::Text("Mercy".into()));
    assert_eq!(
        leads[0].get("CreatedDate"),
        &Value::DateTime(stamp(-86_400))
    );
    assert_eq!(
        leads[1].get("IsConverted"),
        &Value::Bool(true),
        "a won deal converts"
    );
    assert_eq!(
        leads[1].get("ConvertedDate"),
        &Value::Date(stamp(86_400 * 3).date_naive())
    );
    assert_eq!(
        leads[1].get("ConvertedOpportunityId"),
        &Value::Text("40".into())
    );
    assert_eq!(leads[1].get("ConvertedContactId"), &Value::Text("2".into()));
    assert_eq!(
        leads[2].get("IsConverted"),
        &Value::Bool(false),
        "a lost deal does not convert"
    );
    assert_eq!(leads[2].get("ConvertedContactId"), &Value::Null);
    assert_eq!(
        leads[3].get("IsConverted"),
        &Value::Bool(true),
        "a later stage counts as reached"
    );
}

#[tokio::test]
async fn unknown_conversion_stage_rejected() {
    let portal = portal().await;
    let mut config = config(&portal);
    config.lead_converted_stage = "demo_booked".to_string();
    let connector = HubSpotConnector::new(config).unwrap();
    let error = connector
        .pull_first(&spec("Lead", &["IsConverted"], false), None)
        .await
        .unwrap_err();
    match &error {
        ConnectorError::Rejected { message, .. } => {
            assert!(message.contains("demo_booked"), "{message}");
            assert!(
                message.contains(&lifecycle_options().join(", ")),
                "{message}"
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(matches!(
        connector.check().await,
        Err(ConnectorError::Rejected { .. })
    ));
}

#[tokio::test]
async fn describe_maps_kinds() {
    let portal = portal().await;
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let account = connector.describe("Account").await.unwrap();
    let field = |name: &str| {
        account
            .field(name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    assert_eq!(field("hip_knee_discharges").kind, FieldKind::Number);
    assert_eq!(field("hospital_type").kind, FieldKind::Picklist);
    assert_eq!(
        field("hospital_type").picklist_values,
        vec!["acute", "critical_access"]
    );
    assert_eq!(field("emergency_services").kind, FieldKind::Boolean);
    assert_eq!(field("leadscore_reasons").kind, FieldKind::LongText);
    assert_eq!(field("leadscore_scored_at").kind, FieldKind::DateTime);
    assert!(field("leadscore_score").updateable);
    assert!(!field("createdate").updateable, "read-only value");
    assert_eq!(field("ParentId").reference_to, vec!["Account"]);
    assert_eq!(field("OwnerId").relationship_name.as_deref(), Some("Owner"));
    let opportunity = connector.describe("Opportunity").await.unwrap();
    assert_eq!(
        opportunity.field("StageName").unwrap().picklist_values,
        vec!["Closed Lost", "Closed Won", "Qualification"]
    );
    let error = connector.describe("Campaign").await.unwrap_err();
    assert!(
        matches!(error, ConnectorError::Rejected { ref code, .. } if code == "INVALID_TYPE"),
        "{error:?}"
    );
    let unknown = connector
        .pull_first(&spec("Account", &["hospital_typo"], false), None)
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("hospital_typo"), "{unknown}");
}

#[tokio::test]
async fn opportunities_and_owners() {
    let portal = portal().await;
    portal.with(|state| {
        state.objects.insert(
            "deals".into(),
            vec![
                object(
                    50,
                    &[
                        ("hs_lastmodifieddate", iso(stamp(1))),
                        ("dealstage", "won".into()),
                        ("amount", "125000".into()),
                        ("closedate", iso(stamp(86_400))),
                        ("hubspot_owner_id", "502".into()),
                        ("dealname", "Robot".into()),
                    ],
                ),
                object(
                    51,
                    &[
                        ("hs_lastmodifieddate", iso(stamp(2))),
                        ("dealstage", "s1".into()),
                        ("hubspot_owner_id", "501".into()),
                    ],
                ),
            ],
        );
        state.links.insert(
            ("deals".into(), "companies".into()),
            BTreeMap::from([(
                50,
                vec![
                    Link {
                        to: 700,
                        types: vec![(341, None)],
                    },
                    Link {
                        to: 701,
                        types: vec![(5, Some("Primary".into()))],
                    },
                ],
            )]),
        );
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let fields = [
        "AccountId",
        "Name",
        "StageName",
        "IsClosed",
        "IsWon",
        "Amount",
        "CloseDate",
        "Owner.IsActive",
    ];
    let (deals, _) = pull_all(&connector, &spec("Opportunity", &fields, false), None)
        .await
        .unwrap();
    assert_eq!(deals[0].get("AccountId"), &Value::Text("701".into()));
    assert_eq!(deals[0].get("StageName"), &Value::Text("Closed Won".into()));
    assert_eq!(deals[0].get("IsWon"), &Value::Bool(true));
    assert_eq!(deals[0].get("Amount"), &Value::Number(125_000.0));
    assert_eq!(
        deals[0].get("CloseDate"),
        &Value::Date(stamp(86_400).date_naive())
    );
    assert_eq!(deals[0].get("Owner.IsActive"), &Value::Bool(false));
    assert_eq!(deals[1].get("IsClosed"), &Value::Bool(false));
    assert_eq!(deals[1].get("AccountId"), &Value::Null);
    assert_eq!(deals[1].get("Owner.IsActive"), &Value::Bool(true));

    let (users, pages) = pull_all(
        &connector,
        &spec("User", &["Name", "Email", "IsActive"], false),
        None,
    )
    .await
    .unwrap();
    assert_eq!(pages, 1);
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].get("Name"), &Value::Text("Rep One".into()));
    assert_eq!(users[1].get("IsActive"), &Value::Bool(false));
    assert_eq!(connector.usage().map(|u| u.max), Some(250_000));
}

#[tokio::test]
async fn deleted_records_merged_in_order() {
    let portal = portal().await;
    portal.with(|state| {
        let mut companies: Vec<Object> = (1..=5u64)
            .map(|id| object(id, &[("hs_lastmodifieddate", iso(stamp(id as i64 * 10)))]))
            .collect();
        let mut archived = object(99, &[("hs_lastmodifieddate", iso(stamp(25)))]);
        archived.archived = true;
        companies.push(archived);
        let mut old = object(98, &[("hs_lastmodifieddate", iso(stamp(5)))]);
        old.archived = true;
        companies.push(old);
        state.objects.insert("companies".into(), companies);
    });
    let mut config = config(&portal);
    config.page_size = 2;
    let connector = HubSpotConnector::new(config).unwrap();
    let cursor = Cursor {
        modstamp: stamp(10),
        id: "1".into(),
    };
    let (records, _) = pull_all(&connector, &spec("Account", &["Name"], true), Some(&cursor))
        .await
        .unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["1", "2", "99", "3", "4", "5"]);
    assert!(records[2].deleted);
    assert!(!records[1].deleted);
}

#[tokio::test]
async fn activities_from_four_types() {
    let portal = portal().await;
    portal.with(|state| {
        state.objects.insert(
            "tasks".into(),
            vec![object(
                1,
                &[
                    ("hs_lastmodifieddate", iso(stamp(4))),
                    ("hs_timestamp", iso(stamp(86_400))),
                ],
            )],
        );
        state.objects.insert(
            "calls".into(),
            vec![
                object(2, &[("hs_lastmodifieddate", iso(stamp(1)))]),
                object(5, &[("hs_lastmodifieddate", iso(stamp(5)))]),
            ],
        );
        state.objects.insert(
            "emails".into(),
            vec![object(3, &[("hs_lastmodifieddate", iso(stamp(3)))])],
        );
        state.objects.insert(
            "notes".into(),
            vec![object(4, &[("hs_lastmodifieddate", iso(stamp(2)))])],
        );
        state.links.insert(
            ("tasks".into(), "companies".into()),
            BTreeMap::from([(
                1,
                vec![Link {
                    to: 700,
                    types: vec![(192, None)],
                }],
            )]),
        );
        state.links.insert(
            ("tasks".into(), "contacts".into()),
            BTreeMap::from([(
                1,
                vec![
                    Link {
                        to: 8,
                        types: vec![(204, None)],
                    },
                    Link {
                        to: 7,
                        types: vec![(204, None)],
                    },
                ],
            )]),
        );
    });
    let mut config = config(&portal);
    config.page_size = 1;
    let connector = HubSpotConnector::new(config).unwrap();
    let (records, _) = pull_all(
        &connector,
        &spec("Task", &["Type", "WhoId", "WhatId", "ActivityDate"], false),
        None,
    )
    .await
    .unwrap();
    let types: Vec<&Value> = records.iter().map(|r| r.get("Type")).collect();
    let expected = ["Call", "Note", "Email", "Task", "Call"].map(|t| Value::Text(t.to_string()));
    assert_eq!(types, expected.iter().collect::<Vec<_>>());
    assert_eq!(records[3].get("WhoId"), &Value::Text("7".into()));
    assert_eq!(records[3].get("WhatId"), &Value::Text("700".into()));
    assert_eq!(
        records[3].get("ActivityDate"),
        &Value::Date(NaiveDate::from_ymd_opt(2024, 5, 2).unwrap())
    );
}

#[tokio::test]
async fn ensure_properties_creates_missing() {
    let portal = portal().await;
    portal.with(|state| {
        state
            .properties
            .get_mut("companies")
            .unwrap()
            .retain(|p| !p["name"].as_str().unwrap().starts_with("leadscore"));
        // An existing tier property lacks option D.
        state
            .properties
            .get_mut("contacts")
            .unwrap()
            .retain(|p| p["name"] != "leadscore_tier");
        state.properties.get_mut("contacts").unwrap().push(property(
            "leadscore_tier",
            "enumeration",
            "select",
            &["A", "B", "C"],
            false,
        ));
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let mut specs = PropertySpec::standard("Account", &["A", "B", "C", "D"], false);
    specs.extend(PropertySpec::standard(
        "Contact",
        &["A", "B", "C", "D"],
        true,
    ));
    let report = connector.ensure_properties(&specs).await.unwrap();
    assert_eq!(report.groups_created, vec!["companies", "contacts"]);
    assert_eq!(report.created.len(), 6, "{report:?}");
    assert!(report
        .created
        .contains(&"Account.leadscore_tier (HubSpot companies)".to_string()));
    assert!(
        report
            .mismatched
            .iter()
            .any(|m| m.starts_with("Contact.leadscore_tier (HubSpot contacts)") && m.contains("D")),
        "{report:?}"
    );
    let created_tier = portal.with(|state| {
        state.properties["companies"]
            .iter()
            .find(|p| p["name"] == "leadscore_tier")
            .cloned()
            .unwrap()
    });
    assert_eq!(created_tier["type"], "enumeration");
    assert_eq!(created_tier["groupName"], "leadscore");
    assert_eq!(created_tier["options"].as_array().unwrap().len(), 4);

    let again = connector.ensure_properties(&specs).await.unwrap();
    assert!(again.created.is_empty(), "{again:?}");
    assert!(again.groups_created.is_empty());
    assert_eq!(again.existing.len(), 10);
}

#[tokio::test]
async fn private_token_rejected_is_auth() {
    let portal = portal().await;
    let mut config = config(&portal);
    config.auth = HubSpotAuth::PrivateApp(SecretString::from("pat-na1-wrong"));
    let connector = HubSpotConnector::new(config).unwrap();
    let error = connector.check().await.unwrap_err();
    assert!(matches!(error, ConnectorError::Auth(_)), "{error:?}");
    assert!(!error.to_string().contains("pat-na1-wrong"));
}

#[tokio::test]
async fn malformed_association_page_is_a_clear_error() {
    let portal = portal().await;
    portal.with(|state| {
        state.objects.insert(
            "contacts".into(),
            vec![object(7, &[("lastmodifieddate", iso(stamp(1)))])],
        );
        state.links.insert(
            ("contacts".into(), "companies".into()),
            BTreeMap::from([(
                7,
                vec![Link {
                    to: 900,
                    types: vec![(1, Some("Primary".into()))],
                }],
            )]),
        );
        // A proxy or an API change: the page is JSON, but not an association page.
        state.injected.push_back(Injected {
            path_prefix: "/crm/v4/associations/contacts/companies/batch/read".into(),
            status: 200,
            body: json!({"status": "COMPLETE", "results": "not a list"}),
            retry_after: None,
        });
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let err = pull_all(&connector, &spec("Contact", &["AccountId"], false), None)
        .await
        .expect_err("a malformed page stops the pull");
    assert!(matches!(err, ConnectorError::Payload(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("associations"), "{text}");
}

/// HubSpot returns 423 Locked while it syncs a large volume of writes to the same records,
/// and documents that the lock lasts 2 s, so the batch is sent again after that.
#[tokio::test]
async fn locked_423_retried_after_two_seconds() {
    let portal = portal().await;
    portal.with(|state| {
        state.objects.insert("contacts".into(), vec![object(1, &[("lastmodifieddate", iso(stamp(1)))])]);
        state.injected.push_back(Injected {
            path_prefix: "/crm/v3/objects/contacts/batch/update".into(),
            status: 423,
            body: json!({"status": "error", "message": "The record is locked by another request", "category": "LOCKED"}),
            retry_after: None,
        });
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let updates = vec![RecordUpdate {
        object: "Contact".into(),
        id: "1".into(),
        fields: BTreeMap::from([("leadscore_score".to_string(), Value::Number(42.0))]),
    }];

    let outcomes = connector.update(&updates).await.unwrap();

    assert!(outcomes[0].result.is_ok(), "{:?}", outcomes[0].result);
    let writes: Vec<_> = portal
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/batch/update"))
        .collect();
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[0].status, 423);
    let gap = writes[1].at.duration_since(writes[0].at);
    assert!(gap >= Duration::from_millis(1950), "resent after {gap:?}");
    let stored = portal.with(|state| {
        state.objects["contacts"][0]
            .properties
            .get("leadscore_score")
            .cloned()
    });
    assert_eq!(stored.as_deref(), Some("42"));
}

/// HubSpot returns 477 while it moves a portal between data-hosting locations, with a
/// `Retry-After` of up to a day. A short wait is sat out. A long one ends the call with an
/// error that names the wait instead of a bare status.
#[tokio::test]
async fn migration_477_short_wait_retried() {
    let portal = portal().await;
    portal.with(|state| {
        state.objects.insert(
            "contacts".into(),
            vec![object(1, &[("lastmodifieddate", iso(stamp(1)))])],
        );
        state.injected.push_back(Injected {
            path_prefix: "/crm/v3/objects/contacts/search".into(),
            status: 477,
            body: json!({"status": "error", "message": "Migration in progress"}),
            retry_after: Some("1".into()),
        });
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();

    let (records, _) = pull_all(&connector, &spec("Contact", &[], false), None)
        .await
        .unwrap();

    assert_eq!(records.len(), 1);
    let searches: Vec<_> = portal
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/search"))
        .collect();
    assert_eq!(searches.len(), 2);
    assert!(searches[1].at.duration_since(searches[0].at) >= Duration::from_millis(950));
}

#[tokio::test]
async fn migration_477_long_wait_named() {
    let portal = portal().await;
    portal.with(|state| {
        state.injected.push_back(Injected {
            path_prefix: "/crm/v3/objects/contacts/search".into(),
            status: 477,
            body: json!({"status": "error", "message": "Migration in progress"}),
            retry_after: Some("7200".into()),
        });
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();

    let error = connector
        .pull_first(&spec("Contact", &[], false), None)
        .await
        .unwrap_err();

    match &error {
        ConnectorError::Transport(message) => {
            assert!(message.contains("477"), "{message}");
            assert!(message.contains("data-hosting"), "{message}");
            assert!(message.contains("7200 s"), "{message}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    let searches = portal
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/search"))
        .count();
    assert_eq!(searches, 1, "a wait past the cap is not sat out");
}

/// A proxy or captive portal between leadscore and HubSpot can return its own HTML page with
/// a 200 status. The error then shows the page instead of a JSON parser position.
#[tokio::test]
async fn html_page_with_200_named() {
    let portal = portal().await;
    portal.with(|state| {
        state.injected.push_back(Injected {
            path_prefix: "/crm/v3/objects/contacts/search".into(),
            status: 200,
            body: json!("<html><body><h1>Access blocked by the web filter</h1></body></html>"),
            retry_after: None,
        });
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();

    let error = connector
        .pull_first(&spec("Contact", &[], false), None)
        .await
        .unwrap_err();

    match &error {
        ConnectorError::Payload(message) => {
            assert!(message.contains("HTTP 200"), "{message}");
            assert!(
                message.contains("Access blocked by the web filter"),
                "{message}"
            );
            assert!(message.contains("proxy"), "{message}");
        }
        other => panic!("expected Payload, got {other:?}"),
    }
}

/// A search page can contain fewer results than the requested `limit` while `total` and
/// `paging.next` show that more match. The pull must go on instead of ending there.
#[tokio::test]
async fn short_search_pages_followed() {
    let portal = portal().await;
    portal.with(|state| {
        let mut contacts: Vec<Object> = (1..=250u64)
            .map(|id| object(id, &[("lastmodifieddate", iso(stamp(id as i64)))]))
            .collect();
        // 150 more that share one stamp, so one stamp alone spans several short pages.
        contacts
            .extend((251..=400u64).map(|id| object(id, &[("lastmodifieddate", iso(stamp(1000)))])));
        state.objects.insert("contacts".into(), contacts);
        state.search_page_cap = Some(100);
    });
    let mut config = config(&portal);
    config.page_size = 200;
    let connector = HubSpotConnector::new(config).unwrap();

    let (records, _) = pull_all(&connector, &spec("Contact", &[], false), None)
        .await
        .unwrap();

    assert_ordered_once(&records, 400);
}

/// HubSpot returns 502 and 504 when a call hits its processing time limit, and the call may
/// still complete. Sending a task create again could give the owner the task twice, so the
/// error goes back to the caller, which looks the tasks up before it creates them again.
#[tokio::test]
async fn task_create_not_resent_after_504() {
    let portal = portal().await;
    portal.with(|state| {
        state.injected.push_back(Injected {
            path_prefix: "/crm/v3/objects/tasks/batch/create".into(),
            status: 504,
            body: json!({"status": "error", "message": "The request timed out", "category": "TIMEOUT"}),
            retry_after: None,
        });
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();
    let task = leadscore_connector::NewTask {
        object: "Contact".into(),
        record_id: "1".into(),
        owner_id: "501".into(),
        subject: "Call back".into(),
        body: "Score rose to 91. marker7".into(),
        due: NaiveDate::from_ymd_opt(2024, 5, 3).unwrap(),
        priority: leadscore_connector::TaskPriority::High,
    };

    let error = connector.create_tasks(&[task]).await.unwrap_err();

    match &error {
        ConnectorError::Transport(message) => {
            assert!(message.contains("504"), "{message}");
            assert!(message.contains("not sent again"), "{message}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    let creates = portal
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/batch/create"))
        .count();
    assert_eq!(creates, 1);
}

/// HubSpot can also return an empty search page whose `paging.next.after` leads to more
/// results. The pull follows it instead of taking the empty page as the end.
#[tokio::test]
async fn empty_search_page_with_next_followed() {
    let portal = portal().await;
    portal.with(|state| {
        let contacts = (1..=3u64)
            .map(|id| object(id, &[("lastmodifieddate", iso(stamp(id as i64)))]))
            .collect();
        state.objects.insert("contacts".into(), contacts);
        state.empty_first_pages = 1;
    });
    let connector = HubSpotConnector::new(config(&portal)).unwrap();

    let (records, _) = pull_all(&connector, &spec("Contact", &[], false), None)
        .await
        .unwrap();

    assert_ordered_once(&records, 3);
}
