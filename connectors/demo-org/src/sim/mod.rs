//! The simulated company history: entities that point at each other by index, before ids exist.
//!
//! Generation runs in stages (users, accounts, contacts, leads with their activities and
//! conversions, deals, activities, outcomes, contact roles). Each stage draws from its own random stream keyed by the seed and, where it
//! works per hospital, by the hospital's CCN, so one stage drawing more numbers never shifts
//! another stage.

mod activities;
mod company;
mod deals;
mod leads;
mod org;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};

use crate::cms::Hospital;
use crate::rng::Rng;

/// Length of the simulated activity history before `as_of`, in days (three years).
pub(crate) const HISTORY_DAYS: i64 = 1096;

/// Audit timestamps of one record, with `created <= modified <= stamp <= as_of`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Audit {
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub stamp: DateTime<Utc>,
}

pub(crate) struct Rep {
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub email: String,
    pub active: bool,
    pub territory: Vec<String>,
    pub audit: Audit,
}

/// A rep who left, and the active rep who took over the same territory.
pub(crate) struct Handover {
    pub former: usize,
    pub successor: usize,
    pub departed: DateTime<Utc>,
}

pub(crate) struct HealthSystem {
    pub name: String,
    pub state: String,
    pub owner: usize,
    pub audit: Audit,
}

pub(crate) struct HospitalAccount {
    pub cms: Hospital,
    pub parent: Option<usize>,
    pub competitor: Option<&'static str>,
    pub owner: usize,
    /// Stable per-hospital key for random streams, derived from the CCN.
    pub key: u64,
    pub audit: Audit,
}

pub(crate) struct Contact {
    pub hospital: usize,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub title: &'static str,
    pub email: String,
    /// Index into `BUYING_ROLES`.
    pub role: usize,
    pub specialty: Option<&'static str>,
    pub audit: Audit,
}

pub(crate) struct Lead {
    /// Hospital the person works at, or `None` for a surgery center or clinic without an
    /// account.
    pub hospital: Option<usize>,
    pub owner: usize,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub company: String,
    pub title: &'static str,
    pub specialty: Option<&'static str>,
    /// Index into `BUYING_ROLES`.
    pub role: usize,
    pub email: String,
    pub state: String,
    pub status: &'static str,
    pub source: &'static str,
    /// Stable key for the lead's random streams.
    pub key: u64,
    /// True P(convert); 0 for a lead without a hospital.
    pub probability: f64,
    pub conversion: Option<Conversion>,
    pub audit: Audit,
}

/// The conversion of a lead into a contact and, for some, an opportunity of its hospital.
pub(crate) struct Conversion {
    /// Time of the conversion; its date is `ConvertedDate`.
    pub at: DateTime<Utc>,
    /// Index of the contact the conversion created.
    pub contact: usize,
    /// Index of the deal the conversion created, if any.
    pub deal: Option<usize>,
}

/// The person an activity is with: an account contact or a lead. Lead activities have no
/// `WhatId`, as Salesforce requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    Contact { hospital: usize, contact: usize },
    Lead(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActivityKind {
    Task,
    Event,
}

pub(crate) struct Activity {
    pub kind: ActivityKind,
    pub who: Who,
    pub owner: usize,
    pub activity_type: &'static str,
    pub subject: &'static str,
    /// `ActivityDate` of a task, the date of `StartDateTime` of an event.
    pub date: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub priority: &'static str,
    pub audit: Audit,
}

pub(crate) struct Deal {
    pub hospital: usize,
    pub owner: usize,
    pub name: String,
    pub amount: f64,
    pub close_date: NaiveDate,
    pub stage: &'static str,
    pub is_closed: bool,
    pub is_won: bool,
    pub probability: f64,
    /// Stable key for the outcome draw: hospital key and deal number at that hospital, or a
    /// key derived from the converted lead's key.
    pub key: u64,
    /// The contact created by the lead conversion that created this deal, linked as primary.
    pub lead_contact: Option<usize>,
    pub audit: Audit,
}

pub(crate) struct ContactRole {
    pub deal: usize,
    pub contact: usize,
    pub is_primary: bool,
    pub audit: Audit,
}

/// The whole simulated org, in index form.
pub(crate) struct Org {
    pub reps: Vec<Rep>,
    pub systems: Vec<HealthSystem>,
    pub hospitals: Vec<HospitalAccount>,
    pub contacts: Vec<Contact>,
    pub leads: Vec<Lead>,
    pub activities: Vec<Activity>,
    pub deals: Vec<Deal>,
    pub contact_roles: Vec<ContactRole>,
}

/// Clock of the simulation: the end of history and helpers to place times before it.
pub(crate) struct Clock {
    pub as_of: DateTime<Utc>,
    pub as_of_date: NaiveDate,
    pub history_start: NaiveDate,
}

impl Clock {
    pub(crate) fn new(as_of: DateTime<Utc>) -> Clock {
        let as_of_date = as_of.date_naive();
        Clock {
            as_of,
            as_of_date,
            history_start: as_of_date - TimeDelta::days(HISTORY_DAYS),
        }
    }

    /// Returns midnight UTC of `date`.
    pub(crate) fn midnight(date: NaiveDate) -> DateTime<Utc> {
        date.and_time(NaiveTime::MIN).and_utc()
    }

    /// Returns a time on `date` within US business hours (13:00 to 21:00 UTC), whole seconds.
    pub(crate) fn business_time(rng: &mut Rng, date: NaiveDate) -> DateTime<Utc> {
        Clock::midnight(date) + TimeDelta::seconds(rng.range(13 * 3600, 21 * 3600))
    }

    /// Returns a uniformly drawn date in the inclusive range, or `low` when the range is empty.
    pub(crate) fn date_between(rng: &mut Rng, low: NaiveDate, high: NaiveDate) -> NaiveDate {
        let span = (high - low).num_days();
        low + TimeDelta::days(rng.range(0, span.max(0)))
    }

    /// Builds audit stamps for a record created at `created` and last edited at `modified`;
    /// the modstamp trails the edit by up to two minutes. All three stay at or before `as_of`.
    pub(crate) fn audit(
        &self,
        rng: &mut Rng,
        created: DateTime<Utc>,
        modified: DateTime<Utc>,
    ) -> Audit {
        let created = created.min(self.as_of);
        let modified = modified.clamp(created, self.as_of);
        let stamp = (modified + TimeDelta::seconds(rng.range(0, 120))).min(self.as_of);
        Audit {
            created,
            modified,
            stamp,
        }
    }

    /// Builds audit stamps with the last edit drawn between creation and `as_of`.
    pub(crate) fn audit_edited_later(&self, rng: &mut Rng, created: DateTime<Utc>) -> Audit {
        let created = created.min(self.as_of);
        let span = (self.as_of - created).num_seconds().max(0);
        let modified = created + TimeDelta::seconds(rng.range(0, span));
        self.audit(rng, created, modified)
    }
}

/// Returns a stable 64-bit key for a CCN.
pub(crate) fn ccn_key(ccn: &str) -> u64 {
    ccn.bytes().fold(0u64, |acc, byte| {
        acc.wrapping_mul(131).wrapping_add(u64::from(byte))
    })
}

/// Builds the whole org from the parsed hospitals.
pub(crate) fn simulate(hospitals: Vec<Hospital>, seed: u64, clock: &Clock) -> Org {
    let (reps, handovers) = org::reps(&hospitals, seed, clock);
    let (systems, hospitals) = org::accounts(hospitals, &reps, seed, clock);
    let mut contacts = org::contacts(&hospitals, seed, clock);

    // Leads settle first: their outcome depends only on their own attributes, their own
    // activities and their hospital, so the contacts and deals their conversions create can
    // join the account history before the deal stages run.
    let lead_context = leads::LeadContext {
        hospitals: &hospitals,
        systems: &systems,
        reps: &reps,
        handovers: &handovers,
        seed,
        clock,
    };
    let (mut leads, lead_activities) = leads::leads(&lead_context, &mut contacts);

    let mut hospital_contacts = vec![Vec::new(); hospitals.len()];
    for (index, contact) in contacts.iter().enumerate() {
        hospital_contacts[contact.hospital].push(index);
    }

    let mut deals = deals::deals(&hospitals, &handovers, seed, clock);
    deals::lead_deals(&mut deals, &mut leads, &hospitals, &handovers, seed, clock);
    let context = activities::ActivityContext {
        hospitals: &hospitals,
        contacts: &contacts,
        hospital_contacts: &hospital_contacts,
        handovers: &handovers,
        seed,
        clock,
    };
    let mut activities = activities::activities(&context, &deals);

    let index = deals::ActivityIndex::new(hospitals.len(), &activities);
    deals::settle(&mut deals, &hospitals, &contacts, &index, seed);
    let contact_roles =
        deals::contact_roles(&deals, &contacts, &hospital_contacts, &index, seed, clock);
    activities.extend(lead_activities);
    Org {
        reps,
        systems,
        hospitals,
        contacts,
        leads,
        activities,
        deals,
        contact_roles,
    }
}

/// Returns the rep who owned `state` at `at`: the former rep before a handover, else the
/// current territory owner.
pub(crate) fn owner_at(current: usize, handovers: &[Handover], at: DateTime<Utc>) -> usize {
    handovers
        .iter()
        .find(|handover| handover.successor == current && at < handover.departed)
        .map_or(current, |handover| handover.former)
}
