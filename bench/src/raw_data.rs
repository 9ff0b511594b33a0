//! Synthetic data sets stored as raw little-endian `f64` files, so that the Python scripts in
//! `bench/python/` read exactly the rows leadscore trains on.
//!
//! A data directory contains `manifest.json` and two files per set: `<set>.features.f64` (the
//! rows one after another, `features` values each, NaN for a missing value) and
//! `<set>.labels.f64` (one 0.0 or 1.0 per row). numpy reads them with
//! `np.fromfile(path, dtype="<f8")`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::Dataset;
use crate::synthetic;

/// File that lists the sets of a data directory.
pub const MANIFEST: &str = "manifest.json";

/// Contents of `manifest.json`.
#[derive(Serialize, Deserialize)]
pub struct Manifest {
    /// Values per row.
    pub features: usize,
    pub feature_names: Vec<String>,
    /// Byte layout of every data file, for readers in other languages.
    pub layout: String,
    pub sets: Vec<SetInfo>,
}

/// One stored set of rows.
#[derive(Serialize, Deserialize, Clone)]
pub struct SetInfo {
    pub name: String,
    pub rows: usize,
    /// Seed passed to the synthetic generator.
    pub seed: u64,
    pub features_file: String,
    pub labels_file: String,
}

/// Generates each `(name, rows, seed)` set with [`synthetic::generate`] and writes it to `dir`.
pub fn export(dir: &Path, sets: &[(&str, usize, u64)]) -> Result<Manifest, String> {
    fs::create_dir_all(dir)
        .map_err(|e| format!("failed to create data directory {}: {e}", dir.display()))?;
    let mut infos = Vec::with_capacity(sets.len());
    let mut feature_names = Vec::new();
    for &(name, rows, seed) in sets {
        let data = synthetic::generate(rows, seed);
        let info = SetInfo {
            name: name.to_string(),
            rows,
            seed,
            features_file: format!("{name}.features.f64"),
            labels_file: format!("{name}.labels.f64"),
        };
        write_values(
            &dir.join(&info.features_file),
            data.rows.iter().flatten().copied(),
        )?;
        write_values(&dir.join(&info.labels_file), data.labels.iter().copied())?;
        feature_names = data.feature_names;
        infos.push(info);
    }
    let manifest = Manifest {
        features: synthetic::FEATURES,
        feature_names,
        layout: "little-endian f64, row-major, NaN = missing".to_string(),
        sets: infos,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    fs::write(dir.join(MANIFEST), text)
        .map_err(|e| format!("failed to write {}: {e}", dir.join(MANIFEST).display()))?;
    Ok(manifest)
}

fn write_values(path: &Path, values: impl Iterator<Item = f64>) -> Result<(), String> {
    let file =
        File::create(path).map_err(|e| format!("failed to create {}: {e}", path.display()))?;
    let mut writer = BufWriter::new(file);
    for value in values {
        writer
            .write_all(&value.to_le_bytes())
            .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
    }
    writer
        .flush()
        .map_err(|e| format!("failed to write {}: {e}", path.display()))
}

/// Reads the set `name` from a directory written by [`export`].
pub fn load(dir: &Path, name: &str) -> Result<Dataset, String> {
    let manifest_path = dir.join(MANIFEST);
    let text = fs::read_to_string(&manifest_path).map_err(|e| {
        format!(
            "failed to read {}: {e}; write the data first with `leadscore-bench export-synthetic --out {}`",
            manifest_path.display(),
            dir.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("invalid manifest {}: {e}", manifest_path.display()))?;
    let Some(info) = manifest.sets.iter().find(|set| set.name == name) else {
        let names: Vec<&str> = manifest.sets.iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "set `{name}` not found in {}; it contains {names:?}",
            manifest_path.display()
        ));
    };
    if manifest.features == 0 || manifest.feature_names.len() != manifest.features {
        return Err(format!(
            "invalid manifest {}: {} features but {} feature names",
            manifest_path.display(),
            manifest.features,
            manifest.feature_names.len()
        ));
    }

    let value_count = info.rows.checked_mul(manifest.features).ok_or_else(|| {
        format!(
            "invalid manifest {}: {} rows of {} features overflow",
            manifest_path.display(),
            info.rows,
            manifest.features
        )
    })?;
    let values = read_values(&dir.join(&info.features_file), value_count)?;
    let labels = read_values(&dir.join(&info.labels_file), info.rows)?;
    let rows = values
        .chunks_exact(manifest.features)
        .map(<[f64]>::to_vec)
        .collect();
    Ok(Dataset {
        feature_names: manifest.feature_names,
        rows,
        labels,
    })
}

fn read_values(path: &Path, expected: usize) -> Result<Vec<f64>, String> {
    let bytes = fs::read(path).map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    if bytes.len() as u128 != expected as u128 * 8 {
        return Err(format!(
            "{} has {} bytes, expected {} ({expected} f64 values); export the data again",
            path.display(),
            bytes.len(),
            expected as u128 * 8
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            f64::from_le_bytes(word)
        })
        .collect())
}
