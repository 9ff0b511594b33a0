//! Users, accounts, contacts and clinic leads of the simulated org.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::TimeDelta;

use super::{ccn_key, Audit, Clock, Contact, Handover, HealthSystem, HospitalAccount, Lead, Rep};
use crate::cms::Hospital;
use crate::names::{
    ADMINISTRATOR_TITLES, COMPETITORS, FINANCE_TITLES, FIRST_NAMES, LAST_NAMES, LEAD_COMPANY_KINDS,
    LEAD_SOURCES, MATERIALS_TITLES, SAFETY_TITLES, SURGEON_SPECIALTIES, SYSTEM_PREFIXES,
    SYSTEM_SUFFIXES, SYSTEM_WORDS,
};
use crate::rng::Rng;

/// Number of sales reps, active and inactive.
const REP_COUNT: usize = 40;
/// Number of reps who left and whose territory a successor took over.
const INACTIVE_REPS: usize = 2;
/// Share of hospitals that belong to a health system.
const SYSTEM_SHARE: f64 = 0.41;
const MAX_SYSTEM_SIZE: usize = 15;
/// Email domain of the simulated device company's users.
const COMPANY_DOMAIN: &str = "corvane-medical.example";
/// Ownership values of federal hospitals, which never join an invented health system.
const FEDERAL_OWNERSHIP: [&str; 3] = [
    "Veterans Health Administration",
    "Department of Defense",
    "Government - Federal",
];

/// Returns the state code -> active rep index map, built from active reps' territories.
pub(crate) fn state_owners(reps: &[Rep]) -> HashMap<String, usize> {
    let mut owners = HashMap::new();
    for (index, rep) in reps.iter().enumerate().filter(|(_, rep)| rep.active) {
        for state in &rep.territory {
            owners.insert(state.clone(), index);
        }
    }
    owners
}

/// Creates the sales reps and splits the states among the active ones, balancing hospital
/// counts: largest states first, each to the active rep with the fewest hospitals so far.
pub(crate) fn reps(hospitals: &[Hospital], seed: u64, clock: &Clock) -> (Vec<Rep>, Vec<Handover>) {
    let mut rng = Rng::stream(seed, "users", 0);
    let active_count = REP_COUNT - INACTIVE_REPS;

    let mut per_state: BTreeMap<&str, usize> = BTreeMap::new();
    for hospital in hospitals {
        *per_state.entry(hospital.state.as_str()).or_default() += 1;
    }
    let mut states: Vec<(&str, usize)> = per_state.into_iter().collect();
    states.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut territories: Vec<Vec<String>> = vec![Vec::new(); active_count];
    let mut loads = vec![0usize; active_count];
    for (state, count) in states {
        let lightest = (0..active_count)
            .min_by_key(|&rep| (loads[rep], rep))
            .unwrap_or(0);
        loads[lightest] += count;
        territories[lightest].push(state.to_string());
    }
    for territory in &mut territories {
        territory.sort();
    }

    let mut used_names = HashSet::new();
    let mut reps = Vec::with_capacity(REP_COUNT);
    for index in 0..REP_COUNT {
        let (first_name, last_name) = unique_name(&mut rng, &mut used_names);
        let email = format!(
            "{}.{}@{COMPANY_DOMAIN}",
            first_name.to_lowercase(),
            last_name.to_lowercase()
        );
        let hired = Clock::date_between(
            &mut rng,
            clock.as_of_date - TimeDelta::days(6 * 365),
            clock.history_start - TimeDelta::days(60),
        );
        let created = Clock::business_time(&mut rng, hired);
        let territory = territories.get(index).cloned().unwrap_or_default();
        let audit = clock.audit_edited_later(&mut rng, created);
        reps.push(Rep {
            first_name,
            last_name,
            email,
            active: index < active_count,
            territory,
            audit,
        });
    }

    // Each inactive rep once covered the territory that a successor, hired shortly before the
    // departure, now covers. The inactive user keeps the old territory text, as real orgs do.
    let mut candidates: Vec<usize> = (0..active_count)
        .filter(|&rep| !reps[rep].territory.is_empty())
        .collect();
    rng.shuffle(&mut candidates);
    let departure_days = [700, 300];
    let mut handovers = Vec::new();
    for (offset, (&successor, days_before)) in candidates.iter().zip(departure_days).enumerate() {
        let former = active_count + offset;
        let departed_date = clock.as_of_date - TimeDelta::days(days_before + rng.range(0, 30));
        let departed = Clock::business_time(&mut rng, departed_date);
        let hired = Clock::business_time(&mut rng, departed_date - TimeDelta::days(14));
        reps[successor].audit = clock.audit_edited_later(&mut rng, hired);
        let former_hired = clock.as_of_date - TimeDelta::days(7 * 365 + rng.range(0, 365));
        let former_created = Clock::business_time(&mut rng, former_hired);
        reps[former].audit = clock.audit(&mut rng, former_created, departed);
        reps[former].territory = reps[successor].territory.clone();
        handovers.push(Handover {
            former,
            successor,
            departed,
        });
    }
    (reps, handovers)
}

fn unique_name(
    rng: &mut Rng,
    used: &mut HashSet<(&'static str, &'static str)>,
) -> (&'static str, &'static str) {
    loop {
        let name = (*rng.pick(&FIRST_NAMES), *rng.pick(&LAST_NAMES));
        if used.insert(name) {
            return name;
        }
    }
}

/// Creates the health systems and the hospital accounts. About 41% of non-federal hospitals
/// join a system of 2 to 15 hospitals in their own state.
pub(crate) fn accounts(
    hospitals: Vec<Hospital>,
    reps: &[Rep],
    seed: u64,
    clock: &Clock,
) -> (Vec<HealthSystem>, Vec<HospitalAccount>) {
    let owners = state_owners(reps);
    let mut by_state: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, hospital) in hospitals.iter().enumerate() {
        let federal = hospital
            .ownership
            .as_deref()
            .is_some_and(|ownership| FEDERAL_OWNERSHIP.contains(&ownership));
        if !federal {
            by_state
                .entry(hospital.state.clone())
                .or_default()
                .push(index);
        }
    }

    let mut systems = Vec::new();
    let mut parents: Vec<Option<usize>> = vec![None; hospitals.len()];
    let mut used_names = HashSet::new();
    for (state, mut members) in by_state {
        let mut rng = Rng::stream(seed, "systems", ccn_key(&state));
        rng.shuffle(&mut members);
        let mut remaining = (members.len() as f64 * SYSTEM_SHARE).round() as usize;
        let mut next = 0;
        while remaining >= 2 {
            let drawn = 2 + rng.exponential(3.0) as usize;
            let mut size = drawn.min(MAX_SYSTEM_SIZE).min(remaining);
            if remaining - size == 1 && size < MAX_SYSTEM_SIZE {
                size += 1;
            }
            let system = systems.len();
            for &member in &members[next..next + size] {
                parents[member] = Some(system);
            }
            next += size;
            remaining -= size;
            let founded = Clock::date_between(
                &mut rng,
                clock.as_of_date - TimeDelta::days(5 * 365),
                clock.as_of_date - TimeDelta::days(4 * 365 + 200),
            );
            let created = Clock::business_time(&mut rng, founded);
            let audit = clock.audit_edited_later(&mut rng, created);
            systems.push(HealthSystem {
                name: system_name(&mut rng, &mut used_names),
                owner: owners.get(&state).copied().unwrap_or(0),
                state: state.clone(),
                audit,
            });
        }
    }

    let accounts = hospitals
        .into_iter()
        .zip(parents)
        .map(|(cms, parent)| {
            let key = ccn_key(&cms.ccn);
            let mut rng = Rng::stream(seed, "account", key);
            let competitor_chance = match cms.hospital_type.as_str() {
                "Acute Care Hospitals" => 0.4,
                "Psychiatric" => 0.1,
                _ => 0.25,
            };
            let competitor = rng
                .chance(competitor_chance)
                .then(|| *rng.pick(&COMPETITORS));
            let added = Clock::date_between(
                &mut rng,
                clock.as_of_date - TimeDelta::days(4 * 365 + 180),
                clock.history_start - TimeDelta::days(30),
            );
            let created = Clock::business_time(&mut rng, added);
            let audit = clock.audit_edited_later(&mut rng, created);
            let owner = owners.get(&cms.state).copied().unwrap_or(0);
            HospitalAccount {
                cms,
                parent,
                competitor,
                owner,
                key,
                audit,
            }
        })
        .collect();
    (systems, accounts)
}

fn system_name(rng: &mut Rng, used: &mut HashSet<String>) -> String {
    for _ in 0..50 {
        let prefix = if rng.chance(0.6) {
            ""
        } else {
            *rng.pick(&SYSTEM_PREFIXES)
        };
        let name = format!(
            "{prefix}{} {}",
            rng.pick(&SYSTEM_WORDS),
            rng.pick(&SYSTEM_SUFFIXES)
        );
        if used.insert(name.clone()) {
            return name;
        }
    }
    // Every combination tried was taken: number the name instead.
    let name = format!(
        "{} {} {}",
        rng.pick(&SYSTEM_WORDS),
        rng.pick(&SYSTEM_SUFFIXES),
        used.len() + 1
    );
    used.insert(name.clone());
    name
}

/// Builds an email domain from the first words of a hospital name.
pub(crate) fn hospital_domain(name: &str) -> String {
    let words: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(3)
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        "hospital.example".to_string()
    } else {
        format!("{}.example", words.join("-"))
    }
}

/// Role draw weights for contacts beyond the first five, in `BUYING_ROLES` order.
const EXTRA_ROLE_WEIGHTS: [f64; 5] = [0.35, 0.2, 0.2, 0.1, 0.15];

/// Creates 3 to 8 contacts per hospital. The first five cover distinct buying roles.
pub(crate) fn contacts(hospitals: &[HospitalAccount], seed: u64, clock: &Clock) -> Vec<Contact> {
    let mut contacts = Vec::new();
    for (index, hospital) in hospitals.iter().enumerate() {
        let mut rng = Rng::stream(seed, "contacts", hospital.key);
        let count = 3 + rng.below(6);
        let mut roles = [0usize, 1, 2, 3, 4];
        rng.shuffle(&mut roles);
        let domain = hospital_domain(&hospital.cms.name);
        let mut local_parts = HashSet::new();
        for position in 0..count {
            let role = match roles.get(position) {
                Some(&role) => role,
                None => rng.weighted(&EXTRA_ROLE_WEIGHTS),
            };
            let (title, specialty) = title_for(&mut rng, role);
            let first_name = *rng.pick(&FIRST_NAMES);
            let last_name = *rng.pick(&LAST_NAMES);
            let base = format!("{}.{}", first_name.to_lowercase(), last_name.to_lowercase());
            let mut local = base.clone();
            let mut suffix = 2;
            while !local_parts.insert(local.clone()) {
                local = format!("{base}{suffix}");
                suffix += 1;
            }
            let added = if rng.chance(0.55) {
                Clock::date_between(
                    &mut rng,
                    hospital.audit.created.date_naive() + TimeDelta::days(1),
                    clock.history_start - TimeDelta::days(1),
                )
            } else {
                Clock::date_between(
                    &mut rng,
                    clock.history_start,
                    clock.as_of_date - TimeDelta::days(2),
                )
            };
            let created = Clock::business_time(&mut rng, added);
            let audit = clock.audit_edited_later(&mut rng, created);
            contacts.push(Contact {
                hospital: index,
                first_name,
                last_name,
                title,
                email: format!("{local}@{domain}"),
                role,
                specialty,
                audit,
            });
        }
    }
    contacts
}

/// Draws a title and specialty fitting a buying role (index into `BUYING_ROLES`).
pub(crate) fn title_for(rng: &mut Rng, role: usize) -> (&'static str, Option<&'static str>) {
    match role {
        0 => {
            let weights: Vec<f64> = SURGEON_SPECIALTIES.iter().map(|entry| entry.2).collect();
            let (specialty, title, _) = SURGEON_SPECIALTIES[rng.weighted(&weights)];
            (title, Some(specialty))
        }
        1 => (
            *rng.pick(&ADMINISTRATOR_TITLES),
            rng.chance(0.5).then_some("Perioperative Services"),
        ),
        2 => (
            *rng.pick(&MATERIALS_TITLES),
            rng.chance(0.6).then_some("Supply Chain"),
        ),
        3 => (*rng.pick(&FINANCE_TITLES), None),
        _ => {
            let (title, specialty) = *rng.pick(&SAFETY_TITLES);
            (title, Some(specialty))
        }
    }
}

/// Creates leads from surgery centers and clinics near the hospitals, one per 15 hospitals and
/// at least 10. No account matches their company and none of them converts. The lead stage
/// sets their status and adds their activities.
pub(crate) fn clinic_leads(
    hospitals: &[HospitalAccount],
    reps: &[Rep],
    seed: u64,
    clock: &Clock,
) -> Vec<Lead> {
    let owners = state_owners(reps);
    let mut rng = Rng::stream(seed, "leads", 0);
    let count = (hospitals.len() / 15).max(10);
    let mut leads = Vec::with_capacity(count);
    if hospitals.is_empty() {
        return leads;
    }
    for number in 0..count {
        let hospital = &hospitals[rng.below(hospitals.len())];
        let place = hospital
            .cms
            .city
            .as_deref()
            .map_or_else(|| hospital.cms.state.clone(), title_case);
        let company = format!("{place} {}", rng.pick(&LEAD_COMPANY_KINDS));
        let first_name = *rng.pick(&FIRST_NAMES);
        let last_name = *rng.pick(&LAST_NAMES);
        // Administrators, materials managers and surgeons, as `BUYING_ROLES` indices 1, 2, 0.
        let role = [1, 2, 0][rng.below(3)];
        let (title, specialty) = title_for(&mut rng, role);
        let email = format!(
            "{}.{}{number}@{}",
            first_name.to_lowercase(),
            last_name.to_lowercase(),
            hospital_domain(&company)
        );
        let added = Clock::date_between(
            &mut rng,
            clock.history_start,
            clock.as_of_date - TimeDelta::days(1),
        );
        let created = Clock::business_time(&mut rng, added);
        let audit: Audit = clock.audit_edited_later(&mut rng, created);
        let source = *rng.pick(&LEAD_SOURCES);
        leads.push(Lead {
            hospital: None,
            owner: owners.get(&hospital.cms.state).copied().unwrap_or(0),
            first_name,
            last_name,
            company,
            title,
            specialty,
            role,
            email,
            state: hospital.cms.state.clone(),
            status: "Open - Not Contacted",
            source,
            key: (number as u64).wrapping_add(0xC11A_1C00_0000_0000),
            probability: 0.0,
            conversion: None,
            audit,
        });
    }
    leads
}

/// Turns an uppercase CMS name such as `FORT WORTH` or `(MILLER)` into `Fort Worth` or
/// `(Miller)`: the first letter of each space-separated word upper case, the rest lower case.
pub(crate) fn title_case(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let mut seen_letter = false;
            word.chars()
                .flat_map(|c| {
                    let first = !seen_letter && c.is_alphabetic();
                    seen_letter |= c.is_alphabetic();
                    if first {
                        c.to_uppercase().collect::<Vec<char>>()
                    } else {
                        c.to_lowercase().collect()
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<String>>()
        .join(" ")
}
