//! HubSpot JSON shapes shared by reads and writes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use leadscore_connector::ConnectorError;
use serde::{Deserialize, Deserializer};

use crate::objects::modstamp_property;
use crate::props::parse_datetime;

/// A CRM object as list, search and batch calls return it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectWire {
    pub id: String,
    #[serde(default)]
    pub properties: HashMap<String, Option<String>>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub archived_at: Option<String>,
}

impl ObjectWire {
    /// Returns a property's value, with empty strings as absent.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .get(name)
            .and_then(|value| value.as_deref())
            .filter(|value| !value.trim().is_empty())
    }

    /// Returns the change stamp: the object type's modified-date property, else `updatedAt`.
    /// Archived records use `archivedAt` when it is later, because archiving may leave the
    /// modified date alone.
    pub fn modstamp(&self, object_type: &str) -> Result<DateTime<Utc>, ConnectorError> {
        let property = modstamp_property(object_type);
        let stamp = self
            .property(property)
            .and_then(parse_datetime)
            .or_else(|| self.updated_at.as_deref().and_then(parse_datetime))
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{object_type} record {} has no valid {property} or updatedAt",
                    self.id
                ))
            })?;
        let archived_at = self.archived_at.as_deref().and_then(parse_datetime);
        Ok(match archived_at {
            Some(at) if self.archived && at > stamp => at,
            _ => stamp,
        })
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct NextWire {
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct PagingWire {
    #[serde(default)]
    pub next: Option<NextWire>,
}

impl PagingWire {
    pub fn after(paging: &Option<PagingWire>) -> Option<String> {
        paging
            .as_ref()
            .and_then(|paging| paging.next.as_ref())
            .and_then(|next| next.after.clone())
            .filter(|after| !after.is_empty())
    }
}

/// A list or search page.
#[derive(Debug, Deserialize)]
pub(crate) struct ObjectPageWire {
    pub results: Vec<ObjectWire>,
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub paging: Option<PagingWire>,
}

/// Accepts an id sent as a JSON string or number.
pub(crate) fn id_from_string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => text,
        Id::Number(number) => number.to_string(),
    })
}

/// Orders HubSpot ids numerically when both are numbers, else as text.
// NOTE: pages are sorted by (modstamp, numeric id), the order HubSpot search pages ids within
// one stamp. `Cursor` compares ids as text, so "9" sorts after "10" there. The pipeline only
// relies on the stamp when it restarts a pull.
pub(crate) fn compare_ids(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}
