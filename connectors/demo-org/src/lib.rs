//! Deterministic demo CRM history around real CMS hospitals.
//!
//! [`generate`] turns two public CMS files, embedded from `data/cms/`, into the Salesforce
//! records of a simulated medical-device company. Every hospital of the Hospital General
//! Information file becomes an `Account` with its real type, ownership, star rating and
//! readmission-program discharge counts. Everything no public file has is invented around it:
//! health systems, sales reps, contacts, leads, tasks, events, opportunities and contact roles
//! over the three years before [`DemoOptions::as_of`]. The objects and fields are those of
//! the sandbox org schema, without the `LS_*` score fields that leadscore writes.
//!
//! Whether a closed opportunity is won follows a documented formula (see [`truth`]):
//! P(won) = sigmoid(logit), with the logit a weighted sum of the account's procedure volume,
//! hospital type, star rating and incumbent competitor, and of two activity measures taken
//! from records that exist before the deal's `CreatedDate` (distinct buying roles engaged in
//! the previous 365 days, days since the last activity). The outcome is one Bernoulli draw.
//! [`DemoOrg::win_probability`] exposes the true P for evaluation, and no record contains it.
//!
//! Inbound leads of the hospitals convert by a second formula in [`truth`]: P(convert) =
//! sigmoid(logit) of the lead's source and buying role, its own Tasks and Events dated before
//! its creation date plus 14 days, and its hospital's procedure volume, type and star rating.
//! A conversion creates a contact on the hospital's account and, for about 40% of them, an
//! opportunity. [`DemoOrg::conversion_probability`] exposes the true P of every lead.
//!
//! The same options always produce byte-identical records, because the generator uses its own
//! seeded SplitMix64 streams and never lets hash-map iteration order reach the output.
//! NOTE: `f64::ln` and `f64::exp` come from the platform's math library, so another platform
//! could differ in the last bit of a probability and, very rarely, flip one outcome draw.

mod cms;
mod error;
mod ids;
mod names;
mod output;
mod rng;
pub mod scale;
mod sim;
pub mod truth;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};

pub use error::DemoError;

/// One record: field API name -> JSON value (`null` for a missing value).
pub type RecordMap = serde_json::Map<String, serde_json::Value>;

/// Seed of [`DemoOptions::default`].
pub const DEFAULT_SEED: u64 = 20_251_201;

/// The CMS Hospital General Information file, as shipped in `data/cms/`.
pub const HOSPITALS_CSV: &str = include_str!("../../../data/cms/Hospital_General_Information.csv");
/// The CMS FY2025 Hospital Readmissions Reduction Program file, as shipped in `data/cms/`.
pub const READMISSIONS_CSV: &str =
    include_str!("../../../data/cms/Hospital_Readmissions_Reduction_Program_Hospital.csv");

/// Settings of one generation run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoOptions {
    /// Seed of every random draw.
    pub seed: u64,
    /// Number of hospitals to keep, a subset chosen by the seed. `None` keeps all of them.
    pub max_hospitals: Option<usize>,
    /// End of the simulated history: every timestamp is at or before it.
    pub as_of: DateTime<Utc>,
    /// Leaves every CMS value of a hospital account null except `CMS_Certification_Number__c`,
    /// as in an org whose accounts contain only the CCN. The history and outcomes do not change.
    pub ccn_only: bool,
}

impl Default for DemoOptions {
    /// Returns seed [`DEFAULT_SEED`], all hospitals, `as_of` 2026-12-01T00:00:00Z and the full
    /// CMS values on accounts.
    fn default() -> DemoOptions {
        DemoOptions {
            seed: DEFAULT_SEED,
            max_hospitals: None,
            as_of: Utc
                .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
                .single()
                .unwrap_or(DateTime::UNIX_EPOCH),
            ccn_only: false,
        }
    }
}

/// A generated org.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoOrg {
    /// Records by object name (`Account`, `Contact`, ...), each list sorted by `Id`, which is
    /// also `CreatedDate` order.
    pub records: BTreeMap<String, Vec<RecordMap>>,
    /// True P(won) from the ground-truth formula, by opportunity `Id`, for open and closed
    /// opportunities alike.
    pub win_probability: BTreeMap<String, f64>,
    /// True P(convert) from the ground-truth formula, by lead `Id`, for every lead. Leads of
    /// surgery centers and clinics have no hospital, never convert, and get 0.
    pub conversion_probability: BTreeMap<String, f64>,
    /// End of the simulated history.
    pub as_of: DateTime<Utc>,
}

/// Generates the demo org from the CMS files embedded in this crate.
pub fn generate(options: &DemoOptions) -> Result<DemoOrg, DemoError> {
    generate_from(HOSPITALS_CSV, READMISSIONS_CSV, options)
}

/// Generates the demo org from the text of the two CMS files.
///
/// Returns [`DemoError::InvalidCsv`] naming the file, line, column and value when a file has
/// a missing column, a broken row or a value that does not parse.
pub fn generate_from(
    hospitals_csv: &str,
    readmissions_csv: &str,
    options: &DemoOptions,
) -> Result<DemoOrg, DemoError> {
    if options.max_hospitals == Some(0) {
        return Err(DemoError::InvalidOption {
            option: "max_hospitals",
            value: "0".to_string(),
            problem: "keep at least 1 hospital, or use None for all of them".to_string(),
        });
    }
    // The history reaches 8 years before `as_of` (the oldest users), so date arithmetic near
    // chrono's limits could overflow. Any realistic date is far inside this range.
    if !(1900..=9999).contains(&options.as_of.year()) {
        return Err(DemoError::InvalidOption {
            option: "as_of",
            value: options.as_of.to_rfc3339(),
            problem: "use a date between the years 1900 and 9999".to_string(),
        });
    }
    let mut hospitals = cms::parse(hospitals_csv, readmissions_csv)?;
    if let Some(limit) = options.max_hospitals {
        hospitals = subset(hospitals, limit, options.seed);
    }
    let clock = sim::Clock::new(options.as_of);
    let org = sim::simulate(hospitals, options.seed, &clock);
    let output = output::records(&org, options.ccn_only);
    Ok(DemoOrg {
        records: output.records,
        win_probability: output.win_probability,
        conversion_probability: output.conversion_probability,
        as_of: options.as_of,
    })
}

/// Keeps `limit` hospitals chosen by a seeded hash of their CCN, in file order.
fn subset(hospitals: Vec<cms::Hospital>, limit: usize, seed: u64) -> Vec<cms::Hospital> {
    if hospitals.len() <= limit {
        return hospitals;
    }
    let mut ranked: Vec<(u64, usize)> = hospitals
        .iter()
        .enumerate()
        .map(|(index, hospital)| {
            (
                rng::Rng::stream(seed, "subset", sim::ccn_key(&hospital.ccn)).next_u64(),
                index,
            )
        })
        .collect();
    ranked.sort_unstable();
    let mut keep = vec![false; hospitals.len()];
    for &(_, index) in ranked.iter().take(limit) {
        keep[index] = true;
    }
    hospitals
        .into_iter()
        .zip(keep)
        .filter(|(_, kept)| *kept)
        .map(|(hospital, _)| hospital)
        .collect()
}
