//! Local fake CRMs for tests, the demo and anyone without a real org.
//!
//! The Salesforce sandbox serves a subset of the REST API (OAuth token endpoint, query and
//! queryAll over a SOQL subset, describe, limits, sObject Collections create, retrieve and
//! update, single-record create, get and update, Bulk API 2.0 query jobs, and the Tooling API's
//! `CustomField` create) over real HTTP on a loopback address. It
//! serves whatever records it is given; the demo org comes from the `leadscore-demo-org` crate.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use leadscore_sandbox::{Sandbox, SandboxOptions};
//! let sandbox = Sandbox::new(Default::default(), SandboxOptions::default()).expect("valid records");
//! let running = sandbox.serve("127.0.0.1:0".parse().unwrap()).await?;
//! println!("login and instance URL: {}", running.url());
//! running.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod hubspot;
pub mod schema;

mod bulk;
mod control;
mod describe;
mod query;
mod retrieve;
mod server;
mod soql;
mod store;
mod tls;
mod tooling;
mod write;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::hubspot::{HubSpotHandle, HubSpotOptions, HubSpotSandbox, RunningHubSpot};
use crate::server::Shared;
use crate::store::{default_value, value_from_json, Store, Value};

/// A record as JSON field values keyed by API field name, in REST API format.
pub type RecordMap = serde_json::Map<String, serde_json::Value>;

/// Credentials and limits of a sandbox org.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Consumer key the token endpoint accepts.
    pub client_id: String,
    /// Consumer secret the token endpoint accepts.
    pub client_secret: String,
    /// Refresh token the token endpoint exchanges for access tokens.
    pub refresh_token: String,
    /// Lifetime of an access token; afterwards REST calls with it get 401.
    pub token_ttl: Duration,
    /// Maximum rows per query page, whatever batch size a client asks for.
    pub page_size: usize,
    /// Authenticated REST requests allowed before calls get 403 `REQUEST_LIMIT_EXCEEDED`.
    pub daily_request_limit: u64,
    /// Lifetime of a query locator (`nextRecordsUrl`).
    pub locator_ttl: Duration,
    /// Maximum rows per Bulk API 2.0 results page, whatever `maxRecords` a client asks for.
    pub bulk_page_size: usize,
    /// Starts the org without the custom fields leadscore writes and reads
    /// ([`schema::LEADSCORE_FIELDS`]), as a real org is before `leadscore check --fix`.
    pub bare: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            client_id: "3MVG9leadscoreSandboxClientId".to_string(),
            client_secret: "leadscore-sandbox-client-secret".to_string(),
            refresh_token: "5Aep861leadscoreSandboxRefreshToken".to_string(),
            token_ttl: Duration::from_secs(2 * 60 * 60),
            page_size: 2000,
            daily_request_limit: 1_000_000,
            locator_ttl: Duration::from_secs(2 * 24 * 60 * 60),
            bulk_page_size: 50_000,
            bare: false,
        }
    }
}

/// Errors from building a sandbox or changing its records through [`SandboxHandle`].
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the HubSpot sandbox has no scope {scope:?} to withhold; it grants {known}")]
    UnknownScope { scope: String, known: String },
    #[error("unknown object '{object}': the sandbox schema has {known}; rename the object or extend the schema")]
    UnknownObject { object: String, known: String },
    #[error(
        "{object} record {id}: unknown field '{field}'; remove it or add it to the sandbox schema"
    )]
    UnknownField {
        object: String,
        id: String,
        field: String,
    },
    #[error("{object} record {id}: field {field} has value {value}, but it must be {expected}")]
    InvalidValue {
        object: String,
        id: String,
        field: String,
        value: String,
        expected: String,
    },
    #[error("{object} record number {index} has no Id; give every record a string Id")]
    MissingId { object: String, index: usize },
    #[error("{object} record {id}: the id must start with the key prefix {prefix}")]
    WrongIdPrefix {
        object: String,
        id: String,
        prefix: String,
    },
    #[error("{object} record {id}: the id is used by another record; ids must be unique")]
    DuplicateId { object: String, id: String },
    #[error("{object} record {id} not found")]
    RecordNotFound { object: String, id: String },
}

/// One HTTP request the sandbox received, for tests to assert on.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, still percent-encoded.
    pub query: Option<String>,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// The request body, with invalid UTF-8 replaced.
    pub body: String,
    /// The HTTP status of the response.
    pub status: u16,
}

/// A sandbox org with its records, not yet listening.
pub struct Sandbox {
    shared: Arc<Shared>,
}

impl Sandbox {
    /// Validates every record against the schema (unknown object or field -> error naming it
    /// and the record id); fills IsDeleted=false and missing SystemModstamp/LastModifiedDate
    /// from CreatedDate; accepts datetimes as RFC 3339 (`2024-05-01T12:00:03.000Z`) or in
    /// Salesforce form (`2024-05-01T12:00:03.000+0000`), dates as `YYYY-MM-DD`. A record
    /// without CreatedDate gets the current time. Contact and Lead get their read-only `Name`
    /// built from FirstName and LastName, replacing any `Name` the record gives.
    pub fn new(
        records: BTreeMap<String, Vec<RecordMap>>,
        options: SandboxOptions,
    ) -> Result<Sandbox, SandboxError> {
        let mut objects = schema::objects();
        if options.bare {
            schema::remove_leadscore_fields(&mut objects);
        }
        let sandbox = Sandbox {
            shared: Arc::new(Shared::new(Store::with_objects(objects), options)),
        };
        sandbox.add_records(records)?;
        Ok(sandbox)
    }

    /// Adds more seed records, checked and completed as [`Sandbox::new`] does. Seeding in
    /// several calls lets a caller build a large org piece by piece, so that only one piece
    /// exists as JSON at a time. On an error, the records before the failing one stay added.
    pub fn add_records(
        &self,
        records: BTreeMap<String, Vec<RecordMap>>,
    ) -> Result<(), SandboxError> {
        let mut state = self.shared.lock();
        let store = &mut state.store;
        for (object, rows) in records {
            let table = store
                .table_index(&object)
                .ok_or_else(|| unknown_object(store, &object))?;
            for (index, record) in rows.into_iter().enumerate() {
                let row = seed_row(store, table, index, &record)?;
                store.insert(table, row);
            }
        }
        Ok(())
    }

    /// Binds `addr` and serves the REST API until [`RunningSandbox::shutdown`].
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<RunningSandbox> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let url = format!("http://{local}");
        // `serve` consumes the sandbox, so the URL is set exactly once.
        let _ = self.shared.base_url.set(url.clone());
        let router = server::router(self.shared.clone());
        let (stop, task) = spawn_server(listener, router, "sandbox server failed");
        tracing::info!(%url, "Salesforce sandbox listening");
        Ok(RunningSandbox {
            url,
            shared: self.shared,
            stop,
            task,
            ca: None,
        })
    }

    /// Binds `addr`, which must be a loopback address, and serves the REST API over HTTPS until
    /// [`RunningSandbox::shutdown`]. Generates a CA and a server certificate for `localhost`
    /// and `127.0.0.1` signed by it, and writes the CA certificate to a temporary file
    /// ([`RunningSandbox::ca_cert_path`]) that shutdown removes.
    pub async fn serve_tls(self, addr: SocketAddr) -> std::io::Result<RunningSandbox> {
        let (listener, ca) = tls::bind(addr).await?;
        let local = axum::serve::Listener::local_addr(&listener)?;
        let url = format!("https://{local}");
        // `serve_tls` consumes the sandbox, so the URL is set exactly once.
        let _ = self.shared.base_url.set(url.clone());
        let router = server::router(self.shared.clone());
        let (stop, task) = spawn_server(listener, router, "sandbox server failed");
        tracing::info!(%url, ca_cert = %ca.path().display(), "Salesforce sandbox listening over TLS");
        Ok(RunningSandbox {
            url,
            shared: self.shared,
            stop,
            task,
            ca: Some(ca),
        })
    }
}

/// Serves `router` on `listener` in a background task until the returned sender fires or is
/// dropped. A server failure is logged with `failure` as its message.
pub(crate) fn spawn_server<L>(
    listener: L,
    router: axum::Router,
    failure: &'static str,
) -> (oneshot::Sender<()>, JoinHandle<()>)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "{failure}");
        }
    });
    (stop, task)
}

fn unknown_object(store: &Store, object: &str) -> SandboxError {
    let known: Vec<&str> = store.tables.iter().map(|t| t.def.name).collect();
    SandboxError::UnknownObject {
        object: object.to_string(),
        known: known.join(", "),
    }
}

/// Converts one seed record into a stored row.
fn seed_row(
    store: &Store,
    table: usize,
    index: usize,
    record: &RecordMap,
) -> Result<Vec<Value>, SandboxError> {
    let t = &store.tables[table];
    let object = t.def.name.to_string();
    let id = record
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Id"))
        .and_then(|(_, v)| v.as_str())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| SandboxError::MissingId {
            object: object.clone(),
            index,
        })?
        .to_string();
    if !id.starts_with(t.def.key_prefix) {
        return Err(SandboxError::WrongIdPrefix {
            object,
            id,
            prefix: t.def.key_prefix.to_string(),
        });
    }
    if store.locate(&id).is_some() {
        return Err(SandboxError::DuplicateId { object, id });
    }

    let mut row: Vec<Value> = t.def.fields.iter().map(default_value).collect();
    let mut given = vec![false; row.len()];
    for (name, json) in record {
        if name == "attributes" {
            continue;
        }
        let column = t.column(name).ok_or_else(|| SandboxError::UnknownField {
            object: object.clone(),
            id: id.clone(),
            field: name.clone(),
        })?;
        let field = t.field(column);
        let mut value =
            value_from_json(field, json).map_err(|expected| SandboxError::InvalidValue {
                object: object.clone(),
                id: id.clone(),
                field: field.name.to_string(),
                value: json.to_string(),
                expected,
            })?;
        if value == Value::Null {
            value = default_value(field);
        }
        row[column] = value;
        given[column] = true;
    }
    if row[t.created_col] == Value::Null {
        row[t.created_col] = Value::DateTime(store.now());
    }
    for column in [t.last_modified_col, t.modstamp_col] {
        if row[column] == Value::Null {
            row[column] = row[t.created_col].clone();
        }
    }
    Ok(row)
}

/// A sandbox that is serving HTTP or HTTPS.
pub struct RunningSandbox {
    url: String,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// The CA certificate of a TLS sandbox; dropping it removes its file.
    ca: Option<tls::CaFile>,
}

impl RunningSandbox {
    /// Returns the base URL, `http://127.0.0.1:PORT` (or `https://` after
    /// [`Sandbox::serve_tls`]), which is both login and instance URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Returns the path of the PEM file with the CA certificate that signed the server
    /// certificate, or `None` for a plain HTTP sandbox. The file exists until shutdown.
    pub fn ca_cert_path(&self) -> Option<&std::path::Path> {
        self.ca.as_ref().map(tls::CaFile::path)
    }

    /// Returns the CA certificate as PEM text, or `None` for a plain HTTP sandbox.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(tls::CaFile::pem)
    }

    /// Returns the options, including the credentials the token endpoint accepts.
    pub fn options(&self) -> &SandboxOptions {
        &self.shared.options
    }

    pub fn handle(&self) -> SandboxHandle {
        SandboxHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops accepting connections, lets in-flight requests finish and waits for the server.
    /// Removes the CA certificate file of a TLS sandbox afterwards.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "sandbox server task failed during shutdown");
        }
        drop(self.ca);
    }
}

/// Direct access to a running sandbox's records and fault injection, for tests and the demo.
#[derive(Clone)]
pub struct SandboxHandle {
    shared: Arc<Shared>,
}

impl SandboxHandle {
    /// Returns every field of a record in REST API format, or `None` if there is no such
    /// record. Deleted records are returned with `IsDeleted` true.
    pub fn record(&self, object: &str, id: &str) -> Option<RecordMap> {
        let state = self.shared.lock();
        let table = state.store.table_by_name(object)?;
        let row = *table.by_id.get(id)?;
        Some(table.row_to_map(row))
    }

    /// Returns every record of an object, deleted ones included, in insertion order.
    pub fn records(&self, object: &str) -> Vec<RecordMap> {
        let state = self.shared.lock();
        match state.store.table_by_name(object) {
            Some(table) => (0..table.rows.len())
                .map(|row| table.row_to_map(row))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Applies a user edit: sets the fields, then sets LastModifiedDate and SystemModstamp to
    /// now unless `fields` sets them itself. Schema rules such as `updateable` do not apply,
    /// except that the Id and the Contact and Lead `Name` cannot be set. Changing FirstName or
    /// LastName rebuilds that `Name`.
    pub fn update_record(
        &self,
        object: &str,
        id: &str,
        fields: RecordMap,
    ) -> Result<(), SandboxError> {
        let mut state = self.shared.lock();
        let (table_index, row) = find_row(&state.store, object, id)?;
        let table = &state.store.tables[table_index];
        let mut assignments = Vec::new();
        for (name, json) in &fields {
            let column = table
                .column(name)
                .ok_or_else(|| SandboxError::UnknownField {
                    object: table.def.name.to_string(),
                    id: id.to_string(),
                    field: name.clone(),
                })?;
            let field = table.field(column);
            let value =
                value_from_json(field, json).map_err(|expected| SandboxError::InvalidValue {
                    object: table.def.name.to_string(),
                    id: id.to_string(),
                    field: field.name.to_string(),
                    value: json.to_string(),
                    expected,
                })?;
            if column == table.id_col {
                return Err(SandboxError::InvalidValue {
                    object: table.def.name.to_string(),
                    id: id.to_string(),
                    field: "Id".to_string(),
                    value: json.to_string(),
                    expected: "unchanged, because record ids cannot change".to_string(),
                });
            }
            if table.is_full_name(column) {
                return Err(SandboxError::InvalidValue {
                    object: table.def.name.to_string(),
                    id: id.to_string(),
                    field: field.name.to_string(),
                    value: json.to_string(),
                    expected: "unset, because Name is built from FirstName and LastName; set those instead".to_string(),
                });
            }
            assignments.push((column, value));
        }
        let now = state.store.now();
        let table = &mut state.store.tables[table_index];
        // Stamp first, so that stamps given in `fields` win.
        table.touch(row, now);
        for (column, value) in assignments {
            table.rows[row][column] = value;
        }
        table.refresh_full_name(row);
        Ok(())
    }

    /// Converts a lead as Salesforce lead conversion does: `IsConverted` true, `Status`
    /// "Closed - Converted", `ConvertedDate` the UTC date of `at`, and the account, contact
    /// and opportunity ids. LastModifiedDate and SystemModstamp become now, as in
    /// [`SandboxHandle::update_record`]. The account, contact and opportunity must already
    /// exist. Rejects a lead that is already converted with `InvalidValue` on `IsConverted`.
    pub fn convert_lead(
        &self,
        lead_id: &str,
        account_id: &str,
        contact_id: Option<&str>,
        opportunity_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), SandboxError> {
        let lead = self
            .record("Lead", lead_id)
            .ok_or_else(|| SandboxError::RecordNotFound {
                object: "Lead".to_string(),
                id: lead_id.to_string(),
            })?;

        if lead.get("IsConverted") == Some(&serde_json::Value::Bool(true)) {
            return Err(SandboxError::InvalidValue {
                object: "Lead".to_string(),
                id: lead_id.to_string(),
                field: "IsConverted".to_string(),
                value: "true".to_string(),
                expected: "false, because a converted lead cannot be converted again".to_string(),
            });
        }

        let targets = [
            ("Account", Some(account_id)),
            ("Contact", contact_id),
            ("Opportunity", opportunity_id),
        ];
        for (object, id) in targets {
            if let Some(id) = id {
                if self.record(object, id).is_none() {
                    return Err(SandboxError::RecordNotFound {
                        object: object.to_string(),
                        id: id.to_string(),
                    });
                }
            }
        }

        let optional =
            |id: Option<&str>| id.map_or(serde_json::Value::Null, serde_json::Value::from);
        let mut fields = RecordMap::new();
        fields.insert("IsConverted".into(), true.into());
        fields.insert("Status".into(), "Closed - Converted".into());
        let date = at.date_naive().format("%Y-%m-%d").to_string();
        fields.insert("ConvertedDate".into(), date.into());
        fields.insert("ConvertedAccountId".into(), account_id.into());
        fields.insert("ConvertedContactId".into(), optional(contact_id));
        fields.insert("ConvertedOpportunityId".into(), optional(opportunity_id));
        self.update_record("Lead", lead_id, fields)
    }

    /// Sets a record's SystemModstamp, as a system process would, without changing
    /// LastModifiedDate. The time is truncated to whole seconds, as Salesforce stores it.
    pub fn set_system_modstamp(
        &self,
        object: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), SandboxError> {
        let mut state = self.shared.lock();
        let (table, row) = find_row(&state.store, object, id)?;
        let t = &mut state.store.tables[table];
        let column = t.modstamp_col;
        t.rows[row][column] = Value::DateTime(at.trunc_subsecs(0));
        Ok(())
    }

    /// Deletes a record: IsDeleted becomes true and SystemModstamp now, so only queryAll returns it.
    pub fn delete_record(&self, object: &str, id: &str) -> Result<(), SandboxError> {
        let mut state = self.shared.lock();
        let (table, row) = find_row(&state.store, object, id)?;
        let now = state.store.now();
        let t = &mut state.store.tables[table];
        let (deleted, modstamp) = (t.deleted_col, t.modstamp_col);
        t.rows[row][deleted] = Value::Bool(true);
        t.rows[row][modstamp] = Value::DateTime(now);
        Ok(())
    }

    /// Moves the org's clock `seconds` further ahead: later change stamps, creation times and
    /// the `Date` header follow it. Returns how far it now runs ahead of this host's clock.
    pub fn advance_clock(&self, seconds: u64) -> Result<chrono::Duration, String> {
        self.shared.lock().store.advance_clock(seconds)
    }

    /// Stamps rows `offset`, `offset + every`, ... of `object` (insertion order, deleted rows
    /// included) as edited now: LastModifiedDate and SystemModstamp become the current second,
    /// so the next incremental pull fetches them again. Returns how many rows it stamped.
    /// `every` 0 is treated as 1.
    ///
    /// With `edit`, each stamped row also gets one changed value that a scoring model reads.
    /// Its first custom number field (not one of leadscore's `LS_` fields) goes up by one.
    /// Without one, its `StartDateTime` or `ActivityDate` moves a day earlier. Rows of an
    /// object with none of these are only stamped.
    pub fn touch_records(
        &self,
        object: &str,
        every: u64,
        offset: u64,
        edit: bool,
    ) -> Result<u64, SandboxError> {
        let mut state = self.shared.lock();
        let table = state
            .store
            .table_index(object)
            .ok_or_else(|| unknown_object(&state.store, object))?;
        let now = state.store.now();
        let t = &mut state.store.tables[table];
        let step = usize::try_from(every.max(1)).unwrap_or(usize::MAX);
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let mut touched = 0;
        for row in (start..t.rows.len()).step_by(step) {
            if edit {
                t.edit_value(row);
            }
            t.touch(row, now);
            touched += 1;
        }
        Ok(touched)
    }

    /// Merges `losers` into `survivor` as a Salesforce merge of Accounts, Contacts or Leads
    /// does: each loser gets `IsDeleted` true, `MasterRecordId` the survivor and a new
    /// SystemModstamp, so only queryAll returns it. Every lookup that pointed at a loser
    /// (contacts, opportunities, contact roles, tasks and events) is re-parented to the
    /// survivor, which stamps those children too. At most three records merge at once, as in
    /// Salesforce.
    pub fn merge_records(
        &self,
        object: &str,
        survivor: &str,
        losers: &[&str],
    ) -> Result<(), SandboxError> {
        let invalid = |id: &str, expected: &str| SandboxError::InvalidValue {
            object: object.to_string(),
            id: id.to_string(),
            field: "MasterRecordId".to_string(),
            value: survivor.to_string(),
            expected: expected.to_string(),
        };
        if losers.is_empty() || losers.len() > 2 {
            return Err(invalid(
                survivor,
                "a merge of one survivor with one or two other records",
            ));
        }
        let mut state = self.shared.lock();
        let (table, survivor_row) = find_row(&state.store, object, survivor)?;
        if state.store.tables[table].column("MasterRecordId").is_none() {
            return Err(invalid(survivor, "an Account, Contact or Lead"));
        }
        if state.store.tables[table].is_deleted(survivor_row) {
            return Err(invalid(survivor, "a survivor that is not deleted"));
        }
        let mut loser_rows = Vec::new();
        for loser in losers {
            let (_, row) = find_row(&state.store, object, loser)?;
            if *loser == survivor || state.store.tables[table].is_deleted(row) {
                return Err(invalid(loser, "a live record other than the survivor"));
            }
            loser_rows.push(row);
        }

        let now = state.store.now();
        let t = &mut state.store.tables[table];
        let master = t.column("MasterRecordId").unwrap_or(t.id_col);
        for &row in &loser_rows {
            let deleted = t.deleted_col;
            t.rows[row][deleted] = Value::Bool(true);
            t.rows[row][master] = Value::Text(survivor.to_string());
            t.touch(row, now);
        }

        for t in state.store.tables.iter_mut() {
            let columns: Vec<usize> = t
                .def
                .fields
                .iter()
                .enumerate()
                .filter(|(_, f)| f.relationship.is_some() && f.name != "MasterRecordId")
                .map(|(column, _)| column)
                .collect();
            for row in 0..t.rows.len() {
                let mut changed = false;
                for &column in &columns {
                    let points_at_loser = t.rows[row][column]
                        .as_text()
                        .is_some_and(|id| losers.contains(&id));
                    if points_at_loser {
                        t.rows[row][column] = Value::Text(survivor.to_string());
                        changed = true;
                    }
                }
                if changed {
                    t.touch(row, now);
                }
            }
        }
        Ok(())
    }

    /// Sets a field's field-level security for the API user. An unreadable field is left out
    /// of describe, and a query that selects it fails with 400 `INVALID_FIELD`. A field that
    /// is readable but not updateable is described with `updateable` false and rejects writes.
    pub fn set_field_access(
        &self,
        object: &str,
        field: &str,
        readable: bool,
        updateable: bool,
    ) -> Result<(), SandboxError> {
        let mut state = self.shared.lock();
        let store = &mut state.store;
        let table = store
            .table_index(object)
            .ok_or_else(|| unknown_object(store, object))?;
        if store.tables[table].set_access(field, readable, updateable) {
            Ok(())
        } else {
            Err(SandboxError::UnknownField {
                object: object.to_string(),
                id: String::new(),
                field: field.to_string(),
            })
        }
    }

    /// Makes every access token issued so far invalid; REST calls with them get 401.
    pub fn expire_access_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Lets `n` more authenticated REST requests succeed, then expires every access token
    /// issued by then. Tokens issued afterwards work normally.
    pub fn expire_tokens_after_requests(&self, n: u64) {
        self.shared.lock().expire_after_requests = Some(n);
    }

    /// Makes every later write to `id` fail with this per-record `statusCode` and message.
    pub fn fail_writes(&self, id: &str, status_code: &str, message: &str) {
        self.shared.lock().injected_failures.insert(
            id.to_string(),
            (status_code.to_string(), message.to_string()),
        );
    }

    /// Hides an object from the API user, as missing object permissions do: its describe,
    /// queries and writes get 404, and describeGlobal leaves it out.
    pub fn hide_object(&self, object: &str) {
        self.shared.lock().store.hide(object);
    }

    /// Invalidates every query locator issued so far: fetching one returns 400
    /// `INVALID_QUERY_LOCATOR`.
    pub fn invalidate_locators(&self) {
        self.shared.lock().cursors.clear();
    }

    /// Sets the maximum of the daily API request counter.
    pub fn set_daily_limit(&self, max: u64) {
        self.shared.lock().api_max = max;
    }

    /// Returns the API request counter as (used, max).
    pub fn api_usage(&self) -> (u64, u64) {
        let state = self.shared.lock();
        (state.api_used, state.api_max)
    }

    /// Returns every request received so far, oldest first.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.iter().cloned().collect()
    }
}

fn find_row(store: &Store, object: &str, id: &str) -> Result<(usize, usize), SandboxError> {
    let table = store
        .table_index(object)
        .ok_or_else(|| unknown_object(store, object))?;
    let row =
        store.tables[table]
            .by_id
            .get(id)
            .copied()
            .ok_or_else(|| SandboxError::RecordNotFound {
                object: object.to_string(),
                id: id.to_string(),
            })?;
    Ok((table, row))
}
