//! Turning CSV columns into model features, labels, ids and time-order keys.
//!
//! The encoding is fitted on the training rows and then applied unchanged to any file with the
//! same columns, so a separate holdout file is encoded with the training vocabulary.

use std::collections::HashMap;

use super::table::{
    is_missing, parse_date, parse_number, parse_yes_no, ColumnSummary, ColumnType, Table,
};
use super::EvaluateError;

/// A category level must appear in at least this share of the training rows to get a column.
const MIN_LEVEL_SHARE: f64 = 0.01;
/// Most one-hot columns per category column; the most frequent levels are kept.
const MAX_LEVELS: usize = 20;
const SECONDS_PER_DAY: f64 = 86_400.0;

/// Encoding of one input column as model features.
#[derive(Clone, Debug)]
enum Encoding {
    Number,
    YesNo,
    /// Days since `origin`, the earliest date in the training file (Unix seconds).
    Date {
        origin: i64,
    },
    /// One indicator per level, matched case-insensitively.
    Category {
        levels: Vec<String>,
    },
}

#[derive(Clone, Debug)]
struct EncodedColumn {
    header: String,
    column_type: ColumnType,
    encoding: Encoding,
}

/// The feature encoding fitted on a training table.
#[derive(Clone, Debug)]
pub struct Encoder {
    columns: Vec<EncodedColumn>,
}

impl Encoder {
    /// Fits the encoding of `feature_columns` on the rows `training_rows` of `table`.
    ///
    /// Empty columns get no feature. Date origins come from the whole table.
    pub fn fit(
        table: &Table,
        summaries: &[ColumnSummary],
        feature_columns: &[usize],
        training_rows: &[usize],
    ) -> Encoder {
        let mut columns = Vec::new();
        for &column in feature_columns {
            let column_type = summaries[column].column_type;
            let encoding = match column_type {
                ColumnType::Number => Encoding::Number,
                ColumnType::YesNo => Encoding::YesNo,
                ColumnType::Date => Encoding::Date {
                    origin: table
                        .cells(column)
                        .filter_map(parse_date)
                        .min()
                        .unwrap_or(0),
                },
                ColumnType::Category => Encoding::Category {
                    levels: frequent_levels(table, column, training_rows),
                },
                ColumnType::Empty => continue,
            };
            columns.push(EncodedColumn {
                header: table.headers[column].clone(),
                column_type,
                encoding,
            });
        }
        Encoder { columns }
    }

    /// Returns the feature names in row order: the column name, or `column=level` for a
    /// category level.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for column in &self.columns {
            match &column.encoding {
                Encoding::Category { levels } => {
                    names.extend(levels.iter().map(|l| format!("{}={l}", column.header)));
                }
                _ => names.push(column.header.clone()),
            }
        }
        names
    }

    /// Returns how many features each input column produced, by column name.
    pub fn feature_counts(&self) -> HashMap<String, usize> {
        self.columns
            .iter()
            .map(|c| {
                let count = match &c.encoding {
                    Encoding::Category { levels } => levels.len(),
                    _ => 1,
                };
                (c.header.clone(), count)
            })
            .collect()
    }

    /// Encodes every row of `table`, finding the columns by name. A missing cell is NaN (for a
    /// category, all its indicators are NaN), and a level outside the vocabulary is all zeros.
    pub fn encode(&self, table: &Table) -> Result<Vec<Vec<f64>>, EvaluateError> {
        let mut positions = Vec::with_capacity(self.columns.len());
        let mut absent = Vec::new();
        for column in &self.columns {
            match table.position(&column.header) {
                Some(position) => positions.push(position),
                None => absent.push(column.header.as_str()),
            }
        }
        if !absent.is_empty() {
            return Err(EvaluateError::Input(format!(
                "{} lacks the training columns {}; export it with the same columns as the training file",
                table.path,
                absent.join(", ")
            )));
        }

        let mut rows = Vec::with_capacity(table.rows.len());
        for (row_index, row) in table.rows.iter().enumerate() {
            let mut values = Vec::new();
            for (column, &position) in self.columns.iter().zip(&positions) {
                let cell = row[position].as_str();
                encode_cell(column, cell, &mut values).map_err(|expected| {
                    EvaluateError::Input(format!(
                        "{}, line {}, column {:?}: {cell:?} is not {expected}, but the training file \
                         made this a {} column; fix the value or leave the cell blank",
                        table.path,
                        table.lines[row_index],
                        column.header,
                        column.column_type.name()
                    ))
                })?;
            }
            rows.push(values);
        }
        Ok(rows)
    }
}

/// Appends the features of one cell, or returns what the cell should have been.
fn encode_cell(
    column: &EncodedColumn,
    cell: &str,
    values: &mut Vec<f64>,
) -> Result<(), &'static str> {
    let missing = is_missing(cell);
    match &column.encoding {
        Encoding::Number => values.push(if missing {
            f64::NAN
        } else {
            parse_number(cell).ok_or("a number")?
        }),
        Encoding::YesNo => values.push(if missing {
            f64::NAN
        } else {
            let flag = parse_yes_no(cell).ok_or("yes/no, y/n, true/false or 1/0")?;
            if flag {
                1.0
            } else {
                0.0
            }
        }),
        Encoding::Date { origin } => values.push(if missing {
            f64::NAN
        } else {
            let seconds = parse_date(cell).ok_or("a date (YYYY-MM-DD or MM/DD/YYYY)")?;
            (seconds - origin) as f64 / SECONDS_PER_DAY
        }),
        Encoding::Category { levels } => {
            let folded = cell.to_lowercase();
            for level in levels {
                values.push(if missing {
                    f64::NAN
                } else if level.to_lowercase() == folded {
                    1.0
                } else {
                    0.0
                });
            }
        }
    }
    Ok(())
}

/// Returns the levels of a category column that reach [`MIN_LEVEL_SHARE`] of the training
/// rows, most frequent first, at most [`MAX_LEVELS`]. Levels are compared case-insensitively
/// and keep the spelling seen first.
fn frequent_levels(table: &Table, column: usize, training_rows: &[usize]) -> Vec<String> {
    let mut counts: HashMap<String, (usize, String)> = HashMap::new();
    for &row in training_rows {
        let cell = table.rows[row][column].as_str();
        if is_missing(cell) {
            continue;
        }
        counts
            .entry(cell.to_lowercase())
            .or_insert_with(|| (0, cell.to_string()))
            .0 += 1;
    }
    let floor = MIN_LEVEL_SHARE * training_rows.len() as f64;
    let mut levels: Vec<(usize, String)> = counts
        .into_values()
        .filter(|(count, _)| *count as f64 >= floor)
        .collect();
    levels.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    levels.truncate(MAX_LEVELS);
    levels.into_iter().map(|(_, level)| level).collect()
}

/// Parses an outcome cell: 1.0 for won (1, yes, y, true, won, closed won, converted) and 0.0
/// for lost (0, no, n, false, lost, closed lost, not converted, not).
fn parse_label(cell: &str) -> Option<f64> {
    match cell.to_lowercase().as_str() {
        "1" | "1.0" | "yes" | "y" | "true" | "won" | "closed won" | "converted" => Some(1.0),
        "0" | "0.0" | "no" | "n" | "false" | "lost" | "closed lost" | "not converted" | "not" => {
            Some(0.0)
        }
        _ => None,
    }
}

/// Reads the binary label column, naming the values found when any is not a won/lost value.
pub fn labels(table: &Table, column: usize) -> Result<Vec<f64>, EvaluateError> {
    let mut labels = Vec::with_capacity(table.rows.len());
    let mut invalid: Vec<String> = Vec::new();
    let mut first_invalid_line = None;
    for (row, cell) in table.cells(column).enumerate() {
        match parse_label(cell) {
            Some(label) => labels.push(label),
            None => {
                first_invalid_line.get_or_insert(table.lines[row]);
                let value_text = if cell.is_empty() {
                    "(blank)".to_string()
                } else {
                    format!("{cell:?}")
                };
                if !invalid.contains(&value_text) && invalid.len() < 10 {
                    invalid.push(value_text);
                }
            }
        }
    }
    if let Some(line) = first_invalid_line {
        return Err(EvaluateError::Input(format!(
            "{}: label column {:?} must be binary, but it contains {} (first at line {line}); \
             use 1/0, yes/no, true/false, won/lost or converted/not converted, one per row",
            table.path,
            table.headers[column],
            invalid.join(", ")
        )));
    }
    Ok(labels)
}

/// Rejects a label column with only won or only lost rows.
pub fn require_both_classes(
    table: &Table,
    column: usize,
    labels: &[f64],
) -> Result<(), EvaluateError> {
    let won = labels.iter().filter(|l| **l > 0.5).count();
    let lost = labels.len() - won;
    if won == 0 || lost == 0 {
        return Err(EvaluateError::Input(format!(
            "{}: label column {:?} has only one class ({won} won, {lost} lost); \
             training needs both won and lost rows, so export a wider period",
            table.path, table.headers[column]
        )));
    }
    Ok(())
}

/// Reads the time column as Unix seconds (dates) or as the value itself (numbers).
pub fn time_keys(
    table: &Table,
    column: usize,
    column_type: ColumnType,
) -> Result<Vec<i64>, EvaluateError> {
    let header = &table.headers[column];
    // A column inferred as a category contains at least one value that is neither a date nor a
    // number; report that cell rather than the first row.
    if matches!(column_type, ColumnType::Category | ColumnType::Empty) {
        let bad = table.cells(column).enumerate().find(|(_, cell)| {
            !is_missing(cell) && parse_date(cell).is_none() && parse_number(cell).is_none()
        });
        if let Some((row, cell)) = bad {
            let line = table.lines[row];
            return Err(EvaluateError::Input(format!(
                "{}, line {line}: time column {header:?} has {cell:?}, which is neither a date \
                 (YYYY-MM-DD, MM/DD/YYYY) nor a number; fix the value or drop the row",
                table.path
            )));
        }
    }
    let mut keys = Vec::with_capacity(table.rows.len());
    for (row, cell) in table.cells(column).enumerate() {
        let line = table.lines[row];
        if is_missing(cell) {
            return Err(EvaluateError::Input(format!(
                "{}, line {line}: time column {header:?} is blank; fill it in or drop the row",
                table.path
            )));
        }
        let key = match column_type {
            ColumnType::Date => parse_date(cell),
            ColumnType::Number | ColumnType::YesNo => parse_number(cell).map(|v| v.round() as i64),
            ColumnType::Category | ColumnType::Empty => None,
        };
        match key {
            Some(key) => keys.push(key),
            None => {
                return Err(EvaluateError::Input(format!(
                    "{}, line {line}: time column {header:?} has {cell:?}, which is neither a date \
                     (YYYY-MM-DD, MM/DD/YYYY) nor a number; pick a date or sequence column for --time",
                    table.path
                )))
            }
        }
    }
    Ok(keys)
}

/// Returns one id per row: the id column's cell, or the 1-based data row number.
pub fn ids(table: &Table, column: Option<usize>) -> Vec<String> {
    match column {
        Some(column) => table.cells(column).map(str::to_string).collect(),
        None => (1..=table.rows.len()).map(|n| n.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_words_both_ways() {
        for won in ["1", "Yes", "TRUE", "Won", "Converted", "closed won"] {
            assert_eq!(parse_label(won), Some(1.0), "{won}");
        }
        for lost in ["0", "no", "False", "LOST", "Not Converted", "not"] {
            assert_eq!(parse_label(lost), Some(0.0), "{lost}");
        }
        assert_eq!(parse_label("maybe"), None);
        assert_eq!(parse_label("2"), None);
        assert_eq!(parse_label(""), None);
    }
}
