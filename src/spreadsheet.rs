//! CSV output that opens safely in a spreadsheet: every file has its header row, also when it
//! has no data rows, and CRM text that a spreadsheet would run as a formula is quoted.

use std::path::Path;

use serde::Serialize;

/// Returns CRM text safe to open in a spreadsheet. A cell starting with `=`, `+`, `-`, `@`, a
/// tab or a carriage return would be run as a formula by Excel and LibreOffice, so it gets a
/// leading `'`.
// NOTE: this changes how such text reads in the CSV; the HTML pages show it unchanged.
pub fn safe_cell(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

/// Writes `rows` to `path` as CSV with a header row named after the fields of `T`. The header
/// comes from `T::default()`, so a file without rows still names its columns. Cells that are
/// not numbers go through [`safe_cell`].
pub fn write_rows<T: Serialize + Default>(path: &Path, rows: &[T]) -> Result<(), csv::Error> {
    let mut writer = csv::Writer::from_path(path)?;
    writer.write_record(header_of::<T>()?.iter())?;
    for row in rows {
        let cells = cells_of(row)?;
        writer.write_record(cells.iter().map(|cell| {
            if cell.parse::<f64>().is_ok() {
                cell.to_string()
            } else {
                safe_cell(cell)
            }
        }))?;
    }
    writer.flush()?;
    Ok(())
}

/// Returns the column names that serializing a `T` writes.
fn header_of<T: Serialize + Default>() -> Result<csv::StringRecord, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.serialize(T::default())?;
    let bytes = writer.into_inner().map_err(|err| err.into_error())?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    Ok(reader.headers()?.clone())
}

/// Returns the cells that serializing `row` writes.
fn cells_of<T: Serialize>(row: &T) -> Result<csv::StringRecord, csv::Error> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    writer.serialize(row)?;
    let bytes = writer.into_inner().map_err(|err| err.into_error())?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice());
    match reader.records().next() {
        Some(record) => record,
        None => Ok(csv::StringRecord::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Serialize)]
    struct Row {
        rep_name: Option<String>,
        revenue: f64,
        note: String,
    }

    fn written(rows: &[Row]) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rows.csv");
        write_rows(&path, rows).expect("written");
        std::fs::read_to_string(&path).expect("read back")
    }

    #[test]
    fn safe_cell_quotes_formulas() {
        assert_eq!(safe_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(safe_cell("St. Mary's"), "St. Mary's");
    }

    #[test]
    fn empty_file_keeps_header() {
        assert_eq!(written(&[]), "rep_name,revenue,note\n");
    }

    #[test]
    fn text_cells_quoted_numbers_kept() {
        let rows = [Row {
            rep_name: Some("=cmd|'/c calc'!A1".to_string()),
            revenue: -1250.5,
            note: "a, b".to_string(),
        }];
        let text = written(&rows);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("rep_name,revenue,note"));
        assert_eq!(lines.next(), Some("'=cmd|'/c calc'!A1,-1250.5,\"a, b\""));
    }
}
