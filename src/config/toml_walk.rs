//! A reader over a parsed TOML document that collects every problem instead of stopping at the
//! first, each with its line, column and key.

use std::collections::BTreeSet;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One problem found in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    pub line: usize,
    pub column: usize,
    /// Dotted key the problem is about, for example `connector.login_url`.
    pub key: String,
    pub message: String,
    /// A line that would be valid in its place.
    pub example: Option<String>,
}

/// Collects issues and turns byte offsets into line and column numbers.
pub struct Issues<'s> {
    source: &'s str,
    pub list: Vec<ConfigIssue>,
}

impl<'s> Issues<'s> {
    pub fn new(source: &'s str) -> Self {
        Issues {
            source,
            list: Vec::new(),
        }
    }

    pub fn push(&mut self, span: Range<usize>, key: &str, message: String, example: Option<&str>) {
        let (line, column) = line_column(self.source, span.start);
        self.list.push(ConfigIssue {
            line,
            column,
            key: key.to_string(),
            message,
            example: example.map(str::to_string),
        });
    }
}

/// Returns the 1-based line and column of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Describes the shell syntax in a path (`~`, `$NAME`, `${NAME}` or `%NAME%`), or returns
/// `None` for a path without any.
fn shell_syntax(path: &str) -> Option<String> {
    if path.starts_with('~') {
        return Some("starts with ~".to_string());
    }
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (start, _) in path.match_indices('$') {
        let rest = &path[start + 1..];
        let braced = rest.starts_with('{');
        let name_start = rest.trim_start_matches('{');
        if braced || name_start.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let length = name_start
                .find(|c: char| !is_name(c))
                .unwrap_or(name_start.len());
            let name = &name_start[..length];
            return Some(format!("contains the environment variable {name}"));
        }
    }
    let mut parts = path.split('%');
    parts.next();
    let mut inner: Vec<&str> = parts.collect();
    // The text after the last % is not enclosed.
    inner.pop();
    inner
        .iter()
        .step_by(2)
        .find(|name| {
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(is_name)
        })
        .map(|name| format!("contains the environment variable {name}"))
}

/// Names the TOML type of a value for error messages.
pub fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Shows a scalar value as written, or names the type of a compound one.
fn value_text(value: &DeValue<'_>) -> String {
    match value {
        DeValue::Integer(i) => i.as_str().to_string(),
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        other => type_name(other).to_string(),
    }
}

/// One table of the document. Every key read through it is remembered, so that
/// [`Section::finish`] can report the keys that were never read as unknown.
pub struct Section<'t, 'i> {
    path: String,
    table: Option<&'t DeTable<'i>>,
    span: Range<usize>,
    read: BTreeSet<&'static str>,
    /// Keys read only to be rejected, left out of the "expected one of" list.
    unlisted: BTreeSet<&'static str>,
}

impl<'t, 'i> Section<'t, 'i> {
    pub fn new(path: &str, table: Option<&'t DeTable<'i>>, span: Range<usize>) -> Self {
        Section {
            path: path.to_string(),
            table,
            span,
            read: BTreeSet::new(),
            unlisted: BTreeSet::new(),
        }
    }

    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    /// Returns the raw value of `key`, marking the key as known.
    pub fn raw(&mut self, key: &'static str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.read.insert(key);
        #[cfg(test)]
        record_read(&self.path, key);
        let table = self.table?;
        table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    /// Returns the raw value of a key that is known but never valid, such as a secret written
    /// into the file. The caller reports it; the unknown-key message does not offer it.
    pub fn raw_unlisted(&mut self, key: &'static str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.unlisted.insert(key);
        self.raw(key)
    }

    /// Reports a missing required key at the table's position.
    pub fn missing(&self, issues: &mut Issues<'_>, key: &str, example: &str) {
        let message = if self.table.is_some() {
            "missing required key".to_string()
        } else {
            format!("missing required key; the table [{}] is absent", self.path)
        };
        issues.push(
            self.span.clone(),
            &self.key_path(key),
            message,
            Some(example),
        );
    }

    fn wrong_type(
        &self,
        issues: &mut Issues<'_>,
        key: &str,
        value: &Spanned<DeValue<'_>>,
        expected: &str,
        example: &str,
    ) {
        issues.push(
            value.span(),
            &self.key_path(key),
            format!("expected {expected}, found {}", type_name(value.get_ref())),
            Some(example),
        );
    }

    pub fn string(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        example: &str,
    ) -> Option<Spanned<String>> {
        let value = self.raw(key)?;
        match value.get_ref() {
            DeValue::String(s) if s.trim().is_empty() => {
                issues.push(
                    value.span(),
                    &self.key_path(key),
                    "must not be empty".to_string(),
                    Some(example),
                );
                None
            }
            DeValue::String(s) => Some(Spanned::new(value.span(), s.to_string())),
            _ => {
                self.wrong_type(issues, key, value, "a string", example);
                None
            }
        }
    }

    /// Reads a file or folder path like [`Section::string`] and rejects one that a shell would
    /// have expanded. leadscore reads `~` and `$HOME` literally, so such a path would name a
    /// folder called `~` or `$HOME` next to the configuration file.
    pub fn path(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        example: &str,
    ) -> Option<Spanned<String>> {
        let value = self.string(issues, key, example)?;
        let Some(problem) = shell_syntax(value.get_ref()) else {
            return Some(value);
        };
        issues.push(
            value.span(),
            &self.key_path(key),
            format!(
                "{:?} {problem}, which leadscore does not expand; write the full path it stands for",
                value.get_ref()
            ),
            Some(example),
        );
        None
    }

    /// Returns a table of string values (`key = { a = "x", b = "y" }`) as (key, value) pairs
    /// in file order; a value that is not a non-empty string is reported and left out.
    pub fn string_map(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        example: &str,
    ) -> Vec<(String, Spanned<String>)> {
        let path = self.key_path(key);
        let Some(value) = self.raw(key) else {
            return Vec::new();
        };
        let DeValue::Table(table) = value.get_ref() else {
            self.wrong_type(issues, key, value, "a table of strings", example);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, item) in table.iter() {
            let name = name.get_ref().as_ref().to_string();
            match item.get_ref() {
                DeValue::String(text) if !text.trim().is_empty() => {
                    out.push((name, Spanned::new(item.span(), text.to_string())));
                }
                other => issues.push(
                    item.span(),
                    &format!("{path}.{name}"),
                    format!("expected a non-empty string, found {}", type_name(other)),
                    Some(example),
                ),
            }
        }
        out
    }

    /// Reads a path that must be present: see [`Section::path`].
    pub fn required_path(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        example: &str,
    ) -> Option<Spanned<String>> {
        if self.raw(key).is_none() {
            self.missing(issues, key, example);
            return None;
        }
        self.path(issues, key, example)
    }

    pub fn required_string(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        example: &str,
    ) -> Option<Spanned<String>> {
        if self.raw(key).is_none() {
            self.missing(issues, key, example);
            return None;
        }
        self.string(issues, key, example)
    }

    pub fn integer(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        range: Range<i64>,
        example: &str,
    ) -> Option<i64> {
        let value = self.raw(key)?;
        let DeValue::Integer(int) = value.get_ref() else {
            self.wrong_type(issues, key, value, "an integer", example);
            return None;
        };
        let digits = int.as_str().replace('_', "");
        let parsed = i64::from_str_radix(&digits, int.radix()).ok();
        match parsed {
            Some(n) if range.contains(&n) => Some(n),
            _ => {
                issues.push(
                    value.span(),
                    &self.key_path(key),
                    format!(
                        "{} is out of range; expected {} to {}",
                        int.as_str(),
                        range.start,
                        range.end - 1
                    ),
                    Some(example),
                );
                None
            }
        }
    }

    /// Reads a number; integers are accepted where a float is expected.
    pub fn float(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        min: f64,
        max: f64,
        example: &str,
    ) -> Option<f64> {
        let value = self.raw(key)?;
        let parsed = match value.get_ref() {
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Integer(i) => i.as_str().replace('_', "").parse::<f64>().ok(),
            _ => {
                self.wrong_type(issues, key, value, "a number", example);
                return None;
            }
        };
        match parsed {
            Some(n) if n.is_finite() && n >= min && n <= max => Some(n),
            _ => {
                issues.push(
                    value.span(),
                    &self.key_path(key),
                    format!(
                        "{} is out of range; expected a number from {min} to {max}",
                        value_text(value.get_ref())
                    ),
                    Some(example),
                );
                None
            }
        }
    }

    pub fn boolean(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        example: &str,
    ) -> Option<bool> {
        let value = self.raw(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(issues, key, value, "true or false", example);
                None
            }
        }
    }

    pub fn datetime(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        example: &str,
    ) -> Option<Spanned<String>> {
        let value = self.raw(key)?;
        match value.get_ref() {
            DeValue::Datetime(dt) => Some(Spanned::new(value.span(), dt.to_string())),
            _ => {
                self.wrong_type(issues, key, value, "a datetime", example);
                None
            }
        }
    }

    pub fn string_array(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        example: &str,
    ) -> Option<Vec<Spanned<String>>> {
        let value = self.raw(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(issues, key, value, "an array of strings", example);
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
                other => issues.push(
                    item.span(),
                    &self.key_path(key),
                    format!("expected a string, found {}", type_name(other)),
                    Some(example),
                ),
            }
        }
        Some(out)
    }

    pub fn integer_array(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
        range: Range<i64>,
        example: &str,
    ) -> Option<Vec<i64>> {
        let value = self.raw(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(issues, key, value, "an array of integers", example);
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            let parsed = match item.get_ref() {
                DeValue::Integer(i) => i.as_str().replace('_', "").parse::<i64>().ok(),
                _ => None,
            };
            match parsed {
                Some(n) if range.contains(&n) => out.push(n),
                _ => issues.push(
                    item.span(),
                    &self.key_path(key),
                    format!(
                        "expected an integer from {} to {}, found {}",
                        range.start,
                        range.end - 1,
                        value_text(item.get_ref())
                    ),
                    Some(example),
                ),
            }
        }
        Some(out)
    }

    /// Returns the sub-table `key`. An absent key gives an empty section, so that its
    /// required keys are still reported.
    pub fn table(&mut self, issues: &mut Issues<'_>, key: &'static str) -> Section<'t, 'i> {
        let path = self.key_path(key);
        match self.raw(key) {
            Some(value) => match value.get_ref() {
                DeValue::Table(t) => Section::new(&path, Some(t), value.span()),
                other => {
                    issues.push(
                        value.span(),
                        &path,
                        format!("expected a table, found {}", type_name(other)),
                        Some(&format!("[{path}]")),
                    );
                    Section::new(&path, None, value.span())
                }
            },
            None => Section::new(&path, None, self.span.clone()),
        }
    }

    /// Returns the entries of an array of tables (`[[key]]`).
    pub fn table_array(
        &mut self,
        issues: &mut Issues<'_>,
        key: &'static str,
    ) -> Vec<Section<'t, 'i>> {
        let path = self.key_path(key);
        let Some(value) = self.raw(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            issues.push(
                value.span(),
                &path,
                format!(
                    "expected an array of tables, found {}",
                    type_name(value.get_ref())
                ),
                Some(&format!("[[{path}]]")),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            match item.get_ref() {
                DeValue::Table(t) => out.push(Section::new(&item_path, Some(t), item.span())),
                other => issues.push(
                    item.span(),
                    &item_path,
                    format!("expected a table, found {}", type_name(other)),
                    Some(&format!("[[{path}]]")),
                ),
            }
        }
        out
    }

    /// Reports every key of the table that was never read as unknown.
    pub fn finish(self, issues: &mut Issues<'_>) {
        let Some(table) = self.table else {
            return;
        };
        let known: Vec<&str> = self.read.difference(&self.unlisted).copied().collect();
        for (key, _) in table.iter() {
            let name = key.get_ref().as_ref();
            if self.read.contains(name) {
                continue;
            }
            issues.push(
                key.span(),
                &self.key_path(name),
                format!("unknown key; expected one of: {}", known.join(", ")),
                None,
            );
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Every key the parser read on this thread, by table path with array indexes removed
    /// (`features.account`, not `features.account[0]`). The configuration reference test
    /// compares it with the documented keys.
    pub static READ_KEYS: std::cell::RefCell<std::collections::BTreeMap<String, BTreeSet<&'static str>>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

#[cfg(test)]
fn record_read(path: &str, key: &'static str) {
    let mut table = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => table.push(c),
            _ => {}
        }
    }
    READ_KEYS.with(|keys| {
        keys.borrow_mut().entry(table).or_default().insert(key);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 9), (2, 4));
    }
}
