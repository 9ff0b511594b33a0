//! Property definitions: the standard and seeded custom properties of each object, and the
//! checks and normalization of values written through the API.

use crate::hubspot::portal::{
    iso, parse_time, ObjectType, Portal, PropertyDef, PropertyGroup, BUYING_ROLES, LEAD_SOURCES,
    LIFECYCLE_STAGES,
};

/// A property's value type and form field, as in the properties API.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Textarea,
    Number,
    Datetime,
    Boolean,
    Select,
    /// An enumeration shown as checkboxes: several options, joined with `;`.
    MultiSelect,
}

impl Kind {
    fn pair(self) -> (&'static str, &'static str) {
        match self {
            Kind::Text => ("string", "text"),
            Kind::Textarea => ("string", "textarea"),
            Kind::Number => ("number", "number"),
            Kind::Datetime => ("datetime", "date"),
            Kind::Boolean => ("bool", "booleancheckbox"),
            Kind::Select => ("enumeration", "select"),
            Kind::MultiSelect => ("enumeration", "checkbox"),
        }
    }
}

struct Spec<'a> {
    name: String,
    kind: Kind,
    group: &'a str,
    read_only: bool,
    options: Vec<(String, String)>,
}

fn spec<'a>(name: &str, kind: Kind, group: &'a str) -> Spec<'a> {
    Spec {
        name: name.to_string(),
        kind,
        group,
        read_only: false,
        options: Vec::new(),
    }
}

fn read_only<'a>(name: &str, kind: Kind, group: &'a str) -> Spec<'a> {
    Spec {
        read_only: true,
        ..spec(name, kind, group)
    }
}

fn select<'a>(name: &str, group: &'a str, values: &[&str]) -> Spec<'a> {
    Spec {
        options: values
            .iter()
            .map(|v| (v.to_string(), v.to_string()))
            .collect(),
        ..spec(name, Kind::Select, group)
    }
}

/// Builds a label from an internal name: `hospital_type` -> `Hospital type`.
fn label_of(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn add(portal: &mut Portal, object: ObjectType, spec: Spec<'_>, custom: bool, created_at: i64) {
    let (kind, field_type) = spec.kind.pair();
    let def = PropertyDef {
        label: label_of(&spec.name),
        kind: kind.to_string(),
        field_type: field_type.to_string(),
        group: spec.group.to_string(),
        description: String::new(),
        options: spec.options,
        hubspot_defined: !custom,
        read_only_value: spec.read_only,
        calculated: spec.read_only && spec.name.starts_with("hs_is_"),
        created_at,
        name: spec.name,
    };
    portal.properties[object.index()].insert(def.name.clone(), def);
}

fn group(portal: &mut Portal, object: ObjectType, name: &str, label: &str) {
    portal.groups[object.index()].push(PropertyGroup {
        name: name.to_string(),
        label: label.to_string(),
        display_order: -1,
    });
}

/// Defines the standard properties of every object and the custom properties the demo
/// world carries. The leadscore write-back properties are left for clients to create.
pub(crate) fn define_standard(portal: &mut Portal, created_at: i64) {
    use Kind::*;
    use ObjectType::*;
    let common = |group: &'static str, object: ObjectType| {
        vec![
            read_only("hs_object_id", Number, group),
            read_only(object.modified_property(), Datetime, group),
            spec(object.created_property(), Datetime, group),
            spec("hubspot_owner_id", Select, group),
            read_only("hs_merged_object_ids", Text, group),
        ]
    };

    group(
        portal,
        Contacts,
        "contactinformation",
        "Contact information",
    );
    let mut contact = common("contactinformation", Contacts);
    contact.push(read_only(
        "hs_lastmodifieddate",
        Datetime,
        "contactinformation",
    ));
    for name in ["firstname", "lastname", "email", "jobtitle", "company"] {
        contact.push(spec(name, Text, "contactinformation"));
    }
    contact.push(spec("state", Text, "contactinformation"));
    contact.push(spec("city", Text, "contactinformation"));
    let stages: Vec<&str> = LIFECYCLE_STAGES.iter().map(|(_, value)| *value).collect();
    let mut lifecycle = select("lifecyclestage", "contactinformation", &stages);
    lifecycle.options = LIFECYCLE_STAGES
        .iter()
        .map(|(label, value)| (label.to_string(), value.to_string()))
        .collect();
    contact.push(lifecycle);
    for (_, stage) in LIFECYCLE_STAGES {
        let name = format!("hs_lifecyclestage_{stage}_date");
        contact.push(read_only(&name, Datetime, "contactinformation"));
    }
    contact.push(select("buying_role", "contactinformation", &BUYING_ROLES));
    contact.push(spec("specialty", Text, "contactinformation"));
    contact.push(select("lead_source", "contactinformation", &LEAD_SOURCES));
    for property in contact {
        let custom = matches!(
            property.name.as_str(),
            "buying_role" | "specialty" | "lead_source"
        );
        add(portal, Contacts, property, custom, created_at);
    }

    group(
        portal,
        Companies,
        "companyinformation",
        "Company information",
    );
    group(portal, Companies, "hospital", "Hospital");
    let mut company = common("companyinformation", Companies);
    for name in ["name", "domain", "city", "state"] {
        company.push(spec(name, Text, "companyinformation"));
    }
    for property in company {
        add(portal, Companies, property, false, created_at);
    }
    let mut hospital = vec![
        spec("cms_certification_number", Text, "hospital"),
        spec("hospital_type", Text, "hospital"),
        spec("hospital_ownership", Text, "hospital"),
        spec("emergency_services", Boolean, "hospital"),
        spec("cms_overall_rating", Number, "hospital"),
        spec("incumbent_competitor", Text, "hospital"),
    ];
    for name in [
        "hip_knee_discharges",
        "cabg_discharges",
        "ami_discharges",
        "hf_discharges",
        "pn_discharges",
        "copd_discharges",
    ] {
        hospital.push(spec(name, Number, "hospital"));
    }
    // `emergency_services` is an enumeration shown as a checkbox with options true/false.
    hospital[3].options = vec![("Yes".into(), "true".into()), ("No".into(), "false".into())];
    let mut service_lines = spec("service_lines", MultiSelect, "hospital");
    service_lines.options = ["cardiology", "orthopedics", "oncology"]
        .map(|option| (option.to_string(), option.to_string()))
        .to_vec();
    hospital.push(service_lines);
    for property in hospital {
        add(portal, Companies, property, true, created_at);
    }

    group(portal, Deals, "dealinformation", "Deal information");
    let mut deal = common("dealinformation", Deals);
    deal.push(spec("dealname", Text, "dealinformation"));
    deal.push(spec("amount", Number, "dealinformation"));
    // The currency of `amount` in a portal with several currencies; empty means the
    // company currency.
    deal.push(select(
        "deal_currency_code",
        "dealinformation",
        &["USD", "EUR", "GBP", "CAD"],
    ));
    deal.push(spec("closedate", Datetime, "dealinformation"));
    deal.push(spec("dealstage", Select, "dealinformation"));
    deal.push(spec("pipeline", Select, "dealinformation"));
    deal.push(read_only("hs_is_closed", Boolean, "dealinformation"));
    deal.push(read_only("hs_is_closed_won", Boolean, "dealinformation"));
    for property in deal {
        add(portal, Deals, property, false, created_at);
    }

    let specific: [(ObjectType, &str, &[&str]); 5] = [
        (
            Calls,
            "callinformation",
            &[
                "hs_call_title",
                "hs_call_body",
                "hs_call_direction",
                "hs_call_disposition",
                "hs_call_status",
            ],
        ),
        (
            Meetings,
            "meetinginformation",
            &["hs_meeting_title", "hs_meeting_body", "hs_meeting_outcome"],
        ),
        (Notes, "noteinformation", &["hs_note_body"]),
        (
            Emails,
            "emailinformation",
            &["hs_email_subject", "hs_email_direction", "hs_email_status"],
        ),
        (
            Tasks,
            "taskinformation",
            &[
                "hs_task_subject",
                "hs_task_body",
                "hs_task_status",
                "hs_task_priority",
                "hs_task_type",
            ],
        ),
    ];
    for (object, group_name, names) in specific {
        group(portal, object, group_name, &label_of(group_name));
        let mut properties = common(group_name, object);
        properties.push(spec("hs_timestamp", Datetime, group_name));
        for name in names {
            let kind = if name.ends_with("_body") {
                Textarea
            } else {
                Text
            };
            properties.push(spec(name, kind, group_name));
        }
        if object == Calls {
            properties.push(spec("hs_call_duration", Number, group_name));
        }
        if object == Meetings {
            properties.push(spec("hs_meeting_start_time", Datetime, group_name));
            properties.push(spec("hs_meeting_end_time", Datetime, group_name));
        }
        for property in properties {
            add(portal, object, property, false, created_at);
        }
    }
    // NOTE: HubSpot's enumerations such as hs_task_status and hs_call_direction are plain
    // text here, so any value is accepted on write.
}

/// One invalid property value, reported as HubSpot's `VALIDATION_ERROR` details.
#[derive(Debug)]
pub(crate) struct InvalidProperty {
    pub name: String,
    pub message: String,
    /// `PROPERTY_DOESNT_EXIST`, `READ_ONLY_VALUE`, `INVALID_OPTION`, `INVALID_INTEGER`,
    /// `INVALID_DATE`, `INVALID_BOOLEAN` or `INVALID_OWNER_ID`.
    pub code: &'static str,
}

/// Checks a written value against its property definition and returns the value as stored:
/// datetimes become ISO 8601, dates `YYYY-MM-DD`, numbers stay as written.
pub(crate) fn normalize(
    portal: &Portal,
    object: ObjectType,
    name: &str,
    value: &str,
) -> Result<String, InvalidProperty> {
    let invalid = |code: &'static str, message: String| InvalidProperty {
        name: name.to_string(),
        message,
        code,
    };
    let Some(def) = portal.property(object, name) else {
        return Err(invalid(
            "PROPERTY_DOESNT_EXIST",
            format!("Property \"{name}\" does not exist"),
        ));
    };
    if def.read_only_value {
        return Err(invalid(
            "READ_ONLY_VALUE",
            format!("{name} is a read only property; its value cannot be set."),
        ));
    }
    if value.is_empty() {
        return Ok(String::new());
    }
    match def.kind.as_str() {
        "number" => value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(|_| value.trim().to_string())
            .ok_or_else(|| {
                invalid(
                    "INVALID_INTEGER",
                    format!("{value} is not a valid number for {name}"),
                )
            }),
        "datetime" => parse_time(value).map(iso).ok_or_else(|| {
            invalid(
                "INVALID_DATE",
                format!("{value} is not a valid datetime; send epoch milliseconds or ISO 8601"),
            )
        }),
        "date" => {
            let ms = parse_time(value).ok_or_else(|| {
                invalid(
                    "INVALID_DATE",
                    format!("{value} is not a valid date; send YYYY-MM-DD or epoch milliseconds"),
                )
            })?;
            if ms % 86_400_000 != 0 {
                return Err(invalid(
                    "INVALID_DATE",
                    format!("{value} is not at midnight UTC; dates must be midnight UTC"),
                ));
            }
            Ok(iso(ms)[..10].to_string())
        }
        "bool" => match value {
            "true" | "false" => Ok(value.to_string()),
            _ => Err(invalid(
                "INVALID_BOOLEAN",
                format!("{value} is not a valid boolean for {name}; send true or false"),
            )),
        },
        "enumeration" => check_option(portal, object, def, value).map_err(|message| {
            let code = if name == "hubspot_owner_id" {
                "INVALID_OWNER_ID"
            } else {
                "INVALID_OPTION"
            };
            invalid(code, message)
        }),
        _ => Ok(value.to_string()),
    }
}

fn check_option(
    portal: &Portal,
    object: ObjectType,
    def: &PropertyDef,
    value: &str,
) -> Result<String, String> {
    if def.name == "hubspot_owner_id" {
        let known = value
            .parse::<u64>()
            .is_ok_and(|id| portal.owners.iter().any(|owner| owner.id == id));
        return if known {
            Ok(value.to_string())
        } else {
            Err(format!("{value} is not a valid owner id"))
        };
    }
    if object == ObjectType::Deals && def.name == "pipeline" {
        return if portal.pipelines.iter().any(|p| p.id == value) {
            Ok(value.to_string())
        } else {
            Err(format!("{value} is not a valid pipeline id"))
        };
    }
    if object == ObjectType::Deals && def.name == "dealstage" {
        let known = portal
            .pipelines
            .iter()
            .any(|p| p.stages.iter().any(|s| s.id == value));
        return if known {
            Ok(value.to_string())
        } else {
            Err(format!("{value} is not a valid deal stage id"))
        };
    }
    let parts: Vec<&str> = if def.field_type == "checkbox" {
        value.split(';').collect()
    } else {
        vec![value]
    };
    for part in parts {
        if !def.options.iter().any(|(_, option)| option == part) {
            return Err(format!("{part} was not one of the allowed options"));
        }
    }
    Ok(value.to_string())
}

/// Valid `type` / `fieldType` pairs of a property create request.
pub(crate) fn valid_pair(kind: &str, field_type: &str) -> bool {
    matches!(
        (kind, field_type),
        ("number", "number")
            | ("number", "calculation_equation")
            | (
                "string",
                "text" | "textarea" | "html" | "file" | "phonenumber"
            )
            | (
                "enumeration",
                "select" | "radio" | "checkbox" | "booleancheckbox"
            )
            | ("date", "date")
            | ("datetime", "date")
            | ("bool", "booleancheckbox")
            | ("phone_number", "phonenumber")
    )
}
