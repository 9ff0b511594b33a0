//! `POST /__sandbox/records/touch`, which load tests use to mark rows as edited.

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn touch_stamps_every_nth_row() {
    let fixture = Fixture::small().await;
    let before: Vec<Value> = fixture
        .handle()
        .records("Account")
        .iter()
        .map(|record| record["SystemModstamp"].clone())
        .collect();
    let body = json!({"object": "Account", "every": 2, "offset": 1});
    let response = fixture.post_json("/__sandbox/records/touch", &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON body");
    assert_eq!(
        answer["touched"], 1,
        "rows 1 of 3 with every 2 from offset 1"
    );

    let after = fixture.handle().records("Account");
    assert_eq!(
        after[0]["SystemModstamp"], before[0],
        "row 0 is not stamped"
    );
    assert_ne!(after[1]["SystemModstamp"], before[1], "row 1 is stamped");
    assert_eq!(after[1]["LastModifiedDate"], after[1]["SystemModstamp"]);
    assert_eq!(
        after[2]["SystemModstamp"], before[2],
        "row 2 is not stamped"
    );
}

#[tokio::test]
async fn touch_rejects_bad_requests() {
    let fixture = Fixture::small().await;
    let zero = json!({"object": "Account", "every": 0});
    let response = fixture.post_json("/__sandbox/records/touch", &zero).await;
    assert_eq!(response.status(), 400);
    let unknown = json!({"object": "Widget", "every": 1});
    let response = fixture
        .post_json("/__sandbox/records/touch", &unknown)
        .await;
    assert_eq!(response.status(), 400);
    let message = response.text().await.expect("body");
    assert!(message.contains("Widget"), "{message}");
}
