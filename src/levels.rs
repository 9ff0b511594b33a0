//! The examples and open records of each scoring level: deals for accounts, contact roles on
//! deals for contacts, decided leads for leads, and the records each level scores.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use leadscore_connector::Value;
use serde::Serialize;

use crate::config::{Config, LeadLabel};
use crate::enrichment::{NameIndex, NameMatch};
use crate::features::{History, Target};
use crate::level::Level;
use crate::projection::ProjectedRecord;
use crate::training::label_of;

/// One labelled example of a level.
#[derive(Clone, Debug)]
pub struct Example<'h> {
    /// The deal id (account), `deal:contact` (contact) or lead id (lead).
    pub id: String,
    /// The account and the contact or lead, borrowed from the [`History`] the example came
    /// from.
    pub account: Option<&'h str>,
    pub person: Option<&'h str>,
    /// The time the features are computed as of: nothing after it is seen.
    pub at: DateTime<Utc>,
    /// When the outcome was known; examples are split in this order.
    pub decided: DateTime<Utc>,
    /// 1 won or converted, 0 lost.
    pub label: f64,
}

impl<'h> Example<'h> {
    pub fn target(&self) -> Target<'h> {
        Target {
            account: self.account,
            person: self.person,
        }
    }

    /// Returns the id of the record the example is about: the account at the account level,
    /// the contact or lead otherwise.
    pub fn record_id(&self, level: Level) -> Option<&'h str> {
        match level {
            Level::Account => self.account,
            Level::Contact | Level::Lead => self.person,
        }
    }
}

/// A record to score.
///
/// It borrows its ids from the [`History`] it came from, because a million open contacts
/// would otherwise keep three copies of their ids.
#[derive(Clone, Copy, Debug)]
pub struct OpenRecord<'h> {
    pub id: &'h str,
    pub account: Option<&'h str>,
    pub person: Option<&'h str>,
}

impl<'h> OpenRecord<'h> {
    pub fn target(&self) -> Target<'h> {
        Target {
            account: self.account,
            person: self.person,
        }
    }

    /// Returns the scored record itself: the person for contacts and leads, else the account.
    pub fn record<'a>(&self, level: Level, history: &'a History) -> Option<&'a ProjectedRecord> {
        match self.person {
            Some(person) => history.person(level, person),
            None => history.accounts.get(self.id),
        }
    }
}

/// Returns the labelled examples of `level` decided by `config.scoring.as_of` (or `now`),
/// ordered by decision time and id. A deal closed after that time was still open then.
pub fn examples<'h>(
    level: Level,
    history: &'h History,
    config: &Config,
    now: DateTime<Utc>,
) -> Vec<Example<'h>> {
    let as_of = config.scoring.as_of.unwrap_or(now);
    let mut out = Vec::new();
    match level {
        Level::Account | Level::Contact => {
            for deal in &history.deals {
                let Some(label) = label_of(deal, &config.model.label) else {
                    continue;
                };
                let decided = deal.close_date.unwrap_or(deal.created);
                if decided > as_of {
                    continue;
                }
                if level == Level::Account {
                    out.push(Example {
                        id: deal.id.clone(),
                        account: Some(&deal.account_id),
                        person: None,
                        at: deal.created,
                        decided,
                        label,
                    });
                    continue;
                }
                for contact in history.deal_contacts(&deal.id) {
                    out.push(Example {
                        id: format!("{}:{contact}", deal.id),
                        account: Some(&deal.account_id),
                        person: Some(contact),
                        at: deal.created,
                        decided,
                        label,
                    });
                }
            }
        }
        Level::Lead => {
            for (id, lead) in &history.leads {
                if let LeadState::Decided { label, at, decided } =
                    lead_state(lead, history, config, as_of)
                {
                    out.push(Example {
                        id: id.clone(),
                        account: history.lead_account(id),
                        person: Some(id),
                        at,
                        decided,
                        label,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.decided.cmp(&b.decided).then_with(|| a.id.cmp(&b.id)));
    out
}

/// Returns the records `level` scores: open accounts (with contacts or deals, customers left
/// out unless `skip_customers` is off), the contacts of those accounts, and open leads.
pub fn open_records<'h>(
    level: Level,
    history: &'h History,
    config: &Config,
    now: DateTime<Utc>,
) -> Vec<OpenRecord<'h>> {
    match level {
        Level::Account => open_accounts(history, config, now)
            .into_iter()
            .map(|id| OpenRecord {
                id,
                account: Some(id),
                person: None,
            })
            .collect(),
        Level::Contact => {
            let mut out = Vec::new();
            for account in open_accounts(history, config, now) {
                for contact in history.account_contacts(account) {
                    out.push(OpenRecord {
                        id: contact,
                        account: Some(account),
                        person: Some(contact),
                    });
                }
            }
            out.sort_by(|a, b| a.id.cmp(b.id));
            out
        }
        Level::Lead => {
            let as_of = config.scoring.as_of.unwrap_or(now);
            history
                .leads
                .iter()
                .filter(|(_, lead)| {
                    matches!(lead_state(lead, history, config, as_of), LeadState::Open)
                })
                .map(|(id, _)| OpenRecord {
                    id,
                    account: history.lead_account(id),
                    person: Some(id),
                })
                .collect()
        }
    }
}

/// Returns the accounts that get scored as of `config.scoring.as_of` (or `now`): those with
/// contacts or deals, leaving out customers (accounts that had won a deal by then) unless
/// `skip_customers` is off.
pub fn open_accounts<'h>(
    history: &'h History,
    config: &Config,
    now: DateTime<Utc>,
) -> Vec<&'h str> {
    let as_of = config.scoring.as_of.unwrap_or(now);
    history
        .accounts
        .keys()
        .map(String::as_str)
        .filter(|id| history.has_activity_data(id))
        .filter(|id| !(config.scoring.skip_customers && history.is_customer_at(id, as_of)))
        .collect()
}

/// The state of a lead as of the scoring time.
#[derive(Debug, PartialEq)]
enum LeadState {
    Open,
    /// Converted or aged out: an example, seen as of `at`, decided at `decided`.
    Decided {
        label: f64,
        at: DateTime<Utc>,
        decided: DateTime<Utc>,
    },
    /// Converted, but its opportunity is still open (label `converted_won`), or no creation date.
    Undecided,
}

fn lead_state(
    lead: &ProjectedRecord,
    history: &History,
    config: &Config,
    as_of: DateTime<Utc>,
) -> LeadState {
    let settings = &config.lead;
    let Some(created) = lead.get("CreatedDate").as_datetime() else {
        return LeadState::Undecided;
    };
    // A lead created after the scoring time did not exist then.
    if created > as_of {
        return LeadState::Undecided;
    }
    let observed = created + Duration::days(settings.observe_days);
    if lead.get("IsConverted").as_bool() == Some(true) {
        // A conversion without a date is taken as happening at the last modification.
        let converted = lead
            .get("ConvertedDate")
            .as_datetime()
            .unwrap_or(lead.modstamp);
        let label = match settings.label {
            LeadLabel::Converted => Some(1.0),
            LeadLabel::ConvertedWon => match lead.get("ConvertedOpportunityId") {
                Value::Text(opportunity) if !opportunity.is_empty() => history
                    .deal(opportunity)
                    .and_then(|deal| label_of(deal, &config.model.label)),
                _ => Some(0.0),
            },
        };
        return match label {
            Some(label) => LeadState::Decided {
                label,
                at: observed.min(converted),
                decided: converted,
            },
            None => LeadState::Undecided,
        };
    }
    let lost_at = created + Duration::days(settings.lost_after_days);
    if lost_at <= as_of {
        LeadState::Decided {
            label: 0.0,
            at: observed,
            decided: lost_at,
        }
    } else {
        LeadState::Open
    }
}

/// The counts of leads tied to accounts, by method.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LeadMatchReport {
    pub leads: usize,
    /// By the configured lookup field.
    pub by_field: usize,
    /// By company name and state, exactly after normalising.
    pub exact: usize,
    /// By company name and state, by similarity.
    pub fuzzy: usize,
    pub unmatched: usize,
    /// Up to five fuzzy matches, as `company -> account name`.
    pub fuzzy_sample: Vec<String>,
    /// Up to five leads with no account, as `company (state)`.
    pub unmatched_sample: Vec<String>,
}

/// Ties each lead to an account: by the `[lead] account_field` lookup when set and filled,
/// else by company name and state against the accounts' names and states. The account a lead
/// converted into is not used: only converted leads have it, so training would see account
/// features on converted leads alone.
pub fn match_lead_accounts(
    leads: &[ProjectedRecord],
    accounts: &[ProjectedRecord],
    config: &Config,
) -> (HashMap<String, String>, LeadMatchReport) {
    let settings = &config.lead;
    // The index names accounts by position, so the lookups below allocate no ids.
    let mut index: NameIndex<u32> = NameIndex::new();
    let mut known: HashMap<&str, u32> = HashMap::with_capacity(accounts.len());
    for (position, account) in accounts.iter().enumerate() {
        let position = u32::try_from(position).unwrap_or(u32::MAX);
        known.entry(account.id.as_str()).or_insert(position);
        let name = account
            .get(&settings.account_name_field)
            .as_str()
            .unwrap_or_default();
        let state = account
            .get(&settings.account_state_field)
            .as_str()
            .unwrap_or_default();
        // Two accounts with one name in one state: the first keeps the name, and a lead
        // naming it goes to that account.
        let _ = index.insert(name, state, None, position);
    }
    // The leads are matched in one chunk per core. Each lookup only reads the index, and the
    // chunks' results are joined in lead order, so the samples are those of one pass.
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let chunk = leads.len().div_ceil(threads).max(MIN_LEADS_PER_THREAD);
    let parts: Vec<(Vec<(u32, u32)>, LeadMatchReport)> = std::thread::scope(|scope| {
        let workers: Vec<_> = leads
            .chunks(chunk)
            .map(|part| scope.spawn(|| match_leads(part, &index, &known, settings)))
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut matched = HashMap::with_capacity(leads.len());
    let mut report = LeadMatchReport {
        leads: leads.len(),
        ..LeadMatchReport::default()
    };
    for (number, (pairs, part)) in parts.into_iter().enumerate() {
        let offset = number * chunk;
        for (lead, account) in pairs {
            matched.insert(
                leads[offset + lead as usize].id.clone(),
                accounts[account as usize].id.clone(),
            );
        }
        report.by_field += part.by_field;
        report.exact += part.exact;
        report.fuzzy += part.fuzzy;
        report.unmatched += part.unmatched;
        for (sample, more) in [
            (&mut report.fuzzy_sample, part.fuzzy_sample),
            (&mut report.unmatched_sample, part.unmatched_sample),
        ] {
            let room = 5usize.saturating_sub(sample.len());
            sample.extend(more.into_iter().take(room));
        }
    }
    (matched, report)
}

/// The minimum number of leads that [`match_lead_accounts`] gives a thread of their own.
const MIN_LEADS_PER_THREAD: usize = 4096;

/// Matches one chunk of leads for [`match_lead_accounts`]. Returns (position in `leads`,
/// position of the account) pairs and the chunk's counts, with `leads` left at zero.
fn match_leads(
    leads: &[ProjectedRecord],
    index: &NameIndex<u32>,
    known: &HashMap<&str, u32>,
    settings: &crate::config::LeadConfig,
) -> (Vec<(u32, u32)>, LeadMatchReport) {
    let mut matched = Vec::with_capacity(leads.len());
    let mut report = LeadMatchReport::default();
    for (position, lead) in leads.iter().enumerate() {
        let position = u32::try_from(position).unwrap_or(u32::MAX);
        if let Some(field) = &settings.account_field {
            if let Value::Text(account) = lead.get(field) {
                if let Some(&account) = known.get(account.as_str()) {
                    matched.push((position, account));
                    report.by_field += 1;
                    continue;
                }
            }
        }
        let company = lead
            .get(&settings.company_field)
            .as_str()
            .unwrap_or_default();
        let state = lead.get(&settings.state_field).as_str().unwrap_or_default();
        match index.lookup(company, state, None) {
            NameMatch::Fuzzy { id, name, .. } => {
                report.fuzzy += 1;
                if report.fuzzy_sample.len() < 5 {
                    report.fuzzy_sample.push(format!("{company} -> {name}"));
                }
                matched.push((position, *id));
            }
            NameMatch::Exact(id) => {
                report.exact += 1;
                matched.push((position, *id));
            }
            NameMatch::Ambiguous { .. } | NameMatch::NotFound => {
                report.unmatched += 1;
                if report.unmatched_sample.len() < 5 {
                    report.unmatched_sample.push(format!("{company} ({state})"));
                }
            }
        }
    }
    (matched, report)
}
