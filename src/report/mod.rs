//! The model card: `leadscore report model` writes a stored model's report as JSON and as one
//! self-contained HTML page with inline SVG charts.

mod card;
mod charts;
mod html;
pub mod outcome_charts;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::store::{Store, StoreError, StoredModel};

pub use card::ModelCard;
pub use html::escape;

/// File name of the page written by [`write_model_card`].
pub const HTML_FILE: &str = "model-card.html";
/// File name of the JSON written by [`write_model_card`].
pub const JSON_FILE: &str = "model-card.json";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the store at {path} has no trained model; run `leadscore train` first")]
    NoModel { path: PathBuf },
    #[error("model version {version:?} not found in the store at {path}; `leadscore models list` shows the stored versions")]
    VersionNotFound { version: String, path: PathBuf },
    #[error("cannot draw the {chart} chart: {message}")]
    Chart {
        chart: &'static str,
        message: String,
    },
    #[error("cannot write {path}: {source}; check that --out names a writable directory")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Paths of the two files written by [`write_model_card`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardPaths {
    pub html: PathBuf,
    pub json: PathBuf,
}

/// Loads the live model, or the stored model named `version`, live or not.
pub fn load_model(store: &Store, version: Option<&str>) -> Result<StoredModel, ReportError> {
    let path = || store.path().to_path_buf();
    match version {
        None => store
            .current_model()?
            .ok_or_else(|| ReportError::NoModel { path: path() }),
        Some(version) => store
            .model(version)?
            .ok_or_else(|| ReportError::VersionNotFound {
                version: version.to_string(),
                path: path(),
            }),
    }
}

/// Builds the card's JSON: the model's stored report with `model_version` added. A report
/// that is not a JSON object is kept under `report`.
pub fn card_json(model: &StoredModel) -> Value {
    let mut card = match &model.report {
        Value::Object(map) => map.clone(),
        Value::Null => serde_json::Map::new(),
        other => {
            let mut map = serde_json::Map::new();
            map.insert("report".to_string(), other.clone());
            map
        }
    };
    card.insert(
        "model_version".to_string(),
        Value::String(model.version.clone()),
    );
    Value::Object(card)
}

/// Renders the card as one self-contained HTML page.
pub fn render_html(model: &StoredModel) -> Result<String, ReportError> {
    let card = ModelCard::from_report(&model.version, &model.report);
    html::page(&card)
}

/// Writes `model-card.html` and `model-card.json` into `out_dir`, creating the directory if
/// needed, and returns their paths.
pub fn write_model_card(model: &StoredModel, out_dir: &Path) -> Result<CardPaths, ReportError> {
    let page = render_html(model)?;
    // Serialising a serde_json::Value cannot fail, because its map keys are strings.
    let json = serde_json::to_string_pretty(&card_json(model)).unwrap_or_default();
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let paths = CardPaths {
        html: out_dir.join(HTML_FILE),
        json: out_dir.join(JSON_FILE),
    };
    write_file(&paths.html, page.as_bytes())?;
    write_file(&paths.json, json.as_bytes())?;
    Ok(paths)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}
