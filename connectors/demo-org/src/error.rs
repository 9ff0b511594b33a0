//! Errors of the demo org generator.

/// Failure to build the demo org from the CMS files or the options.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A CMS file has a missing column, a broken row or a value that does not parse.
    /// `line` is the 1-based line of the file (the header is line 1).
    #[error("{file} line {line}, column \"{column}\": invalid value \"{value}\": {problem}")]
    InvalidCsv {
        file: String,
        line: u64,
        column: String,
        value: String,
        problem: String,
    },
    /// A `DemoOptions` field has a value the generator cannot use.
    #[error("invalid option {option} = {value}: {problem}")]
    InvalidOption {
        option: &'static str,
        value: String,
        problem: String,
    },
    /// A record field contains an id or date that the generator did not write, so it cannot be
    /// copied under a new id.
    #[error(
        "{object} field {field}: value \"{value}\" is not an id or date written by the generator"
    )]
    InvalidRecord {
        object: String,
        field: String,
        value: String,
    },
}
