//! The built-in `cms-hospitals` table: the CMS Hospital General Information file joined with the
//! CMS Hospital Readmissions Reduction Program file, one row per CMS Certification Number.
//!
//! The readmissions file has one row per hospital and measure; its `Number of Discharges` is
//! pivoted into one column per measure. Placeholders (`Not Available`, `N/A`,
//! `Too Few to Report`) become empty cells, so they are missing values and never zero.

use std::collections::HashMap;

use leadscore_demo_org::{HOSPITALS_CSV, READMISSIONS_CSV};

use super::EnrichmentError;
use crate::evaluate::table::{is_missing, Table};

/// Name of the built-in source in messages and reports.
pub const SOURCE_NAME: &str = "cms-hospitals";

/// CMS Certification Number (CCN), text with its leading zeros (`010001`). The join key.
pub const FACILITY_ID: &str = "Facility ID";
/// Hospital name as CMS spells it, upper-case.
pub const FACILITY_NAME: &str = "Facility Name";
/// City of the hospital's address.
pub const CITY: &str = "City/Town";
/// Two-letter state code.
pub const STATE: &str = "State";
/// `Acute Care Hospitals`, `Critical Access Hospitals`, `Psychiatric`, `Childrens` and others.
pub const HOSPITAL_TYPE: &str = "Hospital Type";
/// Owner type, for example `Voluntary non-profit - Private`.
pub const HOSPITAL_OWNERSHIP: &str = "Hospital Ownership";
/// `Yes` or `No`.
pub const EMERGENCY_SERVICES: &str = "Emergency Services";
/// The CMS overall star rating, 1 to 5; missing when CMS reports `Not Available`.
pub const OVERALL_RATING: &str = "Hospital overall rating";

/// Readmission measures and the discharge-count column each becomes. A count is the number of
/// eligible Medicare discharges for the condition or procedure in the measurement period.
pub const DISCHARGE_COLUMNS: [(&str, &str); 6] = [
    ("READM-30-HIP-KNEE-HRRP", "HIP-KNEE Discharges"),
    ("READM-30-CABG-HRRP", "CABG Discharges"),
    ("READM-30-AMI-HRRP", "AMI Discharges"),
    ("READM-30-HF-HRRP", "HF Discharges"),
    ("READM-30-PN-HRRP", "PN Discharges"),
    ("READM-30-COPD-HRRP", "COPD Discharges"),
];

/// The header of the built-in table, in order.
pub const COLUMNS: [&str; 14] = [
    FACILITY_ID,
    FACILITY_NAME,
    CITY,
    STATE,
    HOSPITAL_TYPE,
    HOSPITAL_OWNERSHIP,
    EMERGENCY_SERVICES,
    OVERALL_RATING,
    DISCHARGE_COLUMNS[0].1,
    DISCHARGE_COLUMNS[1].1,
    DISCHARGE_COLUMNS[2].1,
    DISCHARGE_COLUMNS[3].1,
    DISCHARGE_COLUMNS[4].1,
    DISCHARGE_COLUMNS[5].1,
];

/// Returns the bytes the table is built from, for its content version.
pub(crate) fn content() -> [&'static [u8]; 2] {
    [HOSPITALS_CSV.as_bytes(), READMISSIONS_CSV.as_bytes()]
}

/// Returns an empty cell for CMS placeholders, the trimmed cell otherwise.
fn cell_or_blank(cell: &str) -> String {
    if is_missing(cell) || cell.eq_ignore_ascii_case("Too Few to Report") {
        String::new()
    } else {
        cell.to_string()
    }
}

fn column(table: &Table, name: &str, table_name: &str) -> Result<usize, EnrichmentError> {
    table
        .headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| EnrichmentError::MissingColumn {
            table: table_name.to_string(),
            path: table.path.clone(),
            key: "the built-in cms-hospitals source",
            column: name.to_string(),
            header: table.headers.join(", ").into(),
            hint: "",
        })
}

/// Builds the table. Rows follow the hospitals file, followed by the hospitals that appear only
/// in the readmissions file (with only their name, state and counts). A row's line is its line
/// in the file it first appears in.
pub(crate) fn build(table_name: &str) -> Result<Table, EnrichmentError> {
    let parse = |file: &str, text: &str| {
        let path = format!("built-in {SOURCE_NAME} ({file})");
        Table::parse(&path, text.as_bytes(), b',').map_err(|err| EnrichmentError::Csv {
            table: table_name.to_string(),
            message: err.to_string(),
        })
    };
    let hospitals = parse("Hospital_General_Information.csv", HOSPITALS_CSV)?;
    let readmissions = parse(
        "Hospital_Readmissions_Reduction_Program_Hospital.csv",
        READMISSIONS_CSV,
    )?;

    let mut out = Table {
        path: format!("built-in {SOURCE_NAME}"),
        headers: COLUMNS.iter().map(|c| c.to_string()).collect(),
        rows: Vec::new(),
        lines: Vec::new(),
    };
    let mut position: HashMap<String, usize> = HashMap::new();
    let source_columns = [
        FACILITY_ID,
        FACILITY_NAME,
        CITY,
        STATE,
        HOSPITAL_TYPE,
        HOSPITAL_OWNERSHIP,
        EMERGENCY_SERVICES,
        OVERALL_RATING,
    ];
    let indices = source_columns
        .iter()
        .map(|name| column(&hospitals, name, table_name))
        .collect::<Result<Vec<_>, _>>()?;
    for (row, line) in hospitals.rows.iter().zip(&hospitals.lines) {
        let mut cells: Vec<String> = indices.iter().map(|&i| cell_or_blank(&row[i])).collect();
        cells.resize(COLUMNS.len(), String::new());
        position.entry(cells[0].clone()).or_insert(out.rows.len());
        out.rows.push(cells);
        out.lines.push(*line);
    }

    let id = column(&readmissions, FACILITY_ID, table_name)?;
    let name = column(&readmissions, FACILITY_NAME, table_name)?;
    let state = column(&readmissions, STATE, table_name)?;
    let measure = column(&readmissions, "Measure Name", table_name)?;
    let discharges = column(&readmissions, "Number of Discharges", table_name)?;
    let first_count = COLUMNS.len() - DISCHARGE_COLUMNS.len();
    for (row, line) in readmissions.rows.iter().zip(&readmissions.lines) {
        let Some(offset) = DISCHARGE_COLUMNS
            .iter()
            .position(|(m, _)| *m == row[measure])
        else {
            continue;
        };
        let index = *position.entry(row[id].clone()).or_insert_with(|| {
            let mut cells = vec![String::new(); COLUMNS.len()];
            cells[0] = row[id].clone();
            cells[1] = row[name].clone();
            cells[3] = row[state].clone();
            out.rows.push(cells);
            out.lines.push(*line);
            out.rows.len() - 1
        });
        out.rows[index][first_count + offset] = cell_or_blank(&row[discharges]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_row_for_southeast_health() {
        let table = build("cms").expect("the shipped CMS files parse");
        assert_eq!(table.headers, COLUMNS);
        let row = table
            .rows
            .iter()
            .find(|row| row[0] == "010001")
            .expect("CCN 010001 is in the shipped file");
        assert_eq!(row[1], "SOUTHEAST HEALTH MEDICAL CENTER");
        assert_eq!(row[4], "Acute Care Hospitals");
        assert_eq!(row[7], "4");
        // AMI discharges of 010001 in the readmissions file.
        let ami = COLUMNS.iter().position(|c| *c == "AMI Discharges").unwrap();
        assert_eq!(row[ami], "296");
        let ids: std::collections::HashSet<&str> =
            table.rows.iter().map(|row| row[0].as_str()).collect();
        assert_eq!(ids.len(), table.rows.len(), "one row per CCN");
    }
}
