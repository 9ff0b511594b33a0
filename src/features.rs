//! Account features from the TOML mapping: the account's own fields plus aggregates of its
//! contacts and activities, all computed as of a point in time so that training examples see
//! only what existed when their deal was created.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use leadscore_connector::{Record, Value};
use serde::{Deserialize, Serialize};

use crate::config::{AttributeFeature, AttributeKind, FeatureConfig};
use crate::level::Level;
use crate::projection::{ProjectedRecord, ReadFields, RecordsById};
use crate::store::ActivityFacts;

/// Salesforce object and field names the pipeline reads besides the configured features.
pub mod fields {
    pub const ACCOUNT: &str = "Account";
    pub const CONTACT: &str = "Contact";
    pub const OPPORTUNITY: &str = "Opportunity";
    pub const CONTACT_ROLE: &str = "OpportunityContactRole";
    pub const LEAD: &str = "Lead";
    pub const TASK: &str = "Task";
    pub const EVENT: &str = "Event";
    pub const USER: &str = "User";
}

/// Categories kept per feature, the most frequent in training first.
const MAX_CATEGORIES: usize = 20;
/// A category must occur this often among training rows to get its own column.
const MIN_CATEGORY_COUNT: usize = 10;

/// One task or event in 16 bytes: its time to the millisecond, whether it was a meeting, the
/// contact it was with (as a position in [`History::contacts`]), and the account or person
/// whose list it is in (see [`Grouped`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Activity {
    /// Milliseconds since 1970, UTC. Salesforce and HubSpot send times to the millisecond.
    millis: i64,
    /// The top bit is set for meetings; the other 31 bits hold the contact's position, or
    /// [`Activity::NOBODY`].
    tag: u32,
    /// The number of the account or person whose list contains this copy.
    owner: u32,
}

impl Activity {
    const MEETING: u32 = 1 << 31;
    const NOBODY: u32 = Activity::MEETING - 1;

    /// `contact` is a position in [`History::contacts`]; one at or past [`Activity::NOBODY`]
    /// is not kept.
    fn new(at: DateTime<Utc>, contact: Option<usize>, meeting: bool) -> Activity {
        let who = contact
            .and_then(|c| u32::try_from(c).ok())
            .filter(|&c| c < Activity::NOBODY)
            .unwrap_or(Activity::NOBODY);
        Activity {
            millis: at.timestamp_millis(),
            tag: who | if meeting { Activity::MEETING } else { 0 },
            owner: 0,
        }
    }

    /// Returns the time of the activity.
    pub(crate) fn at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.millis).unwrap_or_default()
    }

    pub(crate) fn meeting(&self) -> bool {
        self.tag & Activity::MEETING != 0
    }

    /// Returns the time of the activity in milliseconds since 1970.
    pub(crate) fn millis(&self) -> i64 {
        self.millis
    }

    /// Returns the position of the contact the activity was with, when known.
    pub(crate) fn contact(&self) -> Option<usize> {
        let who = self.tag & !Activity::MEETING;
        (who != Activity::NOBODY).then_some(who as usize)
    }
}

/// Activities of many owners (accounts, or contacts and leads) in one vector sorted by owner
/// and then time, so each owner's list is a slice. One vector grows without the holes that
/// thousands of separately growing lists leave in the heap, and an owner needs no allocation.
#[derive(Debug, Default)]
struct Grouped {
    entries: Vec<Activity>,
}

impl Grouped {
    fn push(&mut self, owner: u32, mut activity: Activity) {
        activity.owner = owner;
        self.entries.push(activity);
    }

    /// Orders the entries by owner and time, keeping the order of equal times. Call it after
    /// the last [`Grouped::push`] and before [`Grouped::of`].
    fn sort(&mut self) {
        self.entries.sort_by_key(|a| (a.owner, a.millis));
        self.entries.shrink_to_fit();
    }

    /// Returns one owner's activities, oldest first.
    fn of(&self, owner: u32) -> &[Activity] {
        let start = self.entries.partition_point(|a| a.owner < owner);
        let end = start + self.entries[start..].partition_point(|a| a.owner == owner);
        &self.entries[start..end]
    }
}

/// One closed or open deal.
#[derive(Clone, Debug)]
pub struct Deal {
    pub id: String,
    pub account_id: String,
    pub created: DateTime<Utc>,
    pub close_date: Option<DateTime<Utc>>,
    pub closed: bool,
    pub won: bool,
    /// StageName, for the stage-based label rule.
    pub stage: Option<String>,
}

/// The pulled records a [`History`] is built from.
#[derive(Default)]
pub struct Pulled {
    pub accounts: Vec<ProjectedRecord>,
    pub contacts: Vec<ProjectedRecord>,
    pub leads: Vec<ProjectedRecord>,
    pub opportunities: Vec<Record>,
    pub contact_roles: Vec<Record>,
    pub tasks: Vec<Record>,
    pub events: Vec<Record>,
}

/// Everything pulled, indexed for feature computation.
pub struct History {
    pub accounts: RecordsById,
    /// Contacts by id.
    pub contacts: RecordsById,
    /// Leads by id.
    pub leads: RecordsById,
    /// Per lead, in the order of `leads`, the position in `accounts` of the account it
    /// belongs to (lookup field or name match), or [`NO_ACCOUNT`].
    lead_accounts: Vec<u32>,
    /// The contact field holding the buying role.
    role_field: String,
    /// Positions in [`History::contacts`] of each account's contacts, in id order.
    contacts_by_account: HashMap<String, Vec<u32>>,
    /// Per contact, in the order of `contacts`, its creation time. Rows read it for every
    /// contact of an account, so it is parsed once here.
    contact_created: Vec<Option<DateTime<Utc>>>,
    /// Per contact, its buying role as an index into `role_names`, or [`NO_ROLE`].
    contact_roles: Vec<u32>,
    role_names: Vec<String>,
    /// Activities per account, sorted by time.
    activities: Grouped,
    /// Numbers of the accounts that activities name but [`History::accounts`] lacks, after
    /// the positions of those it has.
    other_accounts: HashMap<String, u32>,
    /// Activities per contact or lead (`WhoId`), sorted by time, owned by the person's
    /// [`History::person_key`].
    person_activities: Grouped,
    pub deals: Vec<Deal>,
    /// Positions in `deals` sorted by deal id and then by position, so lookups by id do not
    /// scan every deal. [`History::index_deals`] sorts them.
    deals_by_id: Vec<u32>,
    /// Positions in `deals` sorted by account id, and then by position.
    deals_by_account: Vec<u32>,
    /// Whether both deal indexes are sorted. [`History::push_deal`] appends to them unsorted.
    deals_indexed: bool,
    /// Contacts with a role on a deal, as pairs of positions in `deals` (the first deal of
    /// its id) and in `contacts`. They are sorted and without repeats once loading ends.
    deal_roles: Vec<(u32, u32)>,
    system_size: HashMap<String, usize>,
}

/// The `Opportunity` fields [`History::add_opportunity`] reads.
pub const OPPORTUNITY_FIELDS: &[&str] = &[
    "AccountId",
    "CreatedDate",
    "CloseDate",
    "IsClosed",
    "IsWon",
    "StageName",
];

/// The `OpportunityContactRole` fields [`History::add_contact_role`] reads.
pub const CONTACT_ROLE_FIELDS: &[&str] = &["OpportunityId", "ContactId"];

/// Reads a field of a contact role. Debug builds check that loading decodes it.
fn role_field<'r>(record: &'r Record, field: &str) -> &'r Value {
    debug_assert!(
        CONTACT_ROLE_FIELDS.contains(&field),
        "{field} is not decoded"
    );
    record.get(field)
}

/// Returns a text value that is not empty.
pub(crate) fn nonempty(value: &Value) -> Option<&str> {
    match value {
        Value::Text(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn text(record: &impl ReadFields, field: &str) -> Option<String> {
    match record.get(field) {
        Value::Text(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl History {
    /// Indexes pulled records. `role_field` names the contact's buying-role field;
    /// `lead_account` maps leads to their accounts (see [`crate::levels::match_lead_accounts`]).
    /// A lead whose account the history lacks gets no account.
    pub fn build(
        pulled: Pulled,
        role_field: &str,
        lead_account: HashMap<String, String>,
    ) -> History {
        let Pulled {
            accounts,
            contacts,
            leads,
            opportunities,
            contact_roles,
            tasks,
            events,
        } = pulled;
        let accounts = RecordsById::new(accounts);
        let mut system_size: HashMap<String, usize> = HashMap::new();
        for account in accounts.values() {
            if let Some(parent) = text(account, "ParentId") {
                *system_size.entry(parent).or_default() += 1;
            }
        }

        let leads = RecordsById::new(leads);
        let lead_accounts = leads
            .keys()
            .map(|lead| {
                lead_account
                    .get(lead)
                    .and_then(|account| accounts.position(account))
                    .map_or(NO_ACCOUNT, to_u32)
            })
            .collect();
        drop(lead_account);
        let mut history = History {
            accounts,
            contacts: RecordsById::default(),
            leads,
            lead_accounts,
            role_field: role_field.to_string(),
            contacts_by_account: HashMap::new(),
            contact_created: Vec::new(),
            contact_roles: Vec::new(),
            role_names: Vec::new(),
            activities: Grouped::default(),
            other_accounts: HashMap::new(),
            person_activities: Grouped::default(),
            deals: Vec::new(),
            deals_by_id: Vec::new(),
            deals_by_account: Vec::new(),
            deals_indexed: true,
            deal_roles: Vec::new(),
            system_size,
        };
        history.contacts = RecordsById::new(contacts);
        history.index_contact_fields();
        for (position, contact) in history.contacts.values().enumerate() {
            if let Some(account) = nonempty(contact.get("AccountId")) {
                history
                    .contacts_by_account
                    .entry(account.to_string())
                    .or_default()
                    .push(to_u32(position));
            }
        }
        for opportunity in &opportunities {
            history.add_opportunity(opportunity);
        }
        for role in &contact_roles {
            history.add_contact_role(role);
        }
        for task in &tasks {
            history.add_activity(task, false);
        }
        for event in &events {
            history.add_activity(event, true);
        }
        history.finish_loading();
        history
    }

    /// Adds one opportunity as a deal; one without an account or a creation time is left out.
    pub(crate) fn add_opportunity(&mut self, opportunity: &Record) {
        // Loading decodes only these fields; debug builds check that each read is among them.
        let field = |name: &str| {
            debug_assert!(OPPORTUNITY_FIELDS.contains(&name), "{name} is not decoded");
            opportunity.get(name)
        };
        let Some(account_id) = nonempty(field("AccountId")).map(str::to_string) else {
            return;
        };
        let Some(created) = field("CreatedDate").as_datetime() else {
            return;
        };
        self.push_deal(Deal {
            id: opportunity.id.clone(),
            account_id,
            created,
            close_date: field("CloseDate").as_datetime(),
            closed: field("IsClosed").as_bool().unwrap_or(false),
            won: field("IsWon").as_bool().unwrap_or(false),
            stage: nonempty(field("StageName")).map(str::to_string),
        });
    }

    /// Adds the contact of one `OpportunityContactRole` to its deal's contacts. A role whose
    /// deal or contact the history lacks is left out, because no example could use it. The
    /// deals and contacts must already be in the history.
    pub(crate) fn add_contact_role(&mut self, role: &Record) {
        let (Some(deal), Some(contact)) = (
            nonempty(role_field(role, "OpportunityId")),
            nonempty(role_field(role, "ContactId")),
        ) else {
            return;
        };
        self.index_deals();
        let (Some(deal), Some(contact)) =
            (self.deal_position(deal), self.contacts.position(contact))
        else {
            return;
        };
        self.deal_roles.push((to_u32(deal), to_u32(contact)));
    }

    /// Returns the contacts with a role on a deal, in id order.
    pub fn deal_contacts(&self, deal: &str) -> impl Iterator<Item = &str> + '_ {
        let roles = match self.deal_position(deal) {
            Some(position) => {
                let position = to_u32(position);
                let start = self.deal_roles.partition_point(|&(d, _)| d < position);
                let end = start + self.deal_roles[start..].partition_point(|&(d, _)| d == position);
                &self.deal_roles[start..end]
            }
            None => &[][..],
        };
        roles
            .iter()
            .filter_map(|&(_, contact)| self.contacts.at(contact as usize))
            .map(|contact| contact.id.as_str())
    }

    /// Adds one Task (`meeting` false, dated by `ActivityDate`) or Event (`meeting` true,
    /// dated by `StartDateTime`) to the activities of its account and of its contact or lead.
    /// Call [`History::finish_loading`] after the last one. Contacts, leads and deals must
    /// already be in the history, because they decide which account an activity belongs to.
    pub(crate) fn add_activity(&mut self, record: &Record, meeting: bool) {
        if let Some(facts) = ActivityFacts::of(record, meeting) {
            self.add_activity_facts(facts, meeting);
        }
    }

    /// Adds one activity as [`History::add_activity`] does, from the facts the store keeps
    /// of it.
    pub(crate) fn add_activity_facts(&mut self, facts: ActivityFacts<'_>, meeting: bool) {
        self.index_deals();
        let Some(at) = DateTime::from_timestamp_millis(facts.millis) else {
            return;
        };
        let who = facts.who;
        let who_position = who.and_then(|id| self.contacts.position(id));
        // Only contacts with an account are counted as the account's contacts.
        let contact_account = who_position.and_then(|p| self.contact_account_at(p));
        let position = who_position.filter(|_| contact_account.is_some());
        // A HubSpot lead is also a contact, so an id can be both. Its list is the contact's,
        // as `person_key` finds it.
        let person_key = match who {
            Some(who) if contact_account.is_some() || self.leads.contains_key(who) => who_position
                .or_else(|| Some(self.contacts.len() + self.leads.position(who)?))
                .map(to_u32),
            _ => None,
        };
        // The account is the `WhatId` when it names one, else the account of the deal it
        // names, else the contact's. An account the history lacks gets a new number below.
        let what = facts.what;
        let owner: Option<Result<u32, String>> = match what.and_then(|w| self.accounts.position(w))
        {
            Some(position) => Some(Ok(to_u32(position))),
            None => what
                .and_then(|w| self.deal(w))
                .map(|deal| deal.account_id.as_str())
                .or(contact_account)
                .map(|account| self.account_key(account).ok_or_else(|| account.to_string())),
        };
        if let Some(key) = person_key {
            self.person_activities
                .push(key, Activity::new(at, position, meeting));
        }
        let owner = match owner {
            None => return,
            Some(Ok(owner)) => owner,
            Some(Err(account)) => {
                let owner = to_u32(self.accounts.len() + self.other_accounts.len());
                self.other_accounts.insert(account, owner);
                owner
            }
        };
        self.activities
            .push(owner, Activity::new(at, position, meeting));
    }

    /// Returns the number under which an account's activities are kept, if it has any.
    fn account_key(&self, id: &str) -> Option<u32> {
        match self.accounts.position(id) {
            Some(position) => Some(to_u32(position)),
            None => self.other_accounts.get(id).copied(),
        }
    }

    /// Returns where a contact's or lead's activities are kept: a contact's position in
    /// [`History::contacts`], else the number of contacts plus the lead's position. An id that
    /// names both (a HubSpot lead) gets the contact's.
    fn person_key(&self, id: &str) -> Option<u32> {
        self.contacts
            .position(id)
            .or_else(|| Some(self.contacts.len() + self.leads.position(id)?))
            .map(to_u32)
    }

    /// Returns the id of the contact an activity was with.
    fn who(&self, activity: &Activity) -> Option<&str> {
        activity
            .contact()
            .and_then(|position| self.contacts.at(position))
            .map(|contact| contact.id.as_str())
    }

    /// Returns the activities kept for a contact or lead.
    pub(crate) fn activities_of_person(&self, id: &str) -> &[Activity] {
        self.person_key(id)
            .map_or(&[][..], |key| self.person_activities.of(key))
    }

    /// Ends loading: sorts every activity list by time, keeping the order of activities with
    /// equal times, and sorts the contact roles by deal. Call it after the last activity and
    /// role are added and before any feature is read.
    pub(crate) fn finish_loading(&mut self) {
        self.index_deals();
        self.activities.sort();
        self.person_activities.sort();
        self.deal_roles.sort_unstable();
        self.deal_roles.dedup();
        self.deal_roles.shrink_to_fit();
    }

    /// Returns every activity kept for an account, oldest first, future ones included.
    pub(crate) fn account_activities(&self, account: &str) -> &[Activity] {
        self.account_key(account)
            .map_or(&[][..], |key| self.activities.of(key))
    }

    /// Activities of an account strictly before `at`.
    fn activities_before(&self, account: &str, at: DateTime<Utc>) -> &[Activity] {
        let list = self
            .account_key(account)
            .map_or(&[][..], |key| self.activities.of(key));
        before(list, at)
    }

    /// Activities with one contact or lead strictly before `at`. A converted lead's activities
    /// may have moved to the contact it became (Salesforce moves them on conversion), so a
    /// converted lead also counts that contact's activities dated before the conversion.
    fn person_activities_before(&self, person: &str, at: DateTime<Utc>) -> Vec<Activity> {
        let mut list = before(self.activities_of_person(person), at).to_vec();
        if let Some(lead) = self.leads.get(person) {
            // A HubSpot lead converts in place: its converted contact is itself.
            if let Some(contact) = text(lead, "ConvertedContactId").filter(|c| c != person) {
                let converted = lead.get("ConvertedDate").as_datetime().unwrap_or(at);
                let until = converted.min(at);
                list.extend(
                    before(self.activities_of_person(&contact), until)
                        .iter()
                        .cloned(),
                );
                list.sort_by_key(|a| a.millis);
            }
        }
        list
    }

    /// Appends a deal and indexes it by id and account. With two deals of one id, [`deal`]
    /// returns the first.
    ///
    /// [`deal`]: History::deal
    pub(crate) fn push_deal(&mut self, deal: Deal) {
        let position = to_u32(self.deals.len());
        self.deals.push(deal);
        self.deals_by_id.push(position);
        self.deals_by_account.push(position);
        self.deals_indexed = false;
    }

    /// Sorts the deal indexes after [`History::push_deal`], because the deal lookups search
    /// them by bisection.
    fn index_deals(&mut self) {
        if self.deals_indexed {
            return;
        }
        self.deals_indexed = true;
        let deals = &self.deals;
        self.deals_by_id.sort_by(|&a, &b| {
            deals[a as usize]
                .id
                .cmp(&deals[b as usize].id)
                .then(a.cmp(&b))
        });
        self.deals_by_account.sort_by(|&a, &b| {
            deals[a as usize]
                .account_id
                .cmp(&deals[b as usize].account_id)
                .then(a.cmp(&b))
        });
    }

    /// Returns the position in `deals` of the first deal with this id.
    fn deal_position(&self, id: &str) -> Option<usize> {
        debug_assert!(self.deals_indexed, "deal lookup before index_deals");
        let start = self
            .deals_by_id
            .partition_point(|&p| self.deals[p as usize].id.as_str() < id);
        let &position = self.deals_by_id.get(start)?;
        (self.deals[position as usize].id == id).then_some(position as usize)
    }

    /// Returns the deal with this id. Of two deals with one id, it returns the one pulled first.
    pub fn deal(&self, id: &str) -> Option<&Deal> {
        self.deal_position(id).map(|position| &self.deals[position])
    }

    /// Returns the account's deals, in pull order.
    pub fn account_deals<'a>(&'a self, account: &str) -> impl Iterator<Item = &'a Deal> + 'a {
        debug_assert!(self.deals_indexed, "deal lookup before index_deals");
        let deals = &self.deals;
        let start = self
            .deals_by_account
            .partition_point(|&p| deals[p as usize].account_id.as_str() < account);
        let end = start
            + self.deals_by_account[start..]
                .partition_point(|&p| deals[p as usize].account_id == account);
        self.deals_by_account[start..end]
            .iter()
            .map(move |&position| &deals[position as usize])
    }

    /// Returns the account a lead belongs to, when one was found.
    pub fn lead_account(&self, lead: &str) -> Option<&str> {
        let position = *self.lead_accounts.get(self.leads.position(lead)?)?;
        if position == NO_ACCOUNT {
            return None;
        }
        let account = self.accounts.at(position as usize)?;
        Some(account.id.as_str())
    }

    /// Returns true when the account has a won deal.
    pub fn is_customer(&self, account: &str) -> bool {
        self.account_deals(account).any(|d| d.won)
    }

    /// Returns true when the account had won a deal by `at`. A deal won later does not make
    /// it a customer yet, so scoring as of a past date treats the account as it was then.
    pub fn is_customer_at(&self, account: &str, at: DateTime<Utc>) -> bool {
        self.account_deals(account)
            .any(|d| d.won && d.close_date.is_none_or(|closed| closed <= at))
    }

    /// Returns true when the account has contacts or deals, so there is something to score.
    pub fn has_activity_data(&self, account: &str) -> bool {
        self.contacts_by_account.contains_key(account)
            || self.account_deals(account).next().is_some()
    }

    /// Returns the account of a contact.
    pub fn contact_account(&self, contact: &str) -> Option<&str> {
        self.contact_account_at(self.contacts.position(contact)?)
    }

    /// Returns the account of the contact at a position in [`History::contacts`].
    fn contact_account_at(&self, position: usize) -> Option<&str> {
        nonempty(self.contacts.at(position)?.get("AccountId"))
    }

    /// Returns the buying role of the contact at a position in [`History::contacts`].
    pub(crate) fn contact_role_at(&self, position: usize) -> Option<&str> {
        let code = *self.contact_roles.get(position)?;
        self.role_names.get(code as usize).map(String::as_str)
    }

    /// Fills the per-contact creation times and roles from [`History::contacts`].
    fn index_contact_fields(&mut self) {
        let mut codes: HashMap<&str, u32> = HashMap::new();
        let mut names = Vec::new();
        let mut roles = Vec::with_capacity(self.contacts.len());
        let mut created = Vec::with_capacity(self.contacts.len());
        for contact in self.contacts.values() {
            created.push(contact.get("CreatedDate").as_datetime());
            roles.push(match nonempty(contact.get(&self.role_field)) {
                Some(role) => *codes.entry(role).or_insert_with(|| {
                    names.push(role.to_string());
                    to_u32(names.len() - 1)
                }),
                None => NO_ROLE,
            });
        }
        self.contact_created = created;
        self.contact_roles = roles;
        self.role_names = names;
    }

    /// Returns the ids of an account's contacts, in id order.
    pub fn account_contacts(&self, account: &str) -> impl Iterator<Item = &str> {
        self.contacts_by_account
            .get(account)
            .into_iter()
            .flatten()
            .filter_map(|&p| self.contacts.at(p as usize))
            .map(|contact| contact.id.as_str())
    }

    /// Returns the buying role of a contact.
    pub fn contact_role(&self, contact: &str) -> Option<&str> {
        self.contact_role_at(self.contacts.position(contact)?)
    }

    /// Returns the record of a contact (or, at the lead level, a lead). In HubSpot a lead is a
    /// contact, so one id can name both records.
    pub fn person(&self, level: Level, id: &str) -> Option<&ProjectedRecord> {
        match level {
            Level::Lead => self.leads.get(id),
            _ => self.contacts.get(id),
        }
    }

    /// Returns the contacts a lead is, or became: its own id when a contact has it (HubSpot) and its
    /// converted contact (Salesforce). Their activities and presence are the lead's own, not
    /// its account's.
    pub(crate) fn lead_selves<'a>(&'a self, lead: &'a str) -> Vec<&'a str> {
        let mut selves = vec![lead];
        if let Some(Value::Text(converted)) =
            self.leads.get(lead).map(|l| l.get("ConvertedContactId"))
        {
            if converted != lead {
                selves.push(converted.as_str());
            }
        }
        selves
    }

    /// Returns the contacts of an account with an activity in `[since, at)`.
    pub fn engaged_contacts(
        &self,
        account: &str,
        since: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> BTreeSet<&str> {
        self.engaged_contact_positions(account, since, at)
            .into_iter()
            .filter_map(|p| self.contact_id(p))
            .collect()
    }

    /// Returns the positions of the contacts with an activity on `account` from `since` up
    /// to `at`. Positions follow id order, so the set is in the order of
    /// [`History::engaged_contacts`].
    pub(crate) fn engaged_contact_positions(
        &self,
        account: &str,
        since: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> BTreeSet<u32> {
        self.activities_before(account, at)
            .iter()
            .filter(|a| a.at() >= since)
            .filter_map(|a| a.contact())
            .filter(|&p| p < self.contacts.len())
            .map(to_u32)
            .collect()
    }

    /// Returns the contacts of an account that existed before `at`.
    pub fn contacts_at(&self, account: &str, at: DateTime<Utc>) -> Vec<&str> {
        self.contact_positions_at(account, at)
            .into_iter()
            .filter_map(|p| self.contact_id(p))
            .collect()
    }

    /// Returns the positions of the contacts of `account` that existed before `at`, in id
    /// order.
    pub(crate) fn contact_positions_at(&self, account: &str, at: DateTime<Utc>) -> Vec<u32> {
        self.contacts_by_account
            .get(account)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&p| {
                self.contact_created
                    .get(p as usize)
                    .is_some_and(|created| created.is_none_or(|created| created < at))
            })
            .collect()
    }

    /// Returns the positions of every contact of `account`, in id order.
    pub(crate) fn account_contact_positions(&self, account: &str) -> &[u32] {
        self.contacts_by_account
            .get(account)
            .map_or(&[][..], Vec::as_slice)
    }

    /// Returns the creation time of the contact at `position`, when it has one.
    pub(crate) fn contact_created_at(&self, position: u32) -> Option<DateTime<Utc>> {
        self.contact_created
            .get(position as usize)
            .copied()
            .flatten()
    }

    /// Returns the number of accounts in the health system `parent` heads, as the
    /// system-size feature reads it.
    pub(crate) fn system_size_of(&self, parent: &str) -> Option<usize> {
        self.system_size.get(parent).copied()
    }

    /// Returns the id of the contact at `position`.
    pub(crate) fn contact_id(&self, position: u32) -> Option<&str> {
        self.contacts.at(position as usize).map(|c| c.id.as_str())
    }
}

/// Marks a lead without an account in [`History::lead_accounts`].
const NO_ACCOUNT: u32 = u32::MAX;

/// Marks a contact without a buying role in [`History::contact_roles`].
const NO_ROLE: u32 = u32::MAX;

/// Returns a position as a `u32`. Positions index records held in memory, which stay far
/// below four billion on any machine leadscore runs on; a larger one saturates.
fn to_u32(position: usize) -> u32 {
    u32::try_from(position).unwrap_or(u32::MAX)
}

fn before(list: &[Activity], at: DateTime<Utc>) -> &[Activity] {
    let end = list.partition_point(|a| a.at() < at);
    &list[..end]
}

/// The subject of a feature row: an account, a contact or lead, or both.
#[derive(Clone, Copy, Debug, Default)]
pub struct Target<'a> {
    pub account: Option<&'a str>,
    /// The contact or lead, for the contact and lead levels.
    pub person: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn account(id: &'a str) -> Target<'a> {
        Target {
            account: Some(id),
            person: None,
        }
    }
}

/// A hypothetical change to a target, for hints: an extra activity, or a field set.
#[derive(Clone, Debug)]
pub enum Change {
    /// An activity with `who` (a contact of the account, or the lead) at `at`.
    Activity {
        who: Option<String>,
        at: DateTime<Utc>,
        meeting: bool,
    },
    /// A field of the account (`person` false) or of the contact or lead set to `value`.
    Field {
        person: bool,
        field: String,
        value: Value,
    },
}

impl Change {
    /// Returns whether this change can move the value of a column fed by `source`. A column
    /// it cannot move keeps the value it has without the change.
    fn moves(&self, source: &Source) -> bool {
        match (self, source) {
            (
                Change::Activity { .. },
                Source::Aggregate(Aggregate::ContactsKnown | Aggregate::SystemSize),
            ) => false,
            (Change::Activity { .. }, Source::Aggregate(_) | Source::PersonAggregate(_)) => true,
            (Change::Activity { .. }, _) => false,
            (Change::Field { person, field, .. }, Source::Attribute { field: read, .. }) => {
                !*person && field == read
            }
            (Change::Field { person, field, .. }, Source::PersonAttribute { field: read, .. }) => {
                *person && field == read
            }
            (Change::Field { .. }, _) => false,
        }
    }
}

/// Aggregates computed from contacts, activities and the account hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Aggregate {
    RolesEngaged,
    ContactsEngaged,
    Meetings,
    Activities { days: i64 },
    DaysSinceLastTouch,
    DaysSinceFirstTouch,
    ContactsKnown,
    SystemSize,
}

/// Aggregates of one contact's or lead's own activities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PersonAggregate {
    Activities { days: i64 },
    Meetings,
    DaysSinceLastTouch,
    DaysSinceFirstTouch,
}

/// Source of one model input column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Source {
    /// A field of the account.
    Attribute {
        field: String,
        kind: AttributeKind,
        /// For one-hot category columns: the category this column stands for.
        category: Option<String>,
    },
    /// An aggregate over the account's contacts, activities and hierarchy.
    Aggregate(Aggregate),
    /// A field of the contact or lead being scored.
    PersonAttribute {
        field: String,
        kind: AttributeKind,
        category: Option<String>,
    },
    /// An aggregate over the contact's or lead's own activities.
    PersonAggregate(PersonAggregate),
}

impl Source {
    /// Returns true for one-hot category columns.
    pub fn is_one_hot(&self) -> bool {
        matches!(
            self,
            Source::Attribute {
                category: Some(_),
                ..
            } | Source::PersonAttribute {
                category: Some(_),
                ..
            }
        )
    }

    /// Returns the attribute kind of a field column.
    pub fn attribute_kind(&self) -> Option<AttributeKind> {
        match self {
            Source::Attribute { kind, .. } | Source::PersonAttribute { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// One model input column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Column name, unique, for example `hospital_type=Acute Care Hospitals`.
    pub name: String,
    /// The configured feature the column belongs to; reasons group columns by it.
    pub feature: String,
    /// Plain words for reasons.
    pub label: String,
    pub source: Source,
}

/// The mapping from history to model input, fixed when a model is trained and stored with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpace {
    /// The level the rows describe; spaces stored before levels existed are account spaces.
    #[serde(default)]
    pub level: Level,
    pub columns: Vec<Column>,
    pub engagement_window_days: i64,
}

fn attribute_columns(
    attributes: &[AttributeFeature],
    person: bool,
    categories: impl Fn(&str) -> Vec<String>,
) -> Vec<Column> {
    let mut columns = Vec::new();
    for attribute in attributes {
        let source = |category: Option<String>| {
            let (field, kind) = (attribute.field.clone(), attribute.kind);
            if person {
                Source::PersonAttribute {
                    field,
                    kind,
                    category,
                }
            } else {
                Source::Attribute {
                    field,
                    kind,
                    category,
                }
            }
        };
        if attribute.kind != AttributeKind::Category {
            columns.push(Column {
                name: attribute.name.clone(),
                feature: attribute.name.clone(),
                label: attribute.label.clone(),
                source: source(None),
            });
            continue;
        }
        for category in categories(&attribute.field) {
            columns.push(Column {
                name: format!("{}={category}", attribute.name),
                feature: attribute.name.clone(),
                label: attribute.label.clone(),
                source: source(Some(category)),
            });
        }
    }
    columns
}

impl FeatureSpace {
    /// Builds the columns of `level` from the configuration; category columns come from the
    /// values frequent among the `training` targets. Contact and lead rows hold the person's
    /// own fields and activities, then everything an account row holds for their account.
    pub fn fit(
        config: &FeatureConfig,
        level: Level,
        history: &History,
        training: &[Target<'_>],
    ) -> Self {
        let mut columns = Vec::new();
        if level != Level::Account {
            let people: Vec<&ProjectedRecord> = training
                .iter()
                .filter_map(|t| t.person.and_then(|p| history.person(level, p)))
                .collect();
            let attributes = match level {
                Level::Lead => &config.lead_attributes,
                _ => &config.contact_attributes,
            };
            columns.extend(attribute_columns(attributes, true, |field| {
                frequent_values(people.iter().copied(), field)
            }));
            let prefix = level.name();
            let mut aggregates = vec![
                (
                    format!("{prefix}_meetings"),
                    format!("meetings with this {prefix}"),
                    PersonAggregate::Meetings,
                ),
                (
                    format!("{prefix}_days_since_last_touch"),
                    format!("last touch with this {prefix}"),
                    PersonAggregate::DaysSinceLastTouch,
                ),
                (
                    format!("{prefix}_days_since_first_touch"),
                    format!("first touch with this {prefix}"),
                    PersonAggregate::DaysSinceFirstTouch,
                ),
            ];
            for days in config.activity_windows_days.iter().collect::<BTreeSet<_>>() {
                aggregates.push((
                    format!("{prefix}_activities_{days}d"),
                    format!("activities with this {prefix}"),
                    PersonAggregate::Activities { days: *days },
                ));
            }
            for (name, label, aggregate) in aggregates {
                columns.push(Column {
                    feature: name.clone(),
                    name,
                    label,
                    source: Source::PersonAggregate(aggregate),
                });
            }
        }
        let accounts: Vec<&ProjectedRecord> = training
            .iter()
            .filter_map(|t| t.account.and_then(|a| history.accounts.get(a)))
            .collect();
        columns.extend(attribute_columns(&config.attributes, false, |field| {
            frequent_values(accounts.iter().copied(), field)
        }));
        let mut aggregates = vec![
            (
                "roles_engaged",
                "buying roles engaged",
                Aggregate::RolesEngaged,
            ),
            (
                "contacts_engaged",
                "contacts engaged",
                Aggregate::ContactsEngaged,
            ),
            ("meetings", "demos and meetings", Aggregate::Meetings),
            (
                "days_since_last_touch",
                "last touch",
                Aggregate::DaysSinceLastTouch,
            ),
            (
                "days_since_first_touch",
                "first touch",
                Aggregate::DaysSinceFirstTouch,
            ),
            (
                "contacts_known",
                "contacts on file",
                Aggregate::ContactsKnown,
            ),
            ("system_size", "health-system size", Aggregate::SystemSize),
        ];
        let windows: BTreeSet<i64> = config.activity_windows_days.iter().copied().collect();
        let activity_names: Vec<(String, i64)> = windows
            .into_iter()
            .map(|days| (format!("activities_{days}d"), days))
            .collect();
        for (name, days) in &activity_names {
            aggregates.push((
                name.as_str(),
                "activities",
                Aggregate::Activities { days: *days },
            ));
        }
        for (name, label, aggregate) in aggregates {
            columns.push(Column {
                name: name.to_string(),
                feature: name.to_string(),
                label: label.to_string(),
                source: Source::Aggregate(aggregate),
            });
        }
        FeatureSpace {
            level,
            columns,
            engagement_window_days: config.engagement_window_days,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Computes the model input of `target` as of `at`; missing values are NaN.
    pub fn row(&self, history: &History, target: Target<'_>, at: DateTime<Utc>) -> Vec<f64> {
        self.row_with(history, target, at, None)
    }

    /// Computes the model input of `target` as of `at` as if `change` had happened.
    pub fn row_with<'h>(
        &self,
        history: &'h History,
        target: Target<'_>,
        at: DateTime<Utc>,
        change: Option<&'h Change>,
    ) -> Vec<f64> {
        self.compute_row(history, target, at, change, None)
    }

    /// Returns what [`FeatureSpace::row_with`] returns for `change`, given `base`, the row
    /// [`FeatureSpace::row`] returned for the same target and time. Only the columns the
    /// change can move are computed, and the rest are copied from `base`.
    pub fn row_changed<'h>(
        &self,
        history: &'h History,
        target: Target<'_>,
        at: DateTime<Utc>,
        change: &'h Change,
        base: &[f64],
    ) -> Vec<f64> {
        self.compute_row(history, target, at, Some(change), Some(base))
    }

    /// Computes a row, or with `base` only the columns `change` can move.
    fn compute_row<'h>(
        &self,
        history: &'h History,
        target: Target<'_>,
        at: DateTime<Utc>,
        change: Option<&'h Change>,
        base: Option<&[f64]>,
    ) -> Vec<f64> {
        let base = base.filter(|base| base.len() == self.columns.len());
        let computes = |source: &Source| match (base, change) {
            (Some(_), Some(change)) => change.moves(source),
            (Some(_), None) => false,
            (None, _) => true,
        };
        let account = target.account.and_then(|a| history.accounts.get(a));
        let person = target.person.and_then(|p| history.person(self.level, p));
        let needs_activities = self.columns.iter().any(|c| {
            matches!(c.source, Source::Aggregate(_) | Source::PersonAggregate(_))
                && computes(&c.source)
        });
        let mut account_activities: std::borrow::Cow<'_, [Activity]> = match target.account {
            Some(a) if needs_activities => {
                std::borrow::Cow::Borrowed(history.activities_before(a, at))
            }
            _ => std::borrow::Cow::Borrowed(&[][..]),
        };
        let needs_person = self
            .columns
            .iter()
            .any(|c| matches!(c.source, Source::PersonAggregate(_)) && computes(&c.source));
        let mut person_activities = match (needs_person, target.person) {
            (true, Some(p)) => history.person_activities_before(p, at),
            _ => Vec::new(),
        };
        // A lead's row describes its account without the lead. Only converted leads are tied
        // to an account as contacts, so counting their activities for the account would tell
        // converted leads apart.
        let selves: Vec<&str> = match (self.level, target.person) {
            (Level::Lead, Some(lead)) if needs_activities => history.lead_selves(lead),
            _ => Vec::new(),
        };
        if !selves.is_empty() {
            let kept: Vec<Activity> = account_activities
                .iter()
                .filter(|a| history.who(a).is_none_or(|w| !selves.contains(&w)))
                .cloned()
                .collect();
            account_activities = std::borrow::Cow::Owned(kept);
        }
        if let Some(Change::Activity {
            who,
            at: when,
            meeting,
        }) = change
        {
            if *when < at {
                // Only a contact of the account joins the account's activities, so only a
                // contact's position matters here.
                let position = who.as_deref().and_then(|w| history.contacts.position(w));
                let activity = Activity::new(*when, position, *meeting);
                let on_account = match who {
                    None => true,
                    Some(who) => {
                        target.account.is_some() && history.contact_account(who) == target.account
                    }
                };
                // After the activities of the same time, as a stable sort of the list with
                // the new one last would place it.
                let place =
                    |list: &[Activity]| list.partition_point(|a| a.millis <= activity.millis);
                if on_account && target.account.is_some() && needs_activities {
                    let mut list = account_activities.into_owned();
                    list.insert(place(&list), activity);
                    account_activities = std::borrow::Cow::Owned(list);
                }
                if who.is_some() && who.as_deref() == target.person && needs_person {
                    person_activities.insert(place(&person_activities), activity);
                }
            }
        }
        let field_value =
            |record: Option<&'h ProjectedRecord>, is_person: bool, field: &str| -> &'h Value {
                if let Some(Change::Field {
                    person: changed_person,
                    field: changed,
                    value,
                }) = change
                {
                    if *changed_person == is_person && changed == field {
                        return value;
                    }
                }
                record.map_or(&Value::Null, |r| r.get(field))
            };
        let engaged_since = at - Duration::days(self.engagement_window_days);
        let engaged: Vec<&Activity> = account_activities
            .iter()
            .filter(|a| a.at() >= engaged_since)
            .collect();
        // The one-hot columns of a field sit side by side, so the field is read and its text
        // made once for all of them.
        let mut last_read: Option<FieldRead<'_>> = None;
        let mut row = Vec::with_capacity(self.columns.len());
        for (index, column) in self.columns.iter().enumerate() {
            if let Some(base) = base.filter(|_| !computes(&column.source)) {
                row.push(base[index]);
                continue;
            }
            let value = match &column.source {
                Source::Attribute {
                    field,
                    kind,
                    category,
                }
                | Source::PersonAttribute {
                    field,
                    kind,
                    category,
                } => {
                    let is_person = matches!(column.source, Source::PersonAttribute { .. });
                    let record = if is_person { person } else { account };
                    match record {
                        Some(_) => {
                            let mut read = match last_read.take() {
                                Some(read) if read.person == is_person && read.field == field => {
                                    read
                                }
                                _ => FieldRead::new(
                                    is_person,
                                    field,
                                    field_value(record, is_person, field),
                                ),
                            };
                            let value = read.attribute_value(*kind, category.as_deref());
                            last_read = Some(read);
                            value
                        }
                        None => f64::NAN,
                    }
                }
                Source::Aggregate(aggregate) => match target.account {
                    Some(account_id) => aggregate_value(
                        *aggregate,
                        history,
                        account_id,
                        at,
                        &account_activities,
                        &engaged,
                        &selves,
                    ),
                    None => f64::NAN,
                },
                Source::PersonAggregate(aggregate) => {
                    person_aggregate_value(*aggregate, at, &person_activities, engaged_since)
                }
            };
            row.push(value);
        }
        row
    }

    /// Phrases the configured features that raised the score most (up to `positive`, largest
    /// first), then those that lowered it most (up to `negative`). `contributions` are per
    /// column, in log-odds; one-hot columns of a feature are summed first.
    pub fn reasons(
        &self,
        history: &History,
        target: Target<'_>,
        row: &[f64],
        contributions: &[f64],
        positive: usize,
        negative: usize,
    ) -> Vec<String> {
        let mut by_feature: Vec<(&str, f64)> = Vec::new();
        for (column, contribution) in self.columns.iter().zip(contributions) {
            match by_feature.iter_mut().find(|(f, _)| *f == column.feature) {
                Some((_, total)) => *total += contribution,
                None => by_feature.push((&column.feature, *contribution)),
            }
        }
        by_feature.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        // Two features can read the same in words (first and last touch of a record never
        // contacted); a reason is listed once.
        let mut reasons: Vec<String> = Vec::new();
        let phrased = |list: &mut Vec<String>, feature: &str, contribution: f64| {
            let phrase = self.phrase(history, target, feature, row);
            let sign = if contribution > 0.0 { '+' } else { '-' };
            let reason = format!("{sign} {phrase}");
            if !list.contains(&reason) {
                list.push(reason);
            }
        };
        let mut raising_count = 0;
        for &(feature, contribution) in by_feature.iter().filter(|(_, c)| *c > 1e-6) {
            if raising_count == positive {
                break;
            }
            let before = reasons.len();
            phrased(&mut reasons, feature, contribution);
            raising_count += reasons.len() - before;
        }
        let mut lowering_count = 0;
        for &(feature, contribution) in by_feature.iter().filter(|(_, c)| *c < -1e-6) {
            if lowering_count == negative {
                break;
            }
            let before = reasons.len();
            phrased(&mut reasons, feature, contribution);
            lowering_count += reasons.len() - before;
        }
        reasons
    }

    /// Returns the index of each feature's first column, in column order. `phrase` phrases
    /// a feature by its first column.
    pub(crate) fn first_columns(&self) -> Vec<usize> {
        let mut seen: HashSet<&str> = HashSet::new();
        (0..self.columns.len())
            .filter(|&index| seen.insert(&self.columns[index].feature))
            .collect()
    }

    /// Phrases every configured feature once, in column order, as [`FeatureSpace::reasons`]
    /// would phrase it for this row. `first` is [`FeatureSpace::first_columns`], found once
    /// for many rows. Together with the contributions, which only pick and sign the phrases,
    /// these are everything the reasons of the row are made of.
    pub(crate) fn phrases_of<'a>(
        &'a self,
        history: &'a History,
        target: Target<'a>,
        row: &'a [f64],
        first: &'a [usize],
    ) -> impl Iterator<Item = String> + 'a {
        first
            .iter()
            .map(move |&index| self.phrase_column(history, target, index, row))
    }

    fn phrase(&self, history: &History, target: Target<'_>, feature: &str, row: &[f64]) -> String {
        match self.columns.iter().position(|c| c.feature == feature) {
            Some(index) => self.phrase_column(history, target, index, row),
            None => feature.to_string(),
        }
    }

    fn phrase_column(
        &self,
        history: &History,
        target: Target<'_>,
        index: usize,
        row: &[f64],
    ) -> String {
        let column = &self.columns[index];
        let value = row.get(index).copied().unwrap_or(f64::NAN);
        let window = self.engagement_window_days;
        match &column.source {
            Source::Attribute { field, kind, .. } => {
                let raw = target
                    .account
                    .and_then(|a| history.accounts.get(a))
                    .map_or(&Value::Null, |a| a.get(field));
                attribute_phrase(&column.label, *kind, raw, value)
            }
            Source::PersonAttribute { field, kind, .. } => {
                let raw = target
                    .person
                    .and_then(|p| history.person(self.level, p))
                    .map_or(&Value::Null, |p| p.get(field));
                attribute_phrase(&column.label, *kind, raw, value)
            }
            Source::Aggregate(aggregate) => aggregate_phrase(*aggregate, value, window),
            Source::PersonAggregate(aggregate) => {
                person_aggregate_phrase(*aggregate, self.level.name(), value, window)
            }
        }
    }
}

fn frequent_values<'r>(
    records: impl Iterator<Item = &'r ProjectedRecord>,
    field: &str,
) -> Vec<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in records {
        if let Value::Text(value) = record.get(field) {
            *counts.entry(value.clone()).or_default() += 1;
        }
    }
    let mut values: Vec<(String, usize)> = counts
        .into_iter()
        .filter(|(_, n)| *n >= MIN_CATEGORY_COUNT)
        .collect();
    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    values.truncate(MAX_CATEGORIES);
    values.into_iter().map(|(v, _)| v).collect()
}

fn person_aggregate_value(
    aggregate: PersonAggregate,
    at: DateTime<Utc>,
    before: &[Activity],
    engaged_since: DateTime<Utc>,
) -> f64 {
    let days_between = |earlier: DateTime<Utc>| (at - earlier).num_seconds() as f64 / 86_400.0;
    match aggregate {
        PersonAggregate::Activities { days } => {
            let since = at - Duration::days(days);
            before.iter().rev().take_while(|a| a.at() >= since).count() as f64
        }
        PersonAggregate::Meetings => before
            .iter()
            .filter(|a| a.meeting() && a.at() >= engaged_since)
            .count() as f64,
        PersonAggregate::DaysSinceLastTouch => {
            before.last().map_or(f64::NAN, |a| days_between(a.at()))
        }
        PersonAggregate::DaysSinceFirstTouch => {
            before.first().map_or(f64::NAN, |a| days_between(a.at()))
        }
    }
}

fn person_aggregate_phrase(
    aggregate: PersonAggregate,
    who: &str,
    value: f64,
    window: i64,
) -> String {
    let n = format_number(value);
    match aggregate {
        PersonAggregate::Activities { days } if value == 1.0 => {
            format!("1 activity with this {who} in the last {days} days")
        }
        PersonAggregate::Activities { days } => {
            format!("{n} activities with this {who} in the last {days} days")
        }
        PersonAggregate::Meetings if value == 1.0 => {
            format!("1 meeting with this {who} in {window} days")
        }
        PersonAggregate::Meetings => format!("{n} meetings with this {who} in {window} days"),
        PersonAggregate::DaysSinceLastTouch | PersonAggregate::DaysSinceFirstTouch
            if value.is_nan() =>
        {
            format!("this {who} was never contacted")
        }
        PersonAggregate::DaysSinceLastTouch => {
            format!("last touch with this {who} {:.0} days ago", value.floor())
        }
        PersonAggregate::DaysSinceFirstTouch => {
            format!("first touch with this {who} {:.0} days ago", value.floor())
        }
    }
}

/// One attribute field's value as a row reads it, with its text for category columns made
/// on first use.
struct FieldRead<'v> {
    person: bool,
    field: &'v str,
    value: &'v Value,
    text: Option<std::borrow::Cow<'v, str>>,
}

impl<'v> FieldRead<'v> {
    fn new(person: bool, field: &'v str, value: &'v Value) -> FieldRead<'v> {
        FieldRead {
            person,
            field,
            value,
            text: None,
        }
    }

    /// Returns the column value of this field for `kind`. `category` names a one-hot
    /// column's category.
    fn attribute_value(&mut self, kind: AttributeKind, category: Option<&str>) -> f64 {
        if kind != AttributeKind::Category {
            return attribute_value(self.value, kind, category);
        }
        if self.value.is_null() {
            return f64::NAN;
        }
        let value = self.value;
        let text = self.text.get_or_insert_with(|| category_text(value));
        f64::from(u8::from(Some(text.as_ref()) == category))
    }
}

/// Returns the text a one-hot column compares with its category.
fn category_text(value: &Value) -> std::borrow::Cow<'_, str> {
    match value {
        Value::Text(text) => std::borrow::Cow::Borrowed(text.as_str()),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

fn attribute_value(value: &Value, kind: AttributeKind, category: Option<&str>) -> f64 {
    match kind {
        // An infinite value would stop training, so it counts as missing.
        // NOTE: nothing reports it here. The HubSpot connector rejects such values when it
        // pulls them, but a Salesforce text field read as a number can still hold one.
        AttributeKind::Number => value.as_f64().filter(|v| v.is_finite()).unwrap_or(f64::NAN),
        AttributeKind::Flag => match value {
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Text(s) if s.eq_ignore_ascii_case("yes") || s.eq_ignore_ascii_case("true") => {
                1.0
            }
            Value::Text(s) if s.eq_ignore_ascii_case("no") || s.eq_ignore_ascii_case("false") => {
                0.0
            }
            _ => f64::NAN,
        },
        AttributeKind::Present => match value {
            Value::Null => 0.0,
            Value::Text(s) if s.trim().is_empty() => 0.0,
            _ => 1.0,
        },
        AttributeKind::Category => match value {
            Value::Null => f64::NAN,
            other => f64::from(u8::from(Some(category_text(other).as_ref()) == category)),
        },
    }
}

fn aggregate_value(
    aggregate: Aggregate,
    history: &History,
    account_id: &str,
    at: DateTime<Utc>,
    before: &[Activity],
    engaged: &[&Activity],
    excluded_contacts: &[&str],
) -> f64 {
    let days_between = |earlier: DateTime<Utc>| (at - earlier).num_seconds() as f64 / 86_400.0;
    match aggregate {
        Aggregate::RolesEngaged => {
            let roles: BTreeSet<&str> = engaged
                .iter()
                .filter_map(|a| a.contact())
                .filter_map(|c| history.contact_role_at(c))
                .collect();
            roles.len() as f64
        }
        Aggregate::ContactsEngaged => {
            let contacts: BTreeSet<usize> = engaged.iter().filter_map(|a| a.contact()).collect();
            contacts.len() as f64
        }
        Aggregate::Meetings => engaged.iter().filter(|a| a.meeting()).count() as f64,
        Aggregate::Activities { days } => {
            let since = at - Duration::days(days);
            before.iter().rev().take_while(|a| a.at() >= since).count() as f64
        }
        Aggregate::DaysSinceLastTouch => before.last().map_or(f64::NAN, |a| days_between(a.at())),
        Aggregate::DaysSinceFirstTouch => before.first().map_or(f64::NAN, |a| days_between(a.at())),
        Aggregate::ContactsKnown => {
            let known = history.contact_positions_at(account_id, at);
            if excluded_contacts.is_empty() {
                known.len() as f64
            } else {
                known
                    .iter()
                    .filter_map(|&p| history.contact_id(p))
                    .filter(|c| !excluded_contacts.contains(c))
                    .count() as f64
            }
        }
        Aggregate::SystemSize => {
            let parent = history
                .accounts
                .get(account_id)
                .and_then(|a| text(a, "ParentId"));
            parent
                .and_then(|p| history.system_size.get(&p).copied())
                .unwrap_or(1) as f64
        }
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn attribute_phrase(label: &str, kind: AttributeKind, raw: &Value, value: f64) -> String {
    match kind {
        AttributeKind::Number if value.is_nan() => format!("{label} not reported"),
        // The sign in front of the phrase gives the direction. "High" or "low" would need
        // the training distribution, which the feature space does not keep.
        AttributeKind::Number => format!("{label} {}", format_number(value)),
        AttributeKind::Category if raw.is_null() => format!("{label} unknown"),
        AttributeKind::Category => format!("{label}: {raw}"),
        AttributeKind::Flag if value.is_nan() => format!("{label} unknown"),
        AttributeKind::Flag if value > 0.5 => label.to_string(),
        AttributeKind::Flag => format!("no {label}"),
        AttributeKind::Present if value > 0.5 => format!("{label}: {raw}"),
        AttributeKind::Present => format!("no {label}"),
    }
}

fn aggregate_phrase(aggregate: Aggregate, value: f64, window: i64) -> String {
    let n = format_number(value);
    match aggregate {
        Aggregate::RolesEngaged if value == 1.0 => {
            format!("1 buying role engaged in {window} days")
        }
        Aggregate::RolesEngaged => format!("{n} buying roles engaged in {window} days"),
        Aggregate::ContactsEngaged => format!("{n} contacts engaged in {window} days"),
        Aggregate::Meetings => format!("{n} demos and meetings in {window} days"),
        Aggregate::Activities { days } if value == 1.0 => {
            format!("1 activity in the last {days} days")
        }
        Aggregate::Activities { days } => format!("{n} activities in the last {days} days"),
        Aggregate::DaysSinceLastTouch if value.is_nan() => "never contacted".to_string(),
        Aggregate::DaysSinceLastTouch => format!("last touch {:.0} days ago", value.floor()),
        Aggregate::DaysSinceFirstTouch if value.is_nan() => "never contacted".to_string(),
        Aggregate::DaysSinceFirstTouch => format!("first touch {:.0} days ago", value.floor()),
        Aggregate::ContactsKnown => format!("{n} contacts on file"),
        Aggregate::SystemSize if value <= 1.0 => "independent hospital".to_string(),
        Aggregate::SystemSize => format!("part of a {n}-hospital system"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttributeFeature;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    fn record(object: &str, id: &str, fields: &[(&str, Value)]) -> Record {
        Record {
            object: object.into(),
            id: id.into(),
            modstamp: time("2026-01-01T00:00:00Z"),
            deleted: false,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn activity_keeps_meeting_and_contact_in_one_word() {
        let at = time("2025-01-10T00:00:00Z");
        let meeting = Activity::new(at, Some(7), true);
        assert!(meeting.meeting());
        assert_eq!(meeting.contact(), Some(7));
        let call = Activity::new(at, None, false);
        assert!(!call.meeting());
        assert_eq!(call.contact(), None);
        // A position that does not fit in 31 bits is dropped, not wrapped onto another contact.
        let far = Activity::new(at, Some(Activity::NOBODY as usize), true);
        assert!(far.meeting());
        assert_eq!(far.contact(), None);
        assert_eq!(std::mem::size_of::<Activity>(), 16);
        assert_eq!(meeting.at(), at);
        // Times keep their milliseconds, and times before 1970 stay as they are.
        let precise = time("2024-03-05T06:07:08.123Z");
        assert_eq!(Activity::new(precise, None, false).at(), precise);
        let old = time("1969-07-20T20:17:40Z");
        assert_eq!(Activity::new(old, None, false).at(), old);
    }

    #[test]
    fn deals_and_roles_found_by_id_and_account() {
        let deal = |id: &str, account: &str| Deal {
            id: id.into(),
            account_id: account.into(),
            created: time("2025-01-01T00:00:00Z"),
            close_date: None,
            closed: false,
            won: false,
            stage: None,
        };
        let mut history = history();
        for (id, account) in [
            ("006B", "001A"),
            ("006A", "001B"),
            ("006C", "001A"),
            ("006B", "001C"),
        ] {
            history.push_deal(deal(id, account));
        }
        let role = |deal: &str, contact: &str| {
            record(
                "OpportunityContactRole",
                "00K1",
                &[
                    ("OpportunityId", Value::Text(deal.into())),
                    ("ContactId", Value::Text(contact.into())),
                ],
            )
        };
        for (deal, contact) in [
            ("006B", "003b"),
            ("006B", "003a"),
            ("006B", "003b"),
            ("006C", "003z"),
            ("006Z", "003a"),
        ] {
            history.add_contact_role(&role(deal, contact));
        }
        history.finish_loading();

        // Of two deals with one id, the lookup returns the one pulled first.
        assert_eq!(
            history.deal("006B").map(|d| d.account_id.as_str()),
            Some("001A")
        );
        assert!(history.deal("006D").is_none());
        let ids: Vec<&str> = history
            .account_deals("001A")
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(ids, ["006B", "006C"]);
        assert_eq!(history.account_deals("001Z").count(), 0);
        // Roles repeat once, and a role naming an unknown contact or deal is left out.
        let contacts: Vec<&str> = history.deal_contacts("006B").collect();
        assert_eq!(contacts, ["003a", "003b"]);
        assert_eq!(history.deal_contacts("006C").count(), 0);
        assert_eq!(history.deal_contacts("006Z").count(), 0);
    }

    #[test]
    fn lead_account_kept_only_for_known_accounts() {
        let lead = |id: &str| ProjectedRecord::whole(record("Lead", id, &[]));
        let account = ProjectedRecord::whole(record("Account", "001A", &[]));
        let history = History::build(
            Pulled {
                accounts: vec![account],
                leads: vec![lead("00Q2"), lead("00Q1"), lead("00Q3")],
                ..Pulled::default()
            },
            "Buying_Role__c",
            HashMap::from([
                ("00Q1".to_string(), "001A".to_string()),
                ("00Q2".to_string(), "001X".to_string()),
            ]),
        );
        assert_eq!(history.lead_account("00Q1"), Some("001A"));
        assert_eq!(history.lead_account("00Q2"), None);
        assert_eq!(history.lead_account("00Q3"), None);
        assert_eq!(history.lead_account("00Q9"), None);
    }

    #[test]
    fn customer_only_from_deals_won_by_the_time() {
        let mut history = history();
        history.push_deal(Deal {
            id: "006W".into(),
            account_id: "001A".into(),
            created: time("2025-01-01T00:00:00Z"),
            close_date: Some(time("2025-09-01T00:00:00Z")),
            closed: true,
            won: true,
            stage: None,
        });
        history.finish_loading();
        assert!(!history.is_customer_at("001A", time("2025-06-01T00:00:00Z")));
        assert!(history.is_customer_at("001A", time("2025-09-01T00:00:00Z")));
        assert!(history.is_customer("001A"));
    }

    fn history() -> History {
        let account = record(
            "Account",
            "001A",
            &[
                ("Hip_Knee_Discharges__c", Value::Number(412.0)),
                ("CABG_Discharges__c", Value::Null),
            ],
        );
        let contact = |id: &str, role: &str| {
            record(
                "Contact",
                id,
                &[
                    ("AccountId", Value::Text("001A".into())),
                    ("Buying_Role__c", Value::Text(role.into())),
                    ("CreatedDate", Value::DateTime(time("2024-01-01T00:00:00Z"))),
                ],
            )
        };
        let task = |id: &str, who: &str, day: &str| {
            record(
                "Task",
                id,
                &[
                    ("WhoId", Value::Text(who.into())),
                    ("ActivityDate", Value::DateTime(time(day))),
                ],
            )
        };
        History::build(
            Pulled {
                accounts: vec![ProjectedRecord::whole(account)],
                contacts: vec![
                    ProjectedRecord::whole(contact("003a", "Finance")),
                    ProjectedRecord::whole(contact("003b", "Surgeon Champion")),
                ],
                tasks: vec![
                    task("00T1", "003a", "2025-01-10T00:00:00Z"),
                    task("00T2", "003b", "2025-06-01T00:00:00Z"),
                    task("00T3", "003b", "2025-09-01T00:00:00Z"),
                ],
                ..Pulled::default()
            },
            "Buying_Role__c",
            HashMap::new(),
        )
    }

    fn space() -> FeatureSpace {
        let config = FeatureConfig {
            attributes: vec![
                AttributeFeature {
                    name: "hip_knee_volume".into(),
                    field: "Hip_Knee_Discharges__c".into(),
                    kind: AttributeKind::Number,
                    label: "hip/knee volume".into(),
                },
                AttributeFeature {
                    name: "cabg_volume".into(),
                    field: "CABG_Discharges__c".into(),
                    kind: AttributeKind::Number,
                    label: "CABG volume".into(),
                },
            ],
            contact_attributes: vec![],
            lead_attributes: vec![],
            role_field: "Buying_Role__c".into(),
            engagement_window_days: 365,
            activity_windows_days: vec![90],
        };
        FeatureSpace::fit(
            &config,
            Level::Account,
            &history(),
            &[Target::account("001A")],
        )
    }

    fn column(space: &FeatureSpace, row: &[f64], name: &str) -> f64 {
        let index = space
            .columns
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        row[index]
    }

    #[test]
    fn activities_after_cutoff_not_counted() {
        let space = space();
        let history = history();
        let row = space.row(
            &history,
            Target::account("001A"),
            time("2025-07-01T00:00:00Z"),
        );
        assert_eq!(column(&space, &row, "roles_engaged"), 2.0);
        assert_eq!(column(&space, &row, "contacts_engaged"), 2.0);
        assert_eq!(column(&space, &row, "activities_90d"), 1.0);
        assert_eq!(column(&space, &row, "days_since_last_touch"), 30.0);

        let early = space.row(
            &history,
            Target::account("001A"),
            time("2025-01-10T00:00:00Z"),
        );
        assert_eq!(column(&space, &early, "roles_engaged"), 0.0);
        assert!(column(&space, &early, "days_since_last_touch").is_nan());
    }

    #[test]
    fn missing_number_stays_missing() {
        let space = space();
        let row = space.row(
            &history(),
            Target::account("001A"),
            time("2025-07-01T00:00:00Z"),
        );
        assert_eq!(column(&space, &row, "hip_knee_volume"), 412.0);
        assert!(column(&space, &row, "cabg_volume").is_nan());
    }

    #[test]
    fn infinite_number_is_missing() {
        // JSON has no infinity, but a number field sent as text can read "Infinity" or
        // overflow, as "1e999" does, and one such record would stop training.
        let cases = [
            Value::Number(f64::INFINITY),
            Value::Text("Infinity".into()),
            Value::Text("-1e999".into()),
            Value::Text("NaN".into()),
        ];
        for value in cases {
            let account = record(
                "Account",
                "001A",
                &[("Hip_Knee_Discharges__c", value.clone())],
            );
            let history = History::build(
                Pulled {
                    accounts: vec![ProjectedRecord::whole(account)],
                    ..Pulled::default()
                },
                "Buying_Role__c",
                HashMap::new(),
            );
            let space = space();
            let row = space.row(
                &history,
                Target::account("001A"),
                time("2025-07-01T00:00:00Z"),
            );
            let cell = column(&space, &row, "hip_knee_volume");
            assert!(cell.is_nan(), "{value:?} became {cell}");
        }
    }

    #[test]
    fn reasons_reading_alike_listed_once() {
        let space = space();
        let history = history();
        // Before any activity, first and last touch both read "never contacted".
        let row = space.row(
            &history,
            Target::account("001A"),
            time("2024-06-01T00:00:00Z"),
        );
        let mut contributions = vec![0.0; row.len()];
        let index = |name: &str| {
            space
                .columns
                .iter()
                .position(|c| c.name == name)
                .expect("column")
        };
        contributions[index("days_since_last_touch")] = 0.5;
        contributions[index("days_since_first_touch")] = 0.4;
        contributions[index("hip_knee_volume")] = 0.3;
        let reasons = space.reasons(
            &history,
            Target::account("001A"),
            &row,
            &contributions,
            2,
            2,
        );
        assert_eq!(
            reasons,
            vec![
                "+ never contacted".to_string(),
                "+ hip/knee volume 412".to_string()
            ]
        );
    }

    #[test]
    fn reasons_follow_largest_contributions() {
        let space = space();
        let history = history();
        let row = space.row(
            &history,
            Target::account("001A"),
            time("2025-07-01T00:00:00Z"),
        );
        let mut contributions = vec![0.0; row.len()];
        let index = |name: &str| {
            space
                .columns
                .iter()
                .position(|c| c.name == name)
                .expect("column")
        };
        contributions[index("hip_knee_volume")] = 0.9;
        contributions[index("roles_engaged")] = 0.4;
        contributions[index("contacts_engaged")] = 0.2;
        contributions[index("meetings")] = 0.1;
        contributions[index("days_since_last_touch")] = -0.6;
        contributions[index("activities_90d")] = -0.3;
        contributions[index("contacts_known")] = -0.05;
        let reasons = space.reasons(
            &history,
            Target::account("001A"),
            &row,
            &contributions,
            3,
            2,
        );
        assert_eq!(
            reasons,
            vec![
                "+ hip/knee volume 412".to_string(),
                "+ 2 buying roles engaged in 365 days".to_string(),
                "+ 2 contacts engaged in 365 days".to_string(),
                "- last touch 30 days ago".to_string(),
                "- 1 activity in the last 90 days".to_string(),
            ]
        );
    }
}
