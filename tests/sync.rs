//! Deletes, merges, missing or hidden fields, read-only write-back fields and currencies,
//! against both sandboxes over HTTP with a real store.

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use common::Env;
use leadscore::config::{Config, ConnectorSecrets};
use leadscore::demo::hubspot_sandbox_config;
use leadscore::store::Store;
use leadscore::{pipeline, training};
use leadscore_connector::Value;
use leadscore_demo_org::DemoOptions;
use leadscore_sandbox::hubspot::ObjectType;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, Sandbox, SandboxOptions};
use secrecy::SecretString;
use serde_json::json;

fn text(value: &Value) -> Option<&str> {
    value.as_str()
}

/// Returns an account that has at least one contact and one opportunity.
fn account_with_children(store: &Store) -> String {
    let contacts = store.records("Contact").expect("contacts");
    let deals = store.records("Opportunity").expect("deals");
    store
        .records("Account")
        .expect("accounts")
        .into_iter()
        .map(|a| a.id)
        .find(|id| {
            contacts
                .iter()
                .any(|c| text(c.get("AccountId")) == Some(id))
                && deals.iter().any(|d| text(d.get("AccountId")) == Some(id))
        })
        .expect("an account with contacts and deals")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_delete_leaves_tombstone() {
    let env = Env::start(SandboxOptions::default()).await;
    let connector = env.connector();
    let store = env.store();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("first pull");
    let before = store.record_count("Account").expect("count");
    let id = store.records("Account").expect("accounts")[0].id.clone();

    env.handle().delete_record("Account", &id).expect("delete");
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("second pull");

    assert_eq!(store.record_count("Account").expect("count"), before - 1);
    let tombstone = store
        .tombstone("Account", &id)
        .expect("read")
        .expect("tombstone");
    assert_eq!(tombstone.survivor, None);
    assert_eq!(store.survivor("Account", &id).expect("read"), None);
    let loaded = training::load(&store, &env.config).expect("load");
    assert!(!loaded.history.accounts.contains_key(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_merge_moves_children_to_survivor() {
    let env = Env::start(SandboxOptions::default()).await;
    let connector = env.connector();
    let store = env.store();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("first pull");
    let loser = account_with_children(&store);
    let survivor = store
        .records("Account")
        .expect("accounts")
        .into_iter()
        .map(|a| a.id)
        .find(|id| *id != loser)
        .expect("a second account");
    let loser_deals: Vec<String> = store
        .records("Opportunity")
        .expect("deals")
        .into_iter()
        .filter(|d| text(d.get("AccountId")) == Some(loser.as_str()))
        .map(|d| d.id)
        .collect();

    env.handle()
        .merge_records("Account", &survivor, &[&loser])
        .expect("merge");
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("second pull");

    assert_eq!(
        store.survivor("Account", &loser).expect("read").as_deref(),
        Some(survivor.as_str())
    );
    assert!(store
        .records("Account")
        .expect("accounts")
        .iter()
        .all(|a| a.id != loser));
    let contacts = store.records("Contact").expect("contacts");
    assert!(contacts
        .iter()
        .all(|c| text(c.get("AccountId")) != Some(loser.as_str())));
    let loaded = training::load(&store, &env.config).expect("load");
    for deal in &loser_deals {
        let found = loaded
            .history
            .deals
            .iter()
            .find(|d| d.id == *deal)
            .expect("deal still loaded");
        assert_eq!(
            found.account_id, survivor,
            "deal {deal} counts under the survivor"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_chain_resolves_in_store() {
    let env = Env::start(SandboxOptions::default()).await;
    let connector = env.connector();
    let store = env.store();
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("first pull");
    let ids: Vec<String> = store
        .records("Contact")
        .expect("contacts")
        .into_iter()
        .take(3)
        .map(|c| c.id)
        .collect();
    let handle = env.handle();
    handle
        .merge_records("Contact", &ids[1], &[&ids[0]])
        .expect("first merge");
    handle
        .merge_records("Contact", &ids[2], &[&ids[1]])
        .expect("second merge");
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("second pull");
    assert_eq!(
        store.survivor("Contact", &ids[0]).expect("read").as_deref(),
        Some(ids[2].as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_mapped_field_stops_pull() {
    let env = Env::start(SandboxOptions::default()).await;
    env.handle()
        .set_field_access("Account", "CABG_Discharges__c", false, false)
        .expect("hide");
    let error = pipeline::pull(&env.connector(), &env.store(), &env.config)
        .await
        .expect_err("stop on a hidden field")
        .to_string();
    assert!(error.contains("CABG_Discharges__c"), "{error}");
    assert!(error.contains("on_missing_field"), "{error}");
    assert_eq!(env.store().record_count("Account").expect("count"), 0);
}

/// Starts the sandbox with `[sync] on_missing_field = "drop"`.
async fn start_dropping() -> Env {
    Env::start_with(SandboxOptions::default(), |text| {
        text.replace(
            r#"on_missing_field = "stop""#,
            r#"on_missing_field = "drop""#,
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_writeback_field_names_check_fix() {
    let env = start_dropping().await;
    env.handle()
        .set_field_access("Account", "LS_Tier__c", false, false)
        .expect("hide");
    let error = pipeline::pull(&env.connector(), &env.store(), &env.config)
        .await
        .expect_err("a write-back field is never dropped")
        .to_string();
    assert!(error.contains("LS_Tier__c"), "{error}");
    assert!(error.contains("check --fix"), "{error}");
    assert!(!error.contains("on_missing_field"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_mapped_field_dropped_with_drop() {
    let env = start_dropping().await;
    env.handle()
        .set_field_access("Account", "CABG_Discharges__c", false, false)
        .expect("hide");
    let connector = env.connector();
    let store = env.store();
    pipeline::check(&connector, &env.config)
        .await
        .expect("check passes with drop");
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull without the field");
    let account = &store.records("Account").expect("accounts")[0];
    assert!(!account.fields.contains_key("CABG_Discharges__c"));
    let dropped = store.dropped_fields().expect("read");
    assert_eq!(
        dropped.get("Account"),
        Some(&vec!["CABG_Discharges__c".to_string()])
    );
    let effective = leadscore::sync::effective_config(&store, &env.config).expect("config");
    assert!(effective
        .features
        .attributes
        .iter()
        .all(|a| a.field != "CABG_Discharges__c"));
    training::load(&store, &env.config).expect("training loads without the feature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_writeback_field_reported() {
    let env = Env::start(SandboxOptions::default()).await;
    env.handle()
        .set_field_access("Account", "LS_Score__c", true, false)
        .expect("make read-only");
    let error = pipeline::check(&env.connector(), &env.config)
        .await
        .expect_err("read-only score field")
        .to_string();
    assert!(error.contains("LS_Score__c"), "{error}");
    assert!(error.contains("not updateable"), "{error}");
}

/// Starts a Salesforce sandbox whose org has EUR beside the corporate USD (1 USD buys
/// 0.8 EUR), with `[[features.account]]` reading AnnualRevenue.
async fn start_two_currency_org(
    extra: &str,
) -> (leadscore_sandbox::RunningSandbox, Config, tempfile::TempDir) {
    let mut org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(common::HOSPITALS),
        ..DemoOptions::default()
    })
    .expect("demo org");
    let currencies = vec![
        json!({"Id": "01LSb0000000001AAA", "IsoCode": "USD", "ConversionRate": 1.0, "IsCorporate": true, "IsActive": true}),
        json!({"Id": "01LSb0000000002AAA", "IsoCode": "EUR", "ConversionRate": 0.8, "IsCorporate": false, "IsActive": true}),
    ];
    org.records.insert(
        "CurrencyType".to_string(),
        currencies
            .into_iter()
            .filter_map(|v| v.as_object().cloned())
            .collect(),
    );
    let sandbox = Sandbox::new(org.records, SandboxOptions::default())
        .expect("sandbox accepts the org")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens");
    let dir = tempfile::tempdir().expect("temp dir");
    let store_path = dir.path().join("store");
    let text = leadscore::demo::sandbox_config(&sandbox.url(), &store_path.display().to_string())
        .replace(common::ALL_LEVELS, r#"levels = ["account"]"#);
    let text = format!(
        "{text}\n[[features.account]]\nname = \"revenue\"\nfield = \"AnnualRevenue\"\nkind = \"number\"\nlabel = \"annual revenue\"\n{extra}"
    );
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, text).expect("config written");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    (sandbox, config, dir)
}

async fn pulled_revenues(
    sandbox: &leadscore_sandbox::RunningSandbox,
    config: &Config,
) -> (f64, f64) {
    let store = Store::open(&config.store_path).expect("store");
    let handle = sandbox.handle();
    let accounts: Vec<String> = handle
        .records("Account")
        .into_iter()
        .filter_map(|a| a.get("Id").and_then(|v| v.as_str()).map(str::to_string))
        .take(2)
        .collect();
    for (id, code) in accounts.iter().zip(["EUR", "USD"]) {
        let mut fields = serde_json::Map::new();
        fields.insert("AnnualRevenue".into(), json!(1000.0));
        fields.insert("CurrencyIsoCode".into(), json!(code));
        handle.update_record("Account", id, fields).expect("update");
    }
    let options = sandbox.options();
    let secrets = leadscore::config::Secrets {
        client_secret: SecretString::from(options.client_secret.clone()),
        refresh_token: SecretString::from(options.refresh_token.clone()),
    };
    let connector = leadscore::run::connect(config, secrets).expect("connector");
    pipeline::pull(&connector, &store, config)
        .await
        .expect("pull");
    let loaded = training::load(&store, config).expect("load");
    let revenue = |id: &String| {
        loaded
            .history
            .accounts
            .get(id)
            .expect("account loaded")
            .get("AnnualRevenue")
            .as_f64()
            .expect("revenue")
    };
    (revenue(&accounts[0]), revenue(&accounts[1]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_rates_convert_amounts() {
    let (sandbox, config, _dir) = start_two_currency_org("").await;
    let (eur, usd) = pulled_revenues(&sandbox, &config).await;
    assert!(
        (eur - 1250.0).abs() < 1e-6,
        "1000 EUR at 0.8 EUR per USD: {eur}"
    );
    assert_eq!(usd, 1000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_rates_override_org_rates() {
    let (sandbox, config, _dir) =
        start_two_currency_org("\n[currency]\nbase = \"USD\"\nrates = { EUR = 1.1 }\n").await;
    let (eur, usd) = pulled_revenues(&sandbox, &config).await;
    assert!(
        (eur - 1100.0).abs() < 1e-6,
        "1000 EUR at 1.1 USD each: {eur}"
    );
    assert_eq!(usd, 1000.0);
}

async fn start_hubspot() -> (leadscore_sandbox::RunningHubSpot, Config, tempfile::TempDir) {
    let org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(common::HOSPITALS),
        ..DemoOptions::default()
    })
    .expect("demo org");
    let options = HubSpotOptions {
        private_app_ten_second_limit: 100_000,
        search_per_second_limit: 1_000,
        ..HubSpotOptions::default()
    };
    let sandbox = HubSpotSandbox::new(org.records, options)
        .expect("portal accepts the org")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens");
    let dir = tempfile::tempdir().expect("temp dir");
    let text = hubspot_sandbox_config(
        &sandbox.url(),
        &dir.path().join("store").display().to_string(),
    );
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, text).expect("config written");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    (sandbox, config, dir)
}

/// Connects to the portal and creates the write-back properties, as `check --fix` does.
async fn hubspot_connector(config: &Config) -> leadscore::run::AnyConnector {
    let token = ConnectorSecrets::HubSpotToken(SecretString::from(
        HubSpotOptions::default().private_app_token,
    ));
    let connector = leadscore::run::connect(config, token).expect("connector");
    leadscore::setup::fix(&connector, config)
        .await
        .expect("write-back properties created");
    connector
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_merge_with_new_id_maps_both() {
    let (sandbox, config, _dir) = start_hubspot().await;
    let connector = hubspot_connector(&config).await;
    let store = Store::open(&config.store_path).expect("store");
    pipeline::pull(&connector, &store, &config)
        .await
        .expect("first pull");
    let loser = account_with_children(&store);
    let primary = store
        .records("Account")
        .expect("accounts")
        .into_iter()
        .map(|a| a.id)
        .find(|id| *id != loser)
        .expect("a second company");

    let new_id = sandbox
        .handle()
        .merge_with_new_id(ObjectType::Companies, &primary, &loser)
        .expect("merge");
    pipeline::pull(&connector, &store, &config)
        .await
        .expect("second pull");

    assert_ne!(new_id, primary);
    for old in [&primary, &loser] {
        assert_eq!(
            store.survivor("Account", old).expect("read").as_deref(),
            Some(new_id.as_str()),
            "{old} maps to the new id"
        );
    }
    let accounts = store.records("Account").expect("accounts");
    assert!(accounts.iter().any(|a| a.id == new_id));
    assert!(accounts.iter().all(|a| a.id != loser && a.id != primary));
    let loaded = training::load(&store, &config).expect("load");
    assert!(loaded
        .history
        .deals
        .iter()
        .all(|d| d.account_id != loser && d.account_id != primary));
    assert!(loaded.history.deals.iter().any(|d| d.account_id == new_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_archived_company_leaves_store() {
    let (sandbox, config, _dir) = start_hubspot().await;
    let connector = hubspot_connector(&config).await;
    let store = Store::open(&config.store_path).expect("store");
    pipeline::pull(&connector, &store, &config)
        .await
        .expect("first pull");
    let id = store.records("Account").expect("accounts")[0].id.clone();
    sandbox
        .handle()
        .archive(ObjectType::Companies, &id)
        .expect("archive");
    pipeline::pull(&connector, &store, &config)
        .await
        .expect("second pull");
    assert!(store
        .records("Account")
        .expect("accounts")
        .iter()
        .all(|a| a.id != id));
    assert!(store.tombstone("Account", &id).expect("read").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_deal_currency_converted() {
    let (sandbox, config, _dir) = start_hubspot().await;
    let mut config = config;
    config.currency.base = Some("USD".to_string());
    config.currency.rates.insert("EUR".to_string(), 1.5);
    let handle = sandbox.handle();
    let deal = handle.ids(ObjectType::Deals)[0].clone();
    handle
        .set_property(ObjectType::Deals, &deal, "amount", "200")
        .expect("amount");
    handle
        .set_property(ObjectType::Deals, &deal, "deal_currency_code", "EUR")
        .expect("currency");
    let connector = hubspot_connector(&config).await;
    let store = Store::open(&config.store_path).expect("store");
    pipeline::pull(&connector, &store, &config)
        .await
        .expect("pull");
    let mut deals = store.records("Opportunity").expect("deals");
    let stored = deals.iter().find(|d| d.id == deal).expect("deal pulled");
    assert_eq!(stored.get("Amount"), &Value::Number(200.0));
    assert_eq!(stored.get("CurrencyIsoCode"), &Value::Text("EUR".into()));
    leadscore::currency::convert_amounts(&store, &config, &mut [&mut deals]).expect("convert");
    let converted = deals.iter().find(|d| d.id == deal).expect("deal");
    assert_eq!(converted.get("Amount"), &Value::Number(300.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_text_values_typed() {
    use leadscore_connector::{Connector, PullSpec};

    let (sandbox, config, _dir) = start_hubspot().await;
    let handle = sandbox.handle();
    let companies = handle.ids(ObjectType::Companies);
    let (chosen, cleared) = (companies[0].clone(), companies[1].clone());
    let set = |id: &str, name: &str, value: &str| {
        handle
            .set_raw_property(ObjectType::Companies, id, name, value)
            .expect("property set");
    };
    set(&chosen, "service_lines", "oncology;;cardiology;oncology");
    set(&chosen, "cms_overall_rating", "4");
    set(&cleared, "service_lines", "");
    set(&cleared, "cms_overall_rating", "");

    let connector = hubspot_connector(&config).await;
    let spec = PullSpec {
        object: "Account".to_string(),
        fields: vec![
            "service_lines".to_string(),
            "cms_overall_rating".to_string(),
        ],
        include_deleted: false,
    };
    let mut page = connector.pull_first(&spec, None).await.expect("first page");
    let mut records = std::mem::take(&mut page.records);
    while let Some(next) = page.next.take() {
        page = connector.pull_next(&spec, None, &next).await.expect("page");
        records.append(&mut page.records);
    }
    let find = |id: &str| records.iter().find(|r| r.id == id).expect("pulled");

    let chosen = find(&chosen);
    assert_eq!(
        chosen.get("service_lines"),
        &Value::Text("cardiology;oncology".into())
    );
    assert_eq!(chosen.get("cms_overall_rating"), &Value::Number(4.0));
    let cleared = find(&cleared);
    assert_eq!(cleared.get("service_lines"), &Value::Null);
    assert_eq!(cleared.get("cms_overall_rating"), &Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_parent_pulled_as_null() {
    use leadscore_connector::{Connector, PullSpec};

    let env = Env::start(SandboxOptions::default()).await;
    let contact = env.org.records["Contact"][0]["Id"]
        .as_str()
        .expect("contact id")
        .to_string();
    let mut fields = serde_json::Map::new();
    fields.insert("AccountId".into(), serde_json::Value::Null);
    env.handle()
        .update_record("Contact", &contact, fields)
        .expect("account cleared");

    let connector = env.connector();
    let spec = PullSpec {
        object: "Contact".to_string(),
        fields: vec!["AccountId".to_string(), "Account.Name".to_string()],
        include_deleted: false,
    };
    let mut page = connector.pull_first(&spec, None).await.expect("first page");
    let mut records = std::mem::take(&mut page.records);
    while let Some(next) = page.next.take() {
        page = connector.pull_next(&spec, None, &next).await.expect("page");
        records.append(&mut page.records);
    }
    let pulled = records.iter().find(|r| r.id == contact).expect("pulled");
    assert_eq!(pulled.get("AccountId"), &Value::Null);
    assert_eq!(pulled.get("Account.Name"), &Value::Null);
    assert!(records
        .iter()
        .any(|r| matches!(r.get("Account.Name"), Value::Text(_))));
}
