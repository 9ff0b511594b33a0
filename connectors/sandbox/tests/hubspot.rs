//! The HubSpot sandbox over real HTTP on loopback: seeding, paging, search, batch writes,
//! associations, properties, rate limits and OAuth.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use leadscore_demo_org::{generate, DemoOptions, DemoOrg};
use leadscore_sandbox::hubspot::{HubSpotHandle, ObjectType};
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, RunningHubSpot};
use reqwest::{Client, Response};
use serde_json::{json, Value};

/// Returns the demo world with 60 hospitals, generated once per test binary.
fn demo() -> &'static DemoOrg {
    static ORG: OnceLock<DemoOrg> = OnceLock::new();
    ORG.get_or_init(|| {
        let options = DemoOptions {
            max_hospitals: Some(60),
            ..DemoOptions::default()
        };
        generate(&options).expect("demo org generates")
    })
}

struct Fixture {
    portal: RunningHubSpot,
    client: Client,
    token: String,
}

impl Fixture {
    async fn start(
        records: BTreeMap<String, Vec<leadscore_sandbox::RecordMap>>,
        options: HubSpotOptions,
    ) -> Fixture {
        let sandbox = HubSpotSandbox::new(records, options).expect("records seed");
        let portal = sandbox
            .serve("127.0.0.1:0".parse().expect("loopback address"))
            .await
            .expect("binds");
        let token = portal.options().private_app_token.clone();
        Fixture {
            portal,
            client: Client::new(),
            token,
        }
    }

    async fn demo() -> Fixture {
        Fixture::start(demo().records.clone(), HubSpotOptions::default()).await
    }

    async fn empty() -> Fixture {
        Fixture::start(BTreeMap::new(), HubSpotOptions::default()).await
    }

    fn handle(&self) -> HubSpotHandle {
        self.portal.handle()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.portal.url())
    }

    async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request sent")
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON body")
    }

    async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.post(path, body).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Searches with a generous per-second limit, so that tests can page quickly.
    async fn total(&self, object: &str) -> u64 {
        let (status, body) = self
            .post_json(
                &format!("/crm/v3/objects/{object}/search"),
                &json!({"limit": 1}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["total"].as_u64().expect("total is a number")
    }
}

fn records_of<'a>(org: &'a DemoOrg, object: &str) -> &'a [leadscore_sandbox::RecordMap] {
    org.records.get(object).map(Vec::as_slice).unwrap_or(&[])
}

#[tokio::test]
async fn seeding_counts_match_demo_org() {
    let fixture = Fixture::demo().await;
    fixture.handle().set_search_per_second_limit(100);
    let org = demo();
    let converted = records_of(org, "Lead")
        .iter()
        .filter(|lead| lead["IsConverted"] == json!(true) && lead["ConvertedContactId"].is_string())
        .count();
    let contacts = records_of(org, "Contact").len() + records_of(org, "Lead").len() - converted;
    let tasks = records_of(org, "Task");
    let of_type = |kind: &str| tasks.iter().filter(|t| t["Type"] == json!(kind)).count();
    let expected = [
        ("companies", records_of(org, "Account").len()),
        ("contacts", contacts),
        ("deals", records_of(org, "Opportunity").len()),
        ("calls", of_type("Call")),
        ("emails", of_type("Email")),
        ("tasks", tasks.len() - of_type("Call") - of_type("Email")),
        ("meetings", records_of(org, "Event").len()),
        ("notes", 0),
    ];
    for (object, count) in expected {
        assert_eq!(fixture.total(object).await, count as u64, "{object}");
    }
    assert!(converted > 0, "the demo world converts some leads");

    let users = records_of(org, "User");
    let inactive = users
        .iter()
        .filter(|u| u["IsActive"] == json!(false))
        .count();
    let active = fixture.get_json("/crm/v3/owners?limit=500").await;
    let archived = fixture
        .get_json("/crm/v3/owners?limit=500&archived=true")
        .await;
    assert_eq!(
        active["results"].as_array().map(Vec::len),
        Some(users.len() - inactive)
    );
    assert_eq!(archived["results"].as_array().map(Vec::len), Some(inactive));
    if inactive > 0 {
        assert_eq!(archived["results"][0]["archived"], json!(true));
        assert_eq!(archived["results"][0]["userId"], Value::Null);
    }
}

#[tokio::test]
async fn seeded_company_has_hospital_values_and_parent() {
    let fixture = Fixture::demo().await;
    let org = demo();
    let ids = fixture.portal.id_map();
    let hospital = records_of(org, "Account")
        .iter()
        .find(|a| a["ParentId"].is_string() && a["CMS_Overall_Rating__c"].is_number())
        .expect("a hospital in a health system with a rating");
    let company = &ids[hospital["Id"].as_str().unwrap()];
    let parent = &ids[hospital["ParentId"].as_str().unwrap()];
    let body = fixture
        .get_json(&format!(
            "/crm/v3/objects/companies/{company}?properties=name,cms_overall_rating,hubspot_owner_id,state,no_such_property"
        ))
        .await;
    assert_eq!(body["properties"]["name"], hospital["Name"]);
    assert_eq!(body["properties"]["state"], hospital["BillingState"]);
    let rating = body["properties"]["cms_overall_rating"]
        .as_str()
        .expect("a string value");
    assert_eq!(
        rating.parse::<f64>().ok(),
        hospital["CMS_Overall_Rating__c"].as_f64()
    );
    let owner = &ids[hospital["OwnerId"].as_str().unwrap()];
    assert_eq!(body["properties"]["hubspot_owner_id"], json!(owner));
    assert!(body["properties"].get("no_such_property").is_none());

    let links = fixture
        .get_json(&format!(
            "/crm/v4/objects/companies/{company}/associations/companies"
        ))
        .await;
    let results = links["results"].as_array().expect("results");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["toObjectId"].to_string(), *parent);
    assert_eq!(results[0]["associationTypes"][0]["label"], "Parent Company");
    assert_eq!(results[0]["associationTypes"][0]["typeId"], 14);
}

#[tokio::test]
async fn converted_lead_becomes_one_contact() {
    let fixture = Fixture::demo().await;
    let org = demo();
    let ids = fixture.portal.id_map();
    let lead = records_of(org, "Lead")
        .iter()
        .find(|l| l["ConvertedOpportunityId"].is_string())
        .expect("a lead converted with an opportunity");
    let contact_id = &ids[lead["Id"].as_str().unwrap()];
    assert_eq!(
        &ids[lead["ConvertedContactId"].as_str().unwrap()],
        contact_id
    );
    let body = fixture
        .get_json(&format!(
            "/crm/v3/objects/contacts/{contact_id}?properties=lifecyclestage,hs_lifecyclestage_lead_date,hs_lifecyclestage_salesqualifiedlead_date,company,lead_source&associations=companies,deals"
        ))
        .await;
    let properties = &body["properties"];
    assert_eq!(properties["lifecyclestage"], "opportunity");
    let lead_date = properties["hs_lifecyclestage_lead_date"].as_str().unwrap();
    assert_eq!(lead_date[..19], lead["CreatedDate"].as_str().unwrap()[..19]);
    let sql_date = properties["hs_lifecyclestage_salesqualifiedlead_date"]
        .as_str()
        .unwrap();
    assert_eq!(&sql_date[..10], lead["ConvertedDate"].as_str().unwrap());
    assert_eq!(properties["company"], lead["Company"]);
    assert_eq!(properties["lead_source"], lead["LeadSource"]);
    let deal = &ids[lead["ConvertedOpportunityId"].as_str().unwrap()];
    let deals: Vec<&str> = body["associations"]["deals"]["results"]
        .as_array()
        .expect("deal associations")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(deals.contains(&deal.as_str()), "{deals:?}");
    let company_types: Vec<&str> = body["associations"]["companies"]["results"]
        .as_array()
        .expect("company associations")
        .iter()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert_eq!(
        company_types,
        ["contact_to_company", "contact_to_company_unlabeled"]
    );
}

#[tokio::test]
async fn deal_stages_carry_pipeline_metadata() {
    let fixture = Fixture::demo().await;
    let org = demo();
    let ids = fixture.portal.id_map();
    let pipelines = fixture.get_json("/crm/v3/pipelines/deals").await;
    let hospital = pipelines["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "hospital-capital")
        .expect("the hospital pipeline");
    assert_eq!(hospital["label"], "Hospital capital equipment");
    assert_eq!(hospital["stages"].as_array().map(Vec::len), Some(6));
    for won in [true, false] {
        let opportunity = records_of(org, "Opportunity")
            .iter()
            .find(|o| o["IsClosed"] == json!(true) && o["IsWon"] == json!(won))
            .expect("a closed opportunity");
        let deal = &ids[opportunity["Id"].as_str().unwrap()];
        let body = fixture
            .get_json(&format!("/crm/v3/objects/deals/{deal}"))
            .await;
        let stage_id = body["properties"]["dealstage"].as_str().unwrap();
        let stage = hospital["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == stage_id)
            .expect("the deal's stage is in the pipeline");
        assert_eq!(stage["label"], opportunity["StageName"]);
        assert_eq!(stage["metadata"]["isClosed"], "true");
        let probability = if won { "1.0" } else { "0.0" };
        assert_eq!(stage["metadata"]["probability"], probability);
        assert_eq!(body["properties"]["pipeline"], "hospital-capital");
        assert_eq!(body["properties"]["dealname"], opportunity["Name"]);
    }
}

#[tokio::test]
async fn list_pages_through_every_contact() {
    let fixture = Fixture::demo().await;
    let expected = fixture.handle().count(ObjectType::Contacts);
    let mut seen = Vec::new();
    let mut path = "/crm/v3/objects/contacts?limit=100&properties=email".to_string();
    loop {
        let body = fixture.get_json(&path).await;
        let results = body["results"].as_array().expect("results");
        assert!(results.len() <= 100);
        for record in results {
            assert!(
                record["properties"]["email"].is_string()
                    || record["properties"]["email"].is_null()
            );
            assert!(record["properties"]["lastmodifieddate"].is_string());
            assert!(record["createdAt"].is_string());
            assert!(record["updatedAt"].is_string());
            seen.push(record["id"].as_str().unwrap().parse::<u64>().unwrap());
        }
        match body["paging"]["next"]["after"].as_str() {
            Some(after) => {
                path = format!("/crm/v3/objects/contacts?limit=100&properties=email&after={after}")
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), expected);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ids ascend");
    let too_big = fixture.get("/crm/v3/objects/contacts?limit=101").await;
    assert_eq!(too_big.status(), 400);
    let bad_cursor = fixture.get("/crm/v3/objects/contacts?after=%25%25").await;
    assert_eq!(bad_cursor.status(), 400);
}

#[tokio::test]
async fn archived_records_list_separately() {
    let fixture = Fixture::empty().await;
    let handle = fixture.handle();
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let ids = handle.add_contacts(3, at);
    handle.archive(ObjectType::Contacts, &ids[1]).unwrap();
    let live = fixture.get_json("/crm/v3/objects/contacts").await;
    let live_ids: Vec<&str> = live["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(live_ids, [ids[0].as_str(), ids[2].as_str()]);
    let archived = fixture
        .get_json("/crm/v3/objects/contacts?archived=true")
        .await;
    assert_eq!(archived["results"][0]["id"], json!(ids[1]));
    assert_eq!(archived["results"][0]["archived"], json!(true));
    assert!(archived["results"][0]["archivedAt"].is_string());
    let missing = fixture
        .get(&format!("/crm/v3/objects/contacts/{}", ids[1]))
        .await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["category"], "OBJECT_NOT_FOUND");
    assert!(body["correlationId"].is_string());
}

#[tokio::test]
async fn search_stops_at_ten_thousand_results() {
    let fixture = Fixture::empty().await;
    let handle = fixture.handle();
    handle.set_search_per_second_limit(1000);
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    handle.add_contacts(10_050, at);
    let body = |after: Option<String>| {
        let mut body = json!({
            "filterGroups": [{"filters": [
                {"propertyName": "lastmodifieddate", "operator": "EQ", "value": at.timestamp_millis().to_string()}
            ]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["email"],
            "limit": 200,
        });
        if let Some(after) = after {
            body["after"] = json!(after);
        }
        body
    };
    let mut seen = HashSet::new();
    let mut after = None;
    let last_status = loop {
        let (status, page) = fixture
            .post_json("/crm/v3/objects/contacts/search", &body(after.clone()))
            .await;
        if status != 200 {
            assert_eq!(page["category"], "VALIDATION_ERROR");
            break status;
        }
        assert_eq!(page["total"], 10_050);
        for record in page["results"].as_array().unwrap() {
            seen.insert(record["id"].as_str().unwrap().to_string());
        }
        after = page["paging"]["next"]["after"].as_str().map(str::to_string);
        assert!(after.is_some(), "paging continues up to the cap");
    };
    assert_eq!(last_status, 400);
    assert_eq!(after.as_deref(), Some("10000"));
    assert_eq!(seen.len(), 10_000);
}

#[tokio::test]
async fn search_filters_sorts_and_limits() {
    let fixture = Fixture::empty().await;
    let handle = fixture.handle();
    handle.set_search_per_second_limit(1000);
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let ids = handle.add_contacts(5, at);
    for (index, id) in ids.iter().enumerate() {
        handle
            .set_property(
                ObjectType::Contacts,
                id,
                "jobtitle",
                &format!("Title {index}"),
            )
            .unwrap();
    }
    handle
        .set_property(ObjectType::Contacts, &ids[4], "jobtitle", "")
        .unwrap();
    handle
        .set_property(ObjectType::Contacts, &ids[0], "buying_role", "Finance")
        .unwrap();
    handle
        .set_property(
            ObjectType::Contacts,
            &ids[1],
            "buying_role",
            "Administrator",
        )
        .unwrap();
    let search = |filters: Value| json!({"filterGroups": [{"filters": filters}], "sorts": [{"propertyName": "hs_object_id", "direction": "DESCENDING"}], "limit": 200});
    let found = |page: &Value| -> Vec<String> {
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let cases = [
        (
            json!([{"propertyName": "jobtitle", "operator": "HAS_PROPERTY"}]),
            vec![3, 2, 1, 0],
        ),
        (
            json!([{"propertyName": "jobtitle", "operator": "NOT_HAS_PROPERTY"}]),
            vec![4],
        ),
        (
            json!([{"propertyName": "jobtitle", "operator": "EQ", "value": "title 2"}]),
            vec![2],
        ),
        (
            json!([{"propertyName": "buying_role", "operator": "IN", "values": ["Finance", "Administrator"]}]),
            vec![1, 0],
        ),
        (
            json!([{"propertyName": "hs_object_id", "operator": "BETWEEN", "value": ids[1], "highValue": ids[3]}]),
            vec![3, 2, 1],
        ),
        (
            json!([{"propertyName": "hs_object_id", "operator": "GT", "value": ids[3]}]),
            vec![4],
        ),
        (
            json!([{"propertyName": "hs_object_id", "operator": "LTE", "value": ids[0]}]),
            vec![0],
        ),
    ];
    for (filters, expected) in cases {
        let (status, page) = fixture
            .post_json("/crm/v3/objects/contacts/search", &search(filters.clone()))
            .await;
        assert_eq!(status, 200, "{filters}: {page}");
        let expected: Vec<String> = expected.iter().map(|&i| ids[i].clone()).collect();
        assert_eq!(found(&page), expected, "{filters}");
        assert_eq!(page["total"], json!(expected.len()));
    }

    // Two groups are ORed.
    let either = json!({"filterGroups": [
        {"filters": [{"propertyName": "jobtitle", "operator": "EQ", "value": "Title 0"}]},
        {"filters": [{"propertyName": "jobtitle", "operator": "EQ", "value": "Title 3"}]}
    ]});
    let (_, page) = fixture
        .post_json("/crm/v3/objects/contacts/search", &either)
        .await;
    assert_eq!(found(&page), [ids[0].clone(), ids[3].clone()]);

    let filter = json!({"propertyName": "jobtitle", "operator": "HAS_PROPERTY"});
    let six_groups = json!({"filterGroups": vec![json!({"filters": [filter]}); 6]});
    let eleven = json!({"filterGroups": [{"filters": vec![filter.clone(); 11]}]});
    let twenty_six = json!({"filterGroups": [
        {"filters": vec![filter.clone(); 10]}, {"filters": vec![filter.clone(); 10]}, {"filters": vec![filter.clone(); 6]}
    ]});
    let unknown = json!({"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ", "value": "x"}]}]});
    let big_limit = json!({"limit": 201});
    for body in [six_groups, eleven, twenty_six, unknown, big_limit] {
        let (status, page) = fixture
            .post_json("/crm/v3/objects/contacts/search", &body)
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(page["category"], "VALIDATION_ERROR");
    }
    let (status, page) = fixture
        .post_json("/crm/v3/objects/contacts/search", &json!({"limit": 2}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 5);
    assert_eq!(page["paging"]["next"]["after"], "2");
    let response = fixture
        .post("/crm/v3/objects/contacts/search", &json!({}))
        .await;
    assert!(response.headers().get("x-hubspot-ratelimit-max").is_none());
}

#[tokio::test]
async fn batch_update_reports_partial_failure() {
    let fixture = Fixture::empty().await;
    let handle = fixture.handle();
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let ids = handle.add_contacts(3, at);
    handle.fail_updates(ObjectType::Contacts, &ids[1]).unwrap();
    let body = json!({"inputs": [
        {"id": ids[0], "properties": {"jobtitle": "Surgeon", "specialty": "Orthopedics"}},
        {"id": ids[1], "properties": {"jobtitle": "Nurse"}},
        {"id": "999", "properties": {"jobtitle": "Ghost"}},
    ]});
    let (status, page) = fixture
        .post_json("/crm/v3/objects/contacts/batch/update", &body)
        .await;
    assert_eq!(status, 207, "{page}");
    assert_eq!(page["status"], "COMPLETE");
    assert_eq!(page["numErrors"], 2);
    assert_eq!(page["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["results"][0]["id"], json!(ids[0]));
    let errors = page["errors"].as_array().unwrap();
    let failed: Vec<&Value> = errors
        .iter()
        .flat_map(|e| e["context"]["ids"].as_array().unwrap())
        .collect();
    assert!(failed.contains(&&json!(ids[1])));
    assert!(failed.contains(&&json!("999")));
    assert!(errors.iter().any(|e| e["category"] == "OBJECT_NOT_FOUND"));

    let stored = handle.properties(ObjectType::Contacts, &ids[0]).unwrap();
    assert_eq!(stored["jobtitle"], "Surgeon");
    assert!(stored["lastmodifieddate"].as_str() > "2024-05-01T12:00:00.000Z");
    assert!(!handle
        .properties(ObjectType::Contacts, &ids[1])
        .unwrap()
        .contains_key("jobtitle"));

    let ok = json!({"inputs": [{"id": ids[2], "properties": {"jobtitle": "Buyer"}}]});
    let (status, page) = fixture
        .post_json("/crm/v3/objects/contacts/batch/update", &ok)
        .await;
    assert_eq!(status, 200);
    assert!(page.get("errors").is_none());

    let invalid = json!({"inputs": [
        {"id": ids[0], "properties": {"jobtitle": "Changed"}},
        {"id": ids[2], "properties": {"buying_role": "Janitor", "no_such": "x"}},
    ]});
    let (status, page) = fixture
        .post_json("/crm/v3/objects/contacts/batch/update", &invalid)
        .await;
    assert_eq!(status, 400);
    assert_eq!(page["category"], "VALIDATION_ERROR");
    let codes: Vec<&str> = page["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert!(
        codes.contains(&"INVALID_OPTION") && codes.contains(&"PROPERTY_DOESNT_EXIST"),
        "{codes:?}"
    );
    assert_eq!(
        handle.properties(ObjectType::Contacts, &ids[0]).unwrap()["jobtitle"],
        "Surgeon"
    );

    let many: Vec<Value> = (0..101)
        .map(|_| json!({"id": ids[0], "properties": {}}))
        .collect();
    let (status, _) = fixture
        .post_json(
            "/crm/v3/objects/contacts/batch/update",
            &json!({"inputs": many}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn batch_read_and_create() {
    let fixture = Fixture::empty().await;
    let create = json!({"inputs": [
        {"properties": {"firstname": "Ada", "email": "ada@example.test"}},
        {"properties": {"firstname": "Ben", "email": "ben@example.test"}},
    ]});
    let (status, page) = fixture
        .post_json("/crm/v3/objects/contacts/batch/create", &create)
        .await;
    assert_eq!(status, 201, "{page}");
    let ids: Vec<String> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let read = json!({"properties": ["firstname"], "inputs": [{"id": ids[1]}, {"id": "12345"}]});
    let (status, page) = fixture
        .post_json("/crm/v3/objects/contacts/batch/read", &read)
        .await;
    assert_eq!(status, 207);
    assert_eq!(page["results"][0]["properties"]["firstname"], "Ben");
    assert_eq!(page["errors"][0]["context"]["ids"], json!(["12345"]));
}

#[tokio::test]
async fn merge_keeps_primary_and_redirects() {
    let fixture = Fixture::empty().await;
    let handle = fixture.handle();
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let ids = handle.add_contacts(2, at);
    handle
        .set_property(ObjectType::Contacts, &ids[1], "jobtitle", "Surgeon")
        .unwrap();
    let body = json!({"primaryObjectId": ids[0], "objectIdToMerge": ids[1]});
    let (status, merged) = fixture
        .post_json("/crm/v3/objects/contacts/merge", &body)
        .await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["id"], json!(ids[0]));
    assert_eq!(merged["properties"]["hs_merged_object_ids"], json!(ids[1]));
    let absorbed = fixture
        .get_json(&format!(
            "/crm/v3/objects/contacts/{}?properties=jobtitle",
            ids[1]
        ))
        .await;
    assert_eq!(absorbed["id"], json!(ids[0]));
    assert_eq!(absorbed["properties"]["jobtitle"], "Surgeon");
    assert_eq!(handle.count(ObjectType::Contacts), 1);
}

#[tokio::test]
async fn associations_page_and_carry_labels() {
    let fixture = Fixture::demo().await;
    let handle = fixture.handle();
    let org = demo();
    let ids = fixture.portal.id_map();
    let mut roles_per_deal: BTreeMap<&str, Vec<&leadscore_sandbox::RecordMap>> = BTreeMap::new();
    for role in records_of(org, "OpportunityContactRole") {
        roles_per_deal
            .entry(role["OpportunityId"].as_str().unwrap())
            .or_default()
            .push(role);
    }
    let (opportunity, roles) = roles_per_deal
        .iter()
        .max_by_key(|(_, roles)| roles.len())
        .expect("contact roles exist");
    assert!(roles.len() >= 2, "a deal with several contact roles");
    let deal = &ids[*opportunity];
    let expected: HashSet<String> = roles
        .iter()
        .map(|r| ids[r["ContactId"].as_str().unwrap()].clone())
        .collect();

    let mut found = HashSet::new();
    let mut path = format!("/crm/v4/objects/deals/{deal}/associations/contacts?limit=1");
    let mut pages = 0;
    loop {
        let body = fixture.get_json(&path).await;
        pages += 1;
        for row in body["results"].as_array().unwrap() {
            found.insert(row["toObjectId"].to_string());
            let types = row["associationTypes"].as_array().unwrap();
            assert!(
                types
                    .iter()
                    .any(|t| t["typeId"] == 3 && t["label"].is_null()),
                "{types:?}"
            );
        }
        match body["paging"]["next"]["after"].as_str() {
            Some(after) => {
                path = format!(
                    "/crm/v4/objects/deals/{deal}/associations/contacts?limit=1&after={after}"
                )
            }
            None => break,
        }
    }
    assert!(expected.is_subset(&found), "{expected:?} in {found:?}");
    assert_eq!(pages, found.len());

    // The same pair under two labels.
    let role = roles[0];
    let contact = &ids[role["ContactId"].as_str().unwrap()];
    let first = role["Role"].as_str().unwrap();
    let second = if first == "Finance" {
        "Administrator"
    } else {
        "Finance"
    };
    handle
        .associate(
            (ObjectType::Deals, deal),
            (ObjectType::Contacts, contact),
            Some(second),
        )
        .unwrap();
    let batch = json!({"inputs": [{"id": deal}, {"id": "1"}]});
    let (status, page) = fixture
        .post_json("/crm/v4/associations/deals/contacts/batch/read", &batch)
        .await;
    assert_eq!(status, 207, "{page}");
    assert_eq!(page["errors"][0]["context"]["fromObjectId"], json!(["1"]));
    let to = page["results"][0]["to"].as_array().unwrap();
    let row = to
        .iter()
        .find(|r| r["toObjectId"].to_string().as_str() == contact.as_str())
        .expect("the contact");
    let labels: HashSet<&str> = row["associationTypes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["label"].as_str())
        .collect();
    assert_eq!(labels, HashSet::from([first, second]));
    let user_defined = row["associationTypes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["category"] == "USER_DEFINED")
        .count();
    assert_eq!(user_defined, 2);

    // The inverse direction carries the labels too.
    let back = fixture
        .get_json(&format!(
            "/crm/v4/objects/contacts/{contact}/associations/deals"
        ))
        .await;
    let row = back["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["toObjectId"].to_string().as_str() == deal.as_str())
        .expect("the deal");
    assert_eq!(row["associationTypes"].as_array().unwrap().len(), 3);

    let definitions = fixture
        .get_json("/crm/v4/associations/deals/contacts/labels")
        .await;
    let defined: HashSet<&str> = definitions["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["label"].as_str())
        .collect();
    assert!(
        defined.contains("Surgeon Champion") && defined.contains("Patient Safety"),
        "{defined:?}"
    );
}

#[tokio::test]
async fn rate_limit_headers_and_429() {
    let fixture = Fixture::empty().await;
    let handle = fixture.handle();
    let first = fixture.get("/crm/v3/objects/contacts").await;
    let header = |response: &Response, name: &str| -> Option<String> {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        header(&first, "x-hubspot-ratelimit-max").as_deref(),
        Some("190")
    );
    assert_eq!(
        header(&first, "x-hubspot-ratelimit-remaining").as_deref(),
        Some("189")
    );
    assert_eq!(
        header(&first, "x-hubspot-ratelimit-interval-milliseconds").as_deref(),
        Some("10000")
    );
    assert_eq!(
        header(&first, "x-hubspot-ratelimit-daily").as_deref(),
        Some("1000000")
    );
    assert_eq!(
        header(&first, "x-hubspot-ratelimit-daily-remaining").as_deref(),
        Some("999999")
    );
    let second = fixture.get("/crm/v3/objects/contacts").await;
    assert_eq!(
        header(&second, "x-hubspot-ratelimit-remaining").as_deref(),
        Some("188")
    );

    handle.set_ten_second_limit(3, Duration::from_millis(800));
    let third = fixture.get("/crm/v3/objects/contacts").await;
    assert_eq!(third.status(), 200);
    let limited = fixture.get("/crm/v3/objects/contacts").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("1"));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(
        body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    tokio::time::sleep(Duration::from_millis(850)).await;
    assert_eq!(fixture.get("/crm/v3/objects/contacts").await.status(), 200);

    handle.set_ten_second_limit(1000, Duration::from_secs(10));
    handle.set_search_per_second_limit(2);
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    for _ in 0..3 {
        let (status, body) = fixture
            .post_json("/crm/v3/objects/contacts/search", &json!({}))
            .await;
        statuses.push(status);
        last = body;
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(last["message"], "You have reached your secondly limit.");
    assert_eq!(last["policyName"], "SECONDLY");

    let (used, _) = handle.daily_usage();
    handle.set_daily_limit(used);
    let daily = fixture.get("/crm/v3/objects/contacts").await;
    assert_eq!(daily.status(), 429);
    assert!(daily.headers().get("retry-after").is_none());
    let body: Value = daily.json().await.unwrap();
    assert_eq!(body["policyName"], "DAILY");
}

async fn token_request(fixture: &Fixture, form: &[(&str, &str)]) -> (u16, Value) {
    let response = fixture
        .client
        .post(fixture.url("/oauth/v1/token"))
        .form(form)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn oauth_code_refresh_and_expiry() {
    let options = HubSpotOptions {
        access_token_ttl: Duration::from_secs(1),
        ..HubSpotOptions::default()
    };
    let mut fixture = Fixture::start(BTreeMap::new(), options.clone()).await;
    let code_grant = [
        ("grant_type", "authorization_code"),
        ("client_id", options.client_id.as_str()),
        ("client_secret", options.client_secret.as_str()),
        ("redirect_uri", options.redirect_uri.as_str()),
        ("code", options.authorization_code.as_str()),
    ];
    let (status, body) = token_request(&fixture, &code_grant).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1);
    assert_eq!(body["refresh_token"], json!(options.refresh_token));
    let access = body["access_token"].as_str().unwrap().to_string();
    assert!(access.len() <= 300);
    let (status, body) = token_request(&fixture, &code_grant).await;
    assert_eq!(status, 400, "a code works once");
    assert_eq!(body["status"], "BAD_AUTH_CODE");

    fixture.token = access.clone();
    let ok = fixture.get("/crm/v3/objects/contacts").await;
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get("x-hubspot-ratelimit-daily").is_none());
    assert_eq!(ok.headers().get("x-hubspot-ratelimit-max").unwrap(), "110");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = fixture.get("/crm/v3/objects/contacts").await;
    assert_eq!(expired.status(), 401);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");
    assert!(body["message"].as_str().unwrap().contains("expired"));

    let refresh_grant = [
        ("grant_type", "refresh_token"),
        ("client_id", options.client_id.as_str()),
        ("client_secret", options.client_secret.as_str()),
        ("refresh_token", options.refresh_token.as_str()),
    ];
    let (status, body) = token_request(&fixture, &refresh_grant).await;
    assert_eq!(status, 200);
    fixture.token = body["access_token"].as_str().unwrap().to_string();
    assert_ne!(fixture.token, access);
    assert_eq!(fixture.get("/crm/v3/objects/contacts").await.status(), 200);
    fixture.handle().expire_access_tokens();
    assert_eq!(fixture.get("/crm/v3/objects/contacts").await.status(), 401);

    let wrong_secret = [
        ("grant_type", "refresh_token"),
        ("client_id", options.client_id.as_str()),
        ("client_secret", "wrong"),
        ("refresh_token", options.refresh_token.as_str()),
    ];
    let (status, body) = token_request(&fixture, &wrong_secret).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "BAD_CLIENT_SECRET");
    fixture.handle().revoke_refresh_token();
    let (status, body) = token_request(&fixture, &refresh_grant).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
}

#[tokio::test]
async fn bad_tokens_and_missing_scopes() {
    let options = HubSpotOptions {
        withheld_scopes: vec!["crm.objects.deals.read".to_string()],
        ..HubSpotOptions::default()
    };
    let mut fixture = Fixture::start(BTreeMap::new(), options).await;
    let forbidden = fixture.get("/crm/v3/objects/deals").await;
    assert_eq!(forbidden.status(), 403);
    let body: Value = forbidden.json().await.unwrap();
    assert_eq!(body["category"], "MISSING_SCOPES");
    assert_eq!(
        body["errors"][0]["context"]["requiredScopes"],
        json!(["crm.objects.deals.read"])
    );
    assert_eq!(fixture.get("/crm/v3/objects/contacts").await.status(), 200);

    fixture.handle().rotate_private_app_token("pat-na1-rotated");
    let rotated = fixture.get("/crm/v3/objects/contacts").await;
    assert_eq!(rotated.status(), 401);
    let body: Value = rotated.json().await.unwrap();
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    fixture.token = "pat-na1-rotated".to_string();
    assert_eq!(fixture.get("/crm/v3/objects/contacts").await.status(), 200);
    let anonymous = fixture
        .client
        .get(fixture.url("/crm/v3/objects/contacts"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn property_create_and_write_back() {
    let fixture = Fixture::empty().await;
    let handle = fixture.handle();
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let ids = handle.add_contacts(1, at);

    let lifecycle = fixture
        .get_json("/crm/v3/properties/contacts/lifecyclestage")
        .await;
    let stages: Vec<&str> = lifecycle["options"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["value"].as_str())
        .collect();
    assert!(stages.contains(&"salesqualifiedlead"), "{stages:?}");
    let missing = fixture
        .get("/crm/v3/properties/contacts/leadscore_tier")
        .await;
    assert_eq!(missing.status(), 404);

    let property = json!({
        "name": "leadscore_tier", "label": "Lead score tier", "type": "enumeration", "fieldType": "select",
        "groupName": "leadscore",
        "options": [{"label": "A", "value": "A"}, {"label": "B", "value": "B"}, {"label": "C", "value": "C"}, {"label": "D", "value": "D"}]
    });
    let (status, body) = fixture
        .post_json("/crm/v3/properties/contacts", &property)
        .await;
    assert_eq!(status, 400, "the group must exist first: {body}");
    let group = json!({"name": "leadscore", "label": "Leadscore", "displayOrder": -1});
    let (status, _) = fixture
        .post_json("/crm/v3/properties/contacts/groups", &group)
        .await;
    assert_eq!(status, 201);
    let (status, _) = fixture
        .post_json("/crm/v3/properties/contacts/groups", &group)
        .await;
    assert_eq!(status, 409);
    let (status, body) = fixture
        .post_json("/crm/v3/properties/contacts", &property)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["groupName"], "leadscore");
    assert_eq!(body["modificationMetadata"]["readOnlyValue"], false);
    let (status, body) = fixture
        .post_json("/crm/v3/properties/contacts", &property)
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["category"], "CONFLICT");
    let bad_pair = json!({"name": "leadscore_score", "label": "Score", "type": "number", "fieldType": "select", "groupName": "leadscore"});
    let (status, _) = fixture
        .post_json("/crm/v3/properties/contacts", &bad_pair)
        .await;
    assert_eq!(status, 400);

    let write =
        |tier: &str| json!({"inputs": [{"id": ids[0], "properties": {"leadscore_tier": tier}}]});
    let (status, _) = fixture
        .post_json("/crm/v3/objects/contacts/batch/update", &write("A"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        handle.properties(ObjectType::Contacts, &ids[0]).unwrap()["leadscore_tier"],
        "A"
    );
    let (status, body) = fixture
        .post_json("/crm/v3/objects/contacts/batch/update", &write("E"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], "INVALID_OPTION");
}

#[tokio::test]
async fn unknown_seed_field_is_rejected() {
    let mut records = BTreeMap::new();
    let account = json!({"Id": "001000000000001AAA", "Name": "Mercy", "Colour__c": "blue"});
    records.insert(
        "Account".to_string(),
        vec![account.as_object().unwrap().clone()],
    );
    let error = HubSpotSandbox::new(records, HubSpotOptions::default())
        .err()
        .expect("rejected");
    let message = error.to_string();
    assert!(
        message.contains("Colour__c") && message.contains("001000000000001AAA"),
        "{message}"
    );
}
