//! The field report of `leadscore check`: for every field the configuration reads or writes,
//! whether the integration user can see it, read it and (for write-back fields) write it.
//!
//! The report comes from the CRM's describe (Salesforce) or properties API (HubSpot) as the
//! integration user sees them. Both leave out a field the user has no read access to, so such
//! a field is reported as missing.

use std::collections::BTreeMap;

use leadscore_connector::{Connector, ConnectorError};
use serde::Serialize;

use crate::config::{Config, Level};
use crate::pipeline::{PipelineError, Schemas};

/// The role of a field in leadscore, which decides the access it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldUse {
    /// Written with each score: score, tier, reasons, model version, time scored, sales-ready.
    WriteBack,
    /// Filled in by reps when a score looks wrong, and read by leadscore.
    Feedback,
    /// Pulled: features, enrichment keys, the territory field and the fields every pull needs.
    Read,
}

impl FieldUse {
    fn label(self) -> &'static str {
        match self {
            FieldUse::WriteBack => "write-back",
            FieldUse::Feedback => "feedback",
            FieldUse::Read => "read",
        }
    }
}

/// The integration user's access to one field, named as the configuration names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldStatus {
    pub object: String,
    pub field: String,
    #[serde(rename = "use")]
    pub field_use: FieldUse,
    /// Whether the describe lists the field. A field hidden from the user is not listed.
    pub exists: bool,
    pub readable: bool,
    /// Whether the user can write the field; `None` for fields leadscore only reads.
    pub writable: Option<bool>,
}

/// Builds the report for every pulled, feedback and write-back field of the configuration,
/// in object then field order. An object whose describe the CRM rejects reports its fields
/// missing. Failed authentication, an unreachable CRM or a spent API allowance is returned as
/// an error, because it would fail every object the same way.
pub async fn build<C: Connector>(
    connector: &C,
    config: &Config,
) -> Result<Vec<FieldStatus>, PipelineError> {
    let mut uses: BTreeMap<(String, String), FieldUse> = BTreeMap::new();
    let mut add = |object: &str, field: &str, field_use: FieldUse| {
        let entry = uses
            .entry((object.to_string(), field.to_string()))
            .or_insert(field_use);
        // A field with several uses is reported under the one that needs the most access.
        *entry = (*entry).min(field_use);
    };
    for spec in crate::pipeline::pull_specs(config) {
        for field in &spec.fields {
            add(&spec.object, field, FieldUse::Read);
        }
    }
    let feedback = crate::feedback::FeedbackFields::of(config);
    for &level in &config.scoring.levels {
        let object = level.object();
        let writeback = config.writeback_for(level);
        for field in [
            &writeback.score_field,
            &writeback.tier_field,
            &writeback.reasons_field,
            &writeback.model_version_field,
            &writeback.scored_at_field,
        ] {
            add(object, field, FieldUse::WriteBack);
        }
        if level == Level::Lead && config.lead.sales_ready_score.is_some() {
            add(object, &config.lead.sales_ready_field, FieldUse::WriteBack);
        }
        add(object, &feedback.flag, FieldUse::Feedback);
        add(object, &feedback.comment, FieldUse::Feedback);
    }

    let mut schemas = Schemas::new(connector);
    let mut report = Vec::with_capacity(uses.len());
    // Objects whose describe the CRM rejected, described once rather than once per field.
    let mut hidden: Vec<String> = Vec::new();
    for ((object, field), field_use) in uses {
        let found = if hidden.contains(&object) {
            None
        } else {
            match schemas.get(&object).await {
                Ok(_) => schemas.resolve(&object, &field).await?.ok(),
                Err(error @ (ConnectorError::Rejected { .. } | ConnectorError::Payload(_))) => {
                    tracing::debug!(%object, %error, "describe failed; the object's fields are reported missing");
                    hidden.push(object.clone());
                    None
                }
                // Failed credentials, an unreachable CRM or a spent API allowance fail every
                // object alike, so the report stops instead of retrying once per field.
                Err(error) => return Err(error.into()),
            }
        };
        let exists = found.is_some();
        let writable = (field_use == FieldUse::WriteBack)
            .then(|| found.as_ref().is_some_and(|schema| schema.updateable));
        report.push(FieldStatus {
            object,
            field,
            field_use,
            exists,
            // NOTE: describe lists only fields the user can read, so a field that exists but
            // is hidden by field-level security reads as missing and unreadable.
            readable: exists,
            writable,
        });
    }
    Ok(report)
}

/// Formats the report as a text table with a header row.
pub fn table(report: &[FieldStatus]) -> String {
    let yes_no = |value: bool| if value { "yes" } else { "no" };
    let rows: Vec<[String; 6]> = report
        .iter()
        .map(|status| {
            [
                status.object.clone(),
                status.field.clone(),
                status.field_use.label().to_string(),
                yes_no(status.exists).to_string(),
                yes_no(status.readable).to_string(),
                status.writable.map_or("-", yes_no).to_string(),
            ]
        })
        .collect();
    let header = ["Object", "Field", "Use", "Exists", "Read", "Write"].map(str::to_string);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(
        field: &str,
        field_use: FieldUse,
        exists: bool,
        writable: Option<bool>,
    ) -> FieldStatus {
        FieldStatus {
            object: "Account".to_string(),
            field: field.to_string(),
            field_use,
            exists,
            readable: exists,
            writable,
        }
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(&[
            status("LS_Score__c", FieldUse::WriteBack, true, Some(false)),
            status("Name", FieldUse::Read, false, None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("Object   Field        Use"), "{text}");
        assert_eq!(
            lines[1],
            "Account  LS_Score__c  write-back  yes     yes   no"
        );
        assert_eq!(
            lines[2],
            "Account  Name         read        no      no    -"
        );
    }

    #[test]
    fn write_back_sorts_before_read() {
        assert!(FieldUse::WriteBack < FieldUse::Feedback);
        assert!(FieldUse::Feedback < FieldUse::Read);
    }
}
