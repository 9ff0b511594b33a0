//! Enrichment tables end to end: configuration text, CSV files written to a temporary directory
//! (or the built-in CMS table), the join to records and the report.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{TimeZone, Utc};
use leadscore::config::enrichment::parse_enrichment;
use leadscore::config::AttributeKind;
use leadscore::enrichment::{EnrichmentConfig, EnrichmentError, EnrichmentTable};
use leadscore_connector::{Record, Value};

fn record(object: &str, id: &str, fields: &[(&str, Value)]) -> Record {
    Record {
        object: object.to_string(),
        id: id.to_string(),
        modstamp: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        deleted: false,
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

/// Parses one `[[enrichment]]` table whose relative paths resolve against `dir`.
fn config(dir: &Path, body: &str) -> EnrichmentConfig {
    let text = format!("[[enrichment]]\n{body}\n");
    let mut tables = parse_enrichment(&text, dir)
        .unwrap_or_else(|issues| panic!("invalid test configuration: {issues:#?}"));
    assert_eq!(tables.len(), 1);
    tables.remove(0)
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("write the test CSV file");
}

fn load_error(config: &EnrichmentConfig) -> EnrichmentError {
    match EnrichmentTable::load(config) {
        Ok(_) => panic!("expected the table to be rejected"),
        Err(err) => err,
    }
}

const KEY_TABLE: &str = r#"name = "vendor"
object = "account"
file = "hospitals.csv"
key = { field = "CCN__c", column = "Facility ID" }
columns = ["Beds", "Teaching", { column = "Region", name = "area", label = "sales area" }]"#;

#[test]
fn key_join_with_leading_zero_loss() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region\n010001,350,Yes,South\n010005,120,No,South\n450001,80,Yes,West\n",
    );
    let table = EnrichmentTable::load(&config(dir.path(), KEY_TABLE)).expect("load");

    let features = table.features();
    let names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["vendor_beds", "vendor_teaching", "vendor_area"]);
    assert_eq!(features[0].kind, AttributeKind::Number);
    assert_eq!(features[1].kind, AttributeKind::Flag);
    assert_eq!(features[2].kind, AttributeKind::Category);
    assert_eq!(features[2].field, "enrichment.vendor.area");
    assert_eq!(features[2].label, "sales area");

    let mut records = [
        record("Account", "A1", &[("CCN__c", text(" 010001 "))]),
        // A number field that lost the leading zero.
        record("Account", "A2", &[("CCN__c", Value::Number(10005.0))]),
        record("Account", "A3", &[("CCN__c", text("999999"))]),
        record("Account", "A4", &[]),
        record("Contact", "C1", &[("CCN__c", text("010001"))]),
    ];
    let report = table.apply(records.iter_mut());

    assert_eq!(
        records[0].get("enrichment.vendor.beds"),
        &Value::Number(350.0)
    );
    assert_eq!(
        records[0].get("enrichment.vendor.teaching"),
        &Value::Bool(true)
    );
    assert_eq!(records[0].get("enrichment.vendor.area"), &text("South"));
    assert_eq!(
        records[1].get("enrichment.vendor.beds"),
        &Value::Number(120.0)
    );
    assert_eq!(
        records[1].get("enrichment.vendor.teaching"),
        &Value::Bool(false)
    );
    assert!(records[2].get("enrichment.vendor.beds").is_null());
    assert!(
        records[4]
            .fields
            .keys()
            .all(|k| !k.starts_with("enrichment.")),
        "contacts are not touched by an account table"
    );

    assert_eq!(report.records, 4);
    assert_eq!(report.matched_exact.count, 1);
    assert_eq!(report.matched_exact.samples, ["A1"]);
    assert_eq!(report.matched_leading_zeros.count, 1);
    assert_eq!(
        report.matched_leading_zeros.samples,
        ["A2: 10005 -> 010005"]
    );
    assert_eq!(report.unmatched_records.count, 1);
    assert!(report.unmatched_records.samples[0].starts_with("A3"));
    assert_eq!(report.records_without_key.count, 1);
    assert!(report.records_without_key.samples[0].starts_with("A4"));
    assert_eq!(report.unused_rows.count, 1);
    assert_eq!(report.unused_rows.samples, ["450001"]);
    assert_eq!(report.rows, 3);
    assert_eq!(report.version.len(), 16);
}

#[test]
fn apply_again_removes_stale_values() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region\n010001,350,Yes,South\n",
    );
    let table = EnrichmentTable::load(&config(dir.path(), KEY_TABLE)).expect("load");
    let mut records = [record("Account", "A1", &[("CCN__c", text("010001"))])];
    table.apply(records.iter_mut());
    assert_eq!(
        records[0].get("enrichment.vendor.beds"),
        &Value::Number(350.0)
    );

    records[0]
        .fields
        .insert("CCN__c".to_string(), text("777777"));
    let report = table.apply(records.iter_mut());
    assert_eq!(report.unmatched_records.count, 1);
    assert!(records[0].get("enrichment.vendor.beds").is_null());
}

#[test]
fn name_state_variants_are_fuzzy() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ratings.csv",
        "Hospital,St,Rating\n\
         SAINT MARYS MEDICAL CENTER,MN,4\n\
         MERCY HOSPITAL JOPLIN,MO,3\n\
         BAPTIST MEDICAL CENTER SOUTH,AL,2\n\
         BAPTIST MEDICAL CENTER EAST,AL,5\n",
    );
    let table = EnrichmentTable::load(&config(
        dir.path(),
        r#"name = "ratings"
object = "account"
file = "ratings.csv"
match = { name_field = "Name", state_field = "BillingState", name_column = "Hospital", state_column = "St" }
columns = ["Rating"]"#,
    ))
    .expect("load");

    let account = |id: &str, name: &str, state: &str| {
        record(
            "Account",
            id,
            &[("Name", text(name)), ("BillingState", text(state))],
        )
    };
    let mut records = [
        account("A1", "St. Mary's Med. Ctr.", "MN"),
        account("A2", "saint marys medical center", "mn"),
        account("A3", "Mercy Hospital", "MO"),
        // Equally similar to both Baptist rows.
        account("A4", "Baptist Medical Center", "AL"),
        // Right name, wrong state.
        account("A5", "Saint Marys Medical Center", "WI"),
    ];
    let report = table.apply(records.iter_mut());

    let rating = |i: usize| records[i].get("enrichment.ratings.rating").clone();
    assert_eq!(rating(0), Value::Number(4.0));
    assert_eq!(rating(1), Value::Number(4.0));
    assert_eq!(rating(2), Value::Number(3.0));
    assert!(rating(3).is_null());
    assert!(rating(4).is_null());

    assert_eq!(
        report.matched_exact.count, 0,
        "name matches are never exact"
    );
    assert_eq!(report.matched_fuzzy.count, 3);
    assert_eq!(report.matched_similar, 1);
    assert_eq!(
        report.matched_fuzzy.samples[0],
        "A1: St. Mary's Med. Ctr. -> SAINT MARYS MEDICAL CENTER, MN (same normalised name)"
    );
    assert!(
        report.matched_fuzzy.samples[2]
            .starts_with("A3: Mercy Hospital -> MERCY HOSPITAL JOPLIN, MO (similarity 0.80"),
        "{:?}",
        report.matched_fuzzy.samples
    );
    assert_eq!(report.unmatched_records.count, 2);
    assert!(report.unmatched_records.samples[0].contains("equally similar"));
    assert_eq!(report.unused_rows.count, 2);
}

#[test]
fn duplicates_and_keyless_rows_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region\n\
         010001,350,Yes,South\n\
         010005,120,No,South\n\
         010001,999,No,North\n\
         ,80,Yes,West\n",
    );
    let table = EnrichmentTable::load(&config(dir.path(), KEY_TABLE)).expect("load");
    let mut records = [record("Account", "A1", &[("CCN__c", text("010001"))])];
    let report = table.apply(records.iter_mut());

    // The first row with the key wins.
    assert_eq!(
        records[0].get("enrichment.vendor.beds"),
        &Value::Number(350.0)
    );
    assert_eq!(report.duplicate_keys.count, 1);
    assert_eq!(
        report.duplicate_keys.samples,
        ["line 4: 010001 (first on line 2)"]
    );
    assert!(report.duplicate_rule.contains("first row"));
    assert_eq!(report.rows_without_key.count, 1);
    assert_eq!(report.rows_without_key.samples, ["line 5"]);
    assert_eq!(report.unused_rows.samples, ["010005"]);
    assert!(report.warnings.iter().any(|w| w.contains("repeat")));

    let json = serde_json::to_value(&report).expect("the report serialises");
    assert_eq!(json["duplicate_keys"]["count"], 1);
    assert_eq!(json["columns"][0]["kind"], "number");
}

#[test]
fn builtin_cms_joins_real_ccns() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        r#"name = "cms"
object = "account"
source = "cms-hospitals"
key = { field = "CMS_Certification_Number__c", column = "Facility ID" }
columns = [
    "Hospital Type",
    "Emergency Services",
    { column = "Hospital overall rating", name = "star_rating" },
    "HIP-KNEE Discharges",
]"#,
    );
    let table = EnrichmentTable::load(&config).expect("load the built-in table");
    let kinds: Vec<AttributeKind> = table.features().iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            AttributeKind::Category,
            AttributeKind::Flag,
            AttributeKind::Number,
            AttributeKind::Number
        ]
    );

    let mut records = [
        record(
            "Account",
            "A1",
            &[("CMS_Certification_Number__c", text("010001"))],
        ),
        record(
            "Account",
            "A2",
            &[("CMS_Certification_Number__c", Value::Number(10005.0))],
        ),
    ];
    let report = table.apply(records.iter_mut());
    let southeast = &records[0];
    assert_eq!(
        southeast.get("enrichment.cms.hospital_type"),
        &text("Acute Care Hospitals")
    );
    assert_eq!(
        southeast.get("enrichment.cms.star_rating"),
        &Value::Number(4.0)
    );
    assert_eq!(
        southeast.get("enrichment.cms.emergency_services"),
        &Value::Bool(true)
    );
    assert_eq!(report.matched_exact.count, 1);
    assert_eq!(report.matched_leading_zeros.count, 1);
    assert_eq!(report.source, "built-in cms-hospitals");
    assert!(report.rows > 5000, "rows: {}", report.rows);
    // "Not Available" ratings are missing values, not a category or zero.
    let rating = &report.columns[2];
    assert!(rating.missing_share > 0.3, "{}", rating.missing_share);
    assert!(rating.missing_share < 0.7, "{}", rating.missing_share);
    assert_eq!(rating.not_fitting.count, 0);
    // The version is a property of the shipped files: loading again gives the same one.
    let again = EnrichmentTable::load(&config).expect("load again");
    assert_eq!(again.version(), table.version());
}

#[test]
fn semicolon_file_needs_delimiter() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID;Beds;Teaching;Region\n010001;350;Yes;South\n",
    );
    let err = load_error(&config(dir.path(), KEY_TABLE));
    assert!(matches!(err, EnrichmentError::Delimiter { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(r#"delimiter = ";""#), "{message}");
    assert!(message.contains("hospitals.csv"), "{message}");

    let with_delimiter = config(dir.path(), &format!("{KEY_TABLE}\ndelimiter = \";\""));
    let table = EnrichmentTable::load(&with_delimiter).expect("load with the delimiter");
    let mut records = [record("Account", "A1", &[("CCN__c", text("010001"))])];
    table.apply(records.iter_mut());
    assert_eq!(
        records[0].get("enrichment.vendor.beds"),
        &Value::Number(350.0)
    );
}

#[test]
fn changed_file_gets_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), KEY_TABLE);
    let contents = "Facility ID,Beds,Teaching,Region\n010001,350,Yes,South\n";
    write(dir.path(), "hospitals.csv", contents);
    let first = EnrichmentTable::load(&config)
        .expect("load")
        .version()
        .to_string();
    let same = EnrichmentTable::load(&config)
        .expect("load")
        .version()
        .to_string();
    assert_eq!(first, same);

    write(dir.path(), "hospitals.csv", &contents.replace("350", "351"));
    let changed = EnrichmentTable::load(&config)
        .expect("load")
        .version()
        .to_string();
    assert_ne!(first, changed);
}

#[test]
fn bad_files_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), KEY_TABLE);

    let err = load_error(&config);
    assert!(matches!(err, EnrichmentError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("hospitals.csv"), "{err}");

    write(dir.path(), "hospitals.csv", "\n  \n");
    let err = load_error(&config);
    assert!(matches!(err, EnrichmentError::Empty { .. }), "{err:?}");

    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching\n010001,350,Yes\n",
    );
    let err = load_error(&config);
    let message = err.to_string();
    assert!(
        matches!(err, EnrichmentError::MissingColumn { .. }),
        "{err:?}"
    );
    assert!(message.contains("\"Region\""), "{message}");
    assert!(message.contains("Facility ID, Beds, Teaching"), "{message}");

    write(
        dir.path(),
        "hospitals.csv",
        "CCN,Beds,Teaching,Region\n010001,350,Yes,S\n",
    );
    let message = load_error(&config).to_string();
    assert!(message.contains("key.column"), "{message}");
    assert!(message.contains("CCN, Beds"), "{message}");

    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region\n010001,350\n",
    );
    let message = load_error(&config).to_string();
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn column_listed_twice_in_code() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region\n010001,350,Yes,South\n",
    );
    let mut config = config(dir.path(), KEY_TABLE);
    let mut again = config.columns[0].clone();
    again.name = "beds_again".to_string();
    config.columns.push(again);
    let err = load_error(&config);
    assert!(matches!(err, EnrichmentError::Duplicate { .. }), "{err:?}");
    assert!(err.to_string().contains("\"Beds\""), "{err}");
}

#[test]
fn stray_values_and_sparse_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("Facility ID,Beds,Teaching,Region\n");
    for i in 0..40 {
        let region = if i == 0 { "South" } else { "" };
        csv.push_str(&format!("{:06},{},Yes,{region}\n", i + 1, 100 + i));
    }
    // Line 42: a count suppressed in words.
    csv.push_str("000041,Too few,No,\n");
    write(dir.path(), "hospitals.csv", &csv);
    let table = EnrichmentTable::load(&config(dir.path(), KEY_TABLE)).expect("load");

    let mut records = [record("Account", "A1", &[("CCN__c", text("000041"))])];
    let report = table.apply(records.iter_mut());
    let beds = &report.columns[0];
    // The report names the kind the values mostly fit, and says not all do.
    assert_eq!(beds.inferred, "number (some values are not)");
    assert_eq!(beds.kind, AttributeKind::Number);
    assert_eq!(beds.not_fitting.count, 1);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("column \"Beds\"")
                && w.contains("1 value is not a number")
                && w.contains("Too few")),
        "{:?}",
        report.warnings
    );
    assert_eq!(beds.not_fitting.samples, [r#"line 42: "Too few""#]);
    assert!(records[0].get("enrichment.vendor.beds").is_null());
    assert_eq!(
        records[0].get("enrichment.vendor.teaching"),
        &Value::Bool(false)
    );

    // Region has one value in 41 rows.
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("\"Region\"") && w.contains("almost always missing")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn decimal_comma_read_in_semicolon_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID;Beds;Teaching;Region\n010001;1,0597;Yes;South\n010005;1.234,5;No;North\n010006;0,98;No;North\n",
    );
    let table = EnrichmentTable::load(&config(
        dir.path(),
        &format!("{KEY_TABLE}\ndelimiter = \";\""),
    ))
    .expect("load");
    let mut records = [
        record("Account", "A1", &[("CCN__c", text("010001"))]),
        record("Account", "A2", &[("CCN__c", text("010005"))]),
    ];
    let report = table.apply(records.iter_mut());
    assert_eq!(
        records[0].get("enrichment.vendor.beds"),
        &Value::Number(1.0597)
    );
    assert_eq!(
        records[1].get("enrichment.vendor.beds"),
        &Value::Number(1234.5)
    );
    let beds = report
        .columns
        .iter()
        .find(|c| c.column == "Beds")
        .expect("beds");
    assert_eq!(beds.kind, leadscore::config::AttributeKind::Number);
    assert_eq!(beds.inferred, "number (decimal comma)");
}

#[test]
fn mostly_numeric_column_with_text_warns() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = String::from("Facility ID,Beds,Teaching,Region\n");
    for i in 0..20 {
        let beds = if i % 5 == 0 {
            "high".to_string()
        } else {
            format!("{}", 100 + i)
        };
        rows.push_str(&format!("{:06},{beds},Yes,South\n", 10_000 + i));
    }
    write(dir.path(), "hospitals.csv", &rows);
    let table = EnrichmentTable::load(&config(dir.path(), KEY_TABLE)).expect("load");
    let mut records = [record("Account", "A1", &[("CCN__c", text("010001"))])];
    let report = table.apply(records.iter_mut());
    let warning = report
        .warnings
        .iter()
        .find(|w| w.contains("\"Beds\""))
        .unwrap_or_else(|| panic!("no warning about Beds: {:?}", report.warnings));
    assert!(warning.contains("16 of 20 rows"), "{warning}");
    assert!(warning.contains(r#"kind = "number""#), "{warning}");
}

#[test]
fn grouped_numbers_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    // A European export: dots group thousands and a comma marks the decimals, so "1.234"
    // is one thousand two hundred and thirty-four.
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID;Beds;Teaching;Region\n010001;1.234;Yes;South\n010005;12,5;No;North\n010006;3.456,7;No;North\n",
    );
    let table = EnrichmentTable::load(&config(
        dir.path(),
        &format!("{KEY_TABLE}\ndelimiter = \";\""),
    ))
    .expect("load");
    let mut records = [
        record("Account", "A1", &[("CCN__c", text("010001"))]),
        record("Account", "A2", &[("CCN__c", text("010005"))]),
        record("Account", "A3", &[("CCN__c", text("010006"))]),
    ];
    table.apply(records.iter_mut());
    let beds = |records: &[Record], i: usize| records[i].get("enrichment.vendor.beds").clone();
    assert_eq!(beds(&records, 0), Value::Number(1234.0));
    assert_eq!(beds(&records, 1), Value::Number(12.5));
    assert_eq!(beds(&records, 2), Value::Number(3456.7));

    // A US export: commas group thousands inside quoted cells.
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region\n010001,\"1,234\",Yes,South\n010005,\"12,345.5\",No,North\n010006,80,No,North\n",
    );
    let table = EnrichmentTable::load(&config(dir.path(), KEY_TABLE)).expect("load");
    let report = table.apply(records.iter_mut());
    assert_eq!(beds(&records, 0), Value::Number(1234.0));
    assert_eq!(beds(&records, 1), Value::Number(12345.5));
    assert_eq!(beds(&records, 2), Value::Number(80.0));
    let column = report.columns.iter().find(|c| c.column == "Beds").unwrap();
    assert_eq!(column.kind, AttributeKind::Number);
    assert_eq!(column.not_fitting.count, 0);
}

#[test]
fn ambiguous_dot_grouping_warns() {
    let dir = tempfile::tempdir().unwrap();
    // Every value has three digits after the dot: a decimal point or a thousands separator.
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID;Beds;Teaching;Region\n010001;1.234;Yes;South\n010005;5.620;No;North\n",
    );
    let table = EnrichmentTable::load(&config(
        dir.path(),
        &format!("{KEY_TABLE}\ndelimiter = \";\""),
    ))
    .expect("load");
    let mut records = [record("Account", "A1", &[("CCN__c", text("010001"))])];
    let report = table.apply(records.iter_mut());
    assert_eq!(
        records[0].get("enrichment.vendor.beds"),
        &Value::Number(1.234)
    );
    let warning = report
        .warnings
        .iter()
        .find(|w| w.contains("\"Beds\""))
        .unwrap_or_else(|| panic!("no warning about Beds: {:?}", report.warnings));
    assert!(warning.contains("\"1.234\""), "{warning}");
    assert!(warning.contains("thousands"), "{warning}");
}

#[test]
fn ambiguous_comma_keeps_decimal_comma() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID;Beds;Teaching;Region\n010001;1,234;Yes;South\n010005;7;No;North\n",
    );
    let table = EnrichmentTable::load(&config(
        dir.path(),
        &format!("{KEY_TABLE}\ndelimiter = \";\""),
    ))
    .expect("load");
    let mut records = [record("Account", "A1", &[("CCN__c", text("010001"))])];
    let report = table.apply(records.iter_mut());
    assert_eq!(
        records[0].get("enrichment.vendor.beds"),
        &Value::Number(1.234)
    );
    let warned = report.warnings.iter().any(|w| w.contains("\"1,234\""));
    assert!(warned, "{:?}", report.warnings);
}

#[test]
fn decimal_point_in_semicolon_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID;Beds;Teaching;Region\n010001;1.234;Yes;South\n010005;12.5;No;North\n",
    );
    let table = EnrichmentTable::load(&config(
        dir.path(),
        &format!("{KEY_TABLE}\ndelimiter = \";\""),
    ))
    .expect("load");
    let mut records = [record("Account", "A1", &[("CCN__c", text("010001"))])];
    let report = table.apply(records.iter_mut());
    assert_eq!(
        records[0].get("enrichment.vendor.beds"),
        &Value::Number(1.234)
    );
    let warned = report.warnings.iter().any(|w| w.contains("\"Beds\""));
    assert!(!warned, "{:?}", report.warnings);
}

#[test]
fn invisible_spaces_in_header_match() {
    let dir = tempfile::tempdir().unwrap();
    // Spreadsheets keep a non-breaking space pasted from a web page, and a zero-width space
    // is invisible in every error message.
    write(
        dir.path(),
        "hospitals.csv",
        "Facility\u{a0}ID,Beds\u{200b},Teaching,Region\n010001,350,Yes,South\n",
    );
    let table = EnrichmentTable::load(&config(dir.path(), KEY_TABLE)).expect("load");
    let mut records = [record("Account", "A1", &[("CCN__c", text("010001"))])];
    table.apply(records.iter_mut());
    assert_eq!(
        records[0].get("enrichment.vendor.beds"),
        &Value::Number(350.0)
    );
}

#[test]
fn percent_and_currency_are_numbers() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region\n010001,85%,Yes,\"$1,200\"\n010005,7.5 %,No,-$15\n010006,N/A,No,$0.50\n",
    );
    let body = KEY_TABLE.replace(
        r#"{ column = "Region", name = "area", label = "sales area" }"#,
        r#""Region""#,
    );
    let table = EnrichmentTable::load(&config(dir.path(), &body)).expect("load");
    let mut records = [
        record("Account", "A1", &[("CCN__c", text("010001"))]),
        record("Account", "A2", &[("CCN__c", text("010005"))]),
    ];

    let report = table.apply(records.iter_mut());

    let get = |records: &[Record], i: usize, field: &str| records[i].get(field).clone();
    assert_eq!(
        get(&records, 0, "enrichment.vendor.beds"),
        Value::Number(0.85)
    );
    assert_eq!(
        get(&records, 1, "enrichment.vendor.beds"),
        Value::Number(0.075)
    );
    assert_eq!(
        get(&records, 0, "enrichment.vendor.region"),
        Value::Number(1200.0)
    );
    assert_eq!(
        get(&records, 1, "enrichment.vendor.region"),
        Value::Number(-15.0)
    );
    for column in &report.columns {
        if column.column != "Teaching" {
            assert_eq!(column.kind, AttributeKind::Number, "{}", column.column);
        }
    }
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn mixed_currencies_stay_text_and_warn() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region\n010001,$5,Yes,South\n010005,5 €,No,North\n",
    );
    let table = EnrichmentTable::load(&config(dir.path(), KEY_TABLE)).expect("load");
    let report = table.apply(std::iter::empty());
    let beds = report.columns.iter().find(|c| c.column == "Beds").unwrap();
    assert_eq!(beds.kind, AttributeKind::Category);
    let warning = report
        .warnings
        .iter()
        .find(|w| w.contains("\"Beds\""))
        .unwrap_or_else(|| panic!("no warning about Beds: {:?}", report.warnings));
    assert!(warning.contains("$, €"), "{warning}");
}

#[test]
fn trailing_unnamed_empty_columns_ignored() {
    let dir = tempfile::tempdir().unwrap();
    // Spreadsheets export columns that were once formatted as empty, unnamed columns.
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region,,\r\n010001,350,Yes,South,,\r\n010005,120,No,North,,\r\n",
    );
    let table = EnrichmentTable::load(&config(dir.path(), KEY_TABLE)).expect("load");
    let mut records = [record("Account", "A1", &[("CCN__c", text("010001"))])];
    let report = table.apply(records.iter_mut());
    assert_eq!(report.rows, 2);
    assert_eq!(
        records[0].get("enrichment.vendor.beds"),
        &Value::Number(350.0)
    );

    // A value under an unnamed column is still rejected, at its line.
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region,\n010001,350,Yes,South,\n010005,120,No,North,note\n",
    );
    let message = load_error(&config(dir.path(), KEY_TABLE)).to_string();
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("column 5"), "{message}");
}

#[test]
fn scientific_notation_keys_warn() {
    let dir = tempfile::tempdir().unwrap();
    // Excel shows a long number such as an NPI in scientific notation and exports it so.
    write(
        dir.path(),
        "hospitals.csv",
        "Facility ID,Beds,Teaching,Region\n1.23457E+09,350,Yes,South\n010005,120,No,North\n",
    );
    let table = EnrichmentTable::load(&config(dir.path(), KEY_TABLE)).expect("load");
    let report = table.apply(std::iter::empty());
    let warning = report
        .warnings
        .iter()
        .find(|w| w.contains("1.23457E+09"))
        .unwrap_or_else(|| panic!("no warning about the key: {:?}", report.warnings));
    assert!(warning.contains("line 2"), "{warning}");
    assert!(warning.contains("as text"), "{warning}");
}
