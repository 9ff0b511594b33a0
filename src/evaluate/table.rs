//! CSV reading and per-column type inference for offline evaluation.
//!
//! A cell is missing when it is blank or one of the placeholders that CRM exports use for
//! "no value" ([`PLACEHOLDERS`]). Every other cell counts towards the column's type.

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::Serialize;

use super::EvaluateError;

/// Cell values that mean "no value", compared case-insensitively after trimming.
pub const PLACEHOLDERS: [&str; 7] = ["select", "n/a", "na", "null", "not available", "--", "nan"];

/// A CSV file held as trimmed text cells.
#[derive(Debug)]
pub struct Table {
    pub path: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// 1-based line in the file where each row starts, for error messages.
    pub lines: Vec<u64>,
}

/// The type inferred for a column from its non-missing values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Every value parses as a finite number.
    Number,
    /// Every value is yes/no, y/n, true/false or 1/0.
    #[serde(rename = "yes/no")]
    YesNo,
    /// Every value is an ISO 8601 date or date-time, or `MM/DD/YYYY` with an optional time.
    Date,
    /// Anything else: free text, one-hot encoded.
    Category,
    /// No value at all.
    Empty,
}

impl ColumnType {
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Number => "number",
            ColumnType::YesNo => "yes/no",
            ColumnType::Date => "date",
            ColumnType::Category => "category",
            ColumnType::Empty => "empty",
        }
    }
}

/// Returns whether a trimmed cell is blank or a placeholder for "no value".
pub fn is_missing(cell: &str) -> bool {
    cell.is_empty() || PLACEHOLDERS.iter().any(|p| cell.eq_ignore_ascii_case(p))
}

/// Parses a yes/no cell: yes, y, true and 1 are true; no, n, false and 0 are false.
pub fn parse_yes_no(cell: &str) -> Option<bool> {
    match cell.to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Some(true),
        "no" | "n" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Parses a finite number, also with commas grouping thousands (`1,234.5`) and with a
/// trailing percent sign (`85%` is 0.85). `inf` and `NaN` spelled out are not numbers here.
// NOTE: currency signs ("$5") are not parsed, so a column written that way is read as a
// category. Enrichment tables read them (see `crate::enrichment`).
pub fn parse_number(cell: &str) -> Option<f64> {
    if let Some(body) = cell.strip_suffix('%') {
        let body = body.trim_end();
        if body.contains('%') {
            return None;
        }
        return parse_number(body).map(|v| v / 100.0);
    }
    if let Some(value) = cell.parse::<f64>().ok().filter(|v| v.is_finite()) {
        return Some(value);
    }
    let unsigned = cell.strip_prefix(['-', '+']).unwrap_or(cell);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let digits = !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit());
    if !is_digit_groups(whole, ',') || !digits {
        return None;
    }
    cell.replace(',', "")
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// Returns whether `text` is one to three digits followed by one or more groups of
/// `separator` and three digits, as in `1,234,567` or `1.234`.
pub fn is_digit_groups(text: &str, separator: char) -> bool {
    let mut groups = text.split(separator);
    let first = groups.next().unwrap_or_default();
    let digits = |group: &str| group.bytes().all(|b| b.is_ascii_digit());
    (1..=3).contains(&first.len())
        && digits(first)
        && text.contains(separator)
        && groups.all(|group| group.len() == 3 && digits(group))
}

/// Parses a date or date-time into Unix seconds (UTC when the cell has no offset).
pub fn parse_date(cell: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(cell) {
        return Some(t.timestamp());
    }
    const DATE_TIMES: [&str; 6] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
    ];
    for format in DATE_TIMES {
        if let Ok(t) = NaiveDateTime::parse_from_str(cell, format) {
            return Some(t.and_utc().timestamp());
        }
    }
    for format in ["%Y-%m-%d", "%m/%d/%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(cell, format) {
            return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
        }
    }
    None
}

/// Inference result for one column, as printed for the user.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    /// Share of rows whose cell is missing, in [0, 1].
    pub missing_share: f64,
    /// Number of distinct non-missing values.
    pub distinct: usize,
}

impl Table {
    /// Reads a CSV file with a header row, rejecting ragged rows and files without data.
    pub fn read(path: &Path) -> Result<Table, EvaluateError> {
        let display_path = path.display().to_string();
        // The whole file is read so that error messages can count lines themselves.
        let bytes = std::fs::read(path).map_err(|err| {
            EvaluateError::Input(format!(
                "cannot read CSV file {display_path}: {err}; check the path"
            ))
        })?;
        Table::parse(&display_path, &bytes, b',')
    }

    /// Parses CSV bytes with a header row, fields split by `delimiter`, with the checks of
    /// [`Table::read`]. `display_path` names the source in error messages.
    pub fn parse(display_path: &str, bytes: &[u8], delimiter: u8) -> Result<Table, EvaluateError> {
        let display_path = display_path.to_string();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .delimiter(delimiter)
            .from_reader(bytes);
        let headers = reader
            .headers()
            .map_err(|err| csv_error(&display_path, &err))?
            .clone();
        let mut headers = check_headers(&display_path, &headers)?;
        // Spreadsheets export formatted but unused columns as unnamed columns at the end.
        let unnamed = headers.iter().rev().take_while(|h| h.is_empty()).count();
        let width = headers.len();
        headers.truncate(width - unnamed);
        if delimiter == b',' {
            reject_other_delimiters(&display_path, &headers)?;
        }

        let mut rows = Vec::new();
        let mut lines = Vec::new();
        let mut line_counter = LineCounter::new(bytes);
        for record in reader.records() {
            let record = record.map_err(|err| csv_error(&display_path, &err))?;
            let line = record
                .position()
                .map_or(0, |p| line_counter.line_at(p.byte()));
            if record.len() != width {
                return Err(EvaluateError::Input(format!(
                    "{display_path}, line {line}: the row has {} fields but the header has {width}; \
                     quote values that contain commas and give every row one field per column",
                    record.len(),
                )));
            }
            if let Some(extra) = (headers.len()..width).find(|&i| !record[i].is_empty()) {
                return Err(EvaluateError::Input(format!(
                    "{display_path}, line {line}: column {} has the value {:?} but no header; \
                     name the column in the header row or delete it",
                    extra + 1,
                    &record[extra]
                )));
            }
            rows.push(
                record
                    .iter()
                    .take(headers.len())
                    .map(str::to_string)
                    .collect(),
            );
            lines.push(line);
        }
        if rows.is_empty() {
            return Err(EvaluateError::Input(format!(
                "{display_path} has no data rows: export at least one row below the header"
            )));
        }
        Ok(Table {
            path: display_path,
            headers,
            rows,
            lines,
        })
    }

    /// Returns the index of the column named `name`. When no header equals `name`, the one
    /// header that differs from it only in invisible characters matches. Spreadsheets keep
    /// non-breaking and zero-width spaces pasted from web pages, and messages cannot show them.
    pub fn position(&self, name: &str) -> Option<usize> {
        if let Some(index) = self.headers.iter().position(|h| h == name) {
            return Some(index);
        }
        let visible = visible_text(name);
        let mut matches = self
            .headers
            .iter()
            .enumerate()
            .filter(|(_, h)| visible_text(h) == visible);
        match (matches.next(), matches.next()) {
            (Some((index, _)), None) => Some(index),
            _ => None,
        }
    }

    /// Returns the index of a column named on the command line.
    pub fn column(&self, name: &str, option: &str) -> Result<usize, EvaluateError> {
        self.position(name).ok_or_else(|| {
            EvaluateError::Input(format!(
                "{option} {name:?}: {} has no such column; its columns are: {}",
                self.path,
                self.headers.join(", ")
            ))
        })
    }

    /// Returns the cells of one column.
    pub fn cells(&self, column: usize) -> impl Iterator<Item = &str> {
        self.rows.iter().map(move |row| row[column].as_str())
    }

    /// Infers the type of one column from its non-missing cells.
    pub fn infer(&self, column: usize) -> ColumnSummary {
        let present: Vec<&str> = self.cells(column).filter(|c| !is_missing(c)).collect();
        let distinct: HashSet<&str> = present.iter().copied().collect();
        let column_type = if present.is_empty() {
            ColumnType::Empty
        } else if present.iter().all(|c| parse_yes_no(c).is_some()) {
            ColumnType::YesNo
        } else if present.iter().all(|c| parse_number(c).is_some()) {
            ColumnType::Number
        } else if present.iter().all(|c| parse_date(c).is_some()) {
            ColumnType::Date
        } else {
            ColumnType::Category
        };
        ColumnSummary {
            name: self.headers[column].clone(),
            column_type,
            missing_share: 1.0 - present.len() as f64 / self.rows.len() as f64,
            distinct: distinct.len(),
        }
    }
}

/// Line numbers of byte offsets, for offsets given in increasing order, so that a file is
/// scanned once however many rows it has. csv 1.4 counts one line too few after CRLF line
/// endings, so its own count is unused.
struct LineCounter<'b> {
    bytes: &'b [u8],
    /// Offset up to which line breaks are counted.
    scanned: usize,
    newlines: u64,
}

impl<'b> LineCounter<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        LineCounter {
            bytes,
            scanned: 0,
            newlines: 0,
        }
    }

    /// Returns the 1-based line of the first character at or after `offset` that is not a
    /// line break. An offset before an earlier one is treated as that earlier one.
    fn line_at(&mut self, offset: u64) -> u64 {
        let bytes = self.bytes;
        let mut start = usize::try_from(offset)
            .unwrap_or(bytes.len())
            .min(bytes.len());
        while start < bytes.len() && matches!(bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        let start = start.max(self.scanned);
        self.newlines += bytes[self.scanned..start]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        self.scanned = start;
        1 + self.newlines
    }
}

/// Returns `text` with zero-width characters removed, each run of whitespace (non-breaking
/// spaces included) as one space, and no whitespace at either end.
fn visible_text(text: &str) -> String {
    let not_zero_width = |c: &char| !matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}');
    let without_zero_width: String = text.chars().filter(not_zero_width).collect();
    without_zero_width
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_headers(path: &str, record: &csv::StringRecord) -> Result<Vec<String>, EvaluateError> {
    let mut headers: Vec<String> = record.iter().map(str::to_string).collect();
    if let Some(first) = headers.first_mut() {
        // Spreadsheet programs often start a UTF-8 export with a byte order mark.
        if let Some(stripped) = first.strip_prefix('\u{feff}') {
            *first = stripped.to_string();
        }
    }
    if headers.iter().all(String::is_empty) {
        return Err(EvaluateError::Input(format!(
            "{path} is empty or has no header row: the first line must name the columns"
        )));
    }
    let mut seen = HashSet::new();
    let named = headers.len() - headers.iter().rev().take_while(|h| h.is_empty()).count();
    for (index, header) in headers[..named].iter().enumerate() {
        if header.is_empty() {
            return Err(EvaluateError::Input(format!(
                "{path}: column {} has an empty header; give every column a name",
                index + 1
            )));
        }
        if !seen.insert(header.as_str()) {
            return Err(EvaluateError::Input(format!(
                "{path}: the header names column {header:?} twice; give every column a unique name"
            )));
        }
    }
    Ok(headers)
}

fn csv_error(path: &str, err: &csv::Error) -> EvaluateError {
    let line = err
        .position()
        .map_or(String::new(), |p| format!(", line {}", p.line()));
    let hint = match err.kind() {
        csv::ErrorKind::Utf8 { .. } => "; save the file as UTF-8",
        _ => "; check the file is comma-separated text with a header row",
    };
    EvaluateError::Input(format!("cannot read {path}{line}: {err}{hint}"))
}

/// Rejects a file whose single header field is evidently split by another delimiter, since only
/// commas separate fields here.
fn reject_other_delimiters(path: &str, headers: &[String]) -> Result<(), EvaluateError> {
    if headers.len() != 1 {
        return Ok(());
    }
    for (delimiter, name) in [(';', "semicolons"), ('\t', "tabs"), ('|', "vertical bars")] {
        if headers[0].contains(delimiter) {
            return Err(EvaluateError::Input(format!(
                "{path}: the header looks separated by {name}, but only commas separate fields; \
                 export the file as comma-separated CSV"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_each_format() {
        let day = 1_700_006_400; // 2023-11-15T00:00:00Z
        assert_eq!(parse_date("2023-11-15"), Some(day));
        assert_eq!(parse_date("11/15/2023"), Some(day));
        assert_eq!(parse_date("2023-11-15T01:00:00Z"), Some(day + 3600));
        assert_eq!(parse_date("2023-11-15T01:00:00+01:00"), Some(day));
        assert_eq!(parse_date("2023-11-15 00:30"), Some(day + 1800));
        assert_eq!(parse_date("11/15/2023 00:00:10"), Some(day + 10));
        assert_eq!(parse_date("15/11/2023"), None);
        assert_eq!(parse_date("soon"), None);
    }

    #[test]
    fn placeholders_are_missing() {
        for cell in [
            "",
            "Select",
            "N/A",
            "na",
            "NULL",
            "Not Available",
            "--",
            "NaN",
        ] {
            assert!(is_missing(cell), "{cell:?} should be missing");
        }
        assert!(!is_missing("None"));
        assert!(!is_missing("0"));
    }

    #[test]
    fn line_numbers_with_crlf() {
        let text = b"a,b\r\n1,2\r\n\"x\ny\",3\r\n4,5";
        let mut counter = LineCounter::new(text);
        assert_eq!(counter.line_at(0), 1);
        // An offset on the line break of the previous line moves to the next line.
        assert_eq!(counter.line_at(4), 2);
        assert_eq!(counter.line_at(5), 2);
        assert_eq!(counter.line_at(10), 3);
        // The quoted field spans lines 3 and 4, so the last record starts on line 5.
        assert_eq!(counter.line_at(19), 5);
    }

    #[test]
    fn numbers_reject_infinity() {
        assert_eq!(parse_number("2.5"), Some(2.5));
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("1e999"), None);
    }

    #[test]
    fn grouped_and_percent_numbers() {
        assert_eq!(parse_number("1,000"), Some(1000.0));
        assert_eq!(parse_number("-12,345.5"), Some(-12345.5));
        assert_eq!(parse_number("85%"), Some(0.85));
        assert_eq!(parse_number("7.5 %"), Some(0.075));
        // Not digit groups of three: a list or a decimal comma, so not a number here.
        assert_eq!(parse_number("1,2"), None);
        assert_eq!(parse_number("12,34,567"), None);
        assert_eq!(parse_number("%"), None);

        let bytes = b"Visits,Won\n\"1,234\",1\n80,0\n";
        let table = Table::parse("t.csv", bytes, b',').expect("parse");
        assert_eq!(table.infer(0).column_type, ColumnType::Number);
    }

    #[test]
    fn header_with_invisible_spaces() {
        let bytes = "Close\u{a0}Date,\u{feff}Won\u{200b}\n2024-01-01,1\n".as_bytes();
        let table = Table::parse("t.csv", bytes, b',').expect("parse");
        assert_eq!(table.column("Close Date", "--time").ok(), Some(0));
        assert_eq!(table.column("Won", "--label").ok(), Some(1));
        assert!(table.column("Lost", "--label").is_err());
    }
}
