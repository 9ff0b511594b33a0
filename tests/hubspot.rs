//! The pipeline against the HubSpot sandbox over HTTP: the same steps as for Salesforce,
//! write-back in HubSpot's formats, partial batch failures, the lead conversion stage, and
//! one configuration holding both CRMs without mixing their records.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};

use chrono::Utc;
use leadscore::config::{Config, ConnectorSecrets, Secrets};
use leadscore::demo::{hubspot_sandbox_config, sandbox_config};
use leadscore::level::Level;
use leadscore::run::{connect, run_once};
use leadscore::store::Store;
use leadscore::{pipeline, writeback};
use leadscore_demo_org::DemoOptions;
use leadscore_sandbox::hubspot::ObjectType;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, RunningHubSpot, Sandbox, SandboxOptions};
use secrecy::SecretString;

struct HubSpotEnv {
    sandbox: RunningHubSpot,
    _dir: tempfile::TempDir,
    config: Config,
}

/// Limits high enough that tests of the pipeline do not wait on the ten-second window; the
/// connector's own tests cover the limits.
fn fast_options() -> HubSpotOptions {
    HubSpotOptions {
        private_app_ten_second_limit: 100_000,
        search_per_second_limit: 1_000,
        ..HubSpotOptions::default()
    }
}

async fn start(edit: impl FnOnce(String) -> String) -> HubSpotEnv {
    let org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(common::HOSPITALS),
        ..DemoOptions::default()
    })
    .expect("demo org");
    let sandbox = HubSpotSandbox::new(org.records, fast_options())
        .expect("HubSpot sandbox accepts the demo org")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens on loopback");
    let dir = tempfile::tempdir().expect("temp dir");
    let text = hubspot_sandbox_config(
        &sandbox.url(),
        &dir.path().join("store").display().to_string(),
    )
    .replace("min_examples = 200", "min_examples = 30")
    .replace("min_minority = 40", "min_minority = 10");
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, edit(text)).expect("config written");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    HubSpotEnv {
        sandbox,
        _dir: dir,
        config,
    }
}

fn token() -> ConnectorSecrets {
    ConnectorSecrets::HubSpotToken(SecretString::from(
        HubSpotOptions::default().private_app_token,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_pass_writes_levels_once() {
    let env = start(|text| text).await;
    let connector = connect(&env.config, token()).expect("connector");
    let fixed = leadscore::setup::fix(&connector, &env.config)
        .await
        .expect("check --fix creates the properties");
    assert!(
        fixed
            .created
            .iter()
            .any(|p| p.starts_with("Account.leadscore_score ")),
        "{fixed:?}"
    );
    let again = leadscore::setup::fix(&connector, &env.config)
        .await
        .expect("fix twice");
    assert!(
        again.created.is_empty(),
        "a second --fix creates nothing: {again:?}"
    );

    let store = Store::open(&env.config.store_path).expect("store");
    let first = run_once(&connector, &store, &env.config, Utc::now())
        .await
        .expect("first pass");
    let levels: Vec<Level> = first.levels.iter().map(|l| l.level).collect();
    assert_eq!(levels, [Level::Account, Level::Contact, Level::Lead]);
    let handle = env.sandbox.handle();
    for run in &first.levels {
        assert!(run.push.failed.is_empty(), "{:?}", run.push.failed);
        assert_eq!(run.push.written, run.score.scored, "{}", run.level);
        let writeback = env.config.writeback_for(run.level);
        let object = match run.level {
            Level::Account => ObjectType::Companies,
            _ => ObjectType::Contacts,
        };
        // Values read back from the portal, as HubSpot stores them: text.
        for row in store
            .at_level(run.level)
            .scores()
            .expect("scores")
            .iter()
            .take(40)
        {
            let properties = handle.properties(object, &row.id).expect("scored record");
            assert_eq!(
                properties.get(&writeback.score_field).map(String::as_str),
                Some(format!("{}", row.score).as_str()),
                "{} {}",
                run.level,
                row.id
            );
            assert_eq!(
                properties.get(&writeback.tier_field),
                Some(&row.tier),
                "{}",
                row.id
            );
            assert_eq!(
                properties.get(&writeback.model_version_field),
                Some(&row.model_version)
            );
            let scored_at = properties
                .get(&writeback.scored_at_field)
                .expect("time scored");
            let parsed = chrono::DateTime::parse_from_rfc3339(scored_at)
                .map(|t| t.timestamp())
                .or_else(|_| scored_at.parse::<i64>().map(|ms| ms / 1000))
                .expect("a datetime HubSpot accepts");
            assert_eq!(parsed, row.scored_at.timestamp());
        }
    }
    // Leads and contacts share HubSpot's contact object but not its properties.
    let lead_fields = env.config.writeback_for(Level::Lead);
    assert_ne!(lead_fields.score_field, env.config.writeback.score_field);
    let ready: usize = store
        .at_level(Level::Lead)
        .scores()
        .expect("lead scores")
        .iter()
        .filter(|r| r.sales_ready == Some(true))
        .count();
    let flagged = handle
        .ids(ObjectType::Contacts)
        .iter()
        .filter(|id| {
            handle
                .properties(ObjectType::Contacts, id)
                .and_then(|p| p.get(&env.config.lead.sales_ready_field).cloned())
                .as_deref()
                == Some("true")
        })
        .count();
    assert_eq!(flagged, ready);

    let second = run_once(&connector, &store, &env.config, Utc::now())
        .await
        .expect("second pass");
    for run in &second.levels {
        assert_eq!(run.push.written, 0, "{} wrote again", run.level);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_batch_failure_reported_per_record_and_retried() {
    let env = start(|text| {
        text.replace(
            r#"levels = ["account", "contact", "lead"]"#,
            r#"levels = ["account"]"#,
        )
    })
    .await;
    let connector = connect(&env.config, token()).expect("connector");
    leadscore::setup::fix(&connector, &env.config)
        .await
        .expect("fix");
    let store = Store::open(&env.config.store_path).expect("store");
    pipeline::pull(&connector, &store, &env.config)
        .await
        .expect("pull");
    leadscore::training::train(&store, &env.config, Utc::now()).expect("train");
    leadscore::scoring::score(&store, &env.config, Utc::now()).expect("score");
    let scored = store.scores().expect("scores");
    let failing: Vec<String> = scored.iter().take(2).map(|r| r.id.clone()).collect();
    let handle = env.sandbox.handle();
    for id in &failing {
        handle
            .fail_updates(ObjectType::Companies, id)
            .expect("fault set");
    }
    let check = pipeline::check(&connector, &env.config)
        .await
        .expect("check");
    let push = writeback::push(
        &connector,
        &store,
        &env.config,
        &check.reasons_max_len,
        Utc::now(),
    )
    .await
    .expect("push");
    let failed: HashSet<&str> = push.failed.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        failed,
        failing.iter().map(String::as_str).collect(),
        "{:?}",
        push.failed
    );
    assert_eq!(push.written, scored.len() - 2);
    for id in &failing {
        let properties = handle
            .properties(ObjectType::Companies, id)
            .expect("company");
        assert!(properties
            .get("leadscore_score")
            .is_none_or(|v| v.is_empty()));
    }
    // The next push tries exactly the two again.
    let retry = writeback::push(
        &connector,
        &store,
        &env.config,
        &check.reasons_max_len,
        Utc::now(),
    )
    .await
    .expect("retry");
    assert_eq!(retry.planned, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_stage_missing_from_portal_is_named() {
    let env = start(|text| {
        text.replace(
            r#"lead_converted_stage = "salesqualifiedlead""#,
            r#"lead_converted_stage = "hot_lead""#,
        )
    })
    .await;
    let connector = connect(&env.config, token()).expect("connector");
    let err = pipeline::check(&connector, &env.config)
        .await
        .expect_err("the portal has no such stage");
    let text = err.to_string();
    assert!(text.contains("hot_lead"), "{text}");
    assert!(
        text.contains("salesqualifiedlead"),
        "the portal's stages are listed: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connectors_score_both_without_mixing() {
    let org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(common::HOSPITALS),
        ..DemoOptions::default()
    })
    .expect("demo org");
    let salesforce = Sandbox::new(org.records.clone(), SandboxOptions::default())
        .expect("sandbox")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens");
    let hubspot = HubSpotSandbox::new(org.records, fast_options())
        .expect("sandbox")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens");
    let dir = tempfile::tempdir().expect("temp dir");
    let store_path = dir.path().join("store").display().to_string();
    // The Salesforce file with a second connector: HubSpot, its fields renamed to the
    // Salesforce names the rest of the file uses.
    let sf_text = sandbox_config(&salesforce.url(), &store_path)
        .replace(
            r#"levels = ["account", "contact", "lead"]"#,
            r#"levels = ["account"]"#,
        )
        .replace("min_examples = 200", "min_examples = 30")
        .replace("min_minority = 40", "min_minority = 10");
    let connector_start = sf_text.find("[connector]").expect("connector table");
    let connector_end = sf_text.find("[store]").expect("store table");
    let sf_connector = sf_text[connector_start..connector_end].replacen(
        "[connector]",
        "[[connector]]\nname = \"salesforce\"",
        1,
    );
    let fields = [
        ("Hip_Knee_Discharges__c", "hip_knee_discharges"),
        ("CABG_Discharges__c", "cabg_discharges"),
        ("AMI_Discharges__c", "ami_discharges"),
        ("HF_Discharges__c", "hf_discharges"),
        ("PN_Discharges__c", "pn_discharges"),
        ("COPD_Discharges__c", "copd_discharges"),
        ("Hospital_Type__c", "hospital_type"),
        ("Hospital_Ownership__c", "hospital_ownership"),
        ("CMS_Overall_Rating__c", "cms_overall_rating"),
        ("Emergency_Services__c", "emergency_services"),
        ("Incumbent_Competitor__c", "incumbent_competitor"),
        ("Buying_Role__c", "buying_role"),
        ("LeadSource", "lead_source"),
        ("LS_Score__c", "leadscore_score"),
        ("LS_Tier__c", "leadscore_tier"),
        ("LS_Reasons__c", "leadscore_reasons"),
        ("LS_Model_Version__c", "leadscore_model_version"),
        ("LS_Scored_At__c", "leadscore_scored_at"),
        ("LS_Sales_Ready__c", "leadscore_sales_ready"),
    ];
    let map: Vec<String> = fields.iter().map(|(a, b)| format!("{a} = {b:?}")).collect();
    let hs_connector = format!(
        "[[connector]]\nname = \"hubspot\"\nkind = \"hubspot\"\nbase_url = {:?}\ntoken_env = \"LEADSCORE_HUBSPOT_TOKEN\"\nfields = {{ {} }}\n\n",
        hubspot.url(),
        map.join(", ")
    );
    let text = format!(
        "{}{sf_connector}{hs_connector}{}",
        &sf_text[..connector_start],
        &sf_text[connector_end..]
    );
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, &text).expect("config");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let configs = config.per_connector();
    assert_eq!(configs.len(), 2);

    let sf_options = SandboxOptions::default();
    let mut versions = BTreeMap::new();
    for scoped in &configs {
        let secrets = match scoped.connector_name.as_str() {
            "salesforce" => ConnectorSecrets::Salesforce(Secrets {
                client_secret: SecretString::from(sf_options.client_secret.clone()),
                refresh_token: SecretString::from(sf_options.refresh_token.clone()),
            }),
            _ => token(),
        };
        let connector = connect(scoped, secrets).expect("connector");
        if scoped.connector_name == "hubspot" {
            let fixed = leadscore::setup::fix(&connector, scoped)
                .await
                .expect("fix");
            assert!(
                fixed
                    .created
                    .iter()
                    .any(|p| p.starts_with("Account.leadscore_score ")),
                "{fixed:?}"
            );
        }
        let store = Store::open(&scoped.store_path).expect("store");
        let report = run_once(&connector, &store, scoped, Utc::now())
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", scoped.connector_name));
        assert!(report.levels[0].push.written > 0);
        versions.insert(
            scoped.connector_name.clone(),
            store.scores().expect("scores"),
        );
    }
    // Each CRM's records were scored and written in that CRM alone.
    let sf_ids: HashSet<String> = versions["salesforce"]
        .iter()
        .map(|r| r.id.clone())
        .collect();
    let hs_ids: HashSet<String> = versions["hubspot"].iter().map(|r| r.id.clone()).collect();
    assert!(
        sf_ids.iter().all(|id| id.starts_with("001")),
        "Salesforce account ids"
    );
    assert!(
        hs_ids
            .iter()
            .all(|id| id.bytes().all(|b| b.is_ascii_digit())),
        "HubSpot company ids"
    );
    assert_eq!(
        sf_ids.len(),
        hs_ids.len(),
        "the same hospitals, scored once in each CRM"
    );
    let hs_handle = hubspot.handle();
    for id in &hs_ids {
        assert!(hs_handle
            .properties(ObjectType::Companies, id)
            .and_then(|p| p.get("leadscore_score").cloned())
            .is_some_and(|v| !v.is_empty()));
    }
    let sf_scored = salesforce
        .handle()
        .records("Account")
        .iter()
        .filter(|a| !a["LS_Score__c"].is_null())
        .count();
    assert_eq!(sf_scored, sf_ids.len());
    assert!(std::path::Path::new(&store_path)
        .join("salesforce")
        .is_dir());
    assert!(std::path::Path::new(&store_path).join("hubspot").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_sandbox_trusted_through_ca_file() {
    let org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(30),
        ..DemoOptions::default()
    })
    .expect("demo org");
    let sandbox = HubSpotSandbox::new(org.records, fast_options())
        .expect("sandbox")
        .serve_tls(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens over TLS");
    assert!(sandbox.url().starts_with("https://127.0.0.1:"));
    let ca = sandbox.ca_cert_path().expect("CA file").to_path_buf();
    let dir = tempfile::tempdir().expect("temp dir");
    let base = hubspot_sandbox_config(
        &sandbox.url(),
        &dir.path().join("store").display().to_string(),
    );
    let load = |text: String| {
        let path = dir.path().join("leadscore.toml");
        std::fs::write(&path, text).expect("config");
        Config::load(&path).unwrap_or_else(|err| panic!("{err}"))
    };

    let untrusted = load(base.clone());
    let err = pipeline::check(
        &connect(&untrusted, token()).expect("connector"),
        &untrusted,
    )
    .await
    .expect_err("the sandbox's CA is not trusted by default");
    assert!(err.to_string().contains("failed"), "{err}");

    let with_ca = base.replace(
        "# ca_file = \"/etc/ssl/certs/corporate-proxy.pem\"",
        &format!("ca_file = {:?}", ca.display().to_string()),
    );
    let trusted = load(with_ca);
    let connector = connect(&trusted, token()).expect("connector");
    leadscore::setup::fix(&connector, &trusted)
        .await
        .expect("fix over TLS");
    pipeline::check(&connector, &trusted)
        .await
        .expect("check passes once the CA is trusted");

    let missing = trusted.clone();
    let mut missing = missing;
    if let leadscore::config::ConnectorSettings::HubSpot(settings) = &mut missing.connector {
        settings.ca_file = Some(dir.path().join("nope.pem"));
    }
    let err = match connect(&missing, token()) {
        Ok(_) => panic!("a missing CA file is an error"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("nope.pem"), "{err}");
    assert!(err.contains("PEM"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_a_scope_is_named() {
    let org = leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(30),
        ..DemoOptions::default()
    })
    .expect("demo org");
    let options = HubSpotOptions {
        withheld_scopes: vec!["crm.objects.companies.read".to_string()],
        ..fast_options()
    };
    let sandbox = HubSpotSandbox::new(org.records, options)
        .expect("sandbox")
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("listens");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leadscore.toml");
    std::fs::write(
        &path,
        hubspot_sandbox_config(
            &sandbox.url(),
            &dir.path().join("store").display().to_string(),
        ),
    )
    .expect("config");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let connector = connect(&config, token()).expect("connector");
    leadscore::setup::fix(&connector, &config)
        .await
        .expect("properties can still be created");
    let store = Store::open(&config.store_path).expect("store");
    let err = pipeline::pull(&connector, &store, &config)
        .await
        .expect_err("companies cannot be read");
    let text = err.to_string();
    assert!(text.contains("crm.objects.companies.read"), "{text}");
    let token = HubSpotOptions::default().private_app_token;
    assert!(!text.contains(&token), "the token is never shown: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_and_contact_levels_may_not_share_properties() {
    let env = start(|text| {
        let start = text
            .find("[lead.writeback]")
            .expect("lead write-back section");
        let end = text[start..].find("\n\n").map_or(text.len(), |i| start + i);
        format!("{}{}", &text[..start], &text[end..])
    })
    .await;
    let connector = connect(&env.config, token()).expect("connector");
    leadscore::setup::fix(&connector, &env.config)
        .await
        .expect("fix");
    let err = pipeline::check(&connector, &env.config)
        .await
        .expect_err("leads would overwrite contact scores");
    let text = err.to_string();
    assert!(text.contains("[lead.writeback]"), "{text}");
    assert!(text.contains("leadscore_score"), "{text}");
    assert!(text.contains("Lead.LS_Score__c"), "{text}");
}
