//! Incremental pulls: CRM search sorted by the modified-date property, in (modstamp, id)
//! order, with a window that never pages past HubSpot's 10,000-result search cap.
//!
//! Every page is a new search that starts at the earliest stamp not yet returned, so the
//! `after` offset is never used and the cap is never reached. A page returns the records whose
//! stamp is below the last stamp the search returned. That last stamp waits for the next page,
//! because more records may share it. When a whole page shares one stamp, that stamp
//! is drained on its own, paging by `hs_object_id` within it, which also covers more than
//! 10,000 records with one stamp. Archived records, which search does not return, come from
//! the list endpoint with `archived=true` at the start of a pull and are merged in by stamp.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use leadscore_connector::{ConnectorError, Cursor, FieldKind, Page, PullSpec, Record, Value};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::debug;

use crate::assoc::{self, Associations, Target};
use crate::describe::unknown_object;
use crate::objects::{
    modstamp_property, Canonical, Needs, Source, MERGED_IDS_PROPERTY, OWNER_FIELDS,
};
use crate::props::{parse_date, parse_datetime, parse_value, Property};
use crate::transport::CallKind;
use crate::wire::{compare_ids, ObjectPageWire, ObjectWire, PagingWire};
use crate::{HubSpotConnector, Owner, Stage, MAX_BATCH};

/// Version of the paging token format; a token of another version is rejected as expired.
const TOKEN_VERSION: u32 = 1;

/// Steps one call may take without producing records (draining an empty tie, for example)
/// before it returns an empty page with a token.
const MAX_EMPTY_STEPS: usize = 8;

/// Empty search pages with a next page that one search follows before it fails.
const MAX_EMPTY_SEARCH_PAGES: usize = 10;

/// Association type ids that mark the primary company: contact to company and deal to
/// company.
const PRIMARY_COMPANY_TYPES: [i64; 2] = [1, 5];
/// Association type ids of company-to-company links: parent to child, child to parent.
const PARENT_TO_CHILD: i64 = 13;
const CHILD_TO_PARENT: i64 = 14;

/// Paging state carried in `Page::next`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Token {
    v: u32,
    object: String,
    step: Step,
    /// Archived records not yet returned, as (stamp in epoch ms, id), sorted.
    archived: Vec<(i64, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum Step {
    /// Search every source for stamps at or after `from` (epoch ms).
    Range {
        from: i64,
    },
    /// Page through the records of `sources[source]` whose stamp is exactly `at`, by id.
    Tie {
        at: i64,
        source: usize,
        after: Option<String>,
    },
    Done,
}

/// One requested field and where its value comes from.
#[derive(Clone, Debug)]
enum Output {
    Canonical { key: String, name: &'static str },
    Property { key: String, name: String },
    Owner { key: String, field: &'static str },
}

/// The requests and record-building rules of a pull of one spec.
struct Plan {
    object: Canonical,
    sources: &'static [Source],
    needs: Needs,
    outputs: Vec<Output>,
    /// Properties per source, for typing values requested under their own names.
    properties: Vec<HashMap<String, Property>>,
    /// Lifecycle stages that count a lead as converted.
    conversion_stages: Vec<String>,
    page_size: u32,
}

/// A fetched object with its source and stamp.
struct Row {
    source: usize,
    wire: ObjectWire,
    stamp: DateTime<Utc>,
}

pub(crate) async fn pull_first(
    connector: &HubSpotConnector,
    spec: &PullSpec,
    cursor: Option<&Cursor>,
) -> Result<Page, ConnectorError> {
    let plan = build_plan(connector, spec).await?;
    let floor = cursor
        .map(|cursor| cursor.modstamp.timestamp_millis())
        .unwrap_or(0);
    debug!(object = %spec.object, floor, include_deleted = spec.include_deleted, "starting pull");
    if plan.object == Canonical::User {
        return pull_owners(connector, &plan, spec, floor).await;
    }
    let mut archived = Vec::new();
    // NOTE: deals archived before a pull cannot be expanded into contact roles, because their
    // associations are gone. The roles of a deleted deal therefore stay in the store.
    if spec.include_deleted && plan.object != Canonical::ContactRole {
        let merges = selects_master_record(&plan);
        for source in plan.sources {
            for wire in list_archived(connector, source.object_type, merges).await? {
                let stamp = wire.modstamp(source.object_type)?.timestamp_millis();
                if stamp < floor {
                    continue;
                }
                // Records a merge absorbed into this one die with it. A pull that never saw
                // the survivor alive learns of them only here.
                if let Some(list) = wire.property(MERGED_IDS_PROPERTY) {
                    archived.extend(
                        list.split(';')
                            .map(str::trim)
                            .filter(|id| !id.is_empty() && *id != wire.id)
                            .map(|id| (stamp, id.to_string())),
                    );
                }
                archived.push((stamp, wire.id));
            }
        }
        archived.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| compare_ids(&a.1, &b.1)));
        archived.dedup();
    }
    let token = Token {
        v: TOKEN_VERSION,
        object: plan.object.name().to_string(),
        step: Step::Range { from: floor },
        archived,
    };
    run(connector, &plan, token).await
}

pub(crate) async fn pull_next(
    connector: &HubSpotConnector,
    spec: &PullSpec,
    _cursor: Option<&Cursor>,
    next: &str,
) -> Result<Page, ConnectorError> {
    let token: Token = serde_json::from_str(next).map_err(|error| {
        ConnectorError::LocatorExpired(format!(
            "the HubSpot paging token is not one this connector issued ({error}); restart the \
             pull from the stored cursor"
        ))
    })?;
    if token.v != TOKEN_VERSION || !token.object.eq_ignore_ascii_case(&spec.object) {
        return Err(ConnectorError::LocatorExpired(format!(
            "the HubSpot paging token belongs to a pull of {} (format {}), not {}; restart the \
             pull from the stored cursor",
            token.object, token.v, spec.object
        )));
    }
    let plan = build_plan(connector, spec).await?;
    run(connector, &plan, token).await
}

/// Takes steps until one returns records or the pull ends.
async fn run(
    connector: &HubSpotConnector,
    plan: &Plan,
    mut token: Token,
) -> Result<Page, ConnectorError> {
    for _ in 0..MAX_EMPTY_STEPS {
        let (rows, deleted, step) = take_step(connector, plan, &mut token).await?;
        token.step = step;
        let mut records = build_records(connector, plan, rows).await?;
        records.extend(deleted.into_iter().map(|(stamp, id)| Record {
            object: plan.object.name().to_string(),
            id,
            modstamp: millis_to_datetime(stamp),
            deleted: true,
            fields: BTreeMap::new(),
        }));
        records.sort_by(|a, b| {
            a.modstamp
                .cmp(&b.modstamp)
                .then_with(|| compare_ids(&a.id, &b.id))
        });
        let next = match token.step {
            Step::Done => None,
            _ => Some(serde_json::to_string(&token).map_err(|error| {
                ConnectorError::Payload(format!("encoding the paging token failed: {error}"))
            })?),
        };
        if !records.is_empty() || next.is_none() {
            debug!(
                object = plan.object.name(),
                records = records.len(),
                last_page = next.is_none(),
                "pulled page"
            );
            return Ok(Page {
                records,
                next,
                total: None,
                unordered: false,
            });
        }
    }
    let next = serde_json::to_string(&token).map_err(|error| {
        ConnectorError::Payload(format!("encoding the paging token failed: {error}"))
    })?;
    Ok(Page {
        records: Vec::new(),
        next: Some(next),
        total: None,
        unordered: false,
    })
}

/// Runs one search step and returns the rows to convert, the archived entries to return as
/// deleted, and the next step.
async fn take_step(
    connector: &HubSpotConnector,
    plan: &Plan,
    token: &mut Token,
) -> Result<(Vec<Row>, Vec<(i64, String)>, Step), ConnectorError> {
    match token.step.clone() {
        Step::Done => Ok((Vec::new(), Vec::new(), Step::Done)),
        Step::Range { from } => {
            let mut fetched = Vec::new();
            let mut bound: Option<i64> = None;
            for (index, source) in plan.sources.iter().enumerate() {
                let property = modstamp_property(source.object_type);
                let filters = vec![json!({
                    "propertyName": property, "operator": "GTE", "value": from.to_string()
                })];
                let page = search(connector, plan, source, filters, property).await?;
                let full = has_more(&page, plan.page_size);
                let mut last = i64::MIN;
                for wire in page.results {
                    let stamp = wire.modstamp(source.object_type)?;
                    last = last.max(stamp.timestamp_millis());
                    fetched.push(Row {
                        source: index,
                        wire,
                        stamp,
                    });
                }
                if full {
                    bound = Some(bound.map_or(last, |bound: i64| bound.min(last)));
                }
            }
            if bound == Some(from) {
                // A whole page shares the first stamp: drain that stamp by id.
                return Ok((
                    Vec::new(),
                    Vec::new(),
                    Step::Tie {
                        at: from,
                        source: 0,
                        after: None,
                    },
                ));
            }
            let rows: Vec<Row> = fetched
                .into_iter()
                .filter(|row| bound.is_none_or(|bound| row.stamp.timestamp_millis() < bound))
                .collect();
            let deleted = take_archived(&mut token.archived, bound.map(|bound| bound - 1));
            let step = match bound {
                Some(bound) => Step::Range { from: bound },
                None => Step::Done,
            };
            Ok((rows, deleted, step))
        }
        Step::Tie { at, source, after } => {
            let Some(current) = plan.sources.get(source) else {
                return Ok((Vec::new(), Vec::new(), Step::Range { from: at + 1 }));
            };
            let property = modstamp_property(current.object_type);
            let mut filters = vec![json!({
                "propertyName": property, "operator": "EQ", "value": at.to_string()
            })];
            if let Some(after) = &after {
                filters.push(json!({
                    "propertyName": "hs_object_id", "operator": "GT", "value": after
                }));
            }
            let page = search(connector, plan, current, filters, "hs_object_id").await?;
            let full = has_more(&page, plan.page_size);
            let mut rows = Vec::with_capacity(page.results.len());
            let mut last_id = None;
            for wire in page.results {
                let stamp = wire.modstamp(current.object_type)?;
                if last_id
                    .as_deref()
                    .is_none_or(|last: &str| compare_ids(&wire.id, last).is_gt())
                {
                    last_id = Some(wire.id.clone());
                }
                rows.push(Row {
                    source,
                    wire,
                    stamp,
                });
            }
            let (step, deleted) = if full && last_id.is_some() {
                (
                    Step::Tie {
                        at,
                        source,
                        after: last_id,
                    },
                    Vec::new(),
                )
            } else if source + 1 < plan.sources.len() {
                (
                    Step::Tie {
                        at,
                        source: source + 1,
                        after: None,
                    },
                    Vec::new(),
                )
            } else {
                (
                    Step::Range { from: at + 1 },
                    take_archived(&mut token.archived, Some(at)),
                )
            };
            Ok((rows, deleted, step))
        }
    }
}

/// Returns true when more results match a search than `page` returned. HubSpot may return
/// fewer results than the requested `limit`, so `total` and `paging.next` decide, and the page
/// size only when the response has neither.
fn has_more(page: &ObjectPageWire, page_size: u32) -> bool {
    let returned = page.results.len() as u64;
    if returned == 0 {
        return false;
    }
    let next = PagingWire::after(&page.paging).is_some();
    match page.total {
        Some(total) => next || total > returned,
        None => next || returned >= u64::from(page_size),
    }
}

/// Removes and returns the archived entries with stamps at or before `up_to` (all when
/// `None`).
fn take_archived(archived: &mut Vec<(i64, String)>, up_to: Option<i64>) -> Vec<(i64, String)> {
    let split = match up_to {
        Some(limit) => archived.partition_point(|(stamp, _)| *stamp <= limit),
        None => archived.len(),
    };
    archived.drain(..split).collect()
}

fn millis_to_datetime(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Sends one search sorted ascending by `sort_property`, with the plan's properties.
async fn search(
    connector: &HubSpotConnector,
    plan: &Plan,
    source: &Source,
    mut filters: Vec<serde_json::Value>,
    sort_property: &str,
) -> Result<ObjectPageWire, ConnectorError> {
    if plan.object == Canonical::Lead {
        filters.push(json!({
            "propertyName": "hs_lifecyclestage_lead_date", "operator": "HAS_PROPERTY"
        }));
    }
    let mut properties = plan.needs.properties.clone();
    for always in [modstamp_property(source.object_type), "hs_object_id"] {
        if !properties.iter().any(|known| known == always) {
            properties.push(always.to_string());
        }
    }
    let mut body = json!({
        "filterGroups": [{"filters": filters}],
        "sorts": [{"propertyName": sort_property, "direction": "ASCENDING"}],
        "properties": properties,
        "limit": plan.page_size,
    });
    let path = format!("/crm/v3/objects/{}/search", source.object_type);
    // HubSpot can return an empty page whose `paging.next.after` leads to more results, so
    // empty pages are followed until one has results or no next page.
    for _ in 0..MAX_EMPTY_SEARCH_PAGES {
        let page: ObjectPageWire = connector
            .api
            .call(Method::POST, &path, Some(&body), CallKind::Search)
            .await?;
        let after = PagingWire::after(&page.paging);
        match after {
            Some(after) if page.results.is_empty() => {
                debug!(object_type = source.object_type, %after, "empty search page with a next page, following it");
                body["after"] = json!(after);
            }
            _ => return Ok(page),
        }
    }
    Err(ConnectorError::Payload(format!(
        "search of HubSpot {} returned {MAX_EMPTY_SEARCH_PAGES} empty pages in a row, each \
         with a next page, so the pull stopped instead of skipping records; run the pull again",
        source.object_type
    )))
}

/// Returns true when the pull selects `MasterRecordId`, which is what makes it follow merges.
fn selects_master_record(plan: &Plan) -> bool {
    plan.outputs
        .iter()
        .any(|output| matches!(output, Output::Canonical { name, .. } if *name == "MasterRecordId"))
}

/// Lists every archived record of an object type, with the ids it absorbed in merges when
/// `merges` is set.
async fn list_archived(
    connector: &HubSpotConnector,
    object_type: &str,
    merges: bool,
) -> Result<Vec<ObjectWire>, ConnectorError> {
    let mut properties = modstamp_property(object_type).to_string();
    if merges {
        properties.push(',');
        properties.push_str(MERGED_IDS_PROPERTY);
    }
    let mut records = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!(
            "/crm/v3/objects/{object_type}?limit=100&archived=true&properties={properties}"
        );
        if let Some(after) = &after {
            path.push_str("&after=");
            path.push_str(
                &url::form_urlencoded::byte_serialize(after.as_bytes()).collect::<String>(),
            );
        }
        let page: ObjectPageWire = connector
            .api
            .call(Method::GET, &path, None, CallKind::Standard)
            .await?;
        records.extend(page.results);
        after = PagingWire::after(&page.paging);
        if after.is_none() {
            return Ok(records);
        }
    }
}

/// Resolves the spec's fields into outputs and needs, rejecting names that are neither
/// canonical fields nor properties of the source objects.
async fn build_plan(connector: &HubSpotConnector, spec: &PullSpec) -> Result<Plan, ConnectorError> {
    let object = Canonical::parse(&spec.object).ok_or_else(|| unknown_object(&spec.object))?;
    let sources = object.sources();
    let mut properties = Vec::with_capacity(sources.len());
    for source in sources {
        let list = connector.properties(source.object_type).await?;
        properties.push(
            list.iter()
                .map(|property| (property.name.clone(), property.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    let mut needs = Needs::default();
    let mut outputs = Vec::new();
    for key in &spec.fields {
        if key.eq_ignore_ascii_case("Id") {
            continue;
        }
        if let Some(rest) = key.strip_prefix("Owner.") {
            let field = OWNER_FIELDS
                .iter()
                .find(|field| field.eq_ignore_ascii_case(rest));
            if let (Some(field), true) = (field, object.has_owner()) {
                needs.add_owner_field();
                outputs.push(Output::Owner {
                    key: key.clone(),
                    field,
                });
                continue;
            }
        }
        if let Some(field) = object.field(key) {
            needs.add_canonical(object, key);
            outputs.push(Output::Canonical {
                key: key.clone(),
                name: field.name,
            });
            continue;
        }
        if !key.contains('.') && properties.iter().any(|map| map.contains_key(key.as_str())) {
            needs.add_property(key);
            outputs.push(Output::Property {
                key: key.clone(),
                name: key.clone(),
            });
            continue;
        }
        let canonical: Vec<&str> = object.fields().iter().map(|field| field.name).collect();
        let types: Vec<&str> = sources.iter().map(|source| source.object_type).collect();
        return Err(ConnectorError::Rejected {
            code: "INVALID_FIELD".to_string(),
            message: format!(
                "field {key:?} of {} is neither one of its fields ({}{}) nor a property of \
                 HubSpot {}; check the spelling or create the property",
                object.name(),
                canonical.join(", "),
                if object.has_owner() {
                    ", Owner.Name, Owner.Email, Owner.IsActive"
                } else {
                    ""
                },
                if types.is_empty() {
                    "owners".to_string()
                } else {
                    types.join(", ")
                }
            ),
        });
    }
    let conversion_stages = if needs.lifecycle {
        let stages = connector.conversion_stages().await?;
        for stage in &stages {
            needs.add_property(&format!("hs_lifecyclestage_{stage}_date"));
        }
        stages
    } else {
        Vec::new()
    };
    Ok(Plan {
        object,
        sources,
        needs,
        outputs,
        properties,
        conversion_stages,
        page_size: connector.page_size,
    })
}

/// Everything fetched for one page besides the rows themselves.
#[derive(Default)]
struct Context {
    /// Associations by (from type, to type).
    associations: HashMap<(&'static str, &'static str), Associations>,
    stages: Option<std::sync::Arc<HashMap<String, Stage>>>,
    owners: Option<std::sync::Arc<HashMap<String, Owner>>>,
    /// Associated deals of leads, by deal id.
    deals: HashMap<String, ObjectWire>,
}

impl Context {
    fn targets(&self, from: &'static str, to: &'static str, id: &str) -> &[Target] {
        self.associations
            .get(&(from, to))
            .and_then(|map| map.get(id))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

async fn build_records(
    connector: &HubSpotConnector,
    plan: &Plan,
    rows: Vec<Row>,
) -> Result<Vec<Record>, ConnectorError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut context = Context::default();
    for (index, source) in plan.sources.iter().enumerate() {
        let ids: Vec<String> = rows
            .iter()
            .filter(|row| row.source == index)
            .map(|row| row.wire.id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        for target in &plan.needs.associations {
            let found = assoc::read(&connector.api, source.object_type, target, &ids).await?;
            context
                .associations
                .insert((source.object_type, target), found);
        }
    }
    if plan.needs.pipelines {
        context.stages = Some(connector.stages().await?);
    }
    if plan.needs.owners {
        context.owners = Some(owners(connector).await?);
    }
    if plan.needs.deal_details {
        let mut deal_ids: Vec<String> = rows
            .iter()
            .flat_map(|row| context.targets("contacts", "deals", &row.wire.id))
            .map(|target| target.id.clone())
            .collect();
        deal_ids.sort_by(|a, b| compare_ids(a, b));
        deal_ids.dedup();
        context.deals = read_deals(connector, &deal_ids).await?;
    }

    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        if plan.object == Canonical::ContactRole {
            records.extend(contact_roles(plan, &context, row));
            continue;
        }
        let mut fields = BTreeMap::new();
        for output in &plan.outputs {
            let (key, value) = match output {
                Output::Canonical { key, name } => {
                    (key, canonical_value(plan, &context, row, name))
                }
                Output::Property { key, name } => (key, property_value(plan, row, name)),
                Output::Owner { key, field } => (key, owner_value(&context, row, field)),
            };
            fields.insert(key.clone(), value);
        }
        records.push(Record {
            object: plan.object.name().to_string(),
            id: row.wire.id.clone(),
            modstamp: row.stamp,
            deleted: row.wire.archived,
            fields,
        });
        records.extend(absorbed_records(plan, row));
    }
    Ok(records)
}

/// Returns one deleted record per id a row absorbed in merges, with `MasterRecordId` set to
/// the row's id, when the pull selects `MasterRecordId`. HubSpot does not list absorbed
/// records as archived, so this is how a merge reaches the store. A survivor that got a new
/// id in the merge lists both input ids.
fn absorbed_records(plan: &Plan, row: &Row) -> Vec<Record> {
    let Some(key) = plan.outputs.iter().find_map(|output| match output {
        Output::Canonical { key, name } if *name == "MasterRecordId" => Some(key),
        _ => None,
    }) else {
        return Vec::new();
    };
    let Some(list) = row.wire.property(MERGED_IDS_PROPERTY) else {
        return Vec::new();
    };
    let mut ids: Vec<&str> = list
        .split(';')
        .map(str::trim)
        .filter(|id| !id.is_empty() && *id != row.wire.id)
        .collect();
    ids.sort_by(|a, b| compare_ids(a, b));
    ids.dedup();
    ids.into_iter()
        .map(|id| Record {
            object: plan.object.name().to_string(),
            id: id.to_string(),
            modstamp: row.stamp,
            deleted: true,
            fields: BTreeMap::from([(key.clone(), Value::Text(row.wire.id.clone()))]),
        })
        .collect()
}

/// Batch-reads the stage, pipeline and close date of deals.
async fn read_deals(
    connector: &HubSpotConnector,
    ids: &[String],
) -> Result<HashMap<String, ObjectWire>, ConnectorError> {
    let mut deals = HashMap::new();
    for chunk in ids.chunks(MAX_BATCH) {
        let inputs: Vec<serde_json::Value> = chunk.iter().map(|id| json!({"id": id})).collect();
        let body = json!({
            "properties": ["dealstage", "pipeline", "closedate"],
            "inputs": inputs,
        });
        let page: ObjectPageWire = connector
            .api
            .call(
                Method::POST,
                "/crm/v3/objects/deals/batch/read",
                Some(&body),
                CallKind::Standard,
            )
            .await?;
        for deal in page.results {
            deals.insert(deal.id.clone(), deal);
        }
    }
    Ok(deals)
}

/// Parses a property of a row as `kind`, logging and returning null for invalid values.
fn typed(row: &Row, property: &str, kind: FieldKind) -> Value {
    let Some(text) = row.wire.property(property) else {
        return Value::Null;
    };
    match parse_value(kind, text) {
        Ok(value) => value,
        Err(error) => {
            crate::props::report_invalid(&row.wire.id, property, &error);
            Value::Null
        }
    }
}

fn property_value(plan: &Plan, row: &Row, name: &str) -> Value {
    match plan
        .properties
        .get(row.source)
        .and_then(|map| map.get(name))
    {
        Some(property) if is_multi_select(property) => {
            multi_select_value(row.wire.property(name).unwrap_or(""))
        }
        Some(property) => typed(row, name, property.kind()),
        None => Value::Null,
    }
}

/// True for an enumeration shown as checkboxes, whose value is the chosen options joined
/// with `;`.
fn is_multi_select(property: &Property) -> bool {
    property.property_type == "enumeration" && property.field_type == "checkbox"
}

/// Reads a multi-select value as one text of its chosen options, trimmed, de-duplicated,
/// sorted and joined with `;`, so that the same set of options is always the same category
/// whatever order HubSpot stored it in. No option chosen is null.
fn multi_select_value(raw: &str) -> Value {
    let mut options: Vec<&str> = raw
        .split(';')
        .map(str::trim)
        .filter(|option| !option.is_empty())
        .collect();
    options.sort_unstable();
    options.dedup();
    if options.is_empty() {
        Value::Null
    } else {
        Value::Text(options.join(";"))
    }
}

fn text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |text| Value::Text(text.to_string()))
}

fn first_id(targets: &[Target]) -> Option<&str> {
    targets.first().map(|target| target.id.as_str())
}

/// Returns the primary company, else the first by id.
fn primary_company(targets: &[Target]) -> Option<&str> {
    targets
        .iter()
        .find(|target| {
            target.has_label("Primary")
                || target
                    .type_ids
                    .iter()
                    .any(|id| PRIMARY_COMPANY_TYPES.contains(id))
        })
        .or(targets.first())
        .map(|target| target.id.as_str())
}

/// True when `target`, associated from a company, is that company's parent. Type 14 is the
/// child-to-parent direction; labels decide only when neither direction's type id is present.
fn is_parent(target: &Target) -> bool {
    if target.type_ids.contains(&CHILD_TO_PARENT) {
        return true;
    }
    if target.type_ids.contains(&PARENT_TO_CHILD) {
        return false;
    }
    target
        .labels
        .iter()
        .any(|label| label.to_ascii_lowercase().contains("parent"))
}

fn full_name(first: Option<&str>, last: Option<&str>) -> Value {
    let name = [first, last]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if name.is_empty() {
        Value::Null
    } else {
        Value::Text(name)
    }
}

fn date_of(value: Value) -> Value {
    match value {
        Value::DateTime(time) => Value::Date(time.date_naive()),
        other => other,
    }
}

/// Returns whether a lead converted, and when: the earliest conversion-stage date, else the
/// earliest close date of an associated won deal.
fn conversion(plan: &Plan, context: &Context, row: &Row) -> (bool, Value) {
    let stage_date = plan
        .conversion_stages
        .iter()
        .filter_map(|stage| {
            row.wire
                .property(&format!("hs_lifecyclestage_{stage}_date"))
                .and_then(parse_datetime)
        })
        .min();
    if let Some(date) = stage_date {
        return (true, Value::Date(date.date_naive()));
    }
    let stages = context.stages.as_deref();
    let won_close = context
        .targets("contacts", "deals", &row.wire.id)
        .iter()
        .filter_map(|target| context.deals.get(&target.id))
        .filter(|deal| {
            deal.property("dealstage")
                .and_then(|stage| stages.and_then(|stages| stages.get(stage)))
                .is_some_and(|stage| stage.won)
        })
        .map(|deal| deal.property("closedate").and_then(parse_date))
        .min_by(|a, b| match (a, b) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    match won_close {
        Some(date) => (true, date.map_or(Value::Null, Value::Date)),
        None => (false, Value::Null),
    }
}

fn canonical_value(plan: &Plan, context: &Context, row: &Row, name: &str) -> Value {
    let object = plan.object;
    let source = plan.sources.get(row.source).copied();
    let object_type = source.map_or("", |source| source.object_type);
    let wire = &row.wire;
    match (object, name) {
        (Canonical::Contact | Canonical::Lead, "Name") => {
            full_name(wire.property("firstname"), wire.property("lastname"))
        }
        (Canonical::Contact, "AccountId") => text(primary_company(context.targets(
            "contacts",
            "companies",
            &wire.id,
        ))),
        (Canonical::Account, "ParentId") => text(
            context
                .targets("companies", "companies", &wire.id)
                .iter()
                .find(|target| target.id != wire.id && is_parent(target))
                .map(|target| target.id.as_str()),
        ),
        (Canonical::Lead, "CreatedDate") => {
            match typed(row, "hs_lifecyclestage_lead_date", FieldKind::DateTime) {
                Value::Null => typed(row, "createdate", FieldKind::DateTime),
                value => value,
            }
        }
        (Canonical::Lead, "IsConverted") => Value::Bool(conversion(plan, context, row).0),
        (Canonical::Lead, "ConvertedDate") => conversion(plan, context, row).1,
        (Canonical::Lead, "ConvertedOpportunityId") => {
            text(first_id(context.targets("contacts", "deals", &wire.id)))
        }
        (Canonical::Lead, "ConvertedAccountId") => {
            if conversion(plan, context, row).0 {
                text(primary_company(context.targets(
                    "contacts",
                    "companies",
                    &wire.id,
                )))
            } else {
                Value::Null
            }
        }
        (Canonical::Lead, "ConvertedContactId") => {
            if conversion(plan, context, row).0 {
                Value::Text(wire.id.clone())
            } else {
                Value::Null
            }
        }
        (Canonical::Opportunity, "AccountId") => text(primary_company(context.targets(
            "deals",
            "companies",
            &wire.id,
        ))),
        (Canonical::Opportunity, "StageName" | "IsClosed" | "IsWon") => {
            let Some(stage_id) = wire.property("dealstage") else {
                return Value::Null;
            };
            let stage = context
                .stages
                .as_ref()
                .and_then(|stages| stages.get(stage_id));
            match (name, stage) {
                ("StageName", Some(stage)) => Value::Text(stage.label.clone()),
                ("StageName", None) => Value::Text(stage_id.to_string()),
                ("IsClosed", Some(stage)) => Value::Bool(stage.closed),
                ("IsWon", Some(stage)) => Value::Bool(stage.closed && stage.won),
                _ => Value::Null,
            }
        }
        (Canonical::Opportunity, "CloseDate") => {
            date_of(typed(row, "closedate", FieldKind::DateTime))
        }
        (Canonical::Task | Canonical::Event, "WhoId") => {
            text(first_id(context.targets(object_type, "contacts", &wire.id)))
        }
        (Canonical::Task | Canonical::Event, "WhatId") => text(
            first_id(context.targets(object_type, "deals", &wire.id))
                .or_else(|| first_id(context.targets(object_type, "companies", &wire.id))),
        ),
        (Canonical::Task | Canonical::Event, "ActivityDate") => {
            date_of(typed(row, "hs_timestamp", FieldKind::DateTime))
        }
        (Canonical::Task | Canonical::Event, "Type") => {
            text(source.map(|source| source.activity_type))
        }
        (Canonical::Task | Canonical::Event, "Subject") => {
            match source.and_then(|source| crate::objects::subject_property(source.object_type)) {
                Some(property) => typed(row, property, FieldKind::Text),
                None => Value::Null,
            }
        }
        (Canonical::Task | Canonical::Event, "CreatedDate") => {
            match typed(row, "hs_createdate", FieldKind::DateTime) {
                Value::Null => wire
                    .created_at
                    .as_deref()
                    .and_then(parse_datetime)
                    .map_or(Value::Null, Value::DateTime),
                value => value,
            }
        }
        (Canonical::Event, "StartDateTime") => {
            match typed(row, "hs_meeting_start_time", FieldKind::DateTime) {
                Value::Null => typed(row, "hs_timestamp", FieldKind::DateTime),
                value => value,
            }
        }
        _ => match object.field(name) {
            Some(field) => match field.property {
                Some(property) => typed(row, property, field.kind),
                None => Value::Null,
            },
            None => Value::Null,
        },
    }
}

/// Expands a deal into one record per associated contact.
fn contact_roles(plan: &Plan, context: &Context, row: &Row) -> Vec<Record> {
    let created = typed(row, "createdate", FieldKind::DateTime);
    context
        .targets("deals", "contacts", &row.wire.id)
        .iter()
        .map(|target| {
            let mut fields = BTreeMap::new();
            for output in &plan.outputs {
                let (key, value) = match output {
                    Output::Canonical { key, name } => {
                        let value = match *name {
                            "OpportunityId" => Value::Text(row.wire.id.clone()),
                            "ContactId" => Value::Text(target.id.clone()),
                            "Role" => text(target.labels.first().map(String::as_str)),
                            "CreatedDate" => created.clone(),
                            _ => Value::Null,
                        };
                        (key, value)
                    }
                    Output::Property { key, name } => (key, property_value(plan, row, name)),
                    Output::Owner { key, .. } => (key, Value::Null),
                };
                fields.insert(key.clone(), value);
            }
            Record {
                object: plan.object.name().to_string(),
                id: format!("{}-{}", row.wire.id, target.id),
                modstamp: row.stamp,
                deleted: row.wire.archived,
                fields,
            }
        })
        .collect()
}

fn owner_value(context: &Context, row: &Row, field: &str) -> Value {
    let Some(owner) = row
        .wire
        .property("hubspot_owner_id")
        .and_then(|id| context.owners.as_ref()?.get(id))
    else {
        return Value::Null;
    };
    match field {
        "Name" => Value::Text(owner.name.clone()),
        "Email" => text(owner.email.as_deref()),
        "IsActive" => Value::Bool(owner.active),
        _ => Value::Null,
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerWire {
    id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct OwnerPageWire {
    results: Vec<OwnerWire>,
    #[serde(default)]
    paging: Option<PagingWire>,
}

/// Lists all owners, active (`archived=false`) and deactivated (`archived=true`).
async fn list_owners(
    connector: &HubSpotConnector,
) -> Result<Vec<(OwnerWire, bool)>, ConnectorError> {
    let mut owners = Vec::new();
    for archived in [false, true] {
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/crm/v3/owners?limit=100&archived={archived}");
            if let Some(after) = &after {
                path.push_str("&after=");
                path.push_str(
                    &url::form_urlencoded::byte_serialize(after.as_bytes()).collect::<String>(),
                );
            }
            let page: OwnerPageWire = connector
                .api
                .call(Method::GET, &path, None, CallKind::Standard)
                .await?;
            owners.extend(page.results.into_iter().map(|owner| (owner, !archived)));
            after = PagingWire::after(&page.paging);
            if after.is_none() {
                break;
            }
        }
    }
    Ok(owners)
}

/// Returns owners by id, listing them on first use.
// NOTE: the owner list is cached for the connector's lifetime, so an owner deactivated during
// a long-running process keeps its earlier `Owner.IsActive` in records pulled afterwards.
async fn owners(
    connector: &HubSpotConnector,
) -> Result<std::sync::Arc<HashMap<String, Owner>>, ConnectorError> {
    if let Some(cached) = connector.owners.lock().ok().and_then(|cache| cache.clone()) {
        return Ok(cached);
    }
    let mut map = HashMap::new();
    for (owner, active) in list_owners(connector).await? {
        let name = match full_name(owner.first_name.as_deref(), owner.last_name.as_deref()) {
            Value::Text(name) => name,
            _ => owner.email.clone().unwrap_or_default(),
        };
        map.insert(
            owner.id.clone(),
            Owner {
                name,
                email: owner.email.clone(),
                active,
            },
        );
    }
    let map = std::sync::Arc::new(map);
    if let Ok(mut cache) = connector.owners.lock() {
        *cache = Some(map.clone());
    }
    Ok(map)
}

/// Pulls `User` records from owners in one page. Owner lists are short and have no search,
/// so they are read in full and filtered by the cursor.
async fn pull_owners(
    connector: &HubSpotConnector,
    plan: &Plan,
    spec: &PullSpec,
    floor: i64,
) -> Result<Page, ConnectorError> {
    let mut records = Vec::new();
    for (owner, active) in list_owners(connector).await? {
        let stamp = owner
            .updated_at
            .as_deref()
            .or(owner.created_at.as_deref())
            .and_then(parse_datetime)
            .ok_or_else(|| {
                ConnectorError::Payload(format!("owner {} has no valid updatedAt", owner.id))
            })?;
        if stamp.timestamp_millis() < floor {
            continue;
        }
        let mut fields = BTreeMap::new();
        for output in &plan.outputs {
            let Output::Canonical { key, name } = output else {
                continue;
            };
            let value = match *name {
                "Name" => full_name(owner.first_name.as_deref(), owner.last_name.as_deref()),
                "FirstName" => text(owner.first_name.as_deref()),
                "LastName" => text(owner.last_name.as_deref()),
                "Email" => text(owner.email.as_deref()),
                "IsActive" => Value::Bool(active),
                "CreatedDate" => owner
                    .created_at
                    .as_deref()
                    .and_then(parse_datetime)
                    .map_or(Value::Null, Value::DateTime),
                _ => Value::Null,
            };
            fields.insert(key.clone(), value);
        }
        records.push(Record {
            object: spec.object.clone(),
            id: owner.id,
            modstamp: stamp,
            deleted: false,
            fields,
        });
    }
    records.sort_by(|a, b| {
        a.modstamp
            .cmp(&b.modstamp)
            .then_with(|| compare_ids(&a.id, &b.id))
    });
    records.dedup_by(|a, b| a.id == b.id);
    Ok(Page {
        total: Some(records.len() as u64),
        records,
        next: None,
        unordered: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_select_sorted_and_empty_null() {
        assert_eq!(
            multi_select_value("webinar; pricing_page;;webinar"),
            Value::Text("pricing_page;webinar".into())
        );
        assert_eq!(multi_select_value(" ; "), Value::Null);
        assert_eq!(multi_select_value(""), Value::Null);
    }

    #[test]
    fn archived_split_by_stamp() {
        let mut archived = vec![
            (1, "a".to_string()),
            (5, "b".to_string()),
            (9, "c".to_string()),
        ];
        assert_eq!(take_archived(&mut archived, Some(5)).len(), 2);
        assert_eq!(archived, vec![(9, "c".to_string())]);
        assert_eq!(take_archived(&mut archived, None).len(), 1);
        assert!(archived.is_empty());
    }

    #[test]
    fn parent_by_type_then_label() {
        let by_type = Target {
            id: "1".into(),
            type_ids: vec![CHILD_TO_PARENT],
            labels: vec![],
        };
        assert!(is_parent(&by_type));
        let child = Target {
            id: "2".into(),
            type_ids: vec![PARENT_TO_CHILD],
            labels: vec!["Parent Company".into()],
        };
        assert!(!is_parent(&child));
        let by_label = Target {
            id: "3".into(),
            type_ids: vec![99],
            labels: vec!["Parent Company".into()],
        };
        assert!(is_parent(&by_label));
    }
}
