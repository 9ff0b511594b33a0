//! Tests of configuration parsing and error reporting.

use std::path::Path;

use super::*;

const EXAMPLE: &str = include_str!("../../deploy/leadscore.example.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(
        text,
        Path::new("leadscore.toml"),
        Path::new("/etc/leadscore"),
    )
}

#[test]
fn example_config_parses() {
    let config = parse(EXAMPLE).expect("the shipped example must be valid");
    let ConnectorSettings::Salesforce(salesforce) = &config.connector else {
        panic!("the example configures Salesforce");
    };
    assert_eq!(salesforce.api_version, "59.0");
    assert_eq!(
        config.store_path,
        Path::new("/etc/leadscore/leadscore-data")
    );
    assert_eq!(config.features.attributes.len(), 12);
    assert_eq!(config.tiers.tier_for(70.0), "A");
    assert_eq!(config.tiers.tier_for(69.9), "B");
    assert_eq!(config.tiers.tier_for(0.0), "D");
    assert_eq!(config.writeback.batch_size, 200);
}

#[test]
fn every_problem_reported_at_once() {
    let text = EXAMPLE
        .replace("page_size = 2000", "page_size = 5")
        .replace("trees = 100", "trees = \"many\"")
        .replace("kind = \"flag\"", "kind = \"switch\"")
        .replace("[store]", "[store]\ncolour = \"blue\"");
    let err = parse(&text).unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    assert!(keys.contains(&"connector.page_size"), "{err}");
    assert!(keys.contains(&"model.trees"), "{err}");
    assert!(keys.contains(&"features.account[9].kind"), "{err}");
    assert!(keys.contains(&"store.colour"), "{err}");
    assert_eq!(err.issues.len(), 4, "{err}");
}

#[test]
fn issues_carry_line_and_column() {
    let text = EXAMPLE.replace("page_size = 2000", "page_size = 5");
    let line = text
        .lines()
        .position(|l| l.starts_with("page_size"))
        .expect("line present")
        + 1;
    let err = parse(&text).unwrap_err();
    let issue = &err.issues[0];
    assert_eq!(issue.line, line);
    assert_eq!(issue.column, 13);
    assert!(issue.example.as_deref() == Some("page_size = 2000"));
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("leadscore.toml:{line}:13: connector.page_size")),
        "{shown}"
    );
}

#[test]
fn secret_in_file_rejected() {
    let text = EXAMPLE.replace(
        "client_id = \"YOUR_CONNECTED_APP_CONSUMER_KEY\"",
        "client_id = \"YOUR_CONNECTED_APP_CONSUMER_KEY\"\nclient_secret = \"hunter2\"",
    );
    let err = parse(&text).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("connector.client_secret"), "{shown}");
    assert!(shown.contains("environment variable"), "{shown}");
    assert!(
        !shown.contains("hunter2"),
        "the secret itself must not be echoed: {shown}"
    );
}

#[test]
fn missing_sections_name_required_keys() {
    let err = parse("[model]\ntrees = 10\n").unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    for key in ["connector.kind", "store.path"] {
        assert!(keys.contains(&key), "{key} missing from {err}");
    }
    // The kind decides which keys the connector needs.
    let err = parse("[connector]\nkind = \"salesforce\"\n").unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    for key in ["connector.login_url", "connector.client_id", "store.path"] {
        assert!(keys.contains(&key), "{key} missing from {err}");
    }
    let err = parse("[connector]\nkind = \"hubspot\"\n").unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    assert!(keys.contains(&"connector.token_env"), "{err}");
    assert!(!keys.contains(&"connector.login_url"), "{err}");
}

#[test]
fn syntax_error_has_position() {
    let err = parse("[connector\nkind = 1\n").unwrap_err();
    assert!(err.issues[0].message.starts_with("invalid TOML"), "{err}");
    assert_eq!(err.issues[0].line, 1);
}

#[test]
fn tier_order_checked() {
    let text = EXAMPLE.replace("a = 70", "a = 20");
    let err = parse(&text).unwrap_err();
    assert!(err.to_string().contains("a > b > c"), "{err}");
}

#[test]
fn bad_url_and_duplicate_feature() {
    let text = EXAMPLE
        .replace(
            "login_url = \"https://login.salesforce.com\"",
            "login_url = \"login.salesforce.com\"",
        )
        .replace("name = \"cabg_volume\"", "name = \"hip_knee_volume\"");
    let err = parse(&text).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("not an http or https URL"), "{shown}");
    assert!(shown.contains("duplicate feature name"), "{shown}");
}

#[test]
fn as_of_parsed_when_given() {
    let text = EXAMPLE.replace("# as_of = 2026", "as_of = 2026");
    let config = parse(&text).expect("valid");
    let as_of = config.scoring.as_of.expect("as_of set");
    assert_eq!(as_of.to_rfc3339(), "2026-12-01T00:00:00+00:00");
}

#[test]
fn secret_pasted_as_env_name_not_echoed() {
    let text = EXAMPLE.replace(
        "client_secret_env = \"LEADSCORE_SF_CLIENT_SECRET\"",
        "client_secret_env = \"s3cr3t-value.with.dots\"",
    );
    let err = parse(&text).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("connector.client_secret_env"), "{shown}");
    assert!(
        !shown.contains("s3cr3t-value"),
        "the pasted secret must not be printed: {shown}"
    );
}

#[test]
fn credentials_in_login_url_rejected() {
    let text = EXAMPLE.replace(
        "login_url = \"https://login.salesforce.com\"",
        "login_url = \"https://admin:pw123@login.salesforce.com\"",
    );
    let err = parse(&text).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("must not contain a user name or password"),
        "{shown}"
    );
    assert!(!shown.contains("pw123"), "{shown}");
}

#[test]
fn empty_tier_label_rejected() {
    let text = EXAMPLE.replace(
        "labels = [\"A\", \"B\", \"C\", \"D\"]",
        "labels = [\"A\", \" \", \"C\", \"D\"]",
    );
    let err = parse(&text).unwrap_err();
    assert!(
        err.to_string().contains("label of tier B is empty"),
        "{err}"
    );
}

#[test]
fn repeated_windows_and_kept_features_rejected() {
    let text = EXAMPLE
        .replace(
            "activity_windows_days = [90, 365]",
            "activity_windows_days = [90, 365, 90]",
        )
        .replace("keep_features = []", "keep_features = [\"beds\", \"beds\"]");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("90 is listed twice"), "{err}");
    assert!(err.contains("\"beds\" is listed twice"), "{err}");
}

#[test]
fn duplicate_tier_labels_rejected() {
    let text = EXAMPLE.replace(
        "labels = [\"A\", \"B\", \"C\", \"D\"]",
        "labels = [\"A\", \"A\", \"C\", \"D\"]",
    );
    let err = parse(&text).unwrap_err();
    assert!(err.to_string().contains("used for two tiers"), "{err}");
}

#[test]
fn shared_writeback_field_rejected() {
    let text = EXAMPLE.replace(
        "reasons_field = \"LS_Reasons__c\"",
        "reasons_field = \"LS_Model_Version__c\"",
    );
    let err = parse(&text).unwrap_err();
    assert!(
        err.to_string().contains("named for two write-back values"),
        "{err}"
    );
}

#[test]
fn out_of_range_float_shows_value() {
    let text = EXAMPLE.replace("learning_rate = 0.1", "learning_rate = 7.5");
    let err = parse(&text).unwrap_err();
    assert!(err.to_string().contains("7.5 is out of range"), "{err}");
}

#[test]
fn directory_is_not_a_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = Config::load(dir.path()).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("is not a regular file"), "{shown}");
    assert!(
        !shown.contains(":0:0"),
        "no position for a file-level problem: {shown}"
    );
}

#[test]
fn oversized_config_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.toml");
    std::fs::write(&path, "#".repeat(2 * 1024 * 1024)).expect("write");
    let err = Config::load(&path).unwrap_err();
    assert!(err.to_string().contains("is larger than"), "{err}");
}

#[test]
fn model_defaults_from_example() {
    let config = parse(EXAMPLE).expect("valid");
    assert_eq!(config.model, ModelConfig::default());
}

#[test]
fn stage_lists_select_stage_labels() {
    let text = EXAMPLE
        .replace("label = \"is_won\"\n", "")
        .replace("# won_stages = ", "won_stages = ")
        .replace("# lost_stages = ", "lost_stages = ");
    let config = parse(&text).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        config.model.label,
        LabelRule::Stages {
            won: vec!["Closed Won".to_string()],
            lost: vec![
                "Closed Lost".to_string(),
                "Closed - No Decision".to_string()
            ],
        }
    );
}

#[test]
fn label_rule_problems_reported() {
    let cases = [
        (
            EXAMPLE.replace("# won_stages = ", "won_stages = "),
            "model.won_stages",
            "read only when label = \"stages\"",
        ),
        (
            EXAMPLE.replace("label = \"is_won\"", "label = \"stages\""),
            "model.won_stages",
            "non-empty won_stages",
        ),
        (
            EXAMPLE.replace("label = \"is_won\"", "label = \"won_flag\""),
            "model.label",
            "unknown label rule \"won_flag\"",
        ),
        (
            EXAMPLE
                .replace("label = \"is_won\"", "label = \"stages\"")
                .replace(
                    "# won_stages = [\"Closed Won\"]",
                    "won_stages = [\"Closed Lost\"]",
                )
                .replace("# lost_stages = ", "lost_stages = "),
            "model.lost_stages",
            "in both won_stages and lost_stages",
        ),
    ];
    for (text, key, message) in cases {
        let err = parse(&text).expect_err(key);
        let issue = err.issues.iter().find(|i| i.key == key);
        let issue = issue.unwrap_or_else(|| panic!("no issue for {key}: {err}"));
        assert!(issue.message.contains(message), "{err}");
        // Only the label keys are reported; the rest of [model] is still read.
        assert!(
            err.issues
                .iter()
                .all(|i| i.key.ends_with("stages") || i.key == "model.label"),
            "{err}"
        );
    }
}

#[test]
fn model_ranges_checked() {
    let text = EXAMPLE
        .replace("leakage_auc = 0.95", "leakage_auc = 1.5")
        .replace("min_minority = 40", "min_minority = 0")
        .replace("validation_fraction = 0.15", "validation_fraction = 0.9")
        .replace("keep_features = []", "keep_features = [3]")
        .replace("early_stopping_rounds = 10", "early_stopping_rounds = -1");
    let err = parse(&text).unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    for key in [
        "model.early_stopping_rounds",
        "model.leakage_auc",
        "model.min_minority",
        "model.validation_fraction",
        "model.keep_features",
    ] {
        assert!(keys.contains(&key), "{key} missing from {err}");
    }
}

#[test]
fn segment_read_when_valid() {
    let text = EXAMPLE.replace("# segment = ", "segment = ");
    let config = parse(&text).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.model.segment.as_deref(), Some("hospital_type"));
    assert_eq!(config.model.min_segment_examples, 30);
    assert!(!config.model.strict_segments);
}

#[test]
fn unknown_segment_feature_has_position() {
    let text = EXAMPLE.replace("# segment = \"hospital_type\"", "segment = \"bed_type\"");
    let line = text
        .lines()
        .position(|l| l.starts_with("segment = "))
        .expect("line present")
        + 1;
    let err = parse(&text).unwrap_err();
    assert_eq!(err.issues.len(), 1, "{err}");
    let issue = &err.issues[0];
    assert_eq!(issue.key, "model.segment");
    assert_eq!(issue.line, line);
    assert_eq!(issue.column, 11);
    assert!(
        issue.message.contains("unknown feature \"bed_type\""),
        "{err}"
    );
    assert!(issue.message.contains("hospital_type"), "{err}");
}

#[test]
fn segment_must_be_category() {
    let text = EXAMPLE.replace("# segment = \"hospital_type\"", "segment = \"star_rating\"");
    let err = parse(&text).unwrap_err();
    let issue = err
        .issues
        .iter()
        .find(|i| i.key == "model.segment")
        .unwrap_or_else(|| panic!("no segment issue: {err}"));
    assert!(
        issue.message.contains("segment needs a category feature"),
        "{err}"
    );
}

#[test]
fn segment_settings_range_checked() {
    let text = EXAMPLE
        .replace("min_segment_examples = 30", "min_segment_examples = 0")
        .replace("strict_segments = false", "strict_segments = \"yes\"");
    let err = parse(&text).unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    assert!(keys.contains(&"model.min_segment_examples"), "{err}");
    assert!(keys.contains(&"model.strict_segments"), "{err}");
}

#[test]
fn early_stopping_rounds_read() {
    let config = parse(EXAMPLE).expect("valid");
    assert_eq!(config.model.early_stopping_rounds, 10);

    let off = EXAMPLE.replace("early_stopping_rounds = 10", "early_stopping_rounds = 0");
    assert_eq!(parse(&off).expect("valid").model.early_stopping_rounds, 0);

    let absent = EXAMPLE.replace("early_stopping_rounds = 10\n", "");
    assert_eq!(
        parse(&absent).expect("valid").model.early_stopping_rounds,
        10
    );

    for bad in ["1001", "2.5", "\"ten\""] {
        let text = EXAMPLE.replace(
            "early_stopping_rounds = 10",
            &format!("early_stopping_rounds = {bad}"),
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.issues
                .iter()
                .any(|i| i.key == "model.early_stopping_rounds"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn post_outcome_shares_read_and_checked() {
    let config = parse(EXAMPLE).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.model.post_outcome_train_share, 0.5);
    assert_eq!(config.model.post_outcome_scoring_share, 0.05);

    let set = |keys: &str| {
        EXAMPLE.replace(
            "post_outcome_train_share = 0.5\npost_outcome_scoring_share = 0.05",
            keys,
        )
    };
    let config = parse(&set(
        "post_outcome_train_share = 0.8\npost_outcome_scoring_share = 0.1",
    ))
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.model.post_outcome_train_share, 0.8);
    assert_eq!(config.model.post_outcome_scoring_share, 0.1);

    let cases = [
        (
            "post_outcome_train_share = 1.5",
            "post_outcome_train_share",
            "out of range",
        ),
        (
            "post_outcome_scoring_share = -0.1",
            "post_outcome_scoring_share",
            "out of range",
        ),
        (
            "post_outcome_scoring_share = \"low\"",
            "post_outcome_scoring_share",
            "number",
        ),
        (
            "post_outcome_scoring_share = 0.6",
            "post_outcome_scoring_share",
            "must be below post_outcome_train_share (0.5)",
        ),
        (
            "post_outcome_train_share = 0.04",
            "post_outcome_train_share",
            "must be below post_outcome_train_share (0.04)",
        ),
    ];
    for (line_text, key, message) in cases {
        let text = set(line_text);
        let line = text
            .lines()
            .position(|l| l == line_text)
            .expect("line present")
            + 1;
        let err = parse(&text).expect_err(line_text);
        assert_eq!(err.issues.len(), 1, "{err}");
        let issue = &err.issues[0];
        assert_eq!(issue.key, format!("model.{key}"), "{err}");
        assert_eq!(issue.line, line, "{err}");
        assert_eq!(issue.column, key.len() + 4, "{err}");
        assert!(issue.message.contains(message), "{err}");
    }
}

#[test]
fn held_back_share_capped() {
    let text = EXAMPLE
        .replace("holdout_fraction = 0.2", "holdout_fraction = 0.5")
        .replace("validation_fraction = 0.15", "validation_fraction = 0.4");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.issues.len(), 1, "{err}");
    assert!(err.to_string().contains("less than half"), "{err}");
}

/// Returns the issue messages of a file that must be rejected, as `key: message` lines.
fn problems(text: &str) -> String {
    let err = parse(text).unwrap_err();
    err.issues
        .iter()
        .map(|i| format!("{}:{}: {}: {}", i.line, i.column, i.key, i.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn levels_default_to_account_and_parse_in_order() {
    let config = parse(EXAMPLE).expect("example");
    assert_eq!(config.scoring.levels, vec![Level::Account]);
    let text = EXAMPLE.replace(r#"levels = ["account"]"#, r#"levels = ["lead", "account"]"#);
    let config = parse(&text).expect("two levels");
    assert_eq!(config.scoring.levels, vec![Level::Lead, Level::Account]);
    assert_eq!(config.writeback_for(Level::Lead), &config.writeback);
    let old = EXAMPLE.replace(r#"levels = ["account"]"#, r#"level = "account""#);
    assert_eq!(
        parse(&old).expect("old spelling").scoring.levels,
        vec![Level::Account]
    );
}

#[test]
fn bad_levels_named_with_the_fix() {
    let unknown = problems(&EXAMPLE.replace(
        r#"levels = ["account"]"#,
        r#"levels = ["account", "opportunity"]"#,
    ));
    assert!(
        unknown.contains(r#"unknown level "opportunity"; expected one of: account, contact, lead"#),
        "{unknown}"
    );
    let twice =
        problems(&EXAMPLE.replace(r#"levels = ["account"]"#, r#"levels = ["lead", "lead"]"#));
    assert!(twice.contains(r#"level "lead" is listed twice"#), "{twice}");
    let both = problems(&EXAMPLE.replace(
        r#"levels = ["account"]"#,
        "level = \"account\"\nlevels = [\"lead\"]",
    ));
    assert!(both.contains("both level and levels are set"), "{both}");
}

#[test]
fn lead_and_hint_settings_checked() {
    let observe = problems(&EXAMPLE.replace("observe_days = 14", "observe_days = 200"));
    assert!(
        observe.contains("observe_days (200) must be below lost_after_days (180)"),
        "{observe}"
    );
    let label = problems(&EXAMPLE.replace(r#"label = "converted""#, r#"label = "won""#));
    assert!(label.contains(r#"unknown lead label "won""#), "{label}");
    let hint = problems(&EXAMPLE.replace(
        r#"actionable = ["roles_engaged", "meetings", "days_since_last_touch"]"#,
        r#"actionable = ["star_rating"]"#,
    ));
    assert!(
        hint.contains(r#""star_rating" is not a feature a rep can change"#),
        "{hint}"
    );
    let line = EXAMPLE
        .lines()
        .position(|l| l.starts_with("actionable"))
        .expect("actionable line")
        + 1;
    assert!(hint.starts_with(&format!("{line}:")), "{hint}");
    let text = EXAMPLE.replace(
        "[hints]",
        "[lead.writeback]\nscore_field = \"Lead_Score__c\"\n\n[hints]",
    );
    let config = parse(&text).expect("lead write-back override");
    assert_eq!(config.lead.writeback.score_field, "Lead_Score__c");
    assert_eq!(
        config.lead.writeback.tier_field,
        config.writeback.tier_field
    );
}

#[test]
fn enrichment_feature_may_not_shadow_a_configured_one() {
    let text = EXAMPLE.replace(
        "[model]",
        "[[enrichment]]\nname = \"hip\"\nobject = \"account\"\nsource = \"cms-hospitals\"\nkey = { field = \"CMS_Certification_Number__c\", column = \"Facility ID\" }\ncolumns = [{ column = \"HIP-KNEE Discharges\", name = \"knee_volume\" }]\n\n[model]",
    );
    let clash = problems(&text);
    assert!(
        clash.contains(
            r#"enrichment feature "hip_knee_volume" has the name of a [[features.*]] entry"#
        ),
        "{clash}"
    );
    let renamed = text.replace("name = \"knee_volume\"", "name = \"knee\"");
    let config = parse(&renamed).expect("distinct names parse");
    assert_eq!(
        config.enrichment[0].feature_names(),
        vec!["hip_knee".to_string()]
    );
}

const HUBSPOT: &str = include_str!("../../deploy/leadscore.hubspot.example.toml");

#[test]
fn hubspot_example_parses() {
    let config = parse(HUBSPOT).expect("the shipped HubSpot example must be valid");
    let ConnectorSettings::HubSpot(settings) = &config.connector else {
        panic!("the HubSpot example configures HubSpot");
    };
    assert_eq!(settings.lead_converted_stage, "salesqualifiedlead");
    assert_eq!(config.lead.writeback.score_field, "leadscore_lead_score");
}

#[test]
fn connector_kind_typo_suggests_closest() {
    let err = parse(&HUBSPOT.replace(r#"kind = "hubspot""#, r#"kind = "HubSpot""#)).unwrap_err();
    let connector: Vec<&ConfigIssue> = err
        .issues
        .iter()
        .filter(|i| i.key.starts_with("connector"))
        .collect();
    assert_eq!(connector.len(), 1, "{err}");
    assert_eq!(connector[0].example.as_deref(), Some(r#"kind = "hubspot""#));
}

#[test]
fn hubspot_credentials_problems_are_not_buried() {
    let both = HUBSPOT.replace(
        "# client_id = \"YOUR_APP_CLIENT_ID\"\n# client_secret_env = \"LEADSCORE_HUBSPOT_CLIENT_SECRET\"\n# refresh_token_env = \"LEADSCORE_HUBSPOT_REFRESH_TOKEN\"",
        "client_id = \"abc\"\nclient_secret_env = \"LEADSCORE_HUBSPOT_CLIENT_SECRET\"\nrefresh_token_env = \"LEADSCORE_HUBSPOT_REFRESH_TOKEN\"",
    );
    assert_ne!(both, HUBSPOT, "the OAuth lines are in the example");
    let err = parse(&both).unwrap_err();
    assert_eq!(err.issues.len(), 1, "{err}");
    assert!(err.issues[0].message.contains("both token_env"), "{err}");

    let oauth_without_id = both
        .replace("token_env = \"LEADSCORE_HUBSPOT_TOKEN\"\n", "")
        .replace("client_id = \"abc\"\n", "");
    let err = parse(&oauth_without_id).unwrap_err();
    assert_eq!(err.issues.len(), 1, "{err}");
    assert_eq!(err.issues[0].key, "connector.client_id");
    assert_eq!(
        err.issues[0].example.as_deref(),
        Some(r#"client_id = "YOUR_APP_CLIENT_ID""#)
    );
}

#[test]
fn base_currency_rate_other_than_one_rejected() {
    let text =
        format!("{EXAMPLE}\n[currency]\nbase = \"USD\"\nrates = {{ USD = 2.0, EUR = 1.08 }}\n");
    let error = parse(&text).unwrap_err().to_string();
    assert!(error.contains("currency.rates.USD"), "{error}");
    assert!(error.contains("base currency"), "{error}");
    let text =
        format!("{EXAMPLE}\n[currency]\nbase = \"USD\"\nrates = {{ USD = 1.0, EUR = 1.08 }}\n");
    assert!(parse(&text).is_ok());
    let text = EXAMPLE.replacen(
        r#"path = "leadscore-data""#,
        r#"path = "/srv/my%20scores%20data""#,
        1,
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn unknown_key_hint_omits_secret_keys() {
    let text = EXAMPLE.replace("page_size = 2000", "page_sise = 2000");
    let error = parse(&text).expect_err("a misspelt key must be rejected");
    let issue = error
        .issues
        .iter()
        .find(|issue| issue.key == "connector.page_sise")
        .expect("the misspelt key is reported");
    assert!(issue.message.contains("page_size"), "{}", issue.message);
    for secret in SECRET_KEYS {
        let listed = issue
            .message
            .split(['(', ',', ':', ' '])
            .any(|word| word == secret);
        assert!(!listed, "{secret} is offered in: {}", issue.message);
    }
}

/// Found by the fuzz tests: `connector = []` made `parse` fail with no problem listed.
#[test]
fn empty_connector_array_reported() {
    let text = EXAMPLE.replacen("[connector]", "connector = []\n[old_connector]", 1);
    let error = parse(&text).unwrap_err();
    let messages: Vec<&str> = error.issues.iter().map(|i| i.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains("empty array")),
        "{messages:?}"
    );
    assert!(error.issues.iter().all(|i| !i.message.trim().is_empty()));
}

#[test]
fn shell_syntax_in_paths_rejected() {
    let cases = [
        (
            r#"path = "leadscore-data""#,
            r#"path = "~/leadscore-data""#,
            "store.path",
        ),
        (
            r#"path = "leadscore-data""#,
            r#"path = "$HOME/leadscore-data""#,
            "store.path",
        ),
        (
            r#"# ca_file = "/etc/ssl/certs/corporate-proxy.pem""#,
            r#"ca_file = "${CERT_DIR}/proxy.pem""#,
            "connector.ca_file",
        ),
        (
            r#"folder = "reports""#,
            r#"folder = "%USERPROFILE%\\reports""#,
            "outcomes.folder",
        ),
    ];
    for (from, to, key) in cases {
        assert!(EXAMPLE.contains(from), "{from}");
        let text = EXAMPLE.replacen(from, to, 1);
        let found = problems(&text);
        assert!(found.contains(key), "{to}: {found}");
        assert!(found.contains("expand"), "{to}: {found}");
    }
    // A dollar sign that starts no variable name is part of the path.
    let text = EXAMPLE.replacen(
        r#"path = "leadscore-data""#,
        r#"path = "/srv/leadscore$1/data""#,
        1,
    );
    assert!(parse(&text).is_ok());
    let text = EXAMPLE.replacen(
        r#"path = "leadscore-data""#,
        r#"path = "/srv/my%20scores%20data""#,
        1,
    );
    assert!(parse(&text).is_ok());
}
