//! Per-rep territory priority lists, written as CSV and HTML.
//!
//! Each rep (account owner) gets the top `[territory] top` open accounts of their territory by
//! score, with tier, reasons and the change since their last list. A territory is the accounts
//! the rep owns, or, with `[territory] field`, every open account whose value of that field is
//! among the values of the accounts the rep owns. Open accounts no rep's list covers go to the
//! unassigned list. Each rep's last list is kept in the store for the next comparison.

mod assign;
mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::features::fields;
use crate::level::Level;
use crate::pipeline::PipelineError;
use crate::store::{Store, StoredList};

pub use assign::{build_lists, ListInputs, OpenAccount, Rep};
pub use render::CSV_HEADER;

/// Store key of the list of open accounts that no rep's territory covers. Parentheses appear
/// in no Salesforce or HubSpot user id, so the key cannot clash with an owner's.
pub const UNASSIGNED_KEY: &str = "(unassigned)";
/// File name, without extension, of the unassigned list.
pub const UNASSIGNED_STEM: &str = "unassigned";
/// File name of the page that links every list.
pub const INDEX_FILE: &str = "index.html";

/// One rep's priority list.
#[derive(Clone, Debug, Serialize)]
pub struct RepList {
    /// The owner's user id, or [`UNASSIGNED_KEY`].
    pub rep_key: String,
    pub rep_name: String,
    /// The user's `IsActive` flag, when the pulled users contain the owner.
    pub active: Option<bool>,
    /// The name of the list's files without extension.
    pub file_stem: String,
    /// The territory's values of `[territory] field`, sorted, or empty when territories are
    /// the accounts each rep owns.
    pub territory: Vec<String>,
    /// Open accounts in the territory, listed or not.
    pub open_accounts: usize,
    /// The listed accounts, best first.
    pub entries: Vec<ListEntry>,
    /// Accounts on the previous list that are not on this one.
    pub dropped: Vec<DroppedAccount>,
    /// Whether the store contained a previous list of this rep.
    pub had_previous: bool,
}

/// One listed account.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListEntry {
    /// Position on the list, from 1.
    pub rank: usize,
    pub id: String,
    pub name: String,
    pub score: f64,
    pub tier: String,
    pub change: Change,
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
    /// The account's value of `[territory] field`, when that is set and the account has one.
    pub territory_value: Option<String>,
    pub reasons: Vec<String>,
}

/// The change of a listed account since the rep's previous list.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Not on the previous list (or there was none).
    New,
    /// On the previous list with score `previous`.
    Score { previous: f64, delta: f64 },
}

/// An account of the previous list that this list leaves out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DroppedAccount {
    pub id: String,
    pub name: String,
    pub previous_score: f64,
    pub previous_tier: String,
    /// The account's current score, when it is still open and scored.
    pub score: Option<f64>,
    pub reason: DropReason,
}

/// The reason an account left a rep's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Still in the territory, but below the top N.
    BelowTop,
    /// Open and scored, but now in another rep's territory.
    MovedTerritory,
    /// No longer scored: it closed a deal, became a customer, or lost its score.
    NoLongerOpen,
    /// Deleted or merged into another account in the CRM.
    Deleted,
}

impl DropReason {
    /// Describes the reason in words for the CSV and HTML lists.
    pub fn describe(self, top: usize) -> String {
        match self {
            DropReason::BelowTop => format!("below the top {top}"),
            DropReason::MovedTerritory => "moved to another territory".to_string(),
            DropReason::NoLongerOpen => "no longer open or scored".to_string(),
            DropReason::Deleted => "deleted or merged in the CRM".to_string(),
        }
    }
}

/// The files written for one rep.
#[derive(Clone, Debug, Serialize)]
pub struct ListSummary {
    pub rep_key: String,
    pub rep_name: String,
    pub csv: PathBuf,
    pub html: PathBuf,
    /// Accounts listed.
    pub accounts: usize,
    /// Listed accounts in the top tier.
    pub top_tier: usize,
    /// Listed accounts that were not on the previous list.
    pub new: usize,
    /// Accounts of the previous list left out of this one.
    pub dropped: usize,
}

/// The result of one run of the lists: the files written and sent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ListsReport {
    /// Lists written, the unassigned list included.
    pub reps: usize,
    /// The folder holding the lists and their index.
    pub folder: PathBuf,
    /// The index page linking every list.
    pub index: PathBuf,
    /// One entry per list, in index order.
    pub lists: Vec<ListSummary>,
    /// File stems of earlier lists whose files were removed because their rep has no list now.
    pub removed: Vec<String>,
    /// Lists sent to the webhook.
    pub webhook_sent: usize,
    /// Lists the webhook did not accept, each with the rep and the error.
    pub webhook_failures: Vec<String>,
}

/// Writes every rep's priority list from the account level's scores, then the index, and
/// stores the lists for the next comparison. `store` is the account level's store.
///
/// With `[territory] webhook`, each list is then posted to `[webhook]` as JSON. The posts run
/// on a thread of their own and this function waits for them, retries included, so an async
/// caller should call it through `tokio::task::spawn_blocking`.
pub fn write_lists(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<ListsReport, PipelineError> {
    let store = store.at_level(Level::Account);
    if store.live_version()?.is_none() {
        return Err(PipelineError::Model(
            "the store has no live account model, so there are no scores to list; run `leadscore train` and `leadscore score` first".to_string(),
        ));
    }
    let inputs = load_inputs(&store, config)?;
    check_field_has_values(&inputs)?;
    let lists = build_lists(&inputs);
    let folder = config.territory.folder.clone();
    create_folder(&folder)?;

    let top_tier = config.tiers.labels[0].as_str();
    let mut summaries = Vec::with_capacity(lists.len());
    for list in &lists {
        let csv = folder.join(format!("{}.csv", list.file_stem));
        let html = folder.join(format!("{}.html", list.file_stem));
        let csv_bytes = render::list_csv(list, config.territory.top).map_err(|err| {
            PipelineError::Config(format!(
                "failed to build the CSV list of rep {}: {err}",
                list.rep_key
            ))
        })?;
        write_atomic(&csv, &csv_bytes)?;
        let page = render::list_html(list, config, now);
        write_atomic(&html, page.as_bytes())?;
        summaries.push(ListSummary {
            rep_key: list.rep_key.clone(),
            rep_name: list.rep_name.clone(),
            csv,
            html,
            accounts: list.entries.len(),
            top_tier: list.entries.iter().filter(|e| e.tier == top_tier).count(),
            new: list
                .entries
                .iter()
                .filter(|e| e.change == Change::New)
                .count(),
            dropped: list.dropped.len(),
        });
    }
    let index = folder.join(INDEX_FILE);
    write_atomic(&index, render::index_html(&lists, config, now).as_bytes())?;

    // Files of earlier lists whose rep has none now, or whose file name changed with the rep's
    // name, would otherwise sit in the folder as if current.
    let current: BTreeSet<&str> = lists.iter().map(|l| l.file_stem.as_str()).collect();
    let mut removed = Vec::new();
    for previous in &inputs.previous {
        let stem = previous.file_stem.as_str();
        if current.contains(stem) || !is_safe_stem(stem) {
            continue;
        }
        for extension in ["csv", "html"] {
            remove_if_present(&folder.join(format!("{stem}.{extension}")))?;
        }
        removed.push(stem.to_string());
    }

    // The store learns of the lists only once their files are written, so the next run
    // compares against what reps could read.
    let stored: Vec<StoredList> = lists.iter().map(|l| to_stored(l, now)).collect();
    store.replace_territory_lists(&stored)?;

    let (webhook_sent, webhook_failures) = if config.territory.webhook {
        send_to_webhook(config, &lists, now)?
    } else {
        (0, Vec::new())
    };

    tracing::info!(
        lists = lists.len(),
        folder = %folder.display(),
        removed = removed.len(),
        "territory lists written"
    );
    Ok(ListsReport {
        reps: lists.len(),
        folder,
        index,
        lists: summaries,
        removed,
        webhook_sent,
        webhook_failures,
    })
}

/// Fails when `[territory] field` is set but no stored account has a value for it, which
/// means a misspelt field or one not pulled yet: every territory would be empty.
fn check_field_has_values(inputs: &ListInputs) -> Result<(), PipelineError> {
    let Some(field) = &inputs.field else {
        return Ok(());
    };
    let any_value = inputs
        .accounts
        .values()
        .any(|record| assign::text_of(record.get(field)).is_some());
    if any_value || inputs.accounts.is_empty() {
        return Ok(());
    }
    Err(PipelineError::Config(format!(
        "[territory] field = {field:?}, but none of the {} accounts in the store has a value for it; \
         check the field's API name (`leadscore check` lists it) and run `leadscore pull`, which \
         fetches a newly configured field for every account",
        inputs.accounts.len()
    )))
}

/// Reads the scores, accounts, users and previous lists the lists are built from.
fn load_inputs(store: &Store, config: &Config) -> Result<ListInputs, PipelineError> {
    let mut users = BTreeMap::new();
    for user in store.records(fields::USER)? {
        if user.deleted {
            continue;
        }
        let name = user
            .get("Name")
            .as_str()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let active = match user.get("IsActive") {
            leadscore_connector::Value::Bool(flag) => Some(*flag),
            _ => None,
        };
        users.insert(user.id.clone(), Rep { name, active });
    }

    let mut accounts = BTreeMap::new();
    for record in store.records(fields::ACCOUNT)? {
        if record.deleted || store.tombstone(fields::ACCOUNT, &record.id)?.is_some() {
            continue;
        }
        accounts.insert(record.id.clone(), record);
    }

    Ok(ListInputs {
        scores: store.scores()?,
        accounts,
        users,
        previous: store.territory_lists()?,
        top: config.territory.top,
        field: config.territory.field.clone(),
    })
}

fn to_stored(list: &RepList, now: DateTime<Utc>) -> StoredList {
    StoredList {
        rep_key: list.rep_key.clone(),
        rep_name: list.rep_name.clone(),
        file_stem: list.file_stem.clone(),
        written_at: now,
        accounts: list
            .entries
            .iter()
            .map(|e| crate::store::ListedAccount {
                id: e.id.clone(),
                name: e.name.clone(),
                score: e.score,
                tier: e.tier.clone(),
            })
            .collect(),
    }
}

/// Returns true for a file stem this module could have made: ASCII letters, digits, `-` and
/// `_`, so a stem read back from the store never names a file outside the folder.
fn is_safe_stem(stem: &str) -> bool {
    !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn create_folder(folder: &Path) -> Result<(), PipelineError> {
    std::fs::create_dir_all(folder).map_err(|err| {
        PipelineError::Config(format!(
            "failed to create the lists folder {}: {err}; set [territory] folder to a directory this user can write",
            folder.display()
        ))
    })
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place, so a reader
/// sees the old file or the new one, never part of one. The file gets the permissions a new
/// file gets under the process's umask.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PipelineError> {
    use std::io::Write;

    let failure = |err: std::io::Error| {
        PipelineError::Config(format!(
            "failed to write {}: {err}; check that [territory] folder is writable and the disk has space",
            path.display()
        ))
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(err) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        // The temporary file is useless now; failing to remove it changes nothing.
        let _ = std::fs::remove_file(&temporary);
        return Err(failure(err));
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), PipelineError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(PipelineError::Config(format!(
            "failed to remove the outdated list {}: {err}; check that [territory] folder is writable",
            path.display()
        ))),
    }
}

/// The JSON body posted to the webhook for one list.
#[derive(Serialize)]
struct ListEvent<'a> {
    /// Always `territory_list`.
    event: &'static str,
    generated_at: DateTime<Utc>,
    top: usize,
    #[serde(flatten)]
    list: &'a RepList,
}

/// Posts every list to `[webhook]`. Returns the number delivered and one message per list the
/// receiver did not accept. A missing `[webhook]` table or signing key fails the whole step.
fn send_to_webhook(
    config: &Config,
    lists: &[RepList],
    now: DateTime<Utc>,
) -> Result<(usize, Vec<String>), PipelineError> {
    let Some(settings) = &config.alerts.webhook else {
        return Err(PipelineError::Config(
            "[territory] webhook = true, but there is no [webhook] table; add one with url and secret_env, or set webhook = false".to_string(),
        ));
    };
    let webhook = crate::webhook::Webhook::from_config(settings)
        .map_err(|err| PipelineError::Config(err.to_string()))?;
    let mut events = Vec::with_capacity(lists.len());
    for list in lists {
        let event = ListEvent {
            event: "territory_list",
            generated_at: now,
            top: config.territory.top,
            list,
        };
        let body = serde_json::to_value(&event).map_err(|err| {
            PipelineError::Config(format!(
                "failed to encode the list of rep {} as JSON: {err}",
                list.rep_key
            ))
        })?;
        events.push(body);
    }

    // A runtime of its own on a thread of its own works whether the caller is async or not.
    let outcomes = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                Ok::<_, std::io::Error>(runtime.block_on(async {
                    let mut outcomes = Vec::with_capacity(events.len());
                    for event in &events {
                        outcomes.push(crate::webhook::send(&webhook, event).await);
                    }
                    outcomes
                }))
            })
            .join()
    });
    let outcomes = match outcomes {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(err)) => {
            return Err(PipelineError::Config(format!(
                "failed to start the runtime that sends lists to the webhook: {err}"
            )))
        }
        Err(_) => {
            return Err(PipelineError::Config(
                "sending the lists to the webhook stopped with a panic; the lists are written, see the log".to_string(),
            ))
        }
    };

    let mut sent = 0;
    let mut failures = Vec::new();
    for (list, outcome) in lists.iter().zip(outcomes) {
        match outcome {
            Ok(_) => sent += 1,
            Err(err) => {
                tracing::warn!(rep = %list.rep_key, error = %err, "territory list not delivered to the webhook");
                failures.push(format!("{} ({}): {err}", list.rep_name, list.rep_key));
            }
        }
    }
    Ok((sent, failures))
}
