//! Fingerprints that let the score step reuse a record's reasons from the previous run when
//! they cannot have changed.
//!
//! A record's reasons are made of its Shapley contributions, which pick and sign them, and
//! the phrase of each feature. The contributions depend on the model and the feature row:
//! for a tree-only model only on the side of each split the row falls on
//! ([`SplitBins`]), for the other kinds on the exact values. The phrases depend on the row
//! and the raw field values they quote. The fingerprint hashes all of these with the model
//! version and the reason counts, so equal fingerprints mean equal reasons.

use sha2::{Digest, Sha256};

use crate::features::{FeatureSpace, History, Target};
use crate::model::{SplitBins, TrainedModel};

/// Name of the fingerprint layout. Change it whenever the reasons are computed differently
/// from the same inputs (the ordering, the cut-off, the dedup), so that rows stored by an
/// earlier build are rescored instead of reused.
const SCHEME: &str = "leadscore-reasons-fingerprint-1";

/// Hex digits kept of the SHA-256 digest: 128 bits, so an accidental match between two
/// different inputs is not a practical concern even over billions of rows.
const KEY_HEX_DIGITS: usize = 32;

/// Computes the reasons fingerprint of one row; built once per score run.
pub(crate) struct ReasonsFingerprint {
    /// The hash state after the inputs shared by every row of the run.
    prefix: Sha256,
    /// The trees' split values, or `None` when the model reads exact values.
    bins: Option<SplitBins>,
    /// The first column of each feature, which its phrase reads.
    first_columns: Vec<usize>,
}

impl ReasonsFingerprint {
    /// Starts the fingerprints of one run: `positive` and `negative` are the maximum numbers
    /// of raising and lowering reasons passed to [`FeatureSpace::reasons`].
    pub(crate) fn new(
        model_version: &str,
        model: &TrainedModel,
        space: &FeatureSpace,
        positive: usize,
        negative: usize,
    ) -> ReasonsFingerprint {
        let mut prefix = Sha256::new();
        write_text(&mut prefix, SCHEME);
        write_text(&mut prefix, env!("CARGO_PKG_VERSION"));
        write_text(&mut prefix, model_version);
        prefix.update((positive as u64).to_le_bytes());
        prefix.update((negative as u64).to_le_bytes());
        ReasonsFingerprint {
            prefix,
            bins: model.split_bins(),
            first_columns: space.first_columns(),
        }
    }

    /// Returns the fingerprint of the reasons of `target`'s feature row `row`. `space` is the
    /// one the fingerprints were started with.
    pub(crate) fn key(
        &self,
        space: &FeatureSpace,
        history: &History,
        target: Target<'_>,
        row: &[f64],
    ) -> String {
        let mut hash = self.prefix.clone();
        hash.update((row.len() as u64).to_le_bytes());
        match &self.bins {
            Some(bins) => {
                hash.update(b"bins");
                for bin in bins.bins(row) {
                    hash.update(bin.to_le_bytes());
                }
            }
            None => {
                hash.update(b"exact");
                for value in row {
                    hash.update(value.to_bits().to_le_bytes());
                }
            }
        }
        for phrase in space.phrases_of(history, target, row, &self.first_columns) {
            write_text(&mut hash, &phrase);
        }
        hex_key(hash)
    }
}

/// Hashes `text` with its length first, so that two lists of strings hash alike only when
/// they are equal.
pub(crate) fn write_text(hash: &mut Sha256, text: &str) {
    hash.update((text.len() as u64).to_le_bytes());
    hash.update(text.as_bytes());
}

/// Returns the first [`KEY_HEX_DIGITS`] hex digits of the digest of `hash`.
pub(crate) fn hex_key(hash: Sha256) -> String {
    let digest = hash.finalize();
    let mut key = String::with_capacity(KEY_HEX_DIGITS);
    for byte in &digest[..KEY_HEX_DIGITS / 2] {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}
