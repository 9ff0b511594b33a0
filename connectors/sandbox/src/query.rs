//! Resolves a parsed SOQL query against the schema, evaluates it over the stored rows and
//! renders result rows in the REST API's JSON shape.

use std::cmp::Ordering;

use serde_json::{Map, Value as Json};

use crate::schema::FieldType;
use crate::soql::{self, CompareOp, Condition, FieldRef, Literal, SoqlError};
use crate::store::{value_to_json, Store, Value};

/// One relationship step of a field path, such as `Account` in `Account.Name`.
#[derive(Clone, Debug)]
struct Hop {
    /// Relationship name as the schema spells it, used as the JSON key.
    name: &'static str,
    /// The reference column on each table this hop can start from: (table, column).
    columns: Vec<(usize, usize)>,
    /// Tables the reference may point to (several for polymorphic `Who` and `What`).
    targets: Vec<usize>,
}

/// A field path resolved to columns.
#[derive(Clone, Debug)]
pub(crate) struct FieldPath {
    hops: Vec<Hop>,
    /// Final field API name as the schema spells it.
    name: &'static str,
    field_type: FieldType,
    length: u32,
    /// The field's column on each table the path can end at: (table, column).
    columns: Vec<(usize, usize)>,
}

impl FieldPath {
    /// Follows the path from a row and returns the final value, or `None` when a lookup on
    /// the way is empty or points to a missing record.
    fn value<'a>(&self, store: &'a Store, table: usize, row: usize) -> Option<&'a Value> {
        let (mut table, mut row) = (table, row);
        for hop in &self.hops {
            (table, row) = follow(store, hop, table, row)?;
        }
        let column = column_for(&self.columns, table)?;
        Some(&store.tables[table].rows[row][column])
    }

    fn is_id_like(&self) -> bool {
        matches!(self.field_type, FieldType::Id | FieldType::Reference)
    }
}

fn column_for(columns: &[(usize, usize)], table: usize) -> Option<usize> {
    columns.iter().find(|(t, _)| *t == table).map(|(_, c)| *c)
}

fn follow(store: &Store, hop: &Hop, table: usize, row: usize) -> Option<(usize, usize)> {
    let column = column_for(&hop.columns, table)?;
    let id = store.tables[table].rows[row][column].as_text()?;
    let (target, target_row) = store.locate(id)?;
    hop.targets
        .contains(&target)
        .then_some((target, target_row))
}

/// A compiled `WHERE` condition with literals converted to the compared field's type.
enum Predicate {
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    Compare {
        path: FieldPath,
        op: CompareOp,
        value: Value,
    },
    In {
        path: FieldPath,
        negated: bool,
        values: Vec<Value>,
    },
}

struct SortKey {
    path: FieldPath,
    descending: bool,
    nulls_last: bool,
}

/// A query resolved against the schema and ready to run.
pub(crate) struct CompiledQuery {
    pub table: usize,
    pub select: Vec<FieldPath>,
    filter: Option<Predicate>,
    order: Vec<SortKey>,
    limit: Option<usize>,
}

/// Parses and resolves `text`. Errors carry the Salesforce code and a rendered message.
pub(crate) fn compile(store: &Store, text: &str) -> Result<CompiledQuery, (String, &'static str)> {
    compile_inner(store, text).map_err(|e| (e.render(text), e.code))
}

fn compile_inner(store: &Store, text: &str) -> Result<CompiledQuery, SoqlError> {
    let parsed = soql::parse(text)?;
    let table = store.table_index(&parsed.object).ok_or_else(|| SoqlError {
        code: "INVALID_TYPE",
        message: format!(
            "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
            parsed.object
        ),
        position: Some(parsed.object_position),
    })?;

    let mut select: Vec<FieldPath> = Vec::new();
    for field in &parsed.fields {
        let path = resolve(store, table, field)?;
        let duplicate = select
            .iter()
            .any(|p| p.name == path.name && hop_names(p) == hop_names(&path));
        if !duplicate {
            select.push(path);
        }
    }
    let filter = match &parsed.filter {
        Some(condition) => Some(compile_condition(store, table, condition)?),
        None => None,
    };
    let mut order = Vec::new();
    for key in &parsed.order {
        let path = resolve(store, table, &key.field)?;
        if is_long_text(&path) {
            return Err(SoqlError::invalid_field(
                format!("field '{}' can not be sorted in a query call", path.name),
                key.field.position,
            ));
        }
        order.push(SortKey {
            path,
            descending: key.descending,
            nulls_last: key.nulls_last,
        });
    }
    Ok(CompiledQuery {
        table,
        select,
        filter,
        order,
        limit: parsed.limit,
    })
}

fn hop_names(path: &FieldPath) -> Vec<&'static str> {
    path.hops.iter().map(|h| h.name).collect()
}

/// Returns whether the field can be selected but not filtered or sorted: long text and
/// compound fields.
fn is_long_text(path: &FieldPath) -> bool {
    (path.field_type == FieldType::Textarea && path.length > 255)
        || path.field_type == FieldType::Address
}

/// Returns the type of the field a selected path ends at.
pub(crate) fn field_type(path: &FieldPath) -> FieldType {
    path.field_type
}

/// Returns whether the path ends at a compound field, which Bulk API 2.0 queries reject.
pub(crate) fn is_compound(path: &FieldPath) -> bool {
    path.field_type == FieldType::Address
}

/// Returns the dotted name of a selected path as a Bulk CSV header spells it: `Account.Name`.
pub(crate) fn dotted_name(path: &FieldPath) -> String {
    let mut name: Vec<&str> = hop_names(path);
    name.push(path.name);
    name.join(".")
}

/// Follows a selected path from a row and returns its final value, or null when a lookup on
/// the way is empty. Compound fields are not stored, so they give null here.
pub(crate) fn path_value(store: &Store, path: &FieldPath, table: usize, row: usize) -> Value {
    path.value(store, table, row)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Renders one stored field in REST JSON. A compound address is an object built from its
/// component fields, or null when every component is null.
pub(crate) fn field_json(table: &crate::store::Table, row: usize, column: usize) -> Json {
    let field = table.field(column);
    let Some(prefix) = crate::schema::address_prefix(field) else {
        return value_to_json(field, &table.rows[row][column]);
    };
    let mut address = Map::new();
    let mut any = false;
    for (suffix, key) in crate::schema::ADDRESS_COMPONENTS {
        let value = table
            .column(&format!("{prefix}{suffix}"))
            .map(|c| value_to_json(table.field(c), &table.rows[row][c]))
            .unwrap_or(Json::Null);
        any |= !value.is_null();
        address.insert(key.to_string(), value);
    }
    address.insert("geocodeAccuracy".into(), Json::Null);
    address.insert("latitude".into(), Json::Null);
    address.insert("longitude".into(), Json::Null);
    if any {
        Json::Object(address)
    } else {
        Json::Null
    }
}

/// Resolves a dotted path such as `Account.Owner.Name` from `table`. Through a polymorphic
/// relationship every target must have the next relationship or field with the same type.
// NOTE: Salesforce limits polymorphic paths (`Who.`, `What.`) to the fields of its `Name`
// object, so the sandbox accepts some paths, such as `What.Owner.IsActive`, that it rejects.
fn resolve(store: &Store, table: usize, field: &FieldRef) -> Result<FieldPath, SoqlError> {
    let parts: Vec<&str> = field.path.split('.').collect();
    let entity = store.tables[table].def.name;
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(SoqlError::invalid_field(
            format!(
                "field path '{}' on entity '{entity}' is not supported: the sandbox follows at most two parent relationships",
                field.path
            ),
            field.position,
        ));
    }
    let mut current = vec![table];
    let mut hops = Vec::new();
    for relationship in &parts[..parts.len() - 1] {
        let mut columns = Vec::new();
        let mut targets: Option<Vec<usize>> = None;
        let mut name = "";
        for &t in &current {
            let def = &store.tables[t].def;
            let reference = def.relationship(relationship).and_then(|f| {
                let (rel_name, to) = f.relationship.as_ref()?;
                Some((f.name, *rel_name, to))
            });
            let Some((field_name, rel_name, to)) = reference else {
                return Err(SoqlError::invalid_field(
                    format!(
                        "Didn't understand relationship '{relationship}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                    ),
                    field.position,
                ));
            };
            let resolved: Vec<usize> = to.iter().filter_map(|o| store.table_index(o)).collect();
            if targets.as_ref().is_some_and(|prev| *prev != resolved) {
                return Err(SoqlError::invalid_field(
                    format!("relationship '{relationship}' points to different objects from the possible parents of '{}'", field.path),
                    field.position,
                ));
            }
            targets = Some(resolved);
            name = rel_name;
            columns.push((t, store.tables[t].column(field_name).unwrap_or(0)));
        }
        let targets = targets.unwrap_or_default();
        current = targets.clone();
        hops.push(Hop {
            name,
            columns,
            targets,
        });
    }

    let last = parts[parts.len() - 1];
    let mut columns = Vec::new();
    let mut shape: Option<(&'static str, FieldType, u32)> = None;
    for &t in &current {
        let target = &store.tables[t];
        let Some(column) = target.column(last) else {
            let message = format!(
                "No such column '{last}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                target.def.name
            );
            return Err(SoqlError::invalid_field(message, field.position));
        };
        let def = target.field(column);
        if shape.is_some_and(|(_, field_type, _)| field_type != def.field_type) {
            return Err(SoqlError::invalid_field(
                format!(
                    "field '{last}' has different types on the possible parents of '{}'",
                    field.path
                ),
                field.position,
            ));
        }
        shape = Some((def.name, def.field_type, def.length));
        columns.push((t, column));
    }
    let Some((name, field_type, length)) = shape else {
        return Err(SoqlError::invalid_field(
            format!("No such column '{last}' on entity '{entity}'"),
            field.position,
        ));
    };
    Ok(FieldPath {
        hops,
        name,
        field_type,
        length,
        columns,
    })
}

fn compile_condition(
    store: &Store,
    table: usize,
    condition: &Condition,
) -> Result<Predicate, SoqlError> {
    Ok(match condition {
        Condition::And(parts) => Predicate::And(
            parts
                .iter()
                .map(|c| compile_condition(store, table, c))
                .collect::<Result<_, _>>()?,
        ),
        Condition::Or(parts) => Predicate::Or(
            parts
                .iter()
                .map(|c| compile_condition(store, table, c))
                .collect::<Result<_, _>>()?,
        ),
        Condition::Not(inner) => Predicate::Not(Box::new(compile_condition(store, table, inner)?)),
        Condition::Compare {
            field,
            op,
            value,
            value_position,
        } => {
            let path = filterable(store, table, field)?;
            let ordering = !matches!(op, CompareOp::Eq | CompareOp::Ne);
            if ordering && *value == Literal::Null {
                return Err(SoqlError::malformed(
                    "null can only be compared with = or !=",
                    *value_position,
                ));
            }
            // NOTE: range operators on picklists are rejected to stay on the safe side; whether
            // Salesforce accepts them is unverified.
            if ordering && matches!(path.field_type, FieldType::Boolean | FieldType::Picklist) {
                return Err(SoqlError::invalid_field(
                    format!(
                        "invalid operator on {} field '{}': use =, !=, IN or NOT IN",
                        path.field_type.api_name(),
                        path.name
                    ),
                    field.position,
                ));
            }
            let value = typed_literal(&path, value, *value_position)?;
            Predicate::Compare {
                path,
                op: *op,
                value,
            }
        }
        Condition::In {
            field,
            negated,
            values,
        } => {
            let path = filterable(store, table, field)?;
            let values = values
                .iter()
                .map(|(literal, position)| typed_literal(&path, literal, *position))
                .collect::<Result<_, _>>()?;
            Predicate::In {
                path,
                negated: *negated,
                values,
            }
        }
    })
}

fn filterable(store: &Store, table: usize, field: &FieldRef) -> Result<FieldPath, SoqlError> {
    let path = resolve(store, table, field)?;
    if is_long_text(&path) {
        return Err(SoqlError::invalid_field(
            format!("field '{}' can not be filtered in a query call", path.name),
            field.position,
        ));
    }
    Ok(path)
}

/// Converts a literal to the compared field's type, or rejects it as Salesforce does.
fn typed_literal(path: &FieldPath, literal: &Literal, position: usize) -> Result<Value, SoqlError> {
    let mismatch = |expected: &str, quoted: bool| {
        let quotes = if quoted {
            "should be enclosed in quotes"
        } else {
            "should not be enclosed in quotes"
        };
        SoqlError::invalid_field(
            format!(
                "value of filter criterion for field '{}' must be of type {expected} and {quotes}",
                path.name
            ),
            position,
        )
    };
    if *literal == Literal::Null {
        return Ok(Value::Null);
    }
    match path.field_type {
        FieldType::Id
        | FieldType::Reference
        | FieldType::String
        | FieldType::Textarea
        | FieldType::Picklist
        | FieldType::Email => match literal {
            Literal::Text(s) => Ok(Value::Text(s.clone())),
            _ => Err(mismatch(
                if path.is_id_like() { "id" } else { "string" },
                true,
            )),
        },
        FieldType::Boolean => match literal {
            Literal::Bool(b) => Ok(Value::Bool(*b)),
            _ => Err(mismatch("boolean", false)),
        },
        FieldType::Double | FieldType::Currency | FieldType::Int => match literal {
            Literal::Number(n) => Ok(Value::Number(*n)),
            _ => Err(mismatch(path.field_type.api_name(), false)),
        },
        FieldType::Date => match literal {
            Literal::Date(d) => Ok(Value::Date(*d)),
            _ => Err(mismatch("date", false)),
        },
        FieldType::Datetime => match literal {
            Literal::DateTime(t) => Ok(Value::DateTime(*t)),
            _ => Err(mismatch("dateTime", false)),
        },
        FieldType::Address => Err(SoqlError::invalid_field(
            format!(
                "field '{}' can not be filtered in a query call; filter on its component fields",
                path.name
            ),
            position,
        )),
    }
}

/// Compares two non-null values of the same field. Text compares case-insensitively as SOQL
/// does, except ids, which compare by ordinal.
fn compare_values(a: &Value, b: &Value, ordinal_text: bool) -> Option<Ordering> {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) if ordinal_text => Some(x.as_str().cmp(y.as_str())),
        (Value::Text(x), Value::Text(y)) => Some(
            x.chars()
                .flat_map(char::to_lowercase)
                .cmp(y.chars().flat_map(char::to_lowercase)),
        ),
        (Value::Number(x), Value::Number(y)) => x.partial_cmp(y),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
        (Value::DateTime(x), Value::DateTime(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Tests equality, letting a 15-character id literal match the 18-character stored id.
fn values_equal(path: &FieldPath, stored: &Value, literal: &Value) -> bool {
    match (stored, literal) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Text(s), Value::Text(l)) if path.is_id_like() && l.len() == 15 && s.len() == 18 => {
            s.get(..15) == Some(l.as_str())
        }
        _ => compare_values(stored, literal, path.is_id_like()) == Some(Ordering::Equal),
    }
}

fn matches(predicate: &Predicate, store: &Store, table: usize, row: usize) -> bool {
    match predicate {
        Predicate::And(parts) => parts.iter().all(|p| matches(p, store, table, row)),
        Predicate::Or(parts) => parts.iter().any(|p| matches(p, store, table, row)),
        Predicate::Not(inner) => !matches(inner, store, table, row),
        Predicate::Compare { path, op, value } => {
            let stored = path.value(store, table, row).unwrap_or(&Value::Null);
            match op {
                CompareOp::Eq => values_equal(path, stored, value),
                CompareOp::Ne => !values_equal(path, stored, value),
                _ => {
                    let Some(ordering) = compare_values(stored, value, path.is_id_like()) else {
                        return false;
                    };
                    match op {
                        CompareOp::Lt => ordering == Ordering::Less,
                        CompareOp::Le => ordering != Ordering::Greater,
                        CompareOp::Gt => ordering == Ordering::Greater,
                        _ => ordering != Ordering::Less,
                    }
                }
            }
        }
        Predicate::In {
            path,
            negated,
            values,
        } => {
            let stored = path.value(store, table, row).unwrap_or(&Value::Null);
            let found = values.iter().any(|v| values_equal(path, stored, v));
            found != *negated
        }
    }
}

/// Runs the query and returns the matching row indexes in result order, after `LIMIT`.
/// `include_deleted` is true for queryAll.
pub(crate) fn run(store: &Store, query: &CompiledQuery, include_deleted: bool) -> Vec<usize> {
    let table = &store.tables[query.table];
    let mut rows: Vec<usize> = (0..table.rows.len())
        .filter(|&row| include_deleted || !table.is_deleted(row))
        .filter(|&row| {
            query
                .filter
                .as_ref()
                .is_none_or(|p| matches(p, store, query.table, row))
        })
        .collect();

    if !query.order.is_empty() {
        let mut keyed: Vec<(Vec<Value>, usize)> = rows
            .iter()
            .map(|&row| {
                let key = query
                    .order
                    .iter()
                    .map(|k| {
                        k.path
                            .value(store, query.table, row)
                            .cloned()
                            .unwrap_or(Value::Null)
                    })
                    .collect();
                (key, row)
            })
            .collect();
        // A stable sort keeps insertion order for rows whose keys all tie.
        keyed.sort_by(|(a, _), (b, _)| compare_keys(&query.order, a, b));
        rows = keyed.into_iter().map(|(_, row)| row).collect();
    }
    if let Some(limit) = query.limit {
        rows.truncate(limit);
    }
    rows
}

fn compare_keys(order: &[SortKey], a: &[Value], b: &[Value]) -> Ordering {
    for (key, (x, y)) in order.iter().zip(a.iter().zip(b)) {
        let ordering = match (x, y) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) if key.nulls_last => Ordering::Greater,
            (Value::Null, _) => Ordering::Less,
            (_, Value::Null) if key.nulls_last => Ordering::Less,
            (_, Value::Null) => Ordering::Greater,
            _ => {
                let ordering =
                    compare_values(x, y, key.path.is_id_like()).unwrap_or(Ordering::Equal);
                if key.descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            }
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Builds the `attributes` object of a record: its type and its REST URL under `version`.
pub(crate) fn attributes(object: &str, id: &str, version: &str) -> Json {
    let mut map = Map::new();
    map.insert("type".into(), Json::String(object.to_string()));
    map.insert(
        "url".into(),
        Json::String(format!("/services/data/{version}/sobjects/{object}/{id}")),
    );
    Json::Object(map)
}

/// Renders one result row with the selected fields, nesting parent fields under their
/// relationship name, or `null` where the lookup is empty.
pub(crate) fn render_row(
    store: &Store,
    select: &[FieldPath],
    table: usize,
    row: usize,
    version: &str,
) -> Json {
    let mut record = Map::new();
    let t = &store.tables[table];
    record.insert(
        "attributes".into(),
        attributes(t.def.name, t.id(row), version),
    );
    for path in select {
        insert_path(&mut record, store, path, &path.hops, table, row, version);
    }
    Json::Object(record)
}

fn insert_path(
    record: &mut Map<String, Json>,
    store: &Store,
    path: &FieldPath,
    hops: &[Hop],
    table: usize,
    row: usize,
    version: &str,
) {
    let Some((hop, rest)) = hops.split_first() else {
        let t = &store.tables[table];
        let value = column_for(&path.columns, table)
            .map(|column| field_json(t, row, column))
            .unwrap_or(Json::Null);
        record.insert(path.name.to_string(), value);
        return;
    };
    match follow(store, hop, table, row) {
        None => {
            record.entry(hop.name).or_insert(Json::Null);
        }
        Some((parent_table, parent_row)) => {
            let parent = record.entry(hop.name).or_insert_with(|| {
                let t = &store.tables[parent_table];
                let mut map = Map::new();
                map.insert(
                    "attributes".into(),
                    attributes(t.def.name, t.id(parent_row), version),
                );
                Json::Object(map)
            });
            if let Json::Object(map) = parent {
                insert_path(map, store, path, rest, parent_table, parent_row, version);
            }
        }
    }
}
