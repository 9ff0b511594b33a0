//! The `[[enrichment]]` tables: CSV files outside the CRM joined to accounts or contacts, whose
//! chosen columns become model features.
//!
//! ```toml
//! [[enrichment]]
//! name = "cms"                    # lower-case, unique; prefixes feature names (cms_hospital_type)
//! object = "account"              # "account" or "contact": the records the rows join to
//! source = "cms-hospitals"        # a built-in table; or, instead of source:
//! # file = "vendor/physicians.csv"  # a CSV file, relative to the configuration file's directory
//! # delimiter = ";"               # with file only; "," by default
//! key = { field = "CMS_Certification_Number__c", column = "Facility ID" }
//! # or, instead of key, match by normalised name within the same state (fuzzy matches reported):
//! # match = { name_field = "Name", state_field = "BillingState",
//! #           name_column = "Facility Name", state_column = "State",
//! #           city_field = "BillingCity", city_column = "City/Town" }  # city: optional pair
//! columns = [
//!     "Hospital Type",
//!     { column = "Hospital overall rating", name = "star_rating", kind = "number", label = "CMS star rating" },
//! ]
//! ```
//!
//! A column given as a string gets its feature name from the header (lower-case, runs of other
//! characters as `_`), its kind from the values and the header as its label.

use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::toml_walk::{type_name, ConfigIssue, Issues, Section};
use super::AttributeKind;
use crate::enrichment::cms;

/// The CRM object an enrichment table joins to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrichmentObject {
    Account,
    Contact,
}

impl EnrichmentObject {
    /// Returns the CRM object name records of this kind carry, for example `Account`.
    pub fn crm_object(self) -> &'static str {
        match self {
            EnrichmentObject::Account => "Account",
            EnrichmentObject::Contact => "Contact",
        }
    }
}

/// A table built into leadscore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinSource {
    /// CMS Hospital General Information joined with the CMS Hospital Readmissions Reduction
    /// Program discharge counts, one row per CMS Certification Number.
    CmsHospitals,
}

impl BuiltinSource {
    const NAMES: &'static str = "cms-hospitals";

    fn parse(text: &str) -> Option<Self> {
        match text {
            "cms-hospitals" => Some(BuiltinSource::CmsHospitals),
            _ => None,
        }
    }

    /// Returns the name used for `source` in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinSource::CmsHospitals => "cms-hospitals",
        }
    }

    /// Returns the header of the built-in table.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            BuiltinSource::CmsHospitals => &cms::COLUMNS,
        }
    }
}

/// Source of the rows of an enrichment table.
#[derive(Clone, Debug, PartialEq)]
pub enum EnrichmentSource {
    Builtin(BuiltinSource),
    /// A CSV file, already resolved against the configuration file's directory.
    File(PathBuf),
}

/// Rule that matches a record to its row.
#[derive(Clone, Debug, PartialEq)]
pub enum JoinRule {
    /// The record's `field` equals the row's `column`, compared as trimmed text ignoring ASCII
    /// case. Digit-only keys also match when one side lost leading zeros.
    Key { field: String, column: String },
    /// The record's normalised name equals, or is similar to, the row's within the same state.
    /// The optional city pair drops a city written at the end of a name.
    NameState {
        name_field: String,
        state_field: String,
        city_field: Option<String>,
        name_column: String,
        state_column: String,
        city_column: Option<String>,
    },
}

/// One CSV column turned into a feature.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrichmentColumn {
    /// Header of the column in the CSV file.
    pub column: String,
    /// Feature name without the table prefix: lower-case letters, digits and `_`.
    pub name: String,
    /// Encoding forced by the configuration; `None` infers it from the values.
    pub kind: Option<AttributeKind>,
    /// Plain words for reasons.
    pub label: String,
}

/// One validated `[[enrichment]]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrichmentConfig {
    /// Lower-case name, unique among the tables; prefixes feature names.
    pub name: String,
    pub object: EnrichmentObject,
    pub source: EnrichmentSource,
    /// Field separator of a file source; `None` means a comma.
    pub delimiter: Option<u8>,
    pub join: JoinRule,
    pub columns: Vec<EnrichmentColumn>,
}

impl EnrichmentConfig {
    /// Returns the model feature name of a column, for example `cms_hospital_type`.
    pub fn feature_name(&self, column: &EnrichmentColumn) -> String {
        format!("{}_{}", self.name, column.name)
    }

    /// Returns the in-memory record field that contains a column's value, for example
    /// `enrichment.cms.hospital_type`.
    pub fn field_name(&self, column: &EnrichmentColumn) -> String {
        format!("enrichment.{}.{}", self.name, column.name)
    }

    /// Returns the CRM fields of the records that the join reads, so that pulls select them.
    pub fn record_fields(&self) -> Vec<String> {
        match &self.join {
            JoinRule::Key { field, .. } => vec![field.clone()],
            JoinRule::NameState {
                name_field,
                state_field,
                city_field,
                ..
            } => [Some(name_field), Some(state_field), city_field.as_ref()]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        }
    }

    /// Returns the feature names of every column, in the configured order.
    pub fn feature_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| self.feature_name(c)).collect()
    }
}

/// Turns a CSV header into a feature name: lower-case ASCII letters and digits, every run of
/// other characters as one `_`, none at either end. `HIP-KNEE Discharges` becomes
/// `hip_knee_discharges`.
pub fn feature_suffix(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    for c in header.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Reads every `[[enrichment]]` table of the document. Returns `None` when any of them is
/// invalid; the problems are in `issues`. `base` resolves relative `file` paths.
pub(crate) fn read_enrichment(
    top: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    base: &Path,
) -> Option<Vec<EnrichmentConfig>> {
    let mut tables: Vec<EnrichmentConfig> = Vec::new();
    let mut complete = true;
    for mut entry in top.table_array(issues, "enrichment") {
        match read_table(&mut entry, issues, base) {
            Some(table) => {
                if tables.iter().any(|t| t.name == table.name) {
                    issues.push(
                        entry.span(),
                        &entry.key_path("name"),
                        format!(
                            "enrichment name {:?} is used by two tables; give each its own",
                            table.name
                        ),
                        None,
                    );
                    complete = false;
                }
                tables.push(table);
            }
            None => complete = false,
        }
        entry.finish(issues);
    }
    complete.then_some(tables)
}

/// Parses only the `[[enrichment]]` tables of a TOML document, ignoring every other key. For
/// tools and tests that check these tables alone; the full configuration reads them too.
pub fn parse_enrichment(
    text: &str,
    base: &Path,
) -> Result<Vec<EnrichmentConfig>, Vec<ConfigIssue>> {
    let mut issues = Issues::new(text);
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    for error in &syntax_errors {
        let span = error.span().unwrap_or(0..0);
        issues.push(span, "", format!("invalid TOML: {}", error.message()), None);
    }
    if !issues.list.is_empty() {
        return Err(issues.list);
    }
    let mut top = Section::new("", Some(root.get_ref()), root.span());
    let tables = read_enrichment(&mut top, &mut issues, base);
    match tables {
        Some(tables) if issues.list.is_empty() => Ok(tables),
        _ => {
            let mut list = issues.list;
            list.sort_by_key(|issue| (issue.line, issue.column));
            Err(list)
        }
    }
}

fn read_table(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    base: &Path,
) -> Option<EnrichmentConfig> {
    let name_example = r#"name = "cms""#;
    let name = s.required_string(issues, "name", name_example).and_then(|name| {
        let text = name.get_ref();
        if is_identifier(text) && text.starts_with(|c: char| c.is_ascii_lowercase()) {
            Some(name.into_inner())
        } else {
            issues.push(
                name.span(),
                &s.key_path("name"),
                format!("{text:?} must start with a lower-case letter and contain only lower-case letters, digits and _"),
                Some(name_example),
            );
            None
        }
    });
    let object = read_object(s, issues);
    let (source, builtin) = read_source(s, issues, base);
    let join = read_join(s, issues, builtin);
    let columns = read_columns(s, issues, builtin);
    let (source, delimiter) = source?;
    Some(EnrichmentConfig {
        name: name?,
        object: object?,
        source,
        delimiter,
        join: join?,
        columns: columns?,
    })
}

fn read_object(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Option<EnrichmentObject> {
    let example = r#"object = "account""#;
    let object = s.required_string(issues, "object", example)?;
    match object.get_ref().as_str() {
        "account" => Some(EnrichmentObject::Account),
        "contact" => Some(EnrichmentObject::Contact),
        other => {
            issues.push(
                object.span(),
                &s.key_path("object"),
                format!("unknown object {other:?}; expected \"account\" or \"contact\""),
                Some(example),
            );
            None
        }
    }
}

/// Reads `source`, `file` and `delimiter`. Returns the source with its delimiter, and the
/// built-in source when there is one, so that column names can be checked against it.
fn read_source(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    base: &Path,
) -> (
    Option<(EnrichmentSource, Option<u8>)>,
    Option<BuiltinSource>,
) {
    let source_example = r#"source = "cms-hospitals""#;
    let file_example = r#"file = "vendor/hospitals.csv""#;
    let source = s.string(issues, "source", source_example);
    let file = s.path(issues, "file", file_example);
    let delimiter = read_delimiter(s, issues);
    let delimiter_span = s.raw("delimiter").map(|v| v.span());

    match (source, file) {
        (Some(source), Some(_)) => {
            issues.push(
                source.span(),
                &s.key_path("source"),
                "source and file are both set; keep one: source names a built-in table, file a CSV path".to_string(),
                Some(source_example),
            );
            (None, None)
        }
        (Some(source), None) => {
            let Some(builtin) = BuiltinSource::parse(source.get_ref()) else {
                issues.push(
                    source.span(),
                    &s.key_path("source"),
                    format!(
                        "unknown built-in source {:?}; expected one of: {}, or set file = \"path.csv\" instead",
                        source.get_ref(),
                        BuiltinSource::NAMES
                    ),
                    Some(source_example),
                );
                return (None, None);
            };
            if let Some(span) = delimiter_span {
                issues.push(
                    span,
                    &s.key_path("delimiter"),
                    "delimiter applies only to file; remove it for a built-in source".to_string(),
                    None,
                );
                return (None, Some(builtin));
            }
            (
                Some((EnrichmentSource::Builtin(builtin), None)),
                Some(builtin),
            )
        }
        (None, Some(file)) => {
            let path = base.join(file.get_ref());
            match delimiter {
                Ok(delimiter) => (Some((EnrichmentSource::File(path), delimiter)), None),
                Err(()) => (None, None),
            }
        }
        (None, None) => {
            let raw_given = s.raw("source").is_some() || s.raw("file").is_some();
            if !raw_given {
                s.missing(issues, "file", file_example);
            }
            (None, None)
        }
    }
}

/// Reads `delimiter`: one ASCII character other than a quote, a line break or a letter or
/// digit. `Err` means an issue was reported.
fn read_delimiter(s: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> Result<Option<u8>, ()> {
    let example = r#"delimiter = ";""#;
    let Some(value) = s.raw("delimiter") else {
        return Ok(None);
    };
    let DeValue::String(text) = value.get_ref() else {
        issues.push(
            value.span(),
            &s.key_path("delimiter"),
            format!("expected a string, found {}", type_name(value.get_ref())),
            Some(example),
        );
        return Err(());
    };
    let bytes = text.as_bytes();
    let valid = bytes.len() == 1
        && bytes[0].is_ascii()
        && !bytes[0].is_ascii_alphanumeric()
        && !matches!(bytes[0], b'"' | b'\n' | b'\r');
    if !valid {
        issues.push(
            value.span(),
            &s.key_path("delimiter"),
            format!(
                "{text:?} is not a field separator; use one character such as \",\", \";\", \"\\t\" or \"|\""
            ),
            Some(example),
        );
        return Err(());
    }
    Ok(Some(bytes[0]))
}

/// Reports a column name that the built-in table does not have.
fn check_builtin_column(
    issues: &mut Issues<'_>,
    builtin: Option<BuiltinSource>,
    column: &Spanned<String>,
    key: &str,
) -> bool {
    let Some(builtin) = builtin else {
        return true;
    };
    if builtin.columns().contains(&column.get_ref().as_str()) {
        return true;
    }
    issues.push(
        column.span(),
        key,
        format!(
            "the built-in source {} has no column {:?}; its columns are: {}",
            builtin.name(),
            column.get_ref(),
            builtin.columns().join(", ")
        ),
        None,
    );
    false
}

fn read_join(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    builtin: Option<BuiltinSource>,
) -> Option<JoinRule> {
    let key_example = r#"key = { field = "CMS_Certification_Number__c", column = "Facility ID" }"#;
    let match_example = r#"match = { name_field = "Name", state_field = "BillingState", name_column = "Facility Name", state_column = "State" }"#;
    let key_given = s.raw("key").is_some();
    let match_given = s.raw("match").is_some();
    match (key_given, match_given) {
        (true, true) => {
            let span = s.raw("match").map_or_else(|| s.span(), |v| v.span());
            issues.push(
                span,
                &s.key_path("match"),
                "key and match are both set; keep key to join on an identifier, or match to join on name and state".to_string(),
                Some(key_example),
            );
            None
        }
        (false, false) => {
            s.missing(issues, "key", key_example);
            None
        }
        (true, false) => {
            let mut key = s.table(issues, "key");
            let field = key.required_string(issues, "field", key_example);
            let column = key.required_string(issues, "column", key_example);
            key.finish(issues);
            let column = column?;
            if !check_builtin_column(issues, builtin, &column, &s.key_path("key.column")) {
                return None;
            }
            Some(JoinRule::Key {
                field: field?.into_inner(),
                column: column.into_inner(),
            })
        }
        (false, true) => {
            let mut rule = s.table(issues, "match");
            let name_field = rule.required_string(issues, "name_field", match_example);
            let state_field = rule.required_string(issues, "state_field", match_example);
            let name_column = rule.required_string(issues, "name_column", match_example);
            let state_column = rule.required_string(issues, "state_column", match_example);
            let city_example = r#"city_field = "BillingCity", city_column = "City/Town""#;
            let city_field = rule.string(issues, "city_field", city_example);
            let city_column = rule.string(issues, "city_column", city_example);
            let city_pair_ok = city_field.is_some() == city_column.is_some();
            if !city_pair_ok {
                issues.push(
                    rule.span(),
                    &rule.key_path("city_field"),
                    "city_field and city_column go together; set both or neither".to_string(),
                    Some(city_example),
                );
            }
            rule.finish(issues);
            let mut columns_ok = true;
            for (key, column) in [
                ("match.name_column", &name_column),
                ("match.state_column", &state_column),
                ("match.city_column", &city_column),
            ] {
                if let Some(column) = column {
                    columns_ok &= check_builtin_column(issues, builtin, column, &s.key_path(key));
                }
            }
            if !city_pair_ok || !columns_ok {
                return None;
            }
            Some(JoinRule::NameState {
                name_field: name_field?.into_inner(),
                state_field: state_field?.into_inner(),
                city_field: city_field.map(Spanned::into_inner),
                name_column: name_column?.into_inner(),
                state_column: state_column?.into_inner(),
                city_column: city_column.map(Spanned::into_inner),
            })
        }
    }
}

fn read_columns(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
    builtin: Option<BuiltinSource>,
) -> Option<Vec<EnrichmentColumn>> {
    let example = r#"columns = ["Hospital Type", { column = "Hospital overall rating", name = "star_rating" }]"#;
    let key = s.key_path("columns");
    let Some(value) = s.raw("columns") else {
        s.missing(issues, "columns", example);
        return None;
    };
    let DeValue::Array(items) = value.get_ref() else {
        issues.push(
            value.span(),
            &key,
            format!(
                "expected an array of column names or tables, found {}",
                type_name(value.get_ref())
            ),
            Some(example),
        );
        return None;
    };
    if items.is_empty() {
        issues.push(
            value.span(),
            &key,
            "lists no columns; name at least one CSV column to turn into a feature".to_string(),
            Some(example),
        );
        return None;
    }

    let mut columns: Vec<EnrichmentColumn> = Vec::new();
    let mut complete = true;
    for (index, item) in items.iter().enumerate() {
        let item_key = format!("{key}[{index}]");
        let column = match item.get_ref() {
            DeValue::String(text) => read_column_name(issues, &item_key, item.span(), text),
            DeValue::Table(table) => {
                let mut entry = Section::new(&item_key, Some(table), item.span());
                let column = read_column_table(&mut entry, issues);
                entry.finish(issues);
                column
            }
            other => {
                issues.push(
                    item.span(),
                    &item_key,
                    format!(
                        "expected a column name or a table, found {}",
                        type_name(other)
                    ),
                    Some(example),
                );
                None
            }
        };
        let Some((column, span)) = column else {
            complete = false;
            continue;
        };
        let header = Spanned::new(span.clone(), column.column.clone());
        if !check_builtin_column(issues, builtin, &header, &item_key) {
            complete = false;
            continue;
        }
        if columns.iter().any(|c| c.column == column.column) {
            issues.push(
                span,
                &item_key,
                format!(
                    "column {:?} is listed twice; list each column once",
                    column.column
                ),
                None,
            );
            complete = false;
            continue;
        }
        if columns.iter().any(|c| c.name == column.name) {
            issues.push(
                span,
                &item_key,
                format!(
                    "two columns get the feature name {:?}; give one of them name = \"...\"",
                    column.name
                ),
                Some(r#"{ column = "Hospital Type", name = "hospital_type_2" }"#),
            );
            complete = false;
            continue;
        }
        columns.push(column);
    }
    complete.then_some(columns)
}

fn read_column_name(
    issues: &mut Issues<'_>,
    key: &str,
    span: std::ops::Range<usize>,
    header: &str,
) -> Option<(EnrichmentColumn, std::ops::Range<usize>)> {
    let header = header.trim();
    let name = feature_suffix(header);
    if name.is_empty() {
        issues.push(
            span,
            key,
            format!("column {header:?} gives no feature name (it has no letters or digits); write {{ column = {header:?}, name = \"...\" }}"),
            None,
        );
        return None;
    }
    Some((
        EnrichmentColumn {
            column: header.to_string(),
            name,
            kind: None,
            label: header.to_string(),
        },
        span,
    ))
}

fn read_column_table(
    s: &mut Section<'_, '_>,
    issues: &mut Issues<'_>,
) -> Option<(EnrichmentColumn, std::ops::Range<usize>)> {
    let example = r#"{ column = "Hospital overall rating", name = "star_rating", kind = "number", label = "CMS star rating" }"#;
    let column = s.required_string(issues, "column", example);
    let name = s.string(issues, "name", example);
    let kind_example = r#"kind = "number""#;
    let kind = s.string(issues, "kind", kind_example).and_then(|kind| {
        let parsed = AttributeKind::parse(kind.get_ref());
        if parsed.is_none() {
            issues.push(
                kind.span(),
                &s.key_path("kind"),
                format!(
                    "unknown kind {:?}; expected one of: {}",
                    kind.get_ref(),
                    AttributeKind::NAMES
                ),
                Some(kind_example),
            );
            return Some(Err(()));
        }
        parsed.map(Ok)
    });
    let label = s.string(issues, "label", example);

    let column = column?;
    let span = column.span();
    let header = column.into_inner().trim().to_string();

    let name = match name {
        Some(name) if is_identifier(name.get_ref()) => name.into_inner(),
        Some(name) => {
            issues.push(
                name.span(),
                &s.key_path("name"),
                format!(
                    "{:?} must be lower-case letters, digits and _",
                    name.get_ref()
                ),
                Some(r#"name = "star_rating""#),
            );
            return None;
        }
        None => {
            let name = feature_suffix(&header);
            if name.is_empty() {
                issues.push(
                    span,
                    &s.key_path("column"),
                    format!("column {header:?} gives no feature name (it has no letters or digits); add name = \"...\""),
                    None,
                );
                return None;
            }
            name
        }
    };

    let kind = match kind {
        Some(Err(())) => return None,
        Some(Ok(kind)) => Some(kind),
        None => None,
    };
    Some((
        EnrichmentColumn {
            label: label.map_or_else(|| header.clone(), Spanned::into_inner),
            column: header,
            name,
            kind,
        },
        span,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<EnrichmentConfig>, Vec<ConfigIssue>> {
        parse_enrichment(text, Path::new("/etc/leadscore"))
    }

    /// Parses `text`, expecting problems, and returns them.
    fn issues(text: &str) -> Vec<ConfigIssue> {
        match parse(text) {
            Ok(tables) => panic!("expected issues, parsed {tables:?}"),
            Err(issues) => issues,
        }
    }

    /// Returns the issue whose message contains `needle`, failing with the full list if none.
    fn find<'a>(list: &'a [ConfigIssue], needle: &str) -> &'a ConfigIssue {
        list.iter()
            .find(|issue| issue.message.contains(needle))
            .unwrap_or_else(|| panic!("no issue mentions {needle:?}: {list:#?}"))
    }

    #[test]
    fn valid_builtin_table() {
        let text = r#"
[[enrichment]]
name = "cms"
object = "account"
source = "cms-hospitals"
key = { field = "CMS_Certification_Number__c", column = "Facility ID" }
columns = [
    "Hospital Type",
    { column = "Hospital overall rating", name = "star_rating", kind = "number", label = "CMS star rating" },
]
"#;
        let tables = parse(text).expect("valid configuration");
        assert_eq!(tables.len(), 1);
        let table = &tables[0];
        assert_eq!(table.name, "cms");
        assert_eq!(table.object, EnrichmentObject::Account);
        assert_eq!(
            table.source,
            EnrichmentSource::Builtin(BuiltinSource::CmsHospitals)
        );
        assert_eq!(table.delimiter, None);
        assert_eq!(
            table.join,
            JoinRule::Key {
                field: "CMS_Certification_Number__c".to_string(),
                column: "Facility ID".to_string()
            }
        );
        assert_eq!(
            table.feature_names(),
            vec!["cms_hospital_type", "cms_star_rating"]
        );
        assert_eq!(table.columns[0].kind, None);
        assert_eq!(table.columns[0].label, "Hospital Type");
        assert_eq!(table.columns[1].kind, Some(AttributeKind::Number));
        assert_eq!(table.columns[1].label, "CMS star rating");
        assert_eq!(
            table.field_name(&table.columns[1]),
            "enrichment.cms.star_rating"
        );
    }

    #[test]
    fn valid_file_table_with_match() {
        let text = r#"
[[enrichment]]
name = "vendor"
object = "contact"
file = "data/physicians.csv"
delimiter = ";"
match = { name_field = "Account.Name", state_field = "MailingState", name_column = "Practice", state_column = "St" }
columns = ["Procedures/Year"]
"#;
        let tables = parse(text).expect("valid configuration");
        let table = &tables[0];
        assert_eq!(
            table.source,
            EnrichmentSource::File(PathBuf::from("/etc/leadscore/data/physicians.csv"))
        );
        assert_eq!(table.delimiter, Some(b';'));
        assert!(matches!(
            &table.join,
            JoinRule::NameState { name_column, city_column: None, .. } if name_column == "Practice"
        ));
        assert_eq!(table.feature_names(), vec!["vendor_procedures_year"]);
    }

    #[test]
    fn misconfigurations_report_lines() {
        // Each case: the table body, the text the issue must contain, and its line (the
        // table header is line 2, its first key line 3).
        let cases: [(&str, &str, usize); 14] = [
            ("name = \"CMS\"\nobject = \"account\"\nfile = \"a.csv\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = [\"X\"]", "must start with a lower-case letter", 3),
            ("name = \"v\"\nobject = \"lead\"\nfile = \"a.csv\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = [\"X\"]", "unknown object", 4),
            ("name = \"v\"\nobject = \"account\"\nsource = \"cms-hospitals\"\nfile = \"a.csv\"\nkey = { field = \"F\", column = \"Facility ID\" }\ncolumns = [\"State\"]", "source and file are both set", 5),
            ("name = \"v\"\nobject = \"account\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = [\"X\"]", "missing required key", 2),
            ("name = \"v\"\nobject = \"account\"\nsource = \"cms\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = [\"X\"]", "unknown built-in source", 5),
            ("name = \"v\"\nobject = \"account\"\nfile = \"a.csv\"\ndelimiter = \";;\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = [\"X\"]", "is not a field separator", 6),
            ("name = \"v\"\nobject = \"account\"\nfile = \"a.csv\"\nkey = { field = \"F\", column = \"C\" }\nmatch = { name_field = \"Name\", state_field = \"S\", name_column = \"N\", state_column = \"S\" }\ncolumns = [\"X\"]", "key and match are both set", 7),
            ("name = \"v\"\nobject = \"account\"\nfile = \"a.csv\"\nkey = { field = \"F\" }\ncolumns = [\"X\"]", "missing required key", 6),
            ("name = \"v\"\nobject = \"account\"\nfile = \"a.csv\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = [\"X\", \"X\"]", "listed twice", 7),
            ("name = \"v\"\nobject = \"account\"\nfile = \"a.csv\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = [{ column = \"X\", kind = \"integer\" }]", "unknown kind", 7),
            ("name = \"v\"\nobject = \"account\"\nfile = \"a.csv\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = [{ column = \"X\", colour = \"red\" }]", "unknown key", 7),
            ("name = \"v\"\nobject = \"account\"\nsource = \"cms-hospitals\"\nkey = { field = \"F\", column = \"Facility ID\" }\ncolumns = [\"Star Rating\"]", "has no column \"Star Rating\"", 7),
            ("name = \"v\"\nobject = \"account\"\nfile = \"a.csv\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = []", "lists no columns", 7),
            ("name = \"v\"\nobject = \"account\"\nfile = \"a.csv\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = [\"X\"]\nrefresh = true", "unknown key", 8),
        ];
        for (body, needle, line) in cases {
            let text = format!("\n[[enrichment]]\n{body}\n");
            let list = issues(&text);
            let issue = find(&list, needle);
            assert_eq!(issue.line, line, "case {needle:?}: {issue:?}");
        }
    }

    #[test]
    fn duplicate_table_names() {
        let table = "[[enrichment]]\nname = \"v\"\nobject = \"account\"\nfile = \"a.csv\"\nkey = { field = \"F\", column = \"C\" }\ncolumns = [\"X\"]\n";
        let list = issues(&format!("{table}{table}"));
        let issue = find(&list, "used by two tables");
        assert_eq!(issue.line, 7);
    }

    #[test]
    fn feature_suffix_from_headers() {
        assert_eq!(feature_suffix("HIP-KNEE Discharges"), "hip_knee_discharges");
        assert_eq!(
            feature_suffix("  Hospital overall rating "),
            "hospital_overall_rating"
        );
        assert_eq!(feature_suffix("% / %"), "");
    }
}
