//! The contract between leadscore and a CRM connector, and the CRM-neutral types that cross it.
//!
//! A connector turns one CRM's wire format into [`Record`]s and [`ObjectSchema`]s, and turns
//! [`RecordUpdate`]s back into that CRM's batch writes. Nothing outside a connector crate sees
//! the CRM's JSON shapes. The pipeline drives paging itself, one [`Page`] at a time, so that it
//! can persist every page and its cursor before asking for the next one.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub mod http;
pub mod limits;

/// A field value, typed by the CRM's own field metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Returns the value as a number: numbers as they are, booleans as 0 or 1, and text that
    /// parses as a number. Everything else is `None`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Returns a point in time: a datetime as it is, a date as midnight UTC.
    pub fn as_datetime(&self) -> Option<DateTime<Utc>> {
        match self {
            Value::DateTime(t) => Some(*t),
            Value::Date(d) => d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(s) => f.write_str(s),
            Value::Date(d) => write!(f, "{d}"),
            Value::DateTime(t) => write!(
                f,
                "{}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
        }
    }
}

/// One CRM record in CRM-neutral form.
///
/// Parent fields selected through a relationship are flattened into dotted keys
/// (`Owner.IsActive`), with `Value::Null` when the lookup is empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// CRM object name as configured, for example `Account`.
    pub object: String,
    pub id: String,
    /// The change stamp the incremental cursor follows (`SystemModstamp` in Salesforce).
    pub modstamp: DateTime<Utc>,
    /// True when the CRM reports the record as deleted or merged away.
    pub deleted: bool,
    pub fields: BTreeMap<String, Value>,
}

impl Record {
    pub fn get(&self, field: &str) -> &Value {
        self.fields.get(field).unwrap_or(&Value::Null)
    }
}

/// Position of an incremental pull: the last change stamp and id stored, in that order.
///
/// Records are pulled in (modstamp, id) order, so everything at or before the cursor is stored
/// and everything after it is not.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    pub modstamp: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    /// Returns true when a record with this stamp belongs in a pull that starts at this
    /// cursor: its stamp is at or after the cursor's.
    pub fn admits(&self, modstamp: DateTime<Utc>) -> bool {
        modstamp >= self.modstamp
    }
}

/// Pull settings for one object.
#[derive(Clone, Debug, PartialEq)]
pub struct PullSpec {
    /// CRM object name, for example `Opportunity`.
    pub object: String,
    /// Fields to select, including dotted parent fields. The connector always adds the id and
    /// the cursor field.
    pub fields: Vec<String>,
    /// Include deleted and merged records (Salesforce `queryAll`).
    pub include_deleted: bool,
}

/// One page of a pull.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// Records in (modstamp, id) order unless `unordered` is set, none with a stamp before
    /// the cursor the pull started from.
    pub records: Vec<Record>,
    /// Opaque token for the next page, or `None` on the last page.
    pub next: Option<String>,
    /// The CRM's count of rows for the whole query, when it reports one.
    pub total: Option<u64>,
    /// True when the records of this pull come in no particular order: a Bulk API 2.0 job,
    /// whose query has no ORDER BY because sorting a large object can make the job time out.
    /// The caller then stores each page without moving the cursor, and moves it once the last
    /// page is stored.
    pub unordered: bool,
}

/// Field types the pipeline distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldKind {
    Id,
    Reference,
    Text,
    LongText,
    Picklist,
    Boolean,
    Number,
    Date,
    DateTime,
    Other,
}

/// One field of an object, as the CRM describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldSchema {
    pub name: String,
    pub kind: FieldKind,
    pub updateable: bool,
    /// Active picklist values (empty for other kinds).
    pub picklist_values: Vec<String>,
    /// True when writing a value outside `picklist_values` is rejected.
    pub restricted_picklist: bool,
    /// Maximum length for text fields, in characters.
    pub length: Option<u32>,
    /// For references: the relationship name used in dotted fields (`Owner` for `OwnerId`).
    pub relationship_name: Option<String>,
    /// For references: the objects the field can point at.
    pub reference_to: Vec<String>,
}

/// The fields of one object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectSchema {
    pub name: String,
    pub fields: Vec<FieldSchema>,
}

impl ObjectSchema {
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// A change to write to one record.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordUpdate {
    pub object: String,
    pub id: String,
    pub fields: BTreeMap<String, Value>,
}

/// Failure of one record in a batch write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordError {
    /// The CRM's error code, for example `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`.
    pub code: String,
    pub message: String,
    pub fields: Vec<String>,
    /// True for failures worth retrying later (row locks, transient server errors).
    pub retryable: bool,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if !self.fields.is_empty() {
            write!(f, " (fields: {})", self.fields.join(", "))?;
        }
        Ok(())
    }
}

/// The result of writing one record, in the order the updates were given.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteOutcome {
    pub id: String,
    pub result: Result<(), RecordError>,
}

/// Priority of a task created for a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskPriority {
    High,
    Normal,
    Low,
}

/// A follow-up task to create for one user on one record, open and due on `due`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// The object of the record the task is about: `Account`, `Contact` or `Lead`.
    pub object: String,
    pub record_id: String,
    /// The user the task is assigned to.
    pub owner_id: String,
    pub subject: String,
    pub body: String,
    pub due: NaiveDate,
    pub priority: TaskPriority,
}

/// A search for a task created earlier on one record, recognised by a marker word in its body.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskLookup {
    /// The object of the record the task is about: `Account`, `Contact` or `Lead`.
    pub object: String,
    pub record_id: String,
    /// A word of letters and digits only that the task's body contains.
    pub marker: String,
    /// No matching task was created before this time, so older tasks need not be read.
    pub created_after: DateTime<Utc>,
}

/// API usage as the CRM last reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUsage {
    pub used: u64,
    pub max: u64,
}

/// A failure of a whole connector call, as opposed to a per-record [`RecordError`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// Credentials were rejected; re-authorising is the fix.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The CRM's API allowance is spent.
    #[error("API request limit exceeded: {0}")]
    LimitExceeded(String),
    /// This run's share of the CRM's daily API calls is used up. Work saved before the call
    /// stays saved, and the next run resumes from it.
    #[error("API budget of this run spent: {0}")]
    BudgetSpent(String),
    /// The query or object named something the CRM does not have.
    #[error("the CRM rejected the request: {code}: {message}")]
    Rejected { code: String, message: String },
    /// A paging token expired; the pull restarts from the stored cursor.
    #[error("query locator expired or invalid: {0}")]
    LocatorExpired(String),
    /// Network failures and server errors that persisted through retries.
    #[error("CRM request failed: {0}")]
    Transport(String),
    /// The CRM returned a body this connector could not parse.
    #[error("unexpected response from the CRM: {0}")]
    Payload(String),
}

/// Implemented once per CRM. The pipeline is generic over it and never reads wire types.
pub trait Connector {
    /// Short name of the CRM for logs, for example `salesforce`.
    fn name(&self) -> &'static str;

    /// Largest number of records one [`Connector::update`] call sends in a single request.
    fn max_batch(&self) -> usize;

    /// Authenticates and returns the API usage, proving the credentials and URL work.
    fn check(&self) -> impl Future<Output = Result<ApiUsage, ConnectorError>> + Send;

    /// Describes one object's fields.
    fn describe(
        &self,
        object: &str,
    ) -> impl Future<Output = Result<ObjectSchema, ConnectorError>> + Send;

    /// Starts a pull of the records whose modstamp is at or after the cursor's (all records
    /// when `None`), in (modstamp, id) order, and returns the first page. Records that share
    /// the cursor's modstamp are included whatever their id, because a record can commit
    /// after the pull that stored the cursor with the same stamp; the caller drops the copies
    /// it already has.
    fn pull_first(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
    ) -> impl Future<Output = Result<Page, ConnectorError>> + Send;

    /// Starts a pull of the records strictly after `after` in (modstamp, id) order. A pull
    /// restarted part way (after an expired query locator) starts here, so that a block of
    /// records sharing one stamp that is longer than a page is not read from its start again.
    /// The default starts at `after`'s stamp whatever the id, as [`Connector::pull_first`]
    /// does, and the caller drops the copies it already has.
    fn pull_after(
        &self,
        spec: &PullSpec,
        after: &Cursor,
    ) -> impl Future<Output = Result<Page, ConnectorError>> + Send {
        self.pull_first(spec, Some(after))
    }

    /// Fetches the page after the one whose `next` token is given.
    fn pull_next(
        &self,
        spec: &PullSpec,
        cursor: Option<&Cursor>,
        next: &str,
    ) -> impl Future<Output = Result<Page, ConnectorError>> + Send;

    /// Writes field changes, at most [`Connector::max_batch`] records per request, and returns
    /// one outcome per update in the order given. A per-record failure is an `Err` in its
    /// outcome; only failures of the whole call are returned as `ConnectorError`.
    fn update(
        &self,
        updates: &[RecordUpdate],
    ) -> impl Future<Output = Result<Vec<WriteOutcome>, ConnectorError>> + Send;

    /// Reads the current values of `fields` of the records with these ids, for example to
    /// learn whether an interrupted write reached the CRM. Returns one record per id the CRM
    /// still has (ids that are deleted, merged away or unknown are left out), in no particular
    /// order. The default implementation reports that the connector cannot read by id.
    fn fetch(
        &self,
        object: &str,
        ids: &[String],
        fields: &[String],
    ) -> impl Future<Output = Result<Vec<Record>, ConnectorError>> + Send {
        let _ = (ids, fields);
        let message = format!(
            "the {} connector cannot read {object} records by id",
            self.name()
        );
        async move {
            Err(ConnectorError::Rejected {
                code: "UNSUPPORTED".to_string(),
                message,
            })
        }
    }

    /// Creates open tasks, each assigned to its `owner_id` and attached to its record, and
    /// returns one result per task in the order given: the new task's id or the CRM's error.
    /// A create is never resent by the transport, so a call that fails as a whole may still
    /// have created some tasks; [`Connector::find_tasks`] finds them. The default
    /// implementation reports that the connector cannot create tasks.
    fn create_tasks(
        &self,
        tasks: &[NewTask],
    ) -> impl Future<Output = Result<Vec<Result<String, RecordError>>, ConnectorError>> + Send {
        let _ = tasks;
        let message = format!("the {} connector cannot create tasks", self.name());
        async move {
            Err(ConnectorError::Rejected {
                code: "UNSUPPORTED".to_string(),
                message,
            })
        }
    }

    /// Looks up tasks created earlier by their marker and returns, per lookup in the order
    /// given, the id of a task on that record whose body contains the marker, or `None`. The
    /// default implementation reports that the connector cannot search tasks.
    fn find_tasks(
        &self,
        lookups: &[TaskLookup],
    ) -> impl Future<Output = Result<Vec<Option<String>>, ConnectorError>> + Send {
        let _ = lookups;
        let message = format!("the {} connector cannot search tasks", self.name());
        async move {
            Err(ConnectorError::Rejected {
                code: "UNSUPPORTED".to_string(),
                message,
            })
        }
    }

    /// API usage as last reported by the CRM, without making a request.
    fn usage(&self) -> Option<ApiUsage>;

    /// The CRM server's clock as of its last response (the HTTP `Date` header), for judging
    /// stored cursors without trusting the local clock. `None` before any response.
    fn server_time(&self) -> Option<DateTime<Utc>> {
        None
    }
}

/// Parses an HTTP `Date` header (`Fri, 04 Dec 2026 20:50:00 GMT`).
pub fn http_date(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Formats an error with its chain of causes, so "error sending request" is followed by the
/// cause, such as "connection refused". A URL that an HTTP error carries is shown without
/// its query string, which may contain a token.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut urls = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(url) = current
            .downcast_ref::<reqwest::Error>()
            .and_then(reqwest::Error::url)
        {
            urls.push(url.clone());
        }
        if !std::ptr::addr_eq(current, error) {
            let cause_text = current.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
        }
        next = current.source();
    }
    for url in urls {
        text = text.replace(url.as_str(), &http::redact_url(&url));
    }
    text
}
