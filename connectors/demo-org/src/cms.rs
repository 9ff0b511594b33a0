//! Parsing of the two CMS hospital files into typed hospital rows.
//!
//! Every column is read as text so that CMS Certification Numbers keep their leading zeros.
//! `Not Available`, `N/A`, `Too Few to Report` and empty cells are missing values, never zero.
//! A reported `0` discharge count (CMS footnote 7: no case met the measure's criteria) stays 0.

use std::collections::{BTreeMap, HashMap};

use crate::DemoError;

/// File name used in errors about the hospital general information file.
pub(crate) const HOSPITALS_FILE: &str = "Hospital_General_Information.csv";
/// File name used in errors about the readmissions reduction program file.
pub(crate) const READMISSIONS_FILE: &str = "Hospital_Readmissions_Reduction_Program_Hospital.csv";

const MISSING_MARKERS: [&str; 3] = ["Not Available", "N/A", "Too Few to Report"];

/// The readmission measures, each the volume of one condition or procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Measure {
    HipKnee,
    Cabg,
    Ami,
    HeartFailure,
    Pneumonia,
    Copd,
}

impl Measure {
    fn from_name(name: &str) -> Option<Measure> {
        match name {
            "READM-30-HIP-KNEE-HRRP" => Some(Measure::HipKnee),
            "READM-30-CABG-HRRP" => Some(Measure::Cabg),
            "READM-30-AMI-HRRP" => Some(Measure::Ami),
            "READM-30-HF-HRRP" => Some(Measure::HeartFailure),
            "READM-30-PN-HRRP" => Some(Measure::Pneumonia),
            "READM-30-COPD-HRRP" => Some(Measure::Copd),
            _ => None,
        }
    }
}

/// Discharge counts per measure from the readmissions file, `None` where CMS reports none.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Discharges {
    pub hip_knee: Option<u32>,
    pub cabg: Option<u32>,
    pub ami: Option<u32>,
    pub heart_failure: Option<u32>,
    pub pneumonia: Option<u32>,
    pub copd: Option<u32>,
}

impl Discharges {
    fn slot(&mut self, measure: Measure) -> &mut Option<u32> {
        match measure {
            Measure::HipKnee => &mut self.hip_knee,
            Measure::Cabg => &mut self.cabg,
            Measure::Ami => &mut self.ami,
            Measure::HeartFailure => &mut self.heart_failure,
            Measure::Pneumonia => &mut self.pneumonia,
            Measure::Copd => &mut self.copd,
        }
    }
}

/// One hospital of the general information file, joined with its discharge counts.
#[derive(Clone, Debug)]
pub(crate) struct Hospital {
    /// CMS Certification Number, 6 characters.
    pub ccn: String,
    pub name: String,
    pub city: Option<String>,
    pub state: String,
    pub hospital_type: String,
    pub ownership: Option<String>,
    pub emergency_services: Option<bool>,
    /// CMS overall star rating, 1 to 5.
    pub rating: Option<u8>,
    pub discharges: Discharges,
}

/// Reads CSV rows with named columns and reports problems with file, line and column.
struct Table<'a> {
    file: &'static str,
    reader: csv::Reader<&'a [u8]>,
    columns: HashMap<String, usize>,
}

/// One data row and the line it starts on.
struct Row<'t> {
    file: &'static str,
    line: u64,
    record: csv::StringRecord,
    columns: &'t HashMap<String, usize>,
}

impl<'a> Table<'a> {
    fn open(file: &'static str, text: &'a str, required: &[&str]) -> Result<Table<'a>, DemoError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|error| csv_error(file, &error))?
            .clone();
        let columns: HashMap<String, usize> = headers
            .iter()
            .enumerate()
            .map(|(index, name)| (name.trim().to_string(), index))
            .collect();
        for name in required {
            if !columns.contains_key(*name) {
                let header: Vec<&str> = headers.iter().collect();
                return Err(DemoError::InvalidCsv {
                    file: file.to_string(),
                    line: 1,
                    column: (*name).to_string(),
                    value: header.join(","),
                    problem: format!(
                        "the header has no column \"{name}\"; use the CMS file with its original header row"
                    ),
                });
            }
        }
        Ok(Table {
            file,
            reader,
            columns,
        })
    }

    /// Returns the next data row, `None` at the end of the file.
    fn next_row(&mut self) -> Option<Result<Row<'_>, DemoError>> {
        let mut record = csv::StringRecord::new();
        match self.reader.read_record(&mut record) {
            Ok(false) => None,
            Ok(true) => {
                let line = record.position().map_or(0, |position| position.line());
                Some(Ok(Row {
                    file: self.file,
                    line,
                    record,
                    columns: &self.columns,
                }))
            }
            Err(error) => Some(Err(csv_error(self.file, &error))),
        }
    }
}

fn csv_error(file: &str, error: &csv::Error) -> DemoError {
    let line = error.position().map_or(0, |position| position.line());
    let (value, problem) = match error.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => (
            format!("{len} fields"),
            format!("the row has {len} fields but the header has {expected_len}; fix the quoting or the field count of that row"),
        ),
        csv::ErrorKind::Utf8 { .. } => (
            "invalid UTF-8".to_string(),
            "the row is not valid UTF-8; save the file as UTF-8".to_string(),
        ),
        _ => (String::new(), format!("the CSV could not be read: {error}")),
    };
    DemoError::InvalidCsv {
        file: file.to_string(),
        line,
        column: "(whole row)".to_string(),
        value,
        problem,
    }
}

impl Row<'_> {
    fn text(&self, column: &str) -> &str {
        self.columns
            .get(column)
            .and_then(|&index| self.record.get(index))
            .map_or("", str::trim)
    }

    /// Returns the cell, or `None` for an empty cell or a CMS missing-value marker.
    fn optional(&self, column: &str) -> Option<&str> {
        let text = self.text(column);
        if text.is_empty() || MISSING_MARKERS.contains(&text) {
            None
        } else {
            Some(text)
        }
    }

    fn required(&self, column: &str) -> Result<&str, DemoError> {
        self.optional(column)
            .ok_or_else(|| self.invalid(column, "the value is missing; every row needs it"))
    }

    fn invalid(&self, column: &str, problem: &str) -> DemoError {
        DemoError::InvalidCsv {
            file: self.file.to_string(),
            line: self.line,
            column: column.to_string(),
            value: self.text(column).to_string(),
            problem: problem.to_string(),
        }
    }

    fn ccn(&self) -> Result<String, DemoError> {
        let value = self.required("Facility ID")?;
        if value.len() == 6 && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(value.to_string())
        } else {
            Err(self.invalid(
                "Facility ID",
                "expected a 6-character CMS Certification Number; keep leading zeros (read the column as text)",
            ))
        }
    }
}

const HOSPITAL_COLUMNS: [&str; 8] = [
    "Facility ID",
    "Facility Name",
    "City/Town",
    "State",
    "Hospital Type",
    "Hospital Ownership",
    "Emergency Services",
    "Hospital overall rating",
];

const READMISSION_COLUMNS: [&str; 3] = ["Facility ID", "Measure Name", "Number of Discharges"];

/// Parses both files and joins the discharge counts onto the hospitals by CCN.
/// Hospitals keep the order of the general information file. Readmission rows for a CCN that
/// is not in the general information file are skipped.
pub(crate) fn parse(
    hospitals_csv: &str,
    readmissions_csv: &str,
) -> Result<Vec<Hospital>, DemoError> {
    let mut hospitals = parse_hospitals(hospitals_csv)?;
    let index: HashMap<String, usize> = hospitals
        .iter()
        .enumerate()
        .map(|(position, hospital)| (hospital.ccn.clone(), position))
        .collect();
    for (ccn, discharges) in parse_readmissions(readmissions_csv)? {
        if let Some(&position) = index.get(&ccn) {
            hospitals[position].discharges = discharges;
        }
    }
    Ok(hospitals)
}

fn parse_hospitals(text: &str) -> Result<Vec<Hospital>, DemoError> {
    let mut table = Table::open(HOSPITALS_FILE, text, &HOSPITAL_COLUMNS)?;
    let mut hospitals = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    while let Some(row) = table.next_row() {
        let row = row?;
        let ccn = row.ccn()?;
        if let Some(first_line) = seen.insert(ccn.clone(), row.line) {
            return Err(row.invalid(
                "Facility ID",
                &format!(
                    "the CCN also appears on line {first_line}; each hospital must appear once"
                ),
            ));
        }
        let state = row.required("State")?;
        if state.len() != 2 || !state.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(row.invalid(
                "State",
                "expected a two-letter uppercase state code such as TX",
            ));
        }
        let emergency_services = match row.optional("Emergency Services") {
            None => None,
            Some("Yes") => Some(true),
            Some("No") => Some(false),
            Some(_) => {
                return Err(row.invalid("Emergency Services", "expected Yes, No or Not Available"));
            }
        };
        let rating = match row.optional("Hospital overall rating") {
            None => None,
            Some(text) => match text.parse::<u8>() {
                Ok(stars @ 1..=5) => Some(stars),
                _ => {
                    return Err(row.invalid(
                        "Hospital overall rating",
                        "expected a star rating from 1 to 5 or Not Available",
                    ));
                }
            },
        };
        hospitals.push(Hospital {
            ccn,
            name: row.required("Facility Name")?.to_string(),
            city: row.optional("City/Town").map(str::to_string),
            state: state.to_string(),
            hospital_type: row.required("Hospital Type")?.to_string(),
            ownership: row.optional("Hospital Ownership").map(str::to_string),
            emergency_services,
            rating,
            discharges: Discharges::default(),
        });
    }
    Ok(hospitals)
}

fn parse_readmissions(text: &str) -> Result<BTreeMap<String, Discharges>, DemoError> {
    let mut table = Table::open(READMISSIONS_FILE, text, &READMISSION_COLUMNS)?;
    let mut by_ccn: BTreeMap<String, Discharges> = BTreeMap::new();
    let mut seen: HashMap<(String, Measure), u64> = HashMap::new();
    while let Some(row) = table.next_row() {
        let row = row?;
        let ccn = row.ccn()?;
        let measure_name = row.required("Measure Name")?;
        let Some(measure) = Measure::from_name(measure_name) else {
            return Err(row.invalid(
                "Measure Name",
                "unknown measure; expected one of READM-30-HIP-KNEE-HRRP, READM-30-CABG-HRRP, \
                 READM-30-AMI-HRRP, READM-30-HF-HRRP, READM-30-PN-HRRP, READM-30-COPD-HRRP",
            ));
        };
        if let Some(first_line) = seen.insert((ccn.clone(), measure), row.line) {
            return Err(row.invalid(
                "Measure Name",
                &format!("the same CCN and measure also appear on line {first_line}; each pair must appear once"),
            ));
        }
        let count = match row.optional("Number of Discharges") {
            None => None,
            Some(text) => match text.parse::<u32>() {
                Ok(count) => Some(count),
                Err(_) => {
                    return Err(row.invalid(
                        "Number of Discharges",
                        "expected a whole number, N/A, Not Available or Too Few to Report",
                    ));
                }
            },
        };
        *by_ccn.entry(ccn).or_default().slot(measure) = count;
    }
    Ok(by_ccn)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSPITAL_HEADER: &str = "\"Facility ID\",\"Facility Name\",\"City/Town\",\"State\",\"Hospital Type\",\"Hospital Ownership\",\"Emergency Services\",\"Hospital overall rating\"\n";
    const READMISSION_HEADER: &str =
        "\"Facility Name\",\"Facility ID\",\"State\",\"Measure Name\",\"Number of Discharges\"\n";

    fn hospitals_with(rows: &str) -> String {
        format!("{HOSPITAL_HEADER}{rows}")
    }

    fn readmissions_with(rows: &str) -> String {
        format!("{READMISSION_HEADER}{rows}")
    }

    #[test]
    fn parse_keeps_leading_zeros_and_missing_values() {
        let hospitals = hospitals_with(
            "010001,A HOSPITAL,DOTHAN,AL,Acute Care Hospitals,Proprietary,Yes,Not Available\n",
        );
        let readmissions = readmissions_with(
            "A HOSPITAL,010001,AL,READM-30-HIP-KNEE-HRRP,N/A\n\
             A HOSPITAL,010001,AL,READM-30-AMI-HRRP,296\n\
             A HOSPITAL,010001,AL,READM-30-HF-HRRP,Too Few to Report\n",
        );
        let parsed = parse(&hospitals, &readmissions).expect("valid rows parse");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].ccn, "010001");
        assert_eq!(parsed[0].rating, None);
        assert_eq!(parsed[0].discharges.hip_knee, None);
        assert_eq!(parsed[0].discharges.ami, Some(296));
        assert_eq!(parsed[0].discharges.heart_failure, None);
        assert_eq!(parsed[0].discharges.cabg, None);
    }

    #[test]
    fn bad_rating_names_line_column_value() {
        let hospitals = hospitals_with(
            "010001,A,DOTHAN,AL,Acute Care Hospitals,Proprietary,Yes,3\n\
             010005,B,BOAZ,AL,Acute Care Hospitals,Proprietary,Yes,seven\n",
        );
        let error = parse(&hospitals, READMISSION_HEADER).expect_err("a bad rating is rejected");
        let message = error.to_string();
        match error {
            DemoError::InvalidCsv {
                file,
                line,
                column,
                value,
                ..
            } => {
                assert_eq!(file, HOSPITALS_FILE);
                assert_eq!(line, 3);
                assert_eq!(column, "Hospital overall rating");
                assert_eq!(value, "seven");
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn short_row_is_rejected_with_line() {
        let hospitals = hospitals_with("010001,A,DOTHAN,AL\n");
        let error = parse(&hospitals, READMISSION_HEADER).expect_err("a short row is rejected");
        match error {
            DemoError::InvalidCsv {
                file,
                line,
                column,
                value,
                ..
            } => {
                assert_eq!(file, HOSPITALS_FILE);
                assert_eq!(line, 2);
                assert_eq!(column, "(whole row)");
                assert_eq!(value, "4 fields");
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn missing_column_is_rejected() {
        let readmissions = "\"Facility ID\",\"Measure Name\"\n010001,READM-30-AMI-HRRP\n";
        let error = parse(HOSPITAL_HEADER, readmissions).expect_err("a missing column is rejected");
        match error {
            DemoError::InvalidCsv {
                file, line, column, ..
            } => {
                assert_eq!(file, READMISSIONS_FILE);
                assert_eq!(line, 1);
                assert_eq!(column, "Number of Discharges");
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn bad_discharges_and_measure_are_rejected() {
        let hospitals =
            hospitals_with("010001,A,DOTHAN,AL,Acute Care Hospitals,Proprietary,Yes,3\n");
        let cases = [
            (
                "A,010001,AL,READM-30-AMI-HRRP,12.5\n",
                "Number of Discharges",
                "12.5",
            ),
            (
                "A,010001,AL,READM-30-SEPSIS-HRRP,40\n",
                "Measure Name",
                "READM-30-SEPSIS-HRRP",
            ),
            ("A,10001,AL,READM-30-AMI-HRRP,40\n", "Facility ID", "10001"),
        ];
        for (row, expected_column, expected_value) in cases {
            let error = parse(&hospitals, &readmissions_with(row)).expect_err(row);
            match error {
                DemoError::InvalidCsv {
                    line,
                    column,
                    value,
                    ..
                } => {
                    assert_eq!(line, 2, "{row}");
                    assert_eq!(column, expected_column, "{row}");
                    assert_eq!(value, expected_value, "{row}");
                }
                other => panic!("unexpected error {other:?}"),
            }
        }
    }

    #[test]
    fn duplicate_ccn_is_rejected() {
        let hospitals = hospitals_with(
            "010001,A,DOTHAN,AL,Acute Care Hospitals,Proprietary,Yes,3\n\
             010001,B,BOAZ,AL,Acute Care Hospitals,Proprietary,Yes,3\n",
        );
        let error = parse(&hospitals, READMISSION_HEADER).expect_err("a duplicate CCN is rejected");
        assert!(error.to_string().contains("line 2"), "{error}");
    }
}
