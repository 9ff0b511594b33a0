//! Opportunities, their ground-truth outcomes and their contact roles.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use super::{
    owner_at, Activity, Clock, Contact, ContactRole, Deal, Handover, HospitalAccount, Lead, Who,
};
use crate::names::{Area, PRODUCTS};
use crate::rng::Rng;
use crate::truth::{self, DealFeatures, ENGAGEMENT_WINDOW_DAYS};

/// Shortest and longest sales cycle, creation to close, in days (12 and 18 months).
const MIN_CYCLE_DAYS: i64 = 365;
const MAX_CYCLE_DAYS: i64 = 548;
/// Days after the start of history before the first deal is created.
const FIRST_DEAL_DAYS: i64 = 45;
const MAX_DEALS_PER_HOSPITAL: usize = 4;
/// Share of lead conversions that also create an opportunity.
const LEAD_DEAL_SHARE: f64 = 0.4;

/// Mean number of deals per hospital over the history, by CMS hospital type.
fn deal_rate(hospital_type: &str) -> f64 {
    match hospital_type {
        "Acute Care Hospitals" => 1.45,
        "Critical Access Hospitals" => 0.9,
        "Childrens" => 0.8,
        "Acute Care - Veterans Administration" | "Acute Care - Department of Defense" => 0.7,
        "Psychiatric" => 0.12,
        _ => 0.3,
    }
}

/// Creates the deals with their timing, product, amount and owner. Outcomes and open stages
/// are set later by [`settle`], once the activities exist.
pub(crate) fn deals(
    hospitals: &[HospitalAccount],
    handovers: &[Handover],
    seed: u64,
    clock: &Clock,
) -> Vec<Deal> {
    let mut deals = Vec::new();
    for (index, hospital) in hospitals.iter().enumerate() {
        let mut rng = Rng::stream(seed, "deals", hospital.key);
        let count = rng
            .poisson(deal_rate(&hospital.cms.hospital_type))
            .min(MAX_DEALS_PER_HOSPITAL);
        for number in 0..count {
            let created_date = Clock::date_between(
                &mut rng,
                clock.history_start + TimeDelta::days(FIRST_DEAL_DAYS),
                clock.as_of_date - TimeDelta::days(7),
            );
            let created = Clock::business_time(&mut rng, created_date);
            let key = hospital.key.wrapping_mul(16).wrapping_add(number as u64);
            let place = DealPlace {
                index,
                hospital,
                handovers,
                clock,
            };
            deals.push(new_deal(&mut rng, &place, created, key));
        }
    }
    deals
}

/// The hospital a new deal belongs to, with what its timing and owner depend on.
struct DealPlace<'a> {
    index: usize,
    hospital: &'a HospitalAccount,
    handovers: &'a [Handover],
    clock: &'a Clock,
}

/// Draws the close date, product, amount, audit stamps and owner of a deal created at
/// `created`. Outcomes and open stages are set later by [`settle`].
fn new_deal(rng: &mut Rng, place: &DealPlace<'_>, created: DateTime<Utc>, key: u64) -> Deal {
    let (hospital, clock) = (place.hospital, place.clock);
    let created_date = created.date_naive();
    let mut close_date = created_date + TimeDelta::days(rng.range(MIN_CYCLE_DAYS, MAX_CYCLE_DAYS));
    let is_closed = close_date < clock.as_of_date;
    if !is_closed && close_date == clock.as_of_date {
        close_date += TimeDelta::days(1);
    }

    let product = &PRODUCTS[pick_product(rng, hospital)];
    let volume_factor = (procedure_volume(hospital).ln_1p() / 1000f64.ln()).clamp(0.3, 1.0);
    let spread = product.max_amount - product.min_amount;
    let raw = product.min_amount + spread * volume_factor * (0.6 + 0.4 * rng.unit());
    let amount = (raw / 1000.0).round() * 1000.0;

    let (modified, stage) = if is_closed {
        // The stage is rewritten to Closed Won or Closed Lost in `settle`.
        (Clock::business_time(rng, close_date), "Closed Lost")
    } else {
        let elapsed = (clock.as_of_date - created_date).num_days() as f64;
        let cycle = (close_date - created_date).num_days() as f64;
        let span = (clock.as_of - created).num_seconds().max(0);
        let modified = created + TimeDelta::seconds(rng.range(0, span));
        (modified, open_stage(elapsed / cycle))
    };
    let audit = clock.audit(rng, created, modified);
    let owner_time = if is_closed {
        audit.modified
    } else {
        clock.as_of
    };
    Deal {
        hospital: place.index,
        owner: owner_at(hospital.owner, place.handovers, owner_time),
        name: format!("{} - {}", hospital.cms.name, product.name),
        amount,
        close_date,
        stage,
        is_closed,
        is_won: false,
        probability: 0.0,
        key,
        lead_contact: None,
        audit,
    }
}

/// Creates the opportunity of each lead conversion that has one, on the lead's hospital a few
/// minutes after the conversion, and records its index in the conversion.
pub(crate) fn lead_deals(
    deals: &mut Vec<Deal>,
    leads: &mut [Lead],
    hospitals: &[HospitalAccount],
    handovers: &[Handover],
    seed: u64,
    clock: &Clock,
) {
    for lead in leads.iter_mut() {
        let (Some(index), Some(conversion)) = (lead.hospital, lead.conversion.as_mut()) else {
            continue;
        };
        let mut rng = Rng::stream(seed, "lead-deal", lead.key);
        if !rng.chance(LEAD_DEAL_SHARE) {
            continue;
        }
        let created = (conversion.at + TimeDelta::seconds(rng.range(30, 600))).min(clock.as_of);
        // Derived from the lead key so that it never meets the keys of the other deals.
        let key = lead.key.rotate_left(29) ^ 0xD1B5_4A32_D192_ED03;
        let place = DealPlace {
            index,
            hospital: &hospitals[index],
            handovers,
            clock,
        };
        let mut deal = new_deal(&mut rng, &place, created, key);
        deal.lead_contact = Some(conversion.contact);
        conversion.deal = Some(deals.len());
        deals.push(deal);
    }
}

fn open_stage(progress: f64) -> &'static str {
    if progress < 0.25 {
        "Prospecting"
    } else if progress < 0.5 {
        "Evaluation"
    } else if progress < 0.75 {
        "Value Analysis Committee"
    } else {
        "Negotiation"
    }
}

/// Sums hip/knee, CABG and AMI discharges with missing counts taken as low, as the ground
/// truth does.
fn procedure_volume(hospital: &HospitalAccount) -> f64 {
    let discharges = &hospital.cms.discharges;
    [discharges.hip_knee, discharges.cabg, discharges.ami]
        .iter()
        .map(|count| count.map_or(truth::MISSING_DISCHARGES, f64::from))
        .sum()
}

/// Picks a product index, favouring the clinical areas the hospital reports volume in.
fn pick_product(rng: &mut Rng, hospital: &HospitalAccount) -> usize {
    let discharges = &hospital.cms.discharges;
    let orthopedic = if discharges.hip_knee.is_some() {
        3.0
    } else {
        1.0
    };
    let cardiac = if discharges.cabg.is_some() || discharges.ami.is_some() {
        2.0
    } else {
        0.5
    };
    let weights: Vec<f64> = PRODUCTS
        .iter()
        .map(|product| match product.area {
            Area::Orthopedic => orthopedic,
            Area::Cardiac => cardiac,
            Area::General => 1.5,
        })
        .collect();
    rng.weighted(&weights)
}

/// Activity dates and contacts of each hospital, sorted by date.
pub(crate) struct ActivityIndex {
    by_hospital: Vec<Vec<(NaiveDate, usize)>>,
}

impl ActivityIndex {
    pub(crate) fn new(hospital_count: usize, activities: &[Activity]) -> ActivityIndex {
        let mut by_hospital = vec![Vec::new(); hospital_count];
        for activity in activities {
            if let Who::Contact { hospital, contact } = activity.who {
                by_hospital[hospital].push((activity.date, contact));
            }
        }
        for list in &mut by_hospital {
            list.sort_unstable();
        }
        ActivityIndex { by_hospital }
    }

    /// Returns the contacts with an activity in [created - window, created) and the last
    /// activity date before `created`, for one hospital.
    fn before(&self, hospital: usize, created: NaiveDate) -> (BTreeSet<usize>, Option<NaiveDate>) {
        let list = &self.by_hospital[hospital];
        let end = list.partition_point(|(date, _)| *date < created);
        let window_start = created - TimeDelta::days(ENGAGEMENT_WINDOW_DAYS);
        let start = list.partition_point(|(date, _)| *date < window_start);
        let contacts = list[start..end]
            .iter()
            .map(|(_, contact)| *contact)
            .collect();
        let last = end.checked_sub(1).map(|position| list[position].0);
        (contacts, last)
    }
}

/// Measures each deal's features from the records that exist before its creation, computes
/// P(won), and draws the outcome of closed deals.
pub(crate) fn settle(
    deals: &mut [Deal],
    hospitals: &[HospitalAccount],
    contacts: &[Contact],
    index: &ActivityIndex,
    seed: u64,
) {
    for deal in deals.iter_mut() {
        let hospital = &hospitals[deal.hospital];
        let created = deal.audit.created.date_naive();
        let (engaged, last) = index.before(deal.hospital, created);
        let roles: BTreeSet<usize> = engaged
            .iter()
            .map(|&contact| contacts[contact].role)
            .collect();
        let discharges = &hospital.cms.discharges;
        let features = DealFeatures {
            hip_knee_discharges: discharges.hip_knee.map(f64::from),
            cabg_discharges: discharges.cabg.map(f64::from),
            ami_discharges: discharges.ami.map(f64::from),
            hospital_type: hospital.cms.hospital_type.clone(),
            star_rating: hospital.cms.rating.map(f64::from),
            engaged_roles: roles.len(),
            days_since_last_activity: last.map(|date| (created - date).num_days()),
            has_incumbent_competitor: hospital.competitor.is_some(),
        };
        deal.probability = truth::win_probability(&features);
        if deal.is_closed {
            let mut rng = Rng::stream(seed, "outcome", deal.key);
            deal.is_won = rng.chance(deal.probability);
            deal.stage = if deal.is_won {
                "Closed Won"
            } else {
                "Closed Lost"
            };
        }
    }
}

/// Links 1 to 4 contacts of the account to each deal, preferring contacts engaged before the
/// deal's creation. The primary role goes to a surgeon champion when one is linked.
pub(crate) fn contact_roles(
    deals: &[Deal],
    contacts: &[Contact],
    hospital_contacts: &[Vec<usize>],
    index: &ActivityIndex,
    seed: u64,
    clock: &Clock,
) -> Vec<ContactRole> {
    let mut roles = Vec::new();
    for (deal_index, deal) in deals.iter().enumerate() {
        let mut rng = Rng::stream(seed, "contact-roles", deal.key);
        let created = deal.audit.created;
        let (engaged, _) = index.before(deal.hospital, created.date_naive());
        let mut others: Vec<usize> = hospital_contacts[deal.hospital]
            .iter()
            .copied()
            .filter(|contact| {
                !engaged.contains(contact) && contacts[*contact].audit.created < created
            })
            .collect();
        rng.shuffle(&mut others);
        let mut chosen: Vec<usize> = engaged.into_iter().collect();
        rng.shuffle(&mut chosen);
        chosen.extend(others);
        if let Some(converted) = deal.lead_contact {
            // Lead conversion links the new contact to its opportunity as the primary role.
            chosen.retain(|&contact| contact != converted);
            chosen.insert(0, converted);
        }
        if chosen.is_empty() {
            // No contact existed yet when the deal was created: link the earliest one later.
            let earliest = hospital_contacts[deal.hospital]
                .iter()
                .copied()
                .min_by_key(|&contact| (contacts[contact].audit.created, contact));
            chosen.extend(earliest);
        }
        chosen.truncate(1 + rng.below(4));
        let primary = if deal.lead_contact.is_some() {
            0
        } else {
            chosen
                .iter()
                .position(|&contact| contacts[contact].role == 0)
                .unwrap_or(0)
        };
        for (position, &contact) in chosen.iter().enumerate() {
            let earliest = created.max(contacts[contact].audit.created);
            let linked = earliest + TimeDelta::seconds(rng.range(60, 3 * 86_400));
            roles.push(ContactRole {
                deal: deal_index,
                contact,
                is_primary: position == primary,
                audit: clock.audit(&mut rng, linked, linked),
            });
        }
    }
    roles
}
