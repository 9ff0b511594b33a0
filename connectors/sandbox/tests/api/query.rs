//! SOQL evaluation, result shape, paging and query errors.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use leadscore_sandbox::{RecordMap, SandboxOptions};
use serde_json::{json, Value};

use crate::support::*;

fn modstamp(record: &RecordMap) -> DateTime<Utc> {
    let text = record["SystemModstamp"]
        .as_str()
        .expect("SystemModstamp is a string");
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .expect("API datetime format")
        .with_timezone(&Utc)
}

#[tokio::test]
async fn nested_parents_and_null_lookups() {
    let fixture = Fixture::small().await;
    let page = fixture
        .query("select id, lastname, account.name, ACCOUNT.owner.NAME, Email from contact order by LastName")
        .await;
    assert_eq!(page["totalSize"], 3);
    assert_eq!(page["done"], true);
    assert!(page.get("nextRecordsUrl").is_none());
    let records = page["records"].as_array().unwrap();

    let ng = &records[0];
    assert_eq!(ng["attributes"]["type"], "Contact");
    assert_eq!(
        ng["attributes"]["url"],
        format!("/services/data/{VERSION}/sobjects/Contact/{CONTACT_NG}")
    );
    assert_eq!(ng["Id"], CONTACT_NG);
    assert_eq!(ng["LastName"], "Ng");
    assert_eq!(ng["Account"]["attributes"]["type"], "Account");
    assert_eq!(
        ng["Account"]["attributes"]["url"],
        format!("/services/data/{VERSION}/sobjects/Account/{ACCOUNT_MERCY}")
    );
    assert_eq!(ng["Account"]["Name"], "Mercy General");
    assert_eq!(ng["Account"]["Owner"]["attributes"]["type"], "User");
    assert_eq!(ng["Account"]["Owner"]["Name"], "Ada Rep");

    let ortiz = &records[1];
    assert_eq!(ortiz["LastName"], "Ortiz");
    assert!(
        ortiz["Account"].is_null(),
        "empty lookup is null, got {}",
        ortiz["Account"]
    );
    assert!(
        ortiz.get("Email").is_some_and(Value::is_null),
        "selected empty field is present as null"
    );

    let park = &records[2];
    assert_eq!(park["Account"]["Name"], "St. Jude");
    assert_eq!(park["Account"]["Owner"]["Name"], "Ben Gone");
}

#[tokio::test]
async fn polymorphic_who_and_what() {
    let fixture = Fixture::small().await;
    let page = fixture
        .query("SELECT Id, Who.LastName, What.Name FROM Task ORDER BY Id")
        .await;
    let records = page["records"].as_array().unwrap();
    assert_eq!(records[0]["Who"]["attributes"]["type"], "Contact");
    assert_eq!(records[0]["Who"]["LastName"], "Ng");
    assert_eq!(records[0]["What"]["attributes"]["type"], "Opportunity");
    assert_eq!(records[0]["What"]["Name"], "Mercy knees");
    assert_eq!(records[1]["Who"]["attributes"]["type"], "Lead");
    assert_eq!(records[1]["Who"]["LastName"], "Quinn");
    assert!(records[1]["What"].is_null());
}

#[tokio::test]
async fn modstamp_ties_order_by_id() {
    let fixture = Fixture::small().await;
    let threshold: DateTime<Utc> = "2024-05-01T12:00:00Z".parse().unwrap();
    let mut expected: Vec<(DateTime<Utc>, String)> = fixture
        .handle()
        .records("Account")
        .iter()
        .filter(|r| modstamp(r) >= threshold)
        .map(|r| (modstamp(r), r["Id"].as_str().unwrap().to_string()))
        .collect();
    expected.sort();
    let expected_ids: Vec<String> = expected.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(
        expected_ids.len(),
        3,
        "fixture has three accounts at or after the threshold"
    );

    let ascending = fixture
        .query("SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp >= 2024-05-01T12:00:00Z ORDER BY SystemModstamp ASC, Id ASC")
        .await;
    assert_eq!(ids(&ascending), expected_ids);
    assert_eq!(
        ascending["records"][0]["SystemModstamp"],
        "2024-05-01T12:00:00.000+0000"
    );

    let descending = fixture
        .query("SELECT Id FROM Account WHERE SystemModstamp >= 2024-05-01T12:00:00Z ORDER BY SystemModstamp DESC, Id DESC")
        .await;
    let mut reversed = expected_ids.clone();
    reversed.reverse();
    assert_eq!(ids(&descending), reversed);

    let strictly_after = fixture
        .query("SELECT Id FROM Account WHERE SystemModstamp > 2024-05-01T12:00:00Z")
        .await;
    assert_eq!(ids(&strictly_after), vec![ACCOUNT_VALLEY.to_string()]);
}

#[tokio::test]
async fn datetime_offsets_convert_to_utc() {
    let fixture = Fixture::small().await;
    // 14:00 at +02:00 is 12:00 UTC, the Mercy and St. Jude stamp.
    let plus = fixture
        .query(
            "SELECT Id FROM Account WHERE SystemModstamp = 2024-05-01T14:00:00+02:00 ORDER BY Id",
        )
        .await;
    assert_eq!(
        ids(&plus),
        vec![ACCOUNT_MERCY.to_string(), ACCOUNT_JUDE.to_string()]
    );
    let minus = fixture
        .query("SELECT Id FROM Account WHERE SystemModstamp = 2024-05-01T07:00:00.000-05:00 ORDER BY Id")
        .await;
    assert_eq!(ids(&minus), ids(&plus));
}

#[tokio::test]
async fn nulls_first_and_last() {
    let fixture = Fixture::small().await;
    let default = fixture
        .query("SELECT Id FROM Account ORDER BY CMS_Overall_Rating__c")
        .await;
    assert_eq!(
        ids(&default),
        vec![ACCOUNT_VALLEY, ACCOUNT_JUDE, ACCOUNT_MERCY]
    );
    let last = fixture
        .query("SELECT Id FROM Account ORDER BY CMS_Overall_Rating__c DESC NULLS LAST")
        .await;
    assert_eq!(
        ids(&last),
        vec![ACCOUNT_MERCY, ACCOUNT_JUDE, ACCOUNT_VALLEY]
    );
    let desc_default = fixture
        .query("SELECT Id FROM Account ORDER BY CMS_Overall_Rating__c DESC")
        .await;
    assert_eq!(
        ids(&desc_default),
        vec![ACCOUNT_VALLEY, ACCOUNT_MERCY, ACCOUNT_JUDE]
    );
}

#[tokio::test]
async fn boolean_logic_in_and_limit() {
    let fixture = Fixture::small().await;
    let cases: [(&str, Vec<&str>); 9] = [
        ("SELECT Id FROM Account WHERE Name = 'mercy general'", vec![ACCOUNT_MERCY]),
        ("SELECT Id FROM Account WHERE BillingState IN ('CA', 'TX') ORDER BY Id", vec![ACCOUNT_JUDE, ACCOUNT_VALLEY]),
        ("SELECT Id FROM Account WHERE BillingState NOT IN ('CA')", vec![ACCOUNT_MERCY]),
        ("SELECT Id FROM Account WHERE (Name = 'Mercy General' OR Name = 'Valley Clinic') AND NOT CMS_Overall_Rating__c > 3", vec![ACCOUNT_VALLEY]),
        ("SELECT Id FROM Account WHERE Id > '001000000000001AAA' ORDER BY Id", vec![ACCOUNT_JUDE, ACCOUNT_VALLEY]),
        ("SELECT Id FROM Account WHERE OwnerId = null", vec![ACCOUNT_VALLEY]),
        ("SELECT Id FROM Account WHERE Owner.IsActive = true", vec![ACCOUNT_MERCY]),
        ("SELECT Id FROM Account ORDER BY Name DESC LIMIT 2", vec![ACCOUNT_VALLEY, ACCOUNT_JUDE]),
        ("SELECT Id FROM Opportunity WHERE CloseDate >= 2024-01-01 AND Amount > 1000.5 AND IsWon = TRUE", vec![OPPORTUNITY_WON]),
    ];
    for (soql, expected) in cases {
        let page = fixture.query(soql).await;
        assert_eq!(ids(&page), expected, "{soql}");
        assert_eq!(page["totalSize"], expected.len(), "{soql}");
    }
}

#[tokio::test]
async fn values_render_in_api_formats() {
    let fixture = Fixture::small().await;
    let page = fixture
        .query("SELECT Amount, CloseDate, IsWon, CreatedDate, StageName FROM Opportunity")
        .await;
    let record = &page["records"][0];
    assert_eq!(record["Amount"], json!(50000.0));
    assert_eq!(record["CloseDate"], "2024-03-31");
    assert_eq!(record["IsWon"], true);
    assert_eq!(record["CreatedDate"], "2024-01-15T00:00:00.000+0000");
    assert_eq!(record["StageName"], "Closed Won");
}

#[tokio::test]
async fn query_all_includes_deleted() {
    let fixture = Fixture::small().await;
    fixture
        .handle()
        .delete_record("Contact", CONTACT_PARK)
        .unwrap();
    let live = fixture.query("SELECT Id FROM Contact ORDER BY Id").await;
    assert_eq!(ids(&live), vec![CONTACT_NG, CONTACT_ORTIZ]);
    let response = fixture
        .query_raw(
            "queryAll/",
            "SELECT Id, IsDeleted FROM Contact ORDER BY Id",
            None,
        )
        .await;
    let all: Value = response.json().await.unwrap();
    assert_eq!(ids(&all), vec![CONTACT_NG, CONTACT_ORTIZ, CONTACT_PARK]);
    assert_eq!(all["records"][2]["IsDeleted"], true);
}

#[tokio::test]
async fn query_errors_use_salesforce_codes() {
    let fixture = Fixture::small().await;
    let cases = [
        (
            "SELECT Id, Score__c FROM Account",
            "INVALID_FIELD",
            "No such column 'Score__c' on entity 'Account'",
        ),
        (
            "SELECT Id, Boss.Name FROM Account",
            "INVALID_FIELD",
            "Didn't understand relationship 'Boss'",
        ),
        (
            "SELECT Id FROM Widget__c",
            "INVALID_TYPE",
            "sObject type 'Widget__c' is not supported",
        ),
        (
            "SELECT Id FROM Account WHERE SystemModstamp > 2024-05-01",
            "INVALID_FIELD",
            "must be of type dateTime",
        ),
        (
            "SELECT Id FROM Account WHERE SystemModstamp > '2024-05-01T00:00:00Z'",
            "INVALID_FIELD",
            "must be of type dateTime",
        ),
        (
            "SELECT Id FROM Account WHERE CMS_Overall_Rating__c > '3'",
            "INVALID_FIELD",
            "must be of type double",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 3",
            "INVALID_FIELD",
            "should be enclosed in quotes",
        ),
        (
            "SELECT Id FROM Account WHERE LS_Reasons__c = 'x'",
            "INVALID_FIELD",
            "can not be filtered",
        ),
        (
            "SELECT Id FROM Account WHERE",
            "MALFORMED_QUERY",
            "unexpected token",
        ),
        (
            "SELECT COUNT() FROM Account",
            "MALFORMED_QUERY",
            "not supported",
        ),
        (
            "SELECT Id FROM Account WHERE Name LIKE 'M%'",
            "MALFORMED_QUERY",
            "LIKE",
        ),
        (
            "SELECT Id FROM Account GROUP BY Name",
            "MALFORMED_QUERY",
            "unexpected token",
        ),
        (
            "SELECT Id FROM Account LIMIT -1",
            "MALFORMED_QUERY",
            "LIMIT",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'",
            "MALFORMED_QUERY",
            "parentheses",
        ),
    ];
    for (soql, code, fragment) in cases {
        let response = fixture.query_raw("query", soql, None).await;
        let message = expect_error(response, 400, code).await;
        assert!(
            message.contains(fragment),
            "{soql}: message {message:?} lacks {fragment:?}"
        );
    }
    let with_position = expect_error(
        fixture
            .query_raw("query", "SELECT Id, Score__c FROM Account", None)
            .await,
        400,
        "INVALID_FIELD",
    )
    .await;
    assert!(
        with_position.contains("ERROR at Row:1:Column:12"),
        "{with_position}"
    );

    let missing_q = fixture
        .get(&format!("/services/data/{VERSION}/query"))
        .await;
    expect_error(missing_q, 400, "MALFORMED_QUERY").await;
}

#[tokio::test]
async fn unencoded_plus_in_datetime_is_malformed() {
    let fixture = Fixture::small().await;
    // A raw '+' in the query string decodes to a space, as in a client that forgot to encode it.
    let url = format!(
        "{}/services/data/{VERSION}/query?q=SELECT+Id+FROM+Account+WHERE+SystemModstamp+>+2024-05-01T00:00:00+00:00",
        fixture.sandbox.url()
    );
    let response = fixture
        .client
        .get(url)
        .bearer_auth(&fixture.token)
        .send()
        .await
        .unwrap();
    let message = expect_error(response, 400, "MALFORMED_QUERY").await;
    assert!(message.contains("%2B"), "{message}");
}

fn many_leads(count: usize) -> BTreeMap<String, Vec<RecordMap>> {
    let leads = (0..count)
        .map(|i| {
            let value = json!({
                "Id": format!("00Q{:015}", i + 1),
                "LastName": format!("Lead {i}"),
                "Company": "Bulk Hospital",
                "Status": "Open - Not Contacted",
                "CreatedDate": "2024-01-01T00:00:00Z",
                // Ten leads share each stamp, so paging crosses ties.
                "SystemModstamp": format!(
                    "2024-05-01T{:02}:{:02}:{:02}.000Z",
                    i / 10 / 3600,
                    i / 10 / 60 % 60,
                    i / 10 % 60
                ),
            });
            match value {
                Value::Object(map) => map,
                _ => unreachable!(),
            }
        })
        .collect();
    BTreeMap::from([("Lead".to_string(), leads)])
}

async fn collect_pages(
    fixture: &Fixture,
    first: Value,
    batch_size: Option<usize>,
) -> (Vec<String>, Vec<usize>) {
    let mut all = ids(&first);
    let mut sizes = vec![all.len()];
    let total = first["totalSize"].as_u64().unwrap();
    let mut page = first;
    while page["done"] == false {
        let next = page["nextRecordsUrl"]
            .as_str()
            .expect("nextRecordsUrl while not done")
            .to_string();
        assert!(
            next.starts_with(&format!("/services/data/{VERSION}/query/01g")),
            "{next}"
        );
        let mut request = fixture
            .client
            .get(format!("{}{next}", fixture.sandbox.url()))
            .bearer_auth(&fixture.token);
        if let Some(size) = batch_size {
            request = request.header("Sforce-Query-Options", format!("batchSize={size}"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        page = response.json().await.unwrap();
        assert_eq!(
            page["totalSize"].as_u64().unwrap(),
            total,
            "totalSize is the whole result on every page"
        );
        let page_ids = ids(&page);
        sizes.push(page_ids.len());
        all.extend(page_ids);
    }
    assert!(page.get("nextRecordsUrl").is_none());
    (all, sizes)
}

#[tokio::test]
async fn paging_follows_next_records_url() {
    let fixture = Fixture::start(many_leads(450), SandboxOptions::default()).await;
    let soql = "SELECT Id, SystemModstamp FROM Lead ORDER BY SystemModstamp ASC, Id ASC";
    let first: Value = fixture
        .query_raw("query", soql, Some(200))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["totalSize"], 450);
    assert_eq!(first["done"], false);
    let (all, sizes) = collect_pages(&fixture, first, Some(200)).await;
    assert_eq!(sizes, vec![200, 200, 50]);
    let mut expected: Vec<(DateTime<Utc>, String)> = fixture
        .handle()
        .records("Lead")
        .iter()
        .map(|r| (modstamp(r), r["Id"].as_str().unwrap().to_string()))
        .collect();
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    assert_eq!(all, expected);

    // A batch size below 200 is raised to 200.
    let small: Value = fixture
        .query_raw("query", soql, Some(50))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&small).len(), 200);
    // Without the header the default page of 2000 contains every row.
    let whole: Value = fixture
        .query_raw("query", soql, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(whole["done"], true);
    assert_eq!(ids(&whole).len(), 450);
}

#[tokio::test]
async fn locator_works_under_other_version() {
    let fixture = Fixture::start(many_leads(250), SandboxOptions::default()).await;
    let first: Value = fixture
        .query_raw("queryAll", "SELECT Id FROM Lead", Some(200))
        .await
        .json()
        .await
        .unwrap();
    let next = first["nextRecordsUrl"].as_str().unwrap();
    let locator = next.rsplit('/').next().unwrap();
    // jsforce keeps only the locator and rebuilds the path with its own version.
    let response = fixture
        .get(&format!("/services/data/v50.0/query/{locator}"))
        .await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(ids(&page).len(), 50);
    assert_eq!(page["done"], true);
    let url = page["records"][0]["attributes"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("/services/data/v50.0/sobjects/Lead/"),
        "{url}"
    );
}

#[tokio::test]
async fn page_size_option_caps_batches() {
    let options = SandboxOptions {
        page_size: 10,
        ..SandboxOptions::default()
    };
    let fixture = Fixture::start(many_leads(25), options).await;
    let first: Value = fixture
        .query_raw("query", "SELECT Id FROM Lead ORDER BY Id", Some(500))
        .await
        .json()
        .await
        .unwrap();
    let (all, sizes) = collect_pages(&fixture, first, None).await;
    assert_eq!(sizes, vec![10, 10, 5]);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(all, sorted, "pages are in Id order with no duplicates");
}

#[tokio::test]
async fn snapshot_keeps_paging_stable() {
    let options = SandboxOptions {
        page_size: 10,
        ..SandboxOptions::default()
    };
    let fixture = Fixture::start(many_leads(20), options).await;
    let first: Value = fixture
        .query_raw(
            "query",
            "SELECT Id, Company FROM Lead WHERE Company = 'Bulk Hospital' ORDER BY Id",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    // Lead 15 stops matching after the query ran; it stays in the snapshot with its new value.
    let moved = format!("00Q{:015}", 15);
    let mut change = RecordMap::new();
    change.insert("Company".into(), json!("Elsewhere"));
    fixture
        .handle()
        .update_record("Lead", &moved, change)
        .unwrap();
    let next = first["nextRecordsUrl"].as_str().unwrap();
    let page: Value = fixture.get(next).await.json().await.unwrap();
    assert_eq!(page["totalSize"], 20);
    let record = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Id"] == moved.as_str())
        .expect("snapshot row kept");
    assert_eq!(record["Company"], "Elsewhere");
}

#[tokio::test]
async fn invalid_and_expired_locators() {
    let options = SandboxOptions {
        page_size: 10,
        locator_ttl: Duration::from_millis(300),
        ..SandboxOptions::default()
    };
    let fixture = Fixture::start(many_leads(25), options).await;
    let first = fixture.query("SELECT Id FROM Lead").await;
    let next = first["nextRecordsUrl"].as_str().unwrap().to_string();

    let bogus = fixture
        .get(&format!(
            "/services/data/{VERSION}/query/01gNoSuchCursor-10"
        ))
        .await;
    expect_error(bogus, 400, "INVALID_QUERY_LOCATOR").await;
    let beyond = next.replace("-10", "-500");
    expect_error(fixture.get(&beyond).await, 400, "INVALID_QUERY_LOCATOR").await;

    fixture.handle().invalidate_locators();
    expect_error(fixture.get(&next).await, 400, "INVALID_QUERY_LOCATOR").await;

    let second = fixture.query("SELECT Id FROM Lead").await;
    let next = second["nextRecordsUrl"].as_str().unwrap().to_string();
    assert_eq!(
        fixture.get(&next).await.status(),
        200,
        "fresh locator works"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    expect_error(fixture.get(&next).await, 400, "INVALID_QUERY_LOCATOR").await;
}

#[tokio::test]
async fn large_object_pages_quickly() {
    let fixture = Fixture::start(many_leads(150_000), SandboxOptions::default()).await;
    let started = std::time::Instant::now();
    let soql = "SELECT Id, LastName, Owner.Name FROM Lead WHERE SystemModstamp > 2024-05-01T00:00:00Z ORDER BY SystemModstamp ASC, Id ASC";
    let first: Value = fixture
        .query_raw("query", soql, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["totalSize"], 150_000 - 10);
    let mut page = first;
    let mut pages = 1;
    while page["done"] == false {
        let next = page["nextRecordsUrl"].as_str().unwrap().to_string();
        page = fixture.get(&next).await.json().await.unwrap();
        pages += 1;
    }
    assert_eq!(pages, 75);
    eprintln!("150k-row query paged in {:?}", started.elapsed());
}
