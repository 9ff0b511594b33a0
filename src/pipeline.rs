//! The steps that talk to the CRM before training: `check` (credentials and mapping against
//! the org's metadata) and `pull` (incremental, page by page into the store).

use std::collections::{BTreeMap, BTreeSet};

use leadscore_connector::{
    ApiUsage, Connector, ConnectorError, Cursor, FieldKind, FieldSchema, ObjectSchema, PullSpec,
};
use serde::Serialize;

use crate::config::enrichment::EnrichmentObject;
use crate::config::{AttributeFeature, AttributeKind, Config, Level, WritebackConfig};
use crate::features::fields;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the configuration does not match the org:\n{}", .0.join("\n"))]
    Mapping(Vec<String>),
    #[error("{0}")]
    Model(String),
    /// A file or setting the configuration names cannot be used (exit code 2).
    #[error("{0}")]
    Config(String),
    /// `check --fix` could not create a field or grant access to it.
    #[error("{0}")]
    Setup(String),
}

/// Returns the objects to pull, in pull order, with the fields the pipeline needs.
pub fn pull_specs(config: &Config) -> Vec<PullSpec> {
    // queryAll, because Salesforce's plain query skips archived tasks and events (activities
    // older than about a year) and deleted rows; deleted rows then leave the store.
    let spec = |object: &str, fields: &[&str]| PullSpec {
        object: object.to_string(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        include_deleted: true,
    };
    // MasterRecordId names the survivor of a merged-away Account, Contact or Lead.
    let mut account = spec(
        fields::ACCOUNT,
        &[
            "Name",
            "OwnerId",
            "ParentId",
            "CreatedDate",
            "MasterRecordId",
        ],
    );
    // The write-back fields are pulled too, so a push compares against what the CRM holds.
    let add = |spec: &mut PullSpec, fields: &mut dyn Iterator<Item = &String>| {
        for field in fields {
            if !spec.fields.contains(field) {
                spec.fields.push(field.clone());
            }
        }
    };
    add(
        &mut account,
        &mut config
            .features
            .attributes
            .iter()
            .map(|a| &a.field)
            .chain(writeback_fields(&config.writeback)),
    );
    // The field whose values form the reps' territories in the priority lists.
    add(&mut account, &mut config.territory.field.iter());
    let mut contact = spec(
        fields::CONTACT,
        &["AccountId", "OwnerId", "CreatedDate", "MasterRecordId"],
    );
    contact.fields.push(config.features.role_field.clone());
    for table in &config.enrichment {
        let target = match table.object {
            EnrichmentObject::Account => &mut account,
            EnrichmentObject::Contact => &mut contact,
        };
        add(target, &mut table.record_fields().iter());
    }
    if config.scoring.levels.contains(&Level::Contact) {
        add(&mut contact, &mut ["Name".to_string()].iter());
        add(
            &mut contact,
            &mut config
                .features
                .contact_attributes
                .iter()
                .map(|a| &a.field)
                .chain(writeback_fields(&config.contact.writeback)),
        );
    }
    let mut specs = vec![
        spec(fields::USER, &["Name", "Email", "IsActive"]),
        account,
        contact,
        spec(
            fields::OPPORTUNITY,
            &[
                "AccountId",
                "OwnerId",
                "StageName",
                "IsClosed",
                "IsWon",
                "CloseDate",
                "CreatedDate",
                "Amount",
            ],
        ),
        spec(
            fields::CONTACT_ROLE,
            &["OpportunityId", "ContactId", "Role", "CreatedDate"],
        ),
        spec(
            fields::TASK,
            // Subject marks leadscore's own alert tasks, which are not engagement.
            &[
                "WhoId",
                "WhatId",
                "Type",
                "ActivityDate",
                "CreatedDate",
                "Subject",
                // The rep who logged it, for the outcomes report's activity shares.
                "OwnerId",
            ],
        ),
        spec(
            fields::EVENT,
            &[
                "WhoId",
                "WhatId",
                "Type",
                "StartDateTime",
                "CreatedDate",
                "OwnerId",
            ],
        ),
    ];
    if config.scoring.levels.contains(&Level::Lead) {
        let lead_config = &config.lead;
        let mut lead = spec(
            fields::LEAD,
            &[
                "Name",
                "OwnerId",
                "CreatedDate",
                "IsConverted",
                "ConvertedDate",
                "ConvertedAccountId",
                "ConvertedContactId",
                "ConvertedOpportunityId",
                "MasterRecordId",
            ],
        );
        let mut extra: Vec<String> = vec![
            lead_config.company_field.clone(),
            lead_config.state_field.clone(),
        ];
        extra.extend(lead_config.account_field.clone());
        if lead_config.sales_ready_score.is_some() {
            extra.push(lead_config.sales_ready_field.clone());
        }
        add(
            &mut lead,
            &mut extra
                .iter()
                .chain(config.features.lead_attributes.iter().map(|a| &a.field))
                .chain(writeback_fields(&lead_config.writeback)),
        );
        specs.push(lead);
    }
    specs
}

/// Returns the write-back fields whose CRM values a push compares against.
fn writeback_fields(writeback: &WritebackConfig) -> impl Iterator<Item = &String> {
    [
        &writeback.score_field,
        &writeback.tier_field,
        &writeback.reasons_field,
        &writeback.model_version_field,
    ]
    .into_iter()
}

/// Names the CRM a store is filled from: the login URL, which identifies the org or
/// sandbox the connected app signs in to.
pub fn source_name(config: &Config) -> String {
    config.connector.url().to_string()
}

/// One object `check` verified, with the number of its fields the pipeline reads.
#[derive(Debug, Serialize)]
pub struct CheckedObject {
    pub object: String,
    pub fields: usize,
}

/// Result of `check`: API usage, the objects verified and the reasons field length.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub api_usage: ApiUsage,
    pub objects: Vec<CheckedObject>,
    /// Maximum length of each level's reasons field, used to truncate reasons.
    pub reasons_max_len: BTreeMap<Level, u32>,
    /// Problems with the rep feedback fields (`[feedback]`), which do not fail the check:
    /// missing fields with what to create, or picklist values reps cannot choose.
    pub feedback: Vec<String>,
}

/// Describes every object the configuration uses, caching each describe once.
pub(crate) struct Schemas<'c, C> {
    connector: &'c C,
    cache: BTreeMap<String, ObjectSchema>,
}

impl<'c, C: Connector> Schemas<'c, C> {
    pub(crate) fn new(connector: &'c C) -> Schemas<'c, C> {
        Schemas {
            connector,
            cache: BTreeMap::new(),
        }
    }

    pub(crate) async fn get(&mut self, object: &str) -> Result<&ObjectSchema, ConnectorError> {
        if !self.cache.contains_key(object) {
            let schema = self.connector.describe(object).await?;
            self.cache.insert(object.to_string(), schema);
        }
        Ok(&self.cache[object])
    }

    /// Resolves a possibly dotted field (`Owner.IsActive`) to the field it names, or to a
    /// problem when the org does not have it under exactly that name.
    pub(crate) async fn resolve(
        &mut self,
        object: &str,
        path: &str,
    ) -> Result<Result<FieldSchema, String>, ConnectorError> {
        let mut current = object.to_string();
        let parts: Vec<&str> = path.split('.').collect();
        for (index, part) in parts.iter().enumerate() {
            let schema = self.get(&current).await?;
            if index + 1 == parts.len() {
                return Ok(match schema.field(part) {
                    // Records carry the API name's case, so a mapping must use it too.
                    Some(field) if field.name != *part => Err(format!(
                        "{current} field {part:?} (in {path:?}) must be written with its API name's case: {:?}",
                        field.name
                    )),
                    Some(field) => Ok(field.clone()),
                    None => Err(missing_field_message(schema, part, path)),
                });
            }
            let reference = schema.fields.iter().find(|f| {
                f.relationship_name
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(part))
            });
            match reference.and_then(|f| f.reference_to.first()) {
                Some(target) => current = target.clone(),
                None => {
                    return Ok(Err(format!(
                        "{current} has no relationship named {part:?} (in {path:?})"
                    )))
                }
            }
        }
        Ok(Err(format!("{path:?} names no field")))
    }
}

/// Returns a problem when an attribute's configured kind cannot read the field's type.
fn attribute_kind_problem(attribute: &AttributeFeature, field: &FieldSchema) -> Option<String> {
    let fits = match attribute.kind {
        AttributeKind::Number => field.kind == FieldKind::Number,
        AttributeKind::Flag => field.kind == FieldKind::Boolean,
        AttributeKind::Category => matches!(
            field.kind,
            FieldKind::Text | FieldKind::Picklist | FieldKind::Number | FieldKind::Boolean
        ),
        AttributeKind::Present => true,
    };
    (!fits).then(|| {
        format!(
            "[features] {}: field {:?} is a {:?} field, which kind = {:?} cannot read; use kind = \"{}\"",
            attribute.name,
            attribute.field,
            field.kind,
            attribute.kind,
            match field.kind {
                FieldKind::Number => "number",
                FieldKind::Boolean => "flag",
                FieldKind::Text | FieldKind::Picklist => "category",
                _ => "present",
            }
        )
    })
}

fn missing_field_message(schema: &ObjectSchema, field: &str, path: &str) -> String {
    let lower = field.to_ascii_lowercase();
    let stem: String = lower.chars().take(4).collect();
    let similar: Vec<&str> = schema
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .filter(|name| name.to_ascii_lowercase().contains(&stem))
        .take(5)
        .collect();
    let hint = if similar.is_empty() {
        String::new()
    } else {
        format!("; similar fields: {}", similar.join(", "))
    };
    let within = if path == field {
        String::new()
    } else {
        format!(" (in {path:?})")
    };
    format!(
        "{} has no field {field:?}{within}; fix the field name in the config or create the field{hint}",
        schema.name
    )
}

/// Authenticates and verifies that every configured field exists and every write-back field
/// is updateable. All problems are reported together.
/// Checks the write-back fields of one object: present, spelt with their API case, updateable,
/// of a fitting kind, and the tier labels allowed by a restricted picklist. Returns the
/// reasons field's length.
fn check_writeback(
    schema: &ObjectSchema,
    writeback: &WritebackConfig,
    section: &str,
    tiers: &crate::config::TierConfig,
    fix_hint: &str,
    problems: &mut Vec<String>,
) -> Option<u32> {
    use FieldKind::{DateTime, LongText, Number, Picklist, Text};
    let object = &schema.name;
    let expected: [(&str, &String, &[FieldKind]); 5] = [
        ("score_field", &writeback.score_field, &[Number]),
        ("tier_field", &writeback.tier_field, &[Picklist, Text]),
        ("reasons_field", &writeback.reasons_field, &[LongText, Text]),
        (
            "model_version_field",
            &writeback.model_version_field,
            &[Text, LongText],
        ),
        ("scored_at_field", &writeback.scored_at_field, &[DateTime]),
    ];
    let mut reasons_max_len = None;
    for (key, name, kinds) in expected {
        let Some(field) = schema.field(name) else {
            problems.push(format!(
                "{section} {key}: {object} has no field {name:?}; create the custom field or fix the name{fix_hint}"
            ));
            continue;
        };
        if field.name != *name {
            problems.push(format!(
                "{section} {key}: write the field with its API name's case: {:?}",
                field.name
            ));
        }
        if !field.updateable {
            problems.push(format!(
                "{section} {key}: {object}.{name} is not updateable by this user; grant field-level edit access"
            ));
        }
        let kind_ok = kinds.contains(&field.kind);
        let kind = kinds[0];
        if !kind_ok {
            problems.push(format!(
                "{section} {key}: {object}.{name} is a {:?} field, expected {kind:?}",
                field.kind
            ));
        }
        if key == "reasons_field" {
            reasons_max_len = field.length;
        }
        if key == "tier_field" && field.restricted_picklist {
            for label in &tiers.labels {
                if !field.picklist_values.contains(label) {
                    problems.push(format!(
                        "[tiers] labels: {label:?} is not an active value of the restricted picklist {object}.{name} (active values: {}); change the label or add the value",
                        field.picklist_values.join(", ")
                    ));
                }
            }
        }
    }
    reasons_max_len
}

pub async fn check<C: Connector>(
    connector: &C,
    config: &Config,
) -> Result<CheckReport, PipelineError> {
    let api_usage = connector.check().await?;
    let mut schemas = Schemas {
        connector,
        cache: BTreeMap::new(),
    };
    let mut problems = Vec::new();
    let mut objects = Vec::new();
    // A level whose object the user cannot see is one problem, not one per field.
    let mut unavailable = Vec::new();
    for &level in &config.scoring.levels {
        let object = level.object();
        if level == Level::Account {
            continue;
        }
        if let Err(err) = schemas.get(object).await {
            problems.push(format!(
                "[scoring] levels: {level} scoring needs the {object} object, which the org does not offer this user ({err}); remove {:?} from levels or grant access to {object}",
                level.name()
            ));
            unavailable.push(object);
        }
    }
    // Write-back fields get their own, fuller check below; they are not reported twice.
    let mut written: Vec<(&str, &String)> = config
        .scoring
        .levels
        .iter()
        .flat_map(|level| {
            let fields = config.writeback_for(*level);
            writeback_fields(fields)
                .chain([&fields.scored_at_field])
                .map(move |field| (level.object(), field))
        })
        .collect();
    if config.scoring.levels.contains(&Level::Lead) && config.lead.sales_ready_score.is_some() {
        written.push((fields::LEAD, &config.lead.sales_ready_field));
    }
    let droppable = crate::sync::droppable_fields(config);
    let drop_missing =
        config.sync.on_missing_field == crate::config::sync::MissingFieldAction::Drop;
    for spec in pull_specs(config) {
        if unavailable.contains(&spec.object.as_str()) {
            continue;
        }
        for field in &spec.fields {
            if written.contains(&(spec.object.as_str(), field)) {
                continue;
            }
            if let Err(problem) = schemas.resolve(&spec.object, field).await? {
                let may_drop = droppable
                    .get(spec.object.as_str())
                    .is_some_and(|list| list.contains(field));
                if drop_missing && may_drop {
                    tracing::warn!(object = %spec.object, %field, %problem, "a mapped field is missing or hidden from this user; [sync] on_missing_field = \"drop\" leaves its feature out");
                } else {
                    problems.push(problem);
                }
            }
        }
        objects.push(CheckedObject {
            object: spec.object.clone(),
            fields: spec.fields.len(),
        });
    }
    for (object, attributes) in [
        (fields::ACCOUNT, &config.features.attributes),
        (fields::CONTACT, &config.features.contact_attributes),
        (fields::LEAD, &config.features.lead_attributes),
    ] {
        let level_off = match object {
            fields::LEAD => !config.scoring.levels.contains(&Level::Lead),
            fields::CONTACT => !config.scoring.levels.contains(&Level::Contact),
            _ => false,
        };
        if level_off || unavailable.contains(&object) {
            continue;
        }
        for attribute in attributes {
            if let Ok(field) = schemas.resolve(object, &attribute.field).await? {
                problems.extend(attribute_kind_problem(attribute, &field));
            }
        }
    }

    // In HubSpot a lead is a contact: the two levels must write to different properties, or
    // each would overwrite the other's scores on the same records.
    if matches!(
        config.connector,
        crate::config::ConnectorSettings::HubSpot(_)
    ) && config.scoring.levels.contains(&Level::Contact)
        && config.scoring.levels.contains(&Level::Lead)
    {
        let map = crate::run::FieldMap::new(&config.field_map);
        let contact: Vec<String> = writeback_fields(&config.contact.writeback)
            .chain([&config.contact.writeback.scored_at_field])
            .map(|name| map.crm(fields::CONTACT, name))
            .collect();
        let shared: Vec<String> = writeback_fields(&config.lead.writeback)
            .chain([&config.lead.writeback.scored_at_field])
            .map(|name| map.crm(fields::LEAD, name))
            .filter(|name| contact.contains(name))
            .collect();
        if !shared.is_empty() {
            problems.push(format!(
                "[lead.writeback]: in HubSpot leads are contacts, so the lead level cannot write to the contact level's properties ({}); give [lead.writeback] names of its own, such as score_field = \"leadscore_lead_score\", or with several connectors map them for Lead alone: fields = {{ \"Lead.LS_Score__c\" = \"leadscore_lead_score\" }}",
                shared.join(", ")
            ));
        }
    }

    // Enrichment files are read here too, so a missing file or column stops `check`, not a
    // later `train`.
    for table in &config.enrichment {
        if let Err(err) = crate::enrichment::load(table) {
            problems.push(format!("[[enrichment]] {}: {err}", table.name));
        }
    }

    let mut reasons_max_len = BTreeMap::new();
    for &level in &config.scoring.levels {
        let object = level.object();
        if unavailable.contains(&object) {
            continue;
        }
        let schema = schemas.get(object).await?.clone();
        let section = match level {
            Level::Account => "[writeback]".to_string(),
            other => format!("[{other}.writeback]"),
        };
        let fix_hint = match config.connector {
            crate::config::ConnectorSettings::HubSpot(_) => {
                " (`leadscore check --fix` creates the missing properties)"
            }
            crate::config::ConnectorSettings::Salesforce(_) => {
                " (`leadscore check --fix` creates the missing custom fields)"
            }
        };
        let max_len = check_writeback(
            &schema,
            config.writeback_for(level),
            &section,
            &config.tiers,
            fix_hint,
            &mut problems,
        );
        if let Some(max_len) = max_len {
            reasons_max_len.insert(level, max_len);
        }
        if level == Level::Lead && config.lead.sales_ready_score.is_some() {
            let name = &config.lead.sales_ready_field;
            match schema.field(name) {
                None => problems.push(format!(
                    "[lead] sales_ready_field: Lead has no field {name:?}; create a checkbox field or fix the name{fix_hint}"
                )),
                Some(field) if field.kind != FieldKind::Boolean => problems.push(format!(
                    "[lead] sales_ready_field: Lead.{name} is a {:?} field, expected a checkbox (Boolean)",
                    field.kind
                )),
                Some(field) if !field.updateable => problems.push(format!(
                    "[lead] sales_ready_field: Lead.{name} is read-only for this user; name a custom checkbox field the integration user can edit, or grant it field-level edit access"
                )),
                Some(_) => {}
            }
        }
    }
    if !problems.is_empty() {
        return Err(PipelineError::Mapping(problems));
    }
    let feedback = crate::feedback::field_problems(&mut schemas, config).await?;
    Ok(CheckReport {
        api_usage,
        objects,
        reasons_max_len,
        feedback,
    })
}

/// Records pulled for one object.
#[derive(Debug, Serialize)]
pub struct ObjectPull {
    pub object: String,
    pub pulled: usize,
    pub stored: usize,
    /// Pulled records changed only by leadscore's own write-back.
    pub echoed: usize,
}

#[derive(Debug, Serialize)]
pub struct PullReport {
    pub objects: Vec<ObjectPull>,
    pub pulled: usize,
    /// Pulled records changed only by leadscore's own write-back, which need no new write.
    pub echoed: usize,
    /// Rep flags read from the feedback fields.
    pub feedback: crate::feedback::FlagPullReport,
}

/// How many times in a row a pull restarts after an expired query locator without reading
/// further than before. A restart that got further resets the count.
const LOCATOR_RESTARTS: usize = 3;

/// Pulls every object incrementally. Each page is stored together with the cursor it moves
/// to, so an interrupted pull resumes after the last stored page.
pub async fn pull<C: Connector>(
    connector: &C,
    store: &Store,
    config: &Config,
) -> Result<PullReport, PipelineError> {
    // Stored cursors are judged against the CRM's clock, not this host's.
    if connector.server_time().is_none() {
        connector.check().await?;
    }
    // The store is tied to the CRM only once the CRM has responded, so a pull against a
    // mistyped or unreachable URL leaves a new store free for the corrected one.
    store.bind_source(&source_name(config))?;
    // A store of the previous format keeps its records as JSON until they are rewritten here.
    store.convert_json_records(crate::daemon::shutdown_requested)?;
    // The records of the scored objects are marked as they are stored, so the flag scan and
    // the push read only what changed.
    for level in crate::level::Level::ALL {
        store.track_changes(level.object(), config.scoring.levels.contains(&level))?;
    }
    let server_now = connector.server_time();
    let lookback = chrono::Duration::from_std(config.connector.cursor_lookback())
        .unwrap_or_else(|_| chrono::Duration::zero());
    let mut objects = Vec::new();
    let mut specs =
        crate::sync::prepare_specs(connector, store, config, pull_specs(config)).await?;
    // The feedback fields are optional, so they are added only where the org has them.
    let feedback_problems = crate::feedback::add_pull_fields(connector, config, &mut specs).await?;
    for spec in specs {
        if crate::daemon::shutdown_requested() {
            tracing::info!(object = %spec.object, "stop requested; the pull ends before this object");
            break;
        }
        if let (Some(now), Some(cursor)) = (server_now, store.cursor(&spec.object)?) {
            if cursor.modstamp > now + chrono::Duration::minutes(FUTURE_TOLERANCE_MINUTES) {
                tracing::warn!(
                    object = %spec.object,
                    cursor = %cursor.modstamp,
                    server_time = %now,
                    "the stored cursor is later than the CRM's clock (a clock that jumped ahead); pulling every record again"
                );
                store.reset_cursor(&spec.object)?;
            }
        }
        let PullProgress { pulled, echoed, .. } =
            pull_object(connector, store, &spec, lookback).await?;
        let stored = store.record_count(&spec.object)?;
        tracing::info!(object = %spec.object, pulled, stored, echoed, "pulled");
        objects.push(ObjectPull {
            object: spec.object.clone(),
            pulled,
            stored,
            echoed,
        });
    }
    // Merges pulled above may leave children stored with a merged-away parent's id.
    let remapped = store.remap_merged_references()?;
    if remapped > 0 {
        tracing::info!(
            records = remapped,
            "pointed references to merged-away records at their survivors"
        );
    }
    let pulled = objects.iter().map(|o| o.pulled).sum();
    let echoed = objects.iter().map(|o| o.echoed).sum();
    let mut feedback = crate::feedback::record_flags(store, config, chrono::Utc::now())?;
    feedback.field_problems = feedback_problems;
    Ok(PullReport {
        objects,
        pulled,
        echoed,
        feedback,
    })
}

/// A stored cursor this many minutes past the CRM's clock came from a clock that jumped.
const FUTURE_TOLERANCE_MINUTES: i64 = 5;

/// The counts and position of one object's pull so far.
#[derive(Default)]
struct PullProgress {
    /// Records stored, deletions included.
    pulled: usize,
    /// Records whose only change was what leadscore itself wrote.
    echoed: usize,
    /// The end of the last page read. Pages come in (modstamp, id) order, so a pull restarted
    /// after an expired locator starts here: everything before it was read.
    read_up_to: Option<Cursor>,
    /// The bar or log lines that show the records pulled so far.
    display: Option<crate::progress::Progress>,
}

async fn pull_object<C: Connector>(
    connector: &C,
    store: &Store,
    spec: &PullSpec,
    lookback: chrono::Duration,
) -> Result<PullProgress, PipelineError> {
    // Records pulled before a field was added to the configuration lack it, and an
    // incremental pull would only fill it in on records that change later, so that whether
    // the field is empty would follow whatever made records change. A new field therefore
    // means pulling every record of the object again.
    let requested: BTreeSet<&String> = spec.fields.iter().collect();
    let known = store.pulled_fields(&spec.object)?;
    let added: Vec<&str> = match &known {
        Some(have) => requested
            .iter()
            .filter(|f| !have.contains(f))
            .map(|f| f.as_str())
            .collect(),
        None => Vec::new(),
    };
    let unrecorded = known.is_none() && store.cursor(&spec.object)?.is_some();
    if !added.is_empty() || unrecorded {
        if unrecorded {
            tracing::info!(object = %spec.object, "the store does not record which fields were pulled; pulling every record again once");
        } else {
            tracing::info!(object = %spec.object, added = %added.join(", "), "fields were added to the configuration; pulling every record again");
        }
        store.reset_cursor(&spec.object)?;
    }
    // Recorded before the first page, so that a pull stopped part way (a spent API budget, a
    // crash) resumes from its cursor instead of starting again: every page stored from here on
    // carries these fields.
    store.set_pulled_fields(&spec.object, &spec.fields)?;
    let mut progress = PullProgress::default();
    progress.display = Some(crate::progress::Progress::counter(&format!(
        "pull {}",
        spec.object
    )));
    let mut restarts = 0;
    let mut total_restarts = 0;
    loop {
        let reached = progress.read_up_to.clone();
        let stored = store.cursor(&spec.object)?;
        // The pull starts `lookback` before the cursor, so that a record committed late with
        // an earlier stamp is still seen. Copies already stored unchanged are dropped.
        // NOTE: while no newer change moves the cursor, every pull downloads the same window
        // again, after a full push up to every record it wrote. Starting at the earlier of the
        // cursor and the previous pull's server time less the lookback would read it once.
        // tests/cursor_props.rs stamps edits an hour behind the server's clock, so its stamps
        // must follow that clock before such a change can be tested.
        let start = match &progress.read_up_to {
            Some(read) => Some(read.clone()),
            None => stored.as_ref().map(|cursor| Cursor {
                modstamp: cursor.modstamp - lookback,
                id: cursor.id.clone(),
            }),
        };
        match pull_pages(
            connector,
            store,
            spec,
            start.as_ref(),
            stored.as_ref(),
            &mut progress,
        )
        .await
        {
            Err(PipelineError::Connector(ConnectorError::LocatorExpired(message)))
                if restarts < LOCATOR_RESTARTS || progress.read_up_to > reached =>
            {
                restarts = if progress.read_up_to > reached {
                    1
                } else {
                    restarts + 1
                };
                total_restarts += 1;
                tracing::warn!(object = %spec.object, restarts = total_restarts, %message, "query locator expired; restarting after the last page read");
            }
            Err(err) => return Err(err),
            Ok(()) => return Ok(progress),
        }
    }
}

/// Returns `cursor`, but no later than the CRM's clock when the pull began (`snapshot`) and
/// never before the cursor already stored (`high`).
fn capped(cursor: Cursor, snapshot: &Option<Cursor>, high: &Option<Cursor>) -> Cursor {
    match (snapshot, high) {
        (Some(cap), Some(previous)) if cursor > *cap => cap.clone().max(previous.clone()),
        (Some(cap), None) if cursor > *cap => cap.clone(),
        _ => cursor,
    }
}

async fn pull_pages<C: Connector>(
    connector: &C,
    store: &Store,
    spec: &PullSpec,
    start: Option<&Cursor>,
    stored: Option<&Cursor>,
    progress: &mut PullProgress,
) -> Result<(), PipelineError> {
    // A restarted pull resumes strictly after the last page it read.
    let mut page = match (&progress.read_up_to, start) {
        (Some(read), Some(start)) if read == start => connector.pull_after(spec, start).await?,
        _ => connector.pull_first(spec, start).await?,
    };
    let mut high = stored.cloned();
    // A record edited while the pull pages can come back on a later page with its new stamp,
    // after an earlier page already gave an older copy of another record edited at the same
    // time. The saved cursor therefore never passes the CRM's clock when the first page was
    // returned, less a second because stamps have whole seconds. The next pull then reads
    // every edit made during this one.
    let snapshot = connector.server_time().map(|at| Cursor {
        modstamp: at - chrono::Duration::seconds(1),
        id: String::new(),
    });
    // The largest (stamp, id) of a pull whose pages come in no order.
    let mut unordered_end: Option<Cursor> = None;
    loop {
        // An incremental pull reads the records in the lookback again on purpose. A copy
        // already stored with the same stamp and values is unchanged, so it is dropped here.
        // A deletion already recorded with the same stamp is dropped the same way.
        let unordered = page.unordered;
        let as_cursor = |record: &leadscore_connector::Record| Cursor {
            modstamp: record.modstamp,
            id: record.id.clone(),
        };
        let page_end = if unordered {
            page.records.iter().map(as_cursor).max()
        } else {
            page.records.last().map(as_cursor)
        };
        // The stored copies are read once per page, for this check and for counting echoes.
        let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
        let stored = store.stored_records(&spec.object, &ids)?;
        let mut kept = Vec::with_capacity(page.records.len());
        let mut copies = Vec::with_capacity(page.records.len());
        for (record, copy) in std::mem::take(&mut page.records).into_iter().zip(stored) {
            // Salesforce stamps have whole seconds, so a second edit within the same second
            // keeps the stamp. Only a copy with the same values too is unchanged.
            let known = start.is_some()
                && if record.deleted {
                    store
                        .tombstone(&spec.object, &record.id)?
                        .is_some_and(|t| t.deleted_at == record.modstamp)
                } else {
                    copy.as_ref().is_some_and(|copy| {
                        copy.modstamp == record.modstamp && copy.fields == record.fields
                    })
                };
            if !known {
                kept.push(record);
                copies.push(copy);
            }
        }
        page.records = kept;
        if unordered {
            // Records in no order move the cursor only once every page is stored, so a pull
            // cut off part way starts again from the old cursor.
            if let Some(end) = &page_end {
                if unordered_end.as_ref().is_none_or(|seen| end > seen) {
                    unordered_end = Some(end.clone());
                }
            }
            store.record_deletions(&spec.object, &page.records)?;
            progress.echoed +=
                crate::writeback::count_echoes(store, &spec.object, &page.records, &copies)?;
            store.save_records(&spec.object, &page.records)?;
            progress.pulled += page.records.len();
            if let Some(display) = &progress.display {
                display.advance(page.records.len() as u64);
            }
            match page.next.take() {
                // The cursor has not moved, so the next pull reads these pages again.
                Some(_) if crate::daemon::shutdown_requested() => return Ok(()),
                Some(next) => {
                    page = connector.pull_next(spec, start, &next).await?;
                    continue;
                }
                None => {
                    if let Some(end) = unordered_end.take() {
                        let cursor = capped(end, &snapshot, &high);
                        if high.as_ref().is_none_or(|previous| cursor > *previous) {
                            store.save_page(&spec.object, &[], &cursor)?;
                        }
                    }
                    return Ok(());
                }
            }
        }
        // The cursor moves to the end of every page read, even one whose records were all
        // dropped as already stored, so that a pull restarted after an expired locator does
        // not read the same pages again. A late record from the lookback never moves it back.
        let moved = page_end
            .clone()
            .filter(|end| high.as_ref().is_none_or(|previous| end > previous));
        let cursor = match moved {
            Some(end) => Some(end),
            None if !page.records.is_empty() => high.clone(),
            None => None,
        };
        if let Some(cursor) = cursor {
            let cursor = capped(cursor, &snapshot, &high);
            // Tombstones first: they are idempotent, so a crash before the page is saved
            // only repeats them when the page is pulled again.
            store.record_deletions(&spec.object, &page.records)?;
            progress.echoed +=
                crate::writeback::count_echoes(store, &spec.object, &page.records, &copies)?;
            store.save_page(&spec.object, &page.records, &cursor)?;
            high = Some(cursor);
            progress.pulled += page.records.len();
            if let Some(display) = &progress.display {
                display.advance(page.records.len() as u64);
            }
        }
        if let Some(end) = page_end {
            if progress.read_up_to.as_ref().is_none_or(|read| end > *read) {
                progress.read_up_to = Some(end);
            }
        }
        match page.next.take() {
            // Every page read so far is stored with its cursor, so the next pull resumes here.
            Some(_) if crate::daemon::shutdown_requested() => return Ok(()),
            Some(next) => page = connector.pull_next(spec, start, &next).await?,
            None => return Ok(()),
        }
    }
}
