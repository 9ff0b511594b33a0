//! Enrichment tables: rows from a CSV file outside the CRM (or the built-in CMS hospital table)
//! joined to pulled accounts or contacts, whose chosen columns become model features.
//!
//! [`EnrichmentTable::load`] reads the source once, infers each chosen column's kind and indexes
//! the rows by key or by name and state. [`EnrichmentTable::apply`] adds the values of each
//! matched record's row to that record's fields, in memory only, under
//! `enrichment.<table>.<column>`, and returns an [`EnrichmentReport`] of what matched and what
//! did not. [`EnrichmentTable::features`] lists the features those fields become.

pub mod cms;
mod names;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use leadscore_connector::{Record, Value};
use serde::Serialize;

pub use crate::config::enrichment::{
    EnrichmentColumn, EnrichmentConfig, EnrichmentObject, EnrichmentSource, JoinRule,
};
use crate::config::{AttributeFeature, AttributeKind};
use crate::evaluate::table::{
    is_digit_groups, is_missing, parse_number, parse_yes_no, ColumnType, Table,
};
pub use names::{
    normalise_name, normalise_state, token_similarity, NameIndex, NameMatch, AMBIGUITY_MARGIN,
    FUZZY_THRESHOLD,
};

/// Largest number of samples a report lists per count.
pub const MAX_SAMPLES: usize = 5;

/// Minimum share of a column's values that must be yes/no (or numbers) for an inferred column
/// to be read as flags (or numbers). The other values count as not fitting and become missing.
pub const MIN_FIT_SHARE: f64 = 0.95;

/// A column with values in fewer than this share of rows gets a warning.
pub const MIN_PRESENT_SHARE: f64 = 0.05;

/// Rule for keys that appear on more than one row, as stated in reports.
const DUPLICATE_RULE: &str =
    "the first row with a key is used; later rows with that key are ignored";

/// An enrichment source that cannot be used. Each message names the table, the file, line or
/// value, and the fix.
#[derive(Debug, thiserror::Error)]
pub enum EnrichmentError {
    #[error("enrichment {table:?}: cannot read {path}: {source}; check `file` in its [[enrichment]] table")]
    Read {
        table: String,
        path: String,
        source: std::io::Error,
    },
    #[error("enrichment {table:?}: {path} is empty; export it with a header row and at least one data row")]
    Empty { table: String, path: String },
    #[error("enrichment {table:?}: the header of {path} is separated by {found}, not commas; add delimiter = \"{setting}\" to its [[enrichment]] table")]
    Delimiter {
        table: String,
        path: String,
        found: &'static str,
        setting: &'static str,
    },
    #[error("enrichment {table:?}: {path} has no column {column:?} (named by {key}); its columns are: {header}{hint}")]
    MissingColumn {
        table: String,
        path: String,
        /// The configuration key that names the column.
        key: &'static str,
        column: String,
        /// The file's column names, comma-separated (boxed to keep the error small).
        header: Box<str>,
        /// Extra advice, empty or starting with "; ".
        hint: &'static str,
    },
    #[error("enrichment {table:?}: {what} {value:?} appears twice; list each column once and give each its own name")]
    Duplicate {
        table: String,
        what: &'static str,
        value: String,
    },
    /// The CSV reader rejected the file; the message names the file and line.
    #[error("enrichment {table:?}: {message}")]
    Csv { table: String, message: String },
}

/// A count with up to [`MAX_SAMPLES`] examples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Samples {
    pub count: usize,
    pub samples: Vec<String>,
}

impl Samples {
    /// Counts one more case and keeps its description while fewer than [`MAX_SAMPLES`] are kept.
    fn add(&mut self, describe: impl FnOnce() -> String) {
        self.count += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(describe());
        }
    }
}

/// One configured column as loaded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ColumnReport {
    /// CSV header.
    pub column: String,
    /// Model feature name, for example `cms_hospital_type`.
    pub feature: String,
    /// In-memory record field, for example `enrichment.cms.hospital_type`.
    pub field: String,
    /// Type inferred from every non-missing value: number, yes/no, date, category or empty.
    pub inferred: String,
    /// Encoding the model gets.
    pub kind: AttributeKind,
    /// True when `kind` was set in the configuration rather than inferred.
    pub kind_configured: bool,
    /// Share of rows without a value, in [0, 1], after values that did not fit became missing.
    pub missing_share: f64,
    /// Values that did not fit `kind`, as `line N: "value"`. They became missing.
    pub not_fitting: Samples,
}

/// Report of one table: what it loaded and how one [`EnrichmentTable::apply`] call matched.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnrichmentReport {
    /// Table name from the configuration.
    pub name: String,
    pub object: EnrichmentObject,
    /// File path, or `built-in cms-hospitals`.
    pub source: String,
    /// FNV-1a 64-bit hash of the source bytes, 16 hex digits: a changed file gets a new one.
    pub version: String,
    /// Data rows in the source.
    pub rows: usize,
    /// The join, for example `CMS_Certification_Number__c = column "Facility ID"`.
    pub join: String,
    pub columns: Vec<ColumnReport>,
    /// Rows whose key (or normalised name and state) an earlier row already has.
    pub duplicate_keys: Samples,
    pub duplicate_rule: &'static str,
    /// Rows with an empty key, name or state, which no record can match.
    pub rows_without_key: Samples,
    /// Records of the table's object given to `apply`.
    pub records: usize,
    /// Records whose key equals a row's key.
    pub matched_exact: Samples,
    /// Records whose digit-only key equals a row's once leading zeros are removed on both
    /// sides, as `id: record key -> row key`.
    pub matched_leading_zeros: Samples,
    /// Records matched by name and state, as `id: record name -> row name, state` with how:
    /// the same normalised name, or the similarity of the names.
    pub matched_fuzzy: Samples,
    /// How many of `matched_fuzzy` needed name similarity (their normalised names differ).
    pub matched_similar: usize,
    /// Records with a key (or name and state) that matched no row, or matched several rows
    /// equally well.
    pub unmatched_records: Samples,
    /// Records with an empty key, name or state field.
    pub records_without_key: Samples,
    /// Indexed rows that no record matched, as their key.
    pub unused_rows: Samples,
    pub warnings: Vec<String>,
}

/// Lookup structure of the rows, by key or by name and state.
enum RowIndex {
    Key {
        /// Normalised key to row.
        exact: HashMap<String, usize>,
        /// Digit-only key without leading zeros to row.
        unpadded: HashMap<String, usize>,
    },
    Names(NameIndex<usize>),
}

/// A loaded enrichment source, ready to apply to records.
pub struct EnrichmentTable {
    config: EnrichmentConfig,
    source: String,
    version: String,
    /// Per row: the display key (the key, or `name, state`).
    row_keys: Vec<String>,
    /// Per row, per configured column: the typed value.
    values: Vec<Vec<Value>>,
    index: RowIndex,
    columns: Vec<ColumnReport>,
    features: Vec<AttributeFeature>,
    duplicate_keys: Samples,
    rows_without_key: Samples,
    warnings: Vec<String>,
}

/// Returns the FNV-1a 64-bit hash of the parts, in order, as 16 lower-case hex digits.
pub fn content_version(parts: &[&[u8]]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Loads one table; the same as [`EnrichmentTable::load`].
pub fn load(config: &EnrichmentConfig) -> Result<EnrichmentTable, EnrichmentError> {
    EnrichmentTable::load(config)
}

/// Applies a loaded table to records (see [`EnrichmentTable::apply`]) and returns the features
/// its columns become with the report of the join.
pub fn apply(
    table: &EnrichmentTable,
    records: &mut [Record],
) -> (Vec<AttributeFeature>, EnrichmentReport) {
    let report = table.apply(records.iter_mut());
    (table.features().to_vec(), report)
}

/// Normalises a key for comparison: trimmed, ASCII upper-case.
fn normalise_key(key: &str) -> String {
    key.trim().to_ascii_uppercase()
}

/// Returns a digit-only key without its leading zeros (`0` for all zeros), or `None` for other
/// keys.
fn unpadded_key(key: &str) -> Option<String> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed = key.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0" } else { trimmed }.to_string())
}

/// Returns a record field as trimmed text, or `None` when it is empty.
fn field_text(record: &Record, field: &str) -> Option<String> {
    let text = match record.get(field) {
        Value::Null => return None,
        Value::Text(text) => text.trim().to_string(),
        other => other.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

impl EnrichmentTable {
    /// Reads the source, infers the kinds of the configured columns and indexes the rows.
    pub fn load(config: &EnrichmentConfig) -> Result<EnrichmentTable, EnrichmentError> {
        check_duplicates(config)?;
        let (table, version) = match &config.source {
            EnrichmentSource::Builtin(_) => {
                let table = cms::build(&config.name)?;
                (table, content_version(&cms::content()))
            }
            EnrichmentSource::File(path) => read_file(config, path)?,
        };

        let mut warnings = Vec::new();
        let mut columns = Vec::new();
        let mut features = Vec::new();
        let mut values = vec![Vec::with_capacity(config.columns.len()); table.rows.len()];
        for column in &config.columns {
            let index = column_index(config, &table, &column.column, "columns")?;
            let (report, cells) = convert_column(config, column, &table, index, &mut warnings);
            if report.missing_share > 1.0 - MIN_PRESENT_SHARE {
                warnings.push(format!(
                    "column {:?} of {} has no value in {:.0}% of rows, so feature {} will be almost always missing; check the column name or remove it from columns",
                    column.column,
                    table.path,
                    report.missing_share * 100.0,
                    report.feature
                ));
            }
            features.push(AttributeFeature {
                name: report.feature.clone(),
                field: report.field.clone(),
                kind: report.kind,
                label: column.label.clone(),
            });
            for (row, cell) in values.iter_mut().zip(cells) {
                row.push(cell);
            }
            columns.push(report);
        }

        let mut duplicate_keys = Samples::default();
        let mut rows_without_key = Samples::default();
        let (index, row_keys) = match &config.join {
            JoinRule::Key { column, .. } => {
                let key = column_index(config, &table, column, "key.column")?;
                index_keys(&table, key, &mut duplicate_keys, &mut rows_without_key)
            }
            JoinRule::NameState {
                name_column,
                state_column,
                city_column,
                ..
            } => {
                let name = column_index(config, &table, name_column, "match.name_column")?;
                let state = column_index(config, &table, state_column, "match.state_column")?;
                let city = match city_column {
                    Some(city) => Some(column_index(config, &table, city, "match.city_column")?),
                    None => None,
                };
                index_names(
                    &table,
                    [name, state],
                    city,
                    &mut duplicate_keys,
                    &mut rows_without_key,
                )
            }
        };
        if let JoinRule::Key { column, .. } = &config.join {
            if let Some(warning) = scientific_keys_warning(&table, column) {
                warnings.push(warning);
            }
        }
        if duplicate_keys.count > 0 {
            warnings.push(format!(
                "{} rows of {} repeat an earlier row's key; {DUPLICATE_RULE}",
                duplicate_keys.count, table.path
            ));
        }
        for warning in &warnings {
            tracing::warn!(table = %config.name, "{warning}");
        }
        tracing::info!(
            table = %config.name,
            source = %table.path,
            version = %version,
            rows = table.rows.len(),
            "loaded enrichment table"
        );

        Ok(EnrichmentTable {
            config: config.clone(),
            source: table.path,
            version,
            row_keys,
            values,
            index,
            columns,
            features,
            duplicate_keys,
            rows_without_key,
            warnings,
        })
    }

    /// Returns the features the table's columns become, in the configured order.
    pub fn features(&self) -> &[AttributeFeature] {
        &self.features
    }

    /// Returns the content version of the source (see [`content_version`]).
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn config(&self) -> &EnrichmentConfig {
        &self.config
    }

    /// Adds each matched record's row values to its fields (missing values are left out), and
    /// removes this table's fields from records that no longer match. Records of other objects
    /// are left alone. Returns the report of this call.
    pub fn apply<'r>(&self, records: impl IntoIterator<Item = &'r mut Record>) -> EnrichmentReport {
        let mut applier = self.applier();
        for record in records {
            applier.apply(record);
        }
        applier.finish()
    }

    /// Returns an [`Applier`], which does what [`EnrichmentTable::apply`] does one record at
    /// a time, for records streamed from the store.
    pub fn applier(&self) -> Applier<'_> {
        Applier {
            table: self,
            report: self.empty_report(),
            prefix: format!("enrichment.{}.", self.config.name),
            used: vec![false; self.row_keys.len()],
        }
    }

    /// Returns whether a row is the one its key finds (not a later duplicate).
    fn is_indexed(&self, row: usize) -> bool {
        match &self.index {
            RowIndex::Key { exact, .. } => {
                exact.get(&normalise_key(&self.row_keys[row])) == Some(&row)
            }
            // Duplicate names get no display key, see `index_names`.
            RowIndex::Names(_) => true,
        }
    }

    /// Finds the row of one record and counts how it matched.
    fn find_row(&self, record: &Record, report: &mut EnrichmentReport) -> Option<usize> {
        match (&self.config.join, &self.index) {
            (JoinRule::Key { field, .. }, RowIndex::Key { exact, unpadded }) => {
                let Some(key) = field_text(record, field) else {
                    report
                        .records_without_key
                        .add(|| format!("{}: {field} is empty", record.id));
                    return None;
                };
                let key = normalise_key(&key);
                if let Some(&row) = exact.get(&key) {
                    report.matched_exact.add(|| record.id.clone());
                    return Some(row);
                }
                if let Some(&row) = unpadded_key(&key).and_then(|k| unpadded.get(&k)) {
                    report
                        .matched_leading_zeros
                        .add(|| format!("{}: {key} -> {}", record.id, self.row_keys[row]));
                    return Some(row);
                }
                report
                    .unmatched_records
                    .add(|| format!("{}: no row has key {key:?}", record.id));
                None
            }
            (
                JoinRule::NameState {
                    name_field,
                    state_field,
                    city_field,
                    ..
                },
                RowIndex::Names(index),
            ) => {
                let name = field_text(record, name_field);
                let state = field_text(record, state_field);
                let (Some(name), Some(state)) = (name, state) else {
                    report
                        .records_without_key
                        .add(|| format!("{}: {name_field} or {state_field} is empty", record.id));
                    return None;
                };
                let city = city_field.as_deref().and_then(|f| field_text(record, f));
                // Every name match counts as fuzzy: equal normalised names can still be two
                // different organisations.
                match index.lookup(&name, &state, city.as_deref()) {
                    NameMatch::Exact(&row) => {
                        report.matched_fuzzy.add(|| {
                            format!(
                                "{}: {name} -> {} (same normalised name)",
                                record.id, self.row_keys[row]
                            )
                        });
                        Some(row)
                    }
                    NameMatch::Fuzzy {
                        id: &row,
                        name: row_name,
                        similarity,
                    } => {
                        report.matched_similar += 1;
                        report.matched_fuzzy.add(|| {
                            format!(
                                "{}: {name} -> {row_name}, {state} (similarity {similarity:.2})",
                                record.id
                            )
                        });
                        Some(row)
                    }
                    NameMatch::Ambiguous { candidates } => {
                        report.unmatched_records.add(|| {
                            format!(
                                "{}: {name} ({state}) is equally similar to {}",
                                record.id,
                                candidates.join(" and ")
                            )
                        });
                        None
                    }
                    NameMatch::NotFound => {
                        report
                            .unmatched_records
                            .add(|| format!("{}: no row named like {name} in {state}", record.id));
                        None
                    }
                }
            }
            // `load` builds the index that fits the join rule.
            _ => None,
        }
    }

    fn empty_report(&self) -> EnrichmentReport {
        let join = match &self.config.join {
            JoinRule::Key { field, column } => format!("{field} = column {column:?}"),
            JoinRule::NameState {
                name_field,
                state_field,
                name_column,
                state_column,
                ..
            } => format!(
                "{name_field} and {state_field} ~ columns {name_column:?} and {state_column:?} (normalised name, same state)"
            ),
        };
        EnrichmentReport {
            name: self.config.name.clone(),
            object: self.config.object,
            source: self.source.clone(),
            version: self.version.clone(),
            rows: self.row_keys.len(),
            join,
            columns: self.columns.clone(),
            duplicate_keys: self.duplicate_keys.clone(),
            duplicate_rule: DUPLICATE_RULE,
            rows_without_key: self.rows_without_key.clone(),
            records: 0,
            matched_exact: Samples::default(),
            matched_leading_zeros: Samples::default(),
            matched_fuzzy: Samples::default(),
            matched_similar: 0,
            unmatched_records: Samples::default(),
            records_without_key: Samples::default(),
            unused_rows: Samples::default(),
            warnings: self.warnings.clone(),
        }
    }
}

/// Rejects a column listed twice or two columns with one feature name. The configuration
/// reader reports both already; this guards tables built in code.
fn check_duplicates(config: &EnrichmentConfig) -> Result<(), EnrichmentError> {
    let mut headers = HashSet::new();
    let mut names = HashSet::new();
    for column in &config.columns {
        if !headers.insert(column.column.as_str()) {
            return Err(EnrichmentError::Duplicate {
                table: config.name.clone(),
                what: "column",
                value: column.column.clone(),
            });
        }
        if !names.insert(column.name.as_str()) {
            return Err(EnrichmentError::Duplicate {
                table: config.name.clone(),
                what: "feature name",
                value: column.name.clone(),
            });
        }
    }
    Ok(())
}

/// Reads and parses a CSV file, returning the table and its content version.
fn read_file(config: &EnrichmentConfig, path: &Path) -> Result<(Table, String), EnrichmentError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| EnrichmentError::Read {
        table: config.name.clone(),
        path: display.clone(),
        source,
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(EnrichmentError::Empty {
            table: config.name.clone(),
            path: display,
        });
    }
    if config.delimiter.is_none() {
        check_comma_header(config, &display, &bytes)?;
    }
    let table =
        Table::parse(&display, &bytes, config.delimiter.unwrap_or(b',')).map_err(|err| {
            EnrichmentError::Csv {
                table: config.name.clone(),
                message: err.to_string(),
            }
        })?;
    Ok((table, content_version(&[&bytes])))
}

/// Rejects a file whose header line has no comma but another common separator, when no
/// delimiter is configured.
fn check_comma_header(
    config: &EnrichmentConfig,
    path: &str,
    bytes: &[u8],
) -> Result<(), EnrichmentError> {
    let header = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    if header.contains(&b',') {
        return Ok(());
    }
    let separators: [(u8, &str, &str); 3] = [
        (b';', "semicolons", ";"),
        (b'\t', "tabs", "\\t"),
        (b'|', "vertical bars", "|"),
    ];
    for (byte, found, setting) in separators {
        if header.contains(&byte) {
            return Err(EnrichmentError::Delimiter {
                table: config.name.clone(),
                path: path.to_string(),
                found,
                setting,
            });
        }
    }
    Ok(())
}

fn column_index(
    config: &EnrichmentConfig,
    table: &Table,
    column: &str,
    key: &'static str,
) -> Result<usize, EnrichmentError> {
    if let Some(index) = table.position(column) {
        return Ok(index);
    }
    let hint = if table.headers.len() == 1 {
        "; the header has a single column, so check `delimiter`"
    } else if table
        .headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case(column.trim()))
    {
        "; column names are case-sensitive and one differs only in case"
    } else {
        ""
    };
    Err(EnrichmentError::MissingColumn {
        table: config.name.clone(),
        path: table.path.clone(),
        key,
        column: column.to_string(),
        header: table.headers.join(", ").into(),
        hint,
    })
}

/// The character that marks the decimals of a column's numbers. The other of `.` and `,`
/// groups thousands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DecimalMark {
    Point,
    Comma,
}

/// Parses a number with the column's decimal mark, also with the other mark grouping
/// thousands: `1,234.5` with [`DecimalMark::Point`], `1.234,5` and `1,0597` with
/// [`DecimalMark::Comma`]. A plain `12.5` parses with either mark, because it is unambiguous.
fn parse_decimal(cell: &str, mark: DecimalMark) -> Option<f64> {
    let unsigned = cell.strip_prefix(['-', '+']).unwrap_or(cell);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match mark {
        // `parse_number` reads commas that group thousands.
        DecimalMark::Point => parse_number(cell),
        DecimalMark::Comma => {
            let (whole, fraction) = match unsigned.split_once(',') {
                Some((whole, fraction)) => (whole, fraction),
                None if is_digit_groups(unsigned, '.') => (unsigned, "0"),
                None => return parse_number(cell),
            };
            let whole_fits = digits(whole) || is_digit_groups(whole, '.');
            if !whole_fits || !digits(fraction) {
                return None;
            }
            parse_number(&cell.replace('.', "").replace(',', "."))
        }
    }
}

/// Currency signs read as a unit of a number column, before or after the digits.
const CURRENCY_SIGNS: [char; 5] = ['$', '€', '£', '¥', '₹'];

/// Returns the currency sign that starts or ends a cell, after an optional minus sign.
fn currency_sign(cell: &str) -> Option<char> {
    let unsigned = cell.strip_prefix('-').unwrap_or(cell);
    let first = unsigned.chars().next();
    let last = unsigned.chars().next_back();
    [first, last]
        .into_iter()
        .flatten()
        .find(|c| CURRENCY_SIGNS.contains(c))
}

/// The number format of one column: its decimal mark, an ambiguous cell, and the one
/// currency sign its values carry.
struct NumberFormat {
    mark: DecimalMark,
    /// A cell that reads differently with each mark, when no value shows the mark.
    ambiguous: Option<String>,
    /// The currency sign of every value that has one. `None` when the column has none or
    /// several, because amounts in different currencies cannot be compared.
    currency: Option<char>,
    /// The different currency signs, when there are several.
    mixed_currencies: Vec<char>,
}

impl NumberFormat {
    /// Parses a cell as a number: `12,5` or `1.234,5` by the decimal mark, `85%` as 0.85 and
    /// `$1,200` or `-5 €` with the column's currency sign.
    fn parse(&self, cell: &str) -> Option<f64> {
        let (body, scale) = match cell.strip_suffix('%') {
            Some(body) => (body.trim_end(), 0.01),
            None => (cell, 1.0),
        };
        let Some(sign) = self.currency else {
            return parse_decimal(body, self.mark).map(|v| v * scale);
        };
        let (negative, unsigned) = match body.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, body),
        };
        let amount = unsigned
            .strip_prefix(sign)
            .or_else(|| unsigned.strip_suffix(sign))
            .map_or(unsigned, str::trim);
        let value = parse_decimal(amount, self.mark)?;
        Some(if negative { -value } else { value } * scale)
    }
}

/// Chooses the number format of a column from its values. A comma marks decimals only in files not
/// separated by commas. A value like `12,5` or `1.234,5` shows a decimal comma and one like
/// `12.5` or `1,234.5` a decimal point. When the values show neither, `1.234` keeps the point
/// and `1,234` the comma, and one such value is returned as ambiguous.
fn column_numbers(table: &Table, index: usize, delimiter: u8) -> NumberFormat {
    let present = || table.cells(index).filter(|c| !is_missing(c));
    let mut signs: Vec<char> = present().filter_map(currency_sign).collect();
    signs.sort_unstable();
    signs.dedup();
    let currency = match signs.as_slice() {
        [sign] => Some(*sign),
        _ => None,
    };
    let mixed_currencies = if signs.len() > 1 { signs } else { Vec::new() };

    let with_mark = |mark: DecimalMark| NumberFormat {
        mark,
        ambiguous: None,
        currency,
        mixed_currencies: mixed_currencies.clone(),
    };
    let point = with_mark(DecimalMark::Point);
    if delimiter == b',' {
        return point;
    }
    let comma = with_mark(DecimalMark::Comma);

    let (mut comma_seen, mut point_seen) = (false, false);
    let (mut grouped_dot, mut grouped_comma) = (None, None);
    for cell in present() {
        let as_comma = comma.parse(cell);
        let as_point = point.parse(cell);
        match (as_comma, as_point) {
            (Some(_), None) => comma_seen = true,
            (None, Some(_)) => point_seen = true,
            // Only a single group such as "1.234" or "1,234" parses both ways.
            (Some(a), Some(b)) if a != b => {
                let seen = if cell.contains('.') {
                    &mut grouped_dot
                } else {
                    &mut grouped_comma
                };
                seen.get_or_insert_with(|| cell.to_string());
            }
            // A number such as "12.5", which the comma mark reads as written.
            (Some(_), Some(_)) if cell.contains('.') => point_seen = true,
            _ => {}
        }
    }

    match (comma_seen, point_seen) {
        (true, false) => comma,
        (false, true) => point,
        // Mixed marks keep the decimal comma of semicolon files, and every value that reads
        // the same with either mark still parses.
        (true, true) if delimiter == b';' => comma,
        (true, true) => point,
        (false, false) => match (grouped_dot, grouped_comma) {
            (Some(dot), None) => NumberFormat {
                ambiguous: Some(dot),
                ..point
            },
            (None, Some(cell)) | (Some(_), Some(cell)) => NumberFormat {
                ambiguous: Some(cell),
                ..comma
            },
            (None, None) => point,
        },
    }
}

/// Chooses the kind of one column and converts its cells to values. Warnings about values
/// that do not fit the kind go to `warnings`.
fn convert_column(
    config: &EnrichmentConfig,
    column: &EnrichmentColumn,
    table: &Table,
    index: usize,
    warnings: &mut Vec<String>,
) -> (ColumnReport, Vec<Value>) {
    let numbers_format = column_numbers(table, index, config.delimiter.unwrap_or(b','));
    let mark = numbers_format.mark;
    let summary = table.infer(index);
    let kind = column
        .kind
        .unwrap_or_else(|| tolerant_kind(table, index, summary.column_type, &numbers_format));
    let mut not_fitting = Samples::default();
    let mut missing = 0usize;
    let mut numbers = 0usize;
    let mut present = 0usize;
    let mut values = Vec::with_capacity(table.rows.len());
    for (cell, line) in table.cells(index).zip(&table.lines) {
        let value = if is_missing(cell) {
            None
        } else {
            present += 1;
            if numbers_format.parse(cell).is_some() {
                numbers += 1;
            }
            let parsed = match kind {
                AttributeKind::Number => numbers_format.parse(cell).map(Value::Number),
                AttributeKind::Flag => parse_yes_no(cell).map(Value::Bool),
                AttributeKind::Category | AttributeKind::Present => {
                    Some(Value::Text(cell.to_string()))
                }
            };
            if parsed.is_none() {
                not_fitting.add(|| format!("line {line}: {cell:?}"));
            }
            parsed
        };
        if value.is_none() {
            missing += 1;
        }
        values.push(value.unwrap_or(Value::Null));
    }
    let feature = config.feature_name(column);
    if kind == AttributeKind::Category && column.kind.is_none() && numbers * 2 >= present.max(1) {
        warnings.push(format!(
            "column {:?} of {} holds numbers in {numbers} of {present} rows but also text, so feature {feature} is used as a category and its numbers lose their order; write kind = \"number\" for it in columns to read it as numbers (the text values then become missing)",
            column.column, table.path
        ));
    }
    if let (AttributeKind::Number, Some(cell)) = (kind, &numbers_format.ambiguous) {
        let (mark_name, separator) = match mark {
            DecimalMark::Point => ("decimal point", "dot"),
            DecimalMark::Comma => ("decimal comma", "comma"),
        };
        warnings.push(format!(
            "column {:?} of {}: values such as {cell:?} are read with a {mark_name}, because no value shows whether the {separator} marks decimals or groups thousands; if it groups thousands, export the column without thousands separators",
            column.column, table.path
        ));
    }
    if !numbers_format.mixed_currencies.is_empty() && column.kind != Some(AttributeKind::Category) {
        let signs: Vec<String> = numbers_format
            .mixed_currencies
            .iter()
            .map(char::to_string)
            .collect();
        warnings.push(format!(
            "column {:?} of {} has amounts in different currencies ({}), so they are not read as numbers; convert them to one currency in the file",
            column.column,
            table.path,
            signs.join(", ")
        ));
    }
    if not_fitting.count > 0 {
        let (count, what) = (
            not_fitting.count,
            match kind {
                AttributeKind::Flag => "yes/no value",
                _ => "number",
            },
        );
        let values = if count == 1 { "value is" } else { "values are" };
        warnings.push(format!(
            "column {:?} in {}: {count} {values} not a {what} (for example {}) and read as missing",
            column.column,
            table.path,
            not_fitting.samples.join(", ")
        ));
    }
    let inferred = match (column.kind, kind, summary.column_type) {
        // The kind the values mostly fit, not the type every single value fits.
        (None, AttributeKind::Number, ColumnType::Category) if mark == DecimalMark::Comma => {
            "number (decimal comma)".to_string()
        }
        (None, AttributeKind::Number, ColumnType::Category) if numbers == present => {
            "number (with separators, signs or units)".to_string()
        }
        (None, AttributeKind::Number, ColumnType::Category | ColumnType::Date) => {
            "number (some values are not)".to_string()
        }
        (None, AttributeKind::Flag, ColumnType::Category | ColumnType::Date) => {
            "yes/no (some values are not)".to_string()
        }
        _ => summary.column_type.name().to_string(),
    };
    let report = ColumnReport {
        column: column.column.clone(),
        feature,
        field: config.field_name(column),
        inferred,
        kind,
        kind_configured: column.kind.is_some(),
        missing_share: missing as f64 / table.rows.len().max(1) as f64,
        not_fitting,
    };
    (report, values)
}

/// Maps an inferred column type to a feature kind. A category or date column whose values are
/// at least [`MIN_FIT_SHARE`] yes/no or numbers is read as a flag or a number, so that a few
/// stray values ("Too few", "see note") do not turn a numeric column into categories.
fn tolerant_kind(
    table: &Table,
    index: usize,
    inferred: ColumnType,
    numbers_format: &NumberFormat,
) -> AttributeKind {
    match inferred {
        ColumnType::YesNo => AttributeKind::Flag,
        // An empty column gets a warning; number keeps it a single all-missing feature.
        ColumnType::Number | ColumnType::Empty => AttributeKind::Number,
        ColumnType::Date | ColumnType::Category => {
            let present: Vec<&str> = table.cells(index).filter(|c| !is_missing(c)).collect();
            let count = present.len().max(1) as f64;
            let yes_no = present.iter().filter(|c| parse_yes_no(c).is_some()).count() as f64;
            let numbers = present
                .iter()
                .filter(|c| numbers_format.parse(c).is_some())
                .count() as f64;
            if yes_no / count >= MIN_FIT_SHARE {
                AttributeKind::Flag
            } else if numbers / count >= MIN_FIT_SHARE {
                AttributeKind::Number
            } else {
                // NOTE: dates are used as categories; no enrichment feature encodes a date.
                AttributeKind::Category
            }
        }
    }
}

/// Returns a warning about keys written in scientific notation (`1.23457E+09`), as
/// spreadsheets export long numbers. Such a key has lost its last digits, so no record can
/// match it.
fn scientific_keys_warning(table: &Table, column: &str) -> Option<String> {
    let index = table.position(column)?;
    let mut keys = Samples::default();
    for (cell, line) in table.cells(index).zip(&table.lines) {
        let (mantissa, exponent) = match cell.split_once(['E', 'e']) {
            Some(parts) => parts,
            None => continue,
        };
        let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
        let scientific = mantissa.contains('.')
            && parse_number(mantissa).is_some()
            && exponent.parse::<i32>().is_ok();
        if scientific {
            keys.add(|| format!("line {line}: {cell}"));
        }
    }
    (keys.count > 0).then(|| {
        let noun = if keys.count == 1 { "key" } else { "keys" };
        format!(
            "{} {noun} in column {column:?} of {} in scientific notation ({}) lost digits in a spreadsheet and match no record; format the column as text in the spreadsheet and export the file again",
            keys.count,
            table.path,
            keys.samples.join(", ")
        )
    })
}

/// Indexes rows by key. Returns the index and each row's display key (empty for rows without
/// one).
fn index_keys(
    table: &Table,
    column: usize,
    duplicates: &mut Samples,
    without_key: &mut Samples,
) -> (RowIndex, Vec<String>) {
    let mut exact = HashMap::new();
    let mut unpadded = HashMap::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let mut row_keys = Vec::with_capacity(table.rows.len());
    for (row, (cell, line)) in table.cells(column).zip(&table.lines).enumerate() {
        if is_missing(cell) {
            without_key.add(|| format!("line {line}"));
            row_keys.push(String::new());
            continue;
        }
        let key = normalise_key(cell);
        row_keys.push(cell.to_string());
        if let Some(first) = first_line.get(&key) {
            duplicates.add(|| format!("line {line}: {cell} (first on line {first})"));
            continue;
        }
        first_line.insert(key.clone(), *line);
        if let Some(short) = unpadded_key(&key) {
            unpadded.entry(short).or_insert(row);
        }
        exact.insert(key, row);
    }
    (RowIndex::Key { exact, unpadded }, row_keys)
}

/// Indexes rows by normalised name and state. Returns the index and each row's display key
/// (`name, state`; empty for rows without a name or state and for duplicates).
fn index_names(
    table: &Table,
    [name, state]: [usize; 2],
    city: Option<usize>,
    duplicates: &mut Samples,
    without_key: &mut Samples,
) -> (RowIndex, Vec<String>) {
    let mut index = NameIndex::new();
    let mut row_keys = Vec::with_capacity(table.rows.len());
    for (row, (cells, line)) in table.rows.iter().zip(&table.lines).enumerate() {
        let (row_name, row_state) = (cells[name].as_str(), cells[state].as_str());
        let row_city = city.map(|c| cells[c].as_str());
        let usable = !is_missing(row_name)
            && !is_missing(row_state)
            && !normalise_name(row_name, row_city).is_empty();
        if !usable {
            without_key.add(|| format!("line {line}: name {row_name:?}, state {row_state:?}"));
            row_keys.push(String::new());
            continue;
        }
        match index.insert(row_name, row_state, row_city, row) {
            Ok(()) => row_keys.push(format!("{row_name}, {row_state}")),
            Err(&first) => {
                let first_line = table.lines[first];
                duplicates.add(|| {
                    format!("line {line}: {row_name}, {row_state} (same normalised name as line {first_line})")
                });
                row_keys.push(String::new());
            }
        }
    }
    (RowIndex::Names(index), row_keys)
}

/// Joins one table to records one at a time and counts the matches for the report.
pub struct Applier<'t> {
    table: &'t EnrichmentTable,
    report: EnrichmentReport,
    /// The prefix of the fields this table adds.
    prefix: String,
    /// Rows some record matched, for the report's unused rows.
    used: Vec<bool>,
}

impl Applier<'_> {
    /// Joins one record: see [`EnrichmentTable::apply`].
    pub fn apply(&mut self, record: &mut Record) {
        let table = self.table;
        if !record
            .object
            .eq_ignore_ascii_case(table.config.object.crm_object())
        {
            return;
        }
        self.report.records += 1;
        let prefix = &self.prefix;
        record.fields.retain(|name, _| !name.starts_with(prefix));
        let Some(row) = table.find_row(record, &mut self.report) else {
            return;
        };
        self.used[row] = true;
        for (report_column, value) in table.columns.iter().zip(&table.values[row]) {
            if !value.is_null() {
                record
                    .fields
                    .insert(report_column.field.clone(), value.clone());
            }
        }
    }

    /// Returns the report of every record given to [`Applier::apply`].
    pub fn finish(self) -> EnrichmentReport {
        let Applier {
            table,
            mut report,
            used,
            ..
        } = self;
        for (row, key) in table.row_keys.iter().enumerate() {
            // Rows without a key have an empty display key and are counted separately.
            if !used[row] && !key.is_empty() && table.is_indexed(row) {
                report.unused_rows.add(|| key.clone());
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_values() {
        // Published FNV-1a 64-bit test vectors.
        assert_eq!(content_version(&[b""]), "cbf29ce484222325");
        assert_eq!(content_version(&[b"a"]), "af63dc4c8601ec8c");
        assert_eq!(content_version(&[b"foo"]), "dcb27518fed9d577");
        // Parts hash as one stream.
        assert_eq!(content_version(&[b"f", b"oo"]), content_version(&[b"foo"]));
    }

    #[test]
    fn unpadded_keys() {
        assert_eq!(unpadded_key("010001").as_deref(), Some("10001"));
        assert_eq!(unpadded_key("10001").as_deref(), Some("10001"));
        assert_eq!(unpadded_key("000").as_deref(), Some("0"));
        assert_eq!(unpadded_key("01014F"), None);
        assert_eq!(unpadded_key(""), None);
    }

    fn table(cells: &[&str]) -> Table {
        Table {
            path: "t.csv".to_string(),
            headers: vec!["x".to_string()],
            rows: cells.iter().map(|c| vec![c.to_string()]).collect(),
            lines: (2..2 + cells.len() as u64).collect(),
        }
    }

    #[test]
    fn tolerant_kind_reads_mostly_numbers() {
        let mut cells = vec!["12"; 40];
        cells.push("Too few");
        let t = table(&cells);
        let inferred = t.infer(0).column_type;
        assert_eq!(inferred, ColumnType::Category);
        assert_eq!(
            tolerant_kind(&t, 0, inferred, &column_numbers(&t, 0, b',')),
            AttributeKind::Number
        );

        let t = table(&["12", "abc", "7"]);
        assert_eq!(
            tolerant_kind(&t, 0, t.infer(0).column_type, &column_numbers(&t, 0, b',')),
            AttributeKind::Category
        );
        let t = table(&["Yes", "No", "N/A"]);
        assert_eq!(
            tolerant_kind(&t, 0, t.infer(0).column_type, &column_numbers(&t, 0, b',')),
            AttributeKind::Flag
        );
    }
}
