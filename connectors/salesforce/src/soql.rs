//! SOQL text for incremental pulls, and the query-string encoding Salesforce expects.

use leadscore_connector::{ConnectorError, Cursor, PullSpec};

/// The fields every pull selects first, in this order.
const ID_FIELD: &str = "Id";
const MODSTAMP_FIELD: &str = "SystemModstamp";
const DELETED_FIELD: &str = "IsDeleted";

/// Checks that `name` is an API name (letters, digits, underscores), so that config values
/// cannot change the shape of the query.
pub(crate) fn validate_object_name(name: &str) -> Result<(), ConnectorError> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if valid {
        Ok(())
    } else {
        Err(ConnectorError::Rejected {
            code: "INVALID_TYPE".to_string(),
            message: format!(
                "object name {name:?} is not a Salesforce API name; use letters, digits and \
                 underscores only, for example `Opportunity` or `Deal__c`"
            ),
        })
    }
}

/// Checks that `path` is a field API name or a dotted path of them (`Account.Owner.IsActive`).
pub(crate) fn validate_field_path(path: &str) -> Result<(), ConnectorError> {
    let valid = path.split('.').all(|segment| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && segment
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
    });
    if valid {
        Ok(())
    } else {
        Err(ConnectorError::Rejected {
            code: "INVALID_FIELD".to_string(),
            message: format!(
                "field {path:?} is not a Salesforce field API name or dotted parent path; use \
                 names such as `StageName` or `Account.Owner.IsActive`"
            ),
        })
    }
}

/// Returns the fields to select: `Id`, `SystemModstamp`, `IsDeleted` when deleted rows are
/// included, then the spec's fields without case-insensitive duplicates.
pub(crate) fn select_list(spec: &PullSpec) -> Result<Vec<String>, ConnectorError> {
    let mut fields = vec![ID_FIELD.to_string(), MODSTAMP_FIELD.to_string()];
    if spec.include_deleted {
        fields.push(DELETED_FIELD.to_string());
    }
    for field in &spec.fields {
        validate_field_path(field)?;
        if !fields.iter().any(|f| f.eq_ignore_ascii_case(field)) {
            fields.push(field.clone());
        }
    }
    Ok(fields)
}

/// Builds the pull query. With a cursor, the filter is `>=` the cursor's modstamp floored to
/// whole seconds, because SOQL datetime literals are sent without fractions. The records
/// stamped earlier in that second, which this filter lets through, are dropped after the fetch.
pub(crate) fn build_pull_query(
    spec: &PullSpec,
    cursor: Option<&Cursor>,
) -> Result<String, ConnectorError> {
    validate_object_name(&spec.object)?;
    let fields = select_list(spec)?;
    let mut soql = format!("SELECT {} FROM {}", fields.join(", "), spec.object);
    if let Some(cursor) = cursor {
        let literal = cursor.modstamp.format("%Y-%m-%dT%H:%M:%SZ");
        soql.push_str(&format!(" WHERE {MODSTAMP_FIELD} >= {literal}"));
    }
    soql.push_str(&format!(" ORDER BY {MODSTAMP_FIELD} ASC, {ID_FIELD} ASC"));
    Ok(soql)
}

/// Builds the query of a Bulk API 2.0 pull: the pull query without its ORDER BY, because
/// sorting makes Salesforce give up chunking the job by primary key, and a large sorted job
/// can time out. Its pages come in no order, and each `Page` is marked unordered.
pub(crate) fn build_bulk_query(
    spec: &PullSpec,
    cursor: Option<&Cursor>,
) -> Result<String, ConnectorError> {
    let soql = build_pull_query(spec, cursor)?;
    let order = format!(" ORDER BY {MODSTAMP_FIELD} ASC, {ID_FIELD} ASC");
    Ok(soql.strip_suffix(&order).unwrap_or(&soql).to_string())
}

/// Builds the pull query for the records strictly after `after` in (modstamp, id) order.
/// Salesforce stores change stamps in whole seconds, so a stamp without a fraction is
/// compared exactly. A stamp with a fraction, which no Salesforce org returns, falls back to
/// the inclusive query of [`build_pull_query`].
pub(crate) fn build_pull_query_after(
    spec: &PullSpec,
    after: &Cursor,
) -> Result<String, ConnectorError> {
    if after.modstamp.timestamp_subsec_nanos() != 0 {
        return build_pull_query(spec, Some(after));
    }
    validate_object_name(&spec.object)?;
    let id = &after.id;
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ConnectorError::Payload(format!(
            "the stored cursor id {id:?} is not a Salesforce id, so the store is damaged or holds \
             another CRM's records; move the store folder aside and run `leadscore pull`"
        )));
    }
    let fields = select_list(spec)?;
    let literal = after.modstamp.format("%Y-%m-%dT%H:%M:%SZ");
    Ok(format!(
        "SELECT {} FROM {} WHERE ({MODSTAMP_FIELD} > {literal} OR ({MODSTAMP_FIELD} = {literal} AND {ID_FIELD} > '{id}')) ORDER BY {MODSTAMP_FIELD} ASC, {ID_FIELD} ASC",
        fields.join(", "),
        spec.object
    ))
}

/// Returns the path and query string of a `query` or `queryAll` call, with the whole SOQL
/// form-encoded (so a literal `+` becomes `%2B` and cannot arrive as a space).
pub(crate) fn query_path(api_version: &str, soql: &str, include_deleted: bool) -> String {
    let resource = if include_deleted { "queryAll" } else { "query" };
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("q", soql)
        .finish();
    format!("/services/data/v{api_version}/{resource}?{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn spec(fields: &[&str], include_deleted: bool) -> PullSpec {
        PullSpec {
            object: "Opportunity".to_string(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            include_deleted,
        }
    }

    #[test]
    fn query_after_cursor_compares_ids_in_its_second() {
        let after = Cursor {
            modstamp: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 3).unwrap(),
            id: "001Aa000001".to_string(),
        };
        let soql = build_pull_query_after(&spec(&["StageName"], true), &after).unwrap();
        assert!(
            soql.contains(
                "WHERE (SystemModstamp > 2024-05-01T12:00:03Z OR (SystemModstamp = 2024-05-01T12:00:03Z AND Id > '001Aa000001'))"
            ),
            "{soql}"
        );
        let injected = Cursor {
            id: "x' OR Name != '".to_string(),
            ..after
        };
        assert!(build_pull_query_after(&spec(&["StageName"], true), &injected).is_err());
    }

    #[test]
    fn query_without_cursor() {
        let soql = build_pull_query(&spec(&["StageName", "Account.Name"], false), None).unwrap();
        assert_eq!(
            soql,
            "SELECT Id, SystemModstamp, StageName, Account.Name FROM Opportunity \
             ORDER BY SystemModstamp ASC, Id ASC"
        );
    }

    #[test]
    fn query_with_cursor_floors_seconds() {
        let cursor = Cursor {
            modstamp: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 3).unwrap()
                + chrono::Duration::milliseconds(999),
            id: "006A".to_string(),
        };
        let soql = build_pull_query(&spec(&["StageName"], true), Some(&cursor)).unwrap();
        assert_eq!(
            soql,
            "SELECT Id, SystemModstamp, IsDeleted, StageName FROM Opportunity \
             WHERE SystemModstamp >= 2024-05-01T12:00:03Z ORDER BY SystemModstamp ASC, Id ASC"
        );
    }

    #[test]
    fn select_list_drops_duplicates() {
        let fields = select_list(&spec(
            &["id", "SystemModstamp", "Name", "NAME", "IsDeleted"],
            true,
        ))
        .unwrap();
        assert_eq!(fields, vec!["Id", "SystemModstamp", "IsDeleted", "Name"]);
    }

    #[test]
    fn invalid_names_rejected() {
        for bad in [
            "Name, Password",
            "",
            "Account..Name",
            "Name--",
            "1Name",
            "Owner.",
        ] {
            let error = select_list(&spec(&[bad], false)).unwrap_err();
            assert!(
                matches!(&error, ConnectorError::Rejected { code, .. } if code == "INVALID_FIELD"),
                "{bad:?} gave {error:?}"
            );
        }
        let mut bad_object = spec(&["Name"], false);
        bad_object.object = "Lead WHERE".to_string();
        assert!(build_pull_query(&bad_object, None).is_err());
    }

    #[test]
    fn query_path_encodes_plus_and_spaces() {
        let path = query_path(
            "59.0",
            "SELECT Id FROM Lead WHERE X > 2024-05-01T00:00:00+00:00",
            false,
        );
        assert!(path.starts_with("/services/data/v59.0/query?q="), "{path}");
        assert!(path.contains("%2B00%3A00"), "{path}");
        assert!(!path[path.find('?').unwrap()..].contains(' '), "{path}");
        let decoded: Vec<(String, String)> =
            url::form_urlencoded::parse(path.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            decoded[0].1,
            "SELECT Id FROM Lead WHERE X > 2024-05-01T00:00:00+00:00"
        );
    }

    #[test]
    fn query_all_path_for_deleted() {
        assert!(query_path("59.0", "SELECT Id FROM Lead", true)
            .starts_with("/services/data/v59.0/queryAll?q="));
    }
}
