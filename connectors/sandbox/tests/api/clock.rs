//! `POST /__sandbox/clock`, which load tests use to model the time between scheduled runs.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::support::*;

/// Parses the `Date` header of a response.
fn date_of(response: &reqwest::Response) -> DateTime<Utc> {
    let text = response
        .headers()
        .get("date")
        .expect("the response has a Date header")
        .to_str()
        .expect("the Date header is text");
    DateTime::parse_from_rfc2822(text)
        .unwrap_or_else(|e| panic!("Date {text:?} is not an HTTP date: {e}"))
        .with_timezone(&Utc)
}

#[tokio::test]
async fn advanced_clock_moves_stamps_and_date() {
    let fixture = Fixture::small().await;
    let hours = Duration::hours(2);
    let body = json!({"advance_secs": hours.num_seconds()});
    let response = fixture.post_json("/__sandbox/clock", &body).await;
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.expect("JSON body");
    assert_eq!(reply["ahead_secs"], 7_200);

    let started = Utc::now();
    let touch = json!({"object": "Account", "every": 1});
    let response = fixture.post_json("/__sandbox/records/touch", &touch).await;
    assert_eq!(response.status(), 200);
    let page = fixture
        .query("SELECT Id, SystemModstamp FROM Account ORDER BY SystemModstamp")
        .await;
    let stamp = page["records"][0]["SystemModstamp"]
        .as_str()
        .expect("SystemModstamp is text");
    let stamp = DateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .unwrap_or_else(|e| panic!("SystemModstamp {stamp:?}: {e}"))
        .with_timezone(&Utc);
    // Stamps are whole seconds, so the touch may land up to a second before `started`.
    assert!(
        stamp >= started + hours - Duration::seconds(1) && stamp <= Utc::now() + hours,
        "stamp {stamp} is not two hours past {started}"
    );

    let response = fixture.get("/services/data/v59.0/limits").await;
    let date = date_of(&response);
    assert!(
        date >= started + hours - Duration::seconds(1),
        "Date {date} is not two hours past {started}"
    );

    // The clock only moves ahead, and the total is capped.
    let more = json!({"advance_secs": 60});
    let reply: Value = fixture
        .post_json("/__sandbox/clock", &more)
        .await
        .json()
        .await
        .expect("JSON body");
    assert_eq!(reply["ahead_secs"], 7_260);
    let negative = json!({"advance_secs": -60});
    let response = fixture.post_json("/__sandbox/clock", &negative).await;
    assert_eq!(response.status(), 400);
    let far = json!({"advance_secs": u64::MAX});
    let response = fixture.post_json("/__sandbox/clock", &far).await;
    assert_eq!(response.status(), 400);
    let message = response.text().await.expect("body");
    assert!(message.contains(&u64::MAX.to_string()), "{message}");
}

#[tokio::test]
async fn default_clock_sends_host_date() {
    let fixture = Fixture::small().await;
    let before = Utc::now() - Duration::seconds(1);
    let response = fixture.get("/services/data/v59.0/limits").await;
    let date = date_of(&response);
    assert!(
        date >= before && date <= Utc::now() + Duration::seconds(1),
        "Date {date} is not the host's time"
    );
}
