//! Loads the X Education leads CSV and encodes it as a numeric train/holdout split.
//!
//! Rows are ordered by `Lead Number` (a monotone id, the only stand-in for arrival order in
//! this file) and the last 20% form the holdout. Numeric columns are parsed as they are;
//! every other column is one-hot encoded over its frequent values in the training rows.
//! A blank cell or the placeholder `Select` (a dropdown left at its default) is missing,
//! and a missing category makes all of that column's indicators NaN.

use std::collections::HashMap;
use std::path::Path;

use crate::model::Dataset;

/// Columns parsed as numbers; a blank cell is NaN.
const NUMERIC_COLUMNS: [&str; 5] = [
    "TotalVisits",
    "Total Time Spent on Website",
    "Page Views Per Visit",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
];

/// Columns that are identifiers or the label, never features.
const NON_FEATURE_COLUMNS: [&str; 3] = ["Prospect ID", "Lead Number", "Converted"];

/// Columns filled in by sales reps during or after follow-up, or scored by a vendor late.
/// They nearly encode the outcome, so the scoring-time column set leaves them out.
const LATE_COLUMNS: [&str; 9] = [
    "Tags",
    "Lead Quality",
    "Lead Profile",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
    "Last Activity",
    "Last Notable Activity",
];

/// A category value needs at least this share of training rows to get its own indicator.
const MIN_CATEGORY_SHARE: f64 = 0.01;
/// At most this many indicators per categorical column; rarer values encode as all zeros.
const MAX_CATEGORIES: usize = 20;
/// Share of rows, taken from the end of `Lead Number` order, used as the holdout.
const HOLDOUT_SHARE: f64 = 0.2;

/// Set of CSV columns used as features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColumnSet {
    /// Columns known when a lead arrives (drops rep tags, lead quality, profile, vendor
    /// scores and the last-activity columns).
    ScoringTime,
    /// Every column except the identifiers and the label.
    All,
}

/// A train/holdout split with identical feature columns.
pub struct Split {
    pub train: Dataset,
    pub holdout: Dataset,
}

struct RawLead {
    lead_number: u64,
    label: f64,
    cells: Vec<String>,
}

/// Reads the CSV at `path` and returns the encoded split.
pub fn load(path: &Path, columns: ColumnSet) -> Result<Split, String> {
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| format!("failed to open leads CSV {}: {e}", path.display()))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("failed to read the header row of {}: {e}", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let position = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            format!(
                "column `{name}` not found in {}: pass the X Education Leads.csv file",
                path.display()
            )
        })
    };
    let lead_number_column = position("Lead Number")?;
    let label_column = position("Converted")?;

    let feature_columns: Vec<usize> = (0..headers.len())
        .filter(|&i| is_feature(&headers[i], columns))
        .collect();

    let mut leads = Vec::new();
    for (index, record) in reader.records().enumerate() {
        // Line 1 is the header, so data row `index` is on line `index + 2`.
        let line = index + 2;
        let record = record.map_err(|e| format!("invalid CSV at line {line}: {e}"))?;
        let lead_number = record
            .get(lead_number_column)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                format!(
                    "line {line}: `Lead Number` is {:?}, expected a whole number",
                    record.get(lead_number_column).unwrap_or("")
                )
            })?;
        let label = match record.get(label_column).map(str::trim) {
            Some("1") => 1.0,
            Some("0") => 0.0,
            other => {
                return Err(format!(
                    "line {line}: `Converted` is {:?}, expected 0 or 1",
                    other.unwrap_or("")
                ))
            }
        };
        let cells = feature_columns
            .iter()
            .map(|&c| record.get(c).unwrap_or("").trim().to_string())
            .collect();
        leads.push(RawLead {
            lead_number,
            label,
            cells,
        });
    }
    if leads.len() < 10 {
        return Err(format!(
            "{} has {} data rows; the benchmark needs at least 10",
            path.display(),
            leads.len()
        ));
    }

    leads.sort_by_key(|lead| lead.lead_number);
    let holdout_len = (leads.len() as f64 * HOLDOUT_SHARE).round() as usize;
    let train_len = leads.len() - holdout_len;
    let (train_rows, holdout_rows) = leads.split_at(train_len);

    let names: Vec<&str> = feature_columns
        .iter()
        .map(|&c| headers[c].as_str())
        .collect();
    let encoder = Encoder::fit(&names, train_rows)?;
    Ok(Split {
        train: encoder.encode(train_rows)?,
        holdout: encoder.encode(holdout_rows)?,
    })
}

fn is_feature(name: &str, columns: ColumnSet) -> bool {
    if NON_FEATURE_COLUMNS.contains(&name) {
        return false;
    }
    match columns {
        ColumnSet::All => true,
        ColumnSet::ScoringTime => !LATE_COLUMNS.contains(&name),
    }
}

/// Normalizes a category cell; `None` means missing.
fn category(cell: &str) -> Option<String> {
    let value = cell.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("select") {
        None
    } else {
        // Lower-case so that `Google` and `google` are one value.
        Some(value.to_lowercase())
    }
}

enum ColumnEncoding {
    Numeric,
    OneHot(Vec<String>),
}

struct Encoder {
    columns: Vec<(String, ColumnEncoding)>,
}

impl Encoder {
    fn fit(names: &[&str], train: &[RawLead]) -> Result<Self, String> {
        let mut columns = Vec::new();
        for (c, &name) in names.iter().enumerate() {
            if NUMERIC_COLUMNS.contains(&name) {
                columns.push((name.to_string(), ColumnEncoding::Numeric));
                continue;
            }
            let mut counts: HashMap<String, usize> = HashMap::new();
            for lead in train {
                if let Some(value) = category(&lead.cells[c]) {
                    *counts.entry(value).or_default() += 1;
                }
            }
            let min_count = (train.len() as f64 * MIN_CATEGORY_SHARE).ceil() as usize;
            let mut frequent: Vec<(String, usize)> = counts
                .into_iter()
                .filter(|(_, n)| *n >= min_count)
                .collect();
            // Most frequent first, then by name, so the column order is deterministic.
            frequent.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            frequent.truncate(MAX_CATEGORIES);
            let values = frequent.into_iter().map(|(value, _)| value).collect();
            columns.push((name.to_string(), ColumnEncoding::OneHot(values)));
        }
        Ok(Self { columns })
    }

    fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (name, encoding) in &self.columns {
            match encoding {
                ColumnEncoding::Numeric => names.push(name.clone()),
                ColumnEncoding::OneHot(values) => {
                    names.extend(values.iter().map(|v| format!("{name}={v}")))
                }
            }
        }
        names
    }

    fn encode(&self, leads: &[RawLead]) -> Result<Dataset, String> {
        let mut data = Dataset {
            feature_names: self.feature_names(),
            ..Dataset::default()
        };
        for lead in leads {
            let mut row = Vec::with_capacity(data.feature_names.len());
            for ((name, encoding), cell) in self.columns.iter().zip(&lead.cells) {
                match encoding {
                    ColumnEncoding::Numeric => row.push(parse_number(name, cell, lead)?),
                    ColumnEncoding::OneHot(values) => match category(cell) {
                        None => row.extend(std::iter::repeat_n(f64::NAN, values.len())),
                        Some(value) => {
                            row.extend(values.iter().map(|v| f64::from(u8::from(*v == value))))
                        }
                    },
                }
            }
            data.rows.push(row);
            data.labels.push(lead.label);
        }
        Ok(data)
    }
}

fn parse_number(column: &str, cell: &str, lead: &RawLead) -> Result<f64, String> {
    if cell.is_empty() {
        return Ok(f64::NAN);
    }
    match cell.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!(
            "lead {}: `{column}` is {cell:?}, expected a finite number or a blank cell",
            lead.lead_number
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `contents` to a fresh file under the system temp directory.
    fn write_csv(name: &str, contents: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("leadscore-bench-{}-{name}.csv", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    const HEADER: &str = "Prospect ID,Lead Number,Converted,TotalVisits,Lead Source,Tags\n";

    #[test]
    fn load_orders_encodes_and_splits() {
        let mut csv = String::from(HEADER);
        // Ten leads written in reverse id order; the holdout must be the two highest ids.
        for i in (0..10).rev() {
            let source = match i % 3 {
                0 => "Google",
                1 => "google",
                _ => "Select",
            };
            let visits = if i == 4 { String::new() } else { i.to_string() };
            csv.push_str(&format!(
                "p{i},{},{},{visits},{source},Ringing\n",
                100 + i,
                i % 2
            ));
        }
        let path = write_csv("ok", &csv);
        let split = load(&path, ColumnSet::ScoringTime).unwrap();
        std::fs::remove_file(&path).ok();

        // `Tags` is a late column, and `Google`/`google` are one value.
        assert_eq!(
            split.train.feature_names,
            ["TotalVisits", "Lead Source=google"]
        );
        assert_eq!(split.train.rows.len(), 8);
        assert_eq!(split.holdout.rows.len(), 2);
        // Holdout rows are ids 108 and 109 in that order: visits 8 and 9.
        assert_eq!(split.holdout.rows[0][0], 8.0);
        assert_eq!(split.holdout.rows[1][0], 9.0);
        assert_eq!(split.holdout.labels, [0.0, 1.0]);
        // Lead 104 has blank visits and lead 102 has `Select` as source: both missing.
        assert!(split.train.rows[4][0].is_nan());
        assert!(split.train.rows[2][1].is_nan());
        assert_eq!(split.train.rows[0][1], 1.0);
    }

    #[test]
    fn load_all_columns_keeps_tags() {
        let mut csv = String::from(HEADER);
        for i in 0..10 {
            csv.push_str(&format!("p{i},{i},{},1,Google,Ringing\n", i % 2));
        }
        let path = write_csv("all", &csv);
        let split = load(&path, ColumnSet::All).unwrap();
        std::fs::remove_file(&path).ok();
        assert!(split
            .train
            .feature_names
            .contains(&"Tags=ringing".to_string()));
    }

    #[test]
    fn load_rejects_bad_label() {
        let mut csv = String::from(HEADER);
        for i in 0..10 {
            let label = if i == 3 { "yes" } else { "0" };
            csv.push_str(&format!("p{i},{i},{label},1,Google,Ringing\n"));
        }
        let path = write_csv("bad-label", &csv);
        let error = load(&path, ColumnSet::All).err().unwrap();
        std::fs::remove_file(&path).ok();
        assert!(error.contains("line 5"), "{error}");
        assert!(error.contains("\"yes\""), "{error}");
    }

    #[test]
    fn load_rejects_missing_column() {
        let path = write_csv("no-label", "Prospect ID,Lead Number\np1,1\n");
        let error = load(&path, ColumnSet::All).err().unwrap();
        std::fs::remove_file(&path).ok();
        assert!(error.contains("`Converted`"), "{error}");
    }
}
