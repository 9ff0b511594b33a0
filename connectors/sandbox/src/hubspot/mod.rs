//! A local HubSpot portal that speaks a subset of the CRM v3 and v4 APIs over HTTP.
//!
//! It accepts OAuth v1 access tokens and a private-app token. It serves CRM objects
//! (contacts, companies, deals, calls, meetings, notes, emails, tasks) with list, get,
//! batch, search and merge. It also serves Associations v4 with labels, properties, owners
//! and deal pipelines, and applies HubSpot's rate limits and error bodies. [`HubSpotSandbox::new`] seeds the portal from
//! Salesforce-shaped records such as the demo world's.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use leadscore_sandbox::hubspot::{HubSpotOptions, HubSpotSandbox};
//! let sandbox = HubSpotSandbox::new(Default::default(), HubSpotOptions::default())?;
//! let running = sandbox.serve("127.0.0.1:0".parse()?).await?;
//! println!("API base URL: {}", running.url());
//! running.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod associations;
mod meta;
mod objects;
mod portal;
mod properties;
mod search;
mod seed;
mod server;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::hubspot::portal::{ObjectType, HOSPITAL_PIPELINE, PARENT_COMPANY_LABEL};
pub use crate::hubspot::search::RESULT_CAP as SEARCH_RESULT_CAP;

use crate::hubspot::portal::{now_ms, Portal};
use crate::hubspot::server::Shared;
use crate::{LoggedRequest, RecordMap, SandboxError};

/// Credentials, scopes and limits of a sandbox portal.
#[derive(Clone, Debug)]
pub struct HubSpotOptions {
    /// The portal (hub) id that token metadata reports.
    pub portal_id: u64,
    /// The private-app access token; it never expires.
    pub private_app_token: String,
    /// OAuth client id the token endpoint accepts.
    pub client_id: String,
    /// OAuth client secret the token endpoint accepts.
    pub client_secret: String,
    /// Redirect URI an `authorization_code` grant must repeat.
    pub redirect_uri: String,
    /// The one authorization code the token endpoint accepts, once.
    pub authorization_code: String,
    /// Refresh token the token endpoint issues and accepts.
    pub refresh_token: String,
    /// Lifetime of an OAuth access token, sent as `expires_in` in seconds.
    pub access_token_ttl: Duration,
    /// Scopes every token lacks; calls that need one get 403 `MISSING_SCOPES`.
    pub withheld_scopes: Vec<String>,
    /// Requests per rolling ten-second window for the private app.
    pub private_app_ten_second_limit: u32,
    /// Requests per rolling ten-second window for the OAuth app.
    pub oauth_ten_second_limit: u32,
    /// Requests per day for the whole portal, shared by every token.
    pub daily_limit: u64,
    /// Search requests per second per app.
    pub search_per_second_limit: u32,
    /// Associations per input per page in Associations v4 batch read.
    pub association_batch_page_size: usize,
}

impl Default for HubSpotOptions {
    /// Returns Enterprise private-app limits (190 per 10 s, 1,000,000 per day), the OAuth
    /// app limit of 110 per 10 s, 4 searches per second and 30-minute access tokens.
    fn default() -> Self {
        HubSpotOptions {
            portal_id: 4_242_424,
            private_app_token: "pat-na1-leadscore-sandbox-token".to_string(),
            client_id: "11111111-2222-3333-4444-leadscore000".to_string(),
            client_secret: "leadscore-sandbox-client-secret".to_string(),
            redirect_uri: "http://127.0.0.1/oauth/callback".to_string(),
            authorization_code: "leadscore-sandbox-authorization-code".to_string(),
            refresh_token: "aaaaaaaa-bbbb-cccc-dddd-leadscore000".to_string(),
            access_token_ttl: Duration::from_secs(1800),
            withheld_scopes: Vec::new(),
            private_app_ten_second_limit: 190,
            oauth_ten_second_limit: 110,
            daily_limit: 1_000_000,
            search_per_second_limit: 4,
            association_batch_page_size: 500,
        }
    }
}

/// A seeded portal, not yet listening.
pub struct HubSpotSandbox {
    shared: Arc<Shared>,
}

impl HubSpotSandbox {
    /// Seeds a portal from Salesforce-shaped records keyed by object name (`User`,
    /// `Account`, `Contact`, `Lead`, `Opportunity`, `OpportunityContactRole`, `Task`,
    /// `Event`), as `leadscore_demo_org::generate` returns them. Rejects an unknown object
    /// or field, a record without `Id`, a reused id, an unknown stage or role, and a
    /// reference to a record that is not seeded, naming the record and the field.
    pub fn new(
        records: BTreeMap<String, Vec<RecordMap>>,
        options: HubSpotOptions,
    ) -> Result<HubSpotSandbox, SandboxError> {
        // A misspelt scope would otherwise withhold nothing, and the rehearsal would pass.
        if let Some(scope) = options
            .withheld_scopes
            .iter()
            .find(|scope| !server::ALL_SCOPES.contains(&scope.as_str()))
        {
            return Err(SandboxError::UnknownScope {
                scope: scope.clone(),
                known: server::ALL_SCOPES.join(", "),
            });
        }
        let mut portal = Portal::new(now_ms());
        seed::seed(&mut portal, &records)?;
        Ok(HubSpotSandbox {
            shared: Arc::new(Shared::new(portal, options)),
        })
    }

    /// Binds `addr` and serves the API until [`RunningHubSpot::shutdown`].
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<RunningHubSpot> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        // `serve` consumes the sandbox, so the URL is set exactly once.
        let _ = self.shared.base_url.set(url.clone());
        let router = server::router(self.shared.clone());
        let (stop, task) = crate::spawn_server(listener, router, "HubSpot sandbox server failed");
        tracing::info!(%url, "HubSpot sandbox listening");
        Ok(RunningHubSpot {
            url,
            shared: self.shared,
            stop,
            task,
            ca: None,
        })
    }

    /// Binds `addr`, which must be a loopback address, and serves the API over HTTPS with a
    /// certificate signed by a CA generated at start. [`RunningHubSpot::ca_cert_path`] names
    /// the CA's PEM file, which shutdown removes.
    pub async fn serve_tls(self, addr: SocketAddr) -> std::io::Result<RunningHubSpot> {
        let (listener, ca) = crate::tls::bind(addr).await?;
        let local = axum::serve::Listener::local_addr(&listener)?;
        let url = format!("https://{local}");
        let _ = self.shared.base_url.set(url.clone());
        let router = server::router(self.shared.clone());
        let (stop, task) = crate::spawn_server(listener, router, "HubSpot sandbox server failed");
        tracing::info!(%url, ca_cert = %ca.path().display(), "HubSpot sandbox listening over TLS");
        Ok(RunningHubSpot {
            url,
            shared: self.shared,
            stop,
            task,
            ca: Some(ca),
        })
    }
}

/// A portal that is serving HTTP.
pub struct RunningHubSpot {
    url: String,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// The CA certificate of a TLS sandbox; dropping it removes its file.
    ca: Option<crate::tls::CaFile>,
}

impl RunningHubSpot {
    /// Returns the PEM file of the CA that signed the sandbox's certificate, when it serves TLS.
    pub fn ca_cert_path(&self) -> Option<&std::path::Path> {
        self.ca.as_ref().map(|ca| ca.path())
    }

    /// Returns the API base URL, `http://127.0.0.1:PORT`, which also serves `/oauth/v1/token`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Returns the options, including the credentials the token endpoint accepts.
    pub fn options(&self) -> &HubSpotOptions {
        &self.shared.options
    }

    pub fn handle(&self) -> HubSpotHandle {
        HubSpotHandle {
            shared: self.shared.clone(),
        }
    }

    /// Returns the map from each seeded demo (Salesforce) id to its HubSpot id. A converted
    /// lead and its converted contact map to the same contact. Users map to owner ids.
    pub fn id_map(&self) -> BTreeMap<String, String> {
        self.handle().id_map()
    }

    /// Stops accepting connections, lets in-flight requests finish and waits for the server.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "HubSpot sandbox server task failed during shutdown");
        }
    }
}

/// Direct access to a running portal's records and fault injection, for tests and the demo.
#[derive(Clone)]
pub struct HubSpotHandle {
    shared: Arc<Shared>,
}

fn not_found(object: ObjectType, id: &str) -> SandboxError {
    SandboxError::RecordNotFound {
        object: object.name().to_string(),
        id: id.to_string(),
    }
}

fn parse_id(object: ObjectType, id: &str) -> Result<u64, SandboxError> {
    id.parse::<u64>().map_err(|_| not_found(object, id))
}

impl HubSpotHandle {
    /// Returns the map from each seeded demo id to its HubSpot id (see
    /// [`RunningHubSpot::id_map`]).
    pub fn id_map(&self) -> BTreeMap<String, String> {
        let state = self.shared.lock();
        let portal = &state.portal;
        let records = portal
            .id_map
            .iter()
            .map(|(k, (_, id))| (k.clone(), id.to_string()));
        let owners = portal
            .owner_map
            .iter()
            .map(|(k, id)| (k.clone(), id.to_string()));
        records.chain(owners).collect()
    }

    /// Returns a record's non-empty property values, archived records included, or `None`.
    pub fn properties(&self, object: ObjectType, id: &str) -> Option<BTreeMap<String, String>> {
        let state = self.shared.lock();
        let record = state.portal.records(object).get(&id.parse::<u64>().ok()?)?;
        Some(
            record
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Returns the ids of an object's live (not archived) records, in id order.
    pub fn ids(&self, object: ObjectType) -> Vec<String> {
        let state = self.shared.lock();
        state
            .portal
            .records(object)
            .values()
            .filter(|record| record.archived_at.is_none())
            .map(|record| record.id.to_string())
            .collect()
    }

    /// Returns the number of live records of an object.
    pub fn count(&self, object: ObjectType) -> usize {
        let state = self.shared.lock();
        let records = state.portal.records(object);
        records.values().filter(|r| r.archived_at.is_none()).count()
    }

    /// Returns (active, archived) owner counts.
    pub fn owner_counts(&self) -> (usize, usize) {
        let state = self.shared.lock();
        let archived = state.portal.owners.iter().filter(|o| o.archived).count();
        (state.portal.owners.len() - archived, archived)
    }

    /// Sets one property as a user edit would: no validation, an empty value clears it,
    /// and the modified date becomes now.
    pub fn set_property(
        &self,
        object: ObjectType,
        id: &str,
        name: &str,
        value: &str,
    ) -> Result<(), SandboxError> {
        let record_id = parse_id(object, id)?;
        let mut state = self.shared.lock();
        let portal = &mut state.portal;
        let record = portal
            .records_mut(object)
            .get_mut(&record_id)
            .ok_or_else(|| not_found(object, id))?;
        if value.is_empty() {
            record.properties.remove(name);
        } else {
            record
                .properties
                .insert(name.to_string(), value.to_string());
        }
        let now = now_ms().max(record.updated_at + 1);
        portal.touch(object, record_id, now);
        Ok(())
    }

    /// Stores `value` as a record's property exactly as given, an empty string included,
    /// without checking it against the property's type: HubSpot returns "" for some cleared
    /// properties, which `set_property` cannot express because it removes them.
    pub fn set_raw_property(
        &self,
        object: ObjectType,
        id: &str,
        name: &str,
        value: &str,
    ) -> Result<(), SandboxError> {
        let record_id = parse_id(object, id)?;
        let mut state = self.shared.lock();
        let portal = &mut state.portal;
        let record = portal
            .records_mut(object)
            .get_mut(&record_id)
            .ok_or_else(|| not_found(object, id))?;
        record
            .properties
            .insert(name.to_string(), value.to_string());
        let now = now_ms().max(record.updated_at + 1);
        portal.touch(object, record_id, now);
        Ok(())
    }

    /// Sets the modified date (`updatedAt` and the modified-date property) of many records
    /// to one time, truncated to milliseconds. Fails on the first unknown id, having changed
    /// the ones before it.
    pub fn set_modified(
        &self,
        object: ObjectType,
        ids: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), SandboxError> {
        let ms = at.timestamp_millis();
        let mut state = self.shared.lock();
        for id in ids {
            let record_id = parse_id(object, id)?;
            if !state.portal.records(object).contains_key(&record_id) {
                return Err(not_found(object, id));
            }
            state.portal.touch(object, record_id, ms);
        }
        Ok(())
    }

    /// Adds `count` minimal contacts created and modified at `at`, and returns their ids.
    /// Ten thousand take well under a second.
    pub fn add_contacts(&self, count: usize, at: DateTime<Utc>) -> Vec<String> {
        let mut state = self.shared.lock();
        seed::add_synthetic_contacts(&mut state.portal, count, at.timestamp_millis())
            .into_iter()
            .map(|id| id.to_string())
            .collect()
    }

    /// Makes later batch updates of this record fail with a per-input error (207).
    pub fn fail_updates(&self, object: ObjectType, id: &str) -> Result<(), SandboxError> {
        let record_id = parse_id(object, id)?;
        self.shared
            .lock()
            .failing_updates
            .insert((object, record_id));
        Ok(())
    }

    /// Archives (deletes) a record: lists and search leave it out, `archived=true` returns
    /// it with `archivedAt`.
    pub fn archive(&self, object: ObjectType, id: &str) -> Result<(), SandboxError> {
        let record_id = parse_id(object, id)?;
        let mut state = self.shared.lock();
        if !state.portal.records(object).contains_key(&record_id) {
            return Err(not_found(object, id));
        }
        objects::archive(&mut state.portal, object, record_id, now_ms());
        Ok(())
    }

    /// Merges `merged` into `primary` as `POST /crm/v3/objects/{object}/merge` does, and
    /// returns the surviving id.
    pub fn merge(
        &self,
        object: ObjectType,
        primary: &str,
        merged: &str,
    ) -> Result<String, SandboxError> {
        let primary_id = parse_id(object, primary)?;
        let merged_id = parse_id(object, merged)?;
        let mut state = self.shared.lock();
        objects::merge_records(&mut state.portal, object, primary_id, merged_id)
            .map(|id| id.to_string())
            .map_err(|expected| SandboxError::InvalidValue {
                object: object.name().to_string(),
                id: merged.to_string(),
                field: "objectIdToMerge".to_string(),
                value: merged.to_string(),
                expected,
            })
    }

    /// Merges `merged` into `primary` like [`HubSpotHandle::merge`], then gives the survivor
    /// a new id, as some portals do: both input ids end up in the survivor's
    /// `hs_merged_object_ids`, and fetching either returns the survivor. Returns the new id.
    pub fn merge_with_new_id(
        &self,
        object: ObjectType,
        primary: &str,
        merged: &str,
    ) -> Result<String, SandboxError> {
        let survivor = self.merge(object, primary, merged)?;
        let survivor_id = parse_id(object, &survivor)?;
        let mut state = self.shared.lock();
        let portal = &mut state.portal;
        let at = now_ms().max(
            portal
                .records(object)
                .get(&survivor_id)
                .map_or(0, |record| record.updated_at + 1),
        );
        Ok(objects::renumber_survivor(portal, object, survivor_id, at).to_string())
    }

    /// Sets a property's field-level permissions for the app. An unreadable property is left
    /// out of the properties API and of every read. A readable one that is not updateable is
    /// listed with `readOnlyValue` true and rejects writes with `READ_ONLY_VALUE`.
    pub fn set_field_access(
        &self,
        object: ObjectType,
        property: &str,
        readable: bool,
        updateable: bool,
    ) -> Result<(), SandboxError> {
        let mut state = self.shared.lock();
        let portal = &mut state.portal;
        let key = (object, property.to_string());
        let mut def =
            match portal.properties[object.index()].remove(property) {
                Some(def) => def,
                None => portal.hidden_properties.remove(&key).ok_or_else(|| {
                    SandboxError::UnknownField {
                        object: object.name().to_string(),
                        id: String::new(),
                        field: property.to_string(),
                    }
                })?,
            };
        def.read_only_value = !updateable;
        if readable {
            portal.properties[object.index()].insert(property.to_string(), def);
        } else {
            portal.hidden_properties.insert(key, def);
        }
        Ok(())
    }

    /// Adds an association between two records, with a label (`None` for the unlabelled
    /// default type), and its inverse.
    pub fn associate(
        &self,
        from: (ObjectType, &str),
        to: (ObjectType, &str),
        label: Option<&str>,
    ) -> Result<(), SandboxError> {
        let from_id = parse_id(from.0, from.1)?;
        let to_id = parse_id(to.0, to.1)?;
        let mut state = self.shared.lock();
        let portal = &mut state.portal;
        for (object, id, text) in [(from.0, from_id, from.1), (to.0, to_id, to.1)] {
            if !portal.records(object).contains_key(&id) {
                return Err(not_found(object, text));
            }
        }
        let type_id = portal
            .association_type(from.0, to.0, label)
            .map(|t| t.type_id)
            .ok_or_else(|| SandboxError::InvalidValue {
                object: from.0.name().to_string(),
                id: from.1.to_string(),
                field: "label".to_string(),
                value: label.unwrap_or("<unlabelled>").to_string(),
                expected: format!(
                    "a label defined for {} to {} associations",
                    from.0.singular(),
                    to.0.singular()
                ),
            })?;
        portal.associate((from.0, from_id), (to.0, to_id), type_id);
        Ok(())
    }

    /// Makes every OAuth access token issued so far expired; calls with them get 401
    /// `EXPIRED_AUTHENTICATION`. The private-app token is not affected.
    pub fn expire_access_tokens(&self) {
        let mut state = self.shared.lock();
        let past = Instant::now()
            .checked_sub(Duration::from_secs(300))
            .unwrap_or_else(Instant::now);
        for token in state.tokens.values_mut() {
            token.expires_at = past;
        }
    }

    /// Rotates the private-app token: the old one gets 401 `INVALID_AUTHENTICATION`.
    pub fn rotate_private_app_token(&self, new_token: &str) {
        let mut state = self.shared.lock();
        state.private_token = new_token.to_string();
    }

    /// Revokes the refresh token, as uninstalling the app does.
    pub fn revoke_refresh_token(&self) {
        self.shared.lock().refresh_token_revoked = true;
    }

    /// Sets the requests allowed per rolling window for both apps, and the window length.
    pub fn set_ten_second_limit(&self, max: u32, window: Duration) {
        let mut state = self.shared.lock();
        state.limits.private_ten_second = max;
        state.limits.oauth_ten_second = max;
        state.limits.window = window;
    }

    /// Sets the portal's daily request budget.
    pub fn set_daily_limit(&self, max: u64) {
        self.shared.lock().limits.daily = max;
    }

    /// Sets the search requests allowed per second per app.
    pub fn set_search_per_second_limit(&self, max: u32) {
        self.shared.lock().limits.search_per_second = max;
    }

    /// Sets the calls counted against the daily budget so far.
    pub fn set_daily_used(&self, used: u64) {
        self.shared.lock().limits.daily_used = used;
    }

    /// Returns the faults and request counts of the `/__sandbox/` control endpoint.
    pub(crate) fn control_state(&self) -> &crate::control::Control {
        &self.shared.control
    }

    /// Returns the daily budget as (used, max).
    pub fn daily_usage(&self) -> (u64, u64) {
        let state = self.shared.lock();
        (state.limits.daily_used, state.limits.daily)
    }

    /// Returns the number of HTTP requests received, rejected ones included.
    pub fn request_count(&self) -> u64 {
        self.shared.lock().request_count
    }

    /// Returns every request received so far, oldest first (at most the last 100,000).
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.iter().cloned().collect()
    }

    /// Returns the HubSpot ids of the seeded records of one demo object, keyed by demo id.
    pub fn ids_by_demo_id(&self, object: ObjectType) -> HashMap<String, String> {
        let state = self.shared.lock();
        state
            .portal
            .id_map
            .iter()
            .filter(|(_, (kind, _))| *kind == object)
            .map(|(demo, (_, id))| (demo.clone(), id.to_string()))
            .collect()
    }
}
