//! Inbound marketing leads: who they are, their tasks and events, the conversion draw and the
//! contacts that conversions create.
//!
//! Hospital leads convert by the formula in [`crate::truth`]. The activities are generated
//! first and do not depend on the outcome, except that a converted lead keeps only the
//! activities dated before its `ConvertedDate`. That date is at least 15 days after creation,
//! so every activity the formula counts stays on the lead.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use super::company::CompanyNamer;
use super::org::{clinic_leads, hospital_domain, state_owners, title_for};
use super::{
    owner_at, Activity, ActivityKind, Audit, Clock, Contact, Conversion, Handover, HealthSystem,
    HospitalAccount, Lead, Rep, Who,
};
use crate::names::{
    lead_subjects, DEMO_REQUEST_SUBJECTS, FIRST_NAMES, LAST_NAMES, LEAD_SOURCES,
    WEB_INQUIRY_SUBJECTS,
};
use crate::rng::Rng;
use crate::truth::{self, LeadFeatures, LEAD_ENGAGEMENT_WINDOW_DAYS};

/// Draw weights of the lead sources, in `LEAD_SOURCES` order.
const SOURCE_WEIGHTS: [f64; 5] = [0.25, 0.22, 0.15, 0.15, 0.23];
/// Draw weights of a lead's buying role, in `BUYING_ROLES` order.
const ROLE_WEIGHTS: [f64; 5] = [0.25, 0.2, 0.25, 0.1, 0.2];
/// Follow-up activity types of a lead, with draw weights.
const FOLLOW_UP_TYPES: [(&str, f64); 6] = [
    ("Webinar", 0.18),
    ("Content Download", 0.22),
    ("Email", 0.27),
    ("Call", 0.17),
    ("Demo", 0.08),
    ("Meeting", 0.08),
];
/// Mean days from a lead's creation to a follow-up activity, so most fall in the first 30 days.
const FOLLOW_UP_MEAN_DAYS: f64 = 12.0;
const FOLLOW_UP_MAX_DAYS: i64 = 120;
/// Age at which an unconverted lead is closed as not converted, in days.
const STALE_AFTER_DAYS: i64 = 180;
/// Shortest and longest time from a lead's creation date to its conversion date, in days.
const MIN_CONVERSION_DAYS: i64 = 15;
const MAX_CONVERSION_DAYS: i64 = 150;
/// Mean of the exponential part of the conversion delay, in days.
const CONVERSION_DELAY_MEAN_DAYS: f64 = 30.0;
const MAX_LEADS_PER_HOSPITAL: usize = 40;

/// Mean number of leads per hospital over the history, by CMS hospital type.
fn lead_rate(hospital_type: &str) -> f64 {
    match hospital_type {
        "Acute Care Hospitals" => 1.8,
        "Critical Access Hospitals" => 0.9,
        "Childrens" => 1.2,
        "Acute Care - Veterans Administration" | "Acute Care - Department of Defense" => 0.8,
        "Psychiatric" => 0.3,
        _ => 0.5,
    }
}

/// Mean number of follow-up activities of a lead of average interest, by lead source.
fn follow_up_mean(source: &str) -> f64 {
    match source {
        "Web Form" => 2.2,
        "Webinar" => 1.6,
        "Content Download" => 1.4,
        "Conference List" => 0.9,
        _ => 0.5,
    }
}

/// Shared inputs of the lead stage.
pub(crate) struct LeadContext<'a> {
    pub hospitals: &'a [HospitalAccount],
    pub systems: &'a [HealthSystem],
    pub reps: &'a [Rep],
    pub handovers: &'a [Handover],
    pub seed: u64,
    pub clock: &'a Clock,
}

/// Creates the clinic and hospital leads with their activities, draws each hospital lead's
/// conversion, and appends a contact to `contacts` for every conversion.
pub(crate) fn leads(
    context: &LeadContext<'_>,
    contacts: &mut Vec<Contact>,
) -> (Vec<Lead>, Vec<Activity>) {
    let mut leads = clinic_leads(context.hospitals, context.reps, context.seed, context.clock);
    leads.extend(hospital_leads(context));

    let owners = state_owners(context.reps);
    let mut activities = Vec::new();
    for (index, lead) in leads.iter_mut().enumerate() {
        let territory_owner = owners.get(&lead.state).copied().unwrap_or(lead.owner);
        let mut own = lead_activities(context, index, lead, territory_owner);
        settle(context, lead, &own, territory_owner, contacts);
        if let Some(conversion) = &lead.conversion {
            let converted_date = conversion.at.date_naive();
            own.retain(|activity| activity.date < converted_date);
        }
        lead.status = status(context.clock, lead, &own);
        activities.extend(own);
    }
    (leads, activities)
}

/// Creates the inbound leads of every hospital, a Poisson number per hospital.
fn hospital_leads(context: &LeadContext<'_>) -> Vec<Lead> {
    let clock = context.clock;
    let namer = CompanyNamer::new(
        context
            .hospitals
            .iter()
            .map(|hospital| hospital.cms.name.as_str())
            .chain(context.systems.iter().map(|system| system.name.as_str())),
    );
    let mut leads = Vec::new();
    for (index, hospital) in context.hospitals.iter().enumerate() {
        let mut rng = Rng::stream(context.seed, "hospital-leads", hospital.key);
        let count = rng
            .poisson(lead_rate(&hospital.cms.hospital_type))
            .min(MAX_LEADS_PER_HOSPITAL);
        let domain = hospital_domain(&hospital.cms.name);
        let mut local_parts = HashSet::new();
        for number in 0..count {
            let added = Clock::date_between(
                &mut rng,
                clock.history_start,
                clock.as_of_date - TimeDelta::days(1),
            );
            let created = Clock::business_time(&mut rng, added);
            let source = LEAD_SOURCES[rng.weighted(&SOURCE_WEIGHTS)];
            let role = rng.weighted(&ROLE_WEIGHTS);
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
            let company = namer.company(&mut rng, &hospital.cms.name, hospital.cms.city.as_deref());
            leads.push(Lead {
                hospital: Some(index),
                owner: hospital.owner,
                first_name,
                last_name,
                company,
                title,
                specialty,
                role,
                email: format!("{local}@{domain}"),
                state: hospital.cms.state.clone(),
                status: "Open - Not Contacted",
                source,
                key: hospital.key.wrapping_mul(64).wrapping_add(number as u64),
                probability: 0.0,
                conversion: None,
                // `settle` sets the final stamps once the outcome is known.
                audit: Audit {
                    created,
                    modified: created,
                    stamp: created,
                },
            });
        }
    }
    leads
}

/// Creates the tasks and events of one lead: the activity its source implies on the creation
/// day, then follow-ups that a latent interest level scales. None lies on or after `as_of`.
fn lead_activities(
    context: &LeadContext<'_>,
    index: usize,
    lead: &Lead,
    territory_owner: usize,
) -> Vec<Activity> {
    let clock = context.clock;
    // NOTE: Salesforce moves a converted lead's activities to the new contact. These stay on
    // the lead, with `WhoId` the lead id, so lead features read the same for every lead.
    let mut rng = Rng::stream(context.seed, "lead-activities", lead.key);
    let created = lead.audit.created;
    let created_date = created.date_naive();
    let mut activities = Vec::new();
    let mut push = |rng: &mut Rng, activity_type: &'static str, subject: &'static str, day: i64| {
        let date = created_date + TimeDelta::days(day);
        if date >= clock.as_of_date {
            return;
        }
        let activity = if matches!(activity_type, "Demo" | "Meeting") && day > 0 {
            lead_event(rng, clock, created, activity_type, subject, date)
        } else {
            // A task on the creation day is logged shortly after the lead exists, which is
            // still the same UTC day because leads are created by 21:00.
            let logged = if day == 0 {
                created + TimeDelta::seconds(rng.range(300, 5400))
            } else {
                Clock::business_time(rng, date)
            };
            lead_task(rng, clock, activity_type, subject, logged)
        };
        activities.push(Activity {
            owner: owner_at(territory_owner, context.handovers, activity.audit.created),
            who: Who::Lead(index),
            ..activity
        });
    };

    match lead.source {
        "Webinar" => {
            let subject = *rng.pick(lead_subjects("Webinar"));
            push(&mut rng, "Webinar", subject, 0);
        }
        "Content Download" => {
            let subject = *rng.pick(lead_subjects("Content Download"));
            push(&mut rng, "Content Download", subject, 0);
        }
        "Web Form" => {
            if rng.chance(0.5) {
                let subject = *rng.pick(&DEMO_REQUEST_SUBJECTS);
                push(&mut rng, "Demo", subject, 0);
            } else {
                let subject = *rng.pick(&WEB_INQUIRY_SUBJECTS);
                push(&mut rng, "Email", subject, 0);
            }
        }
        _ => {}
    }

    // Interest is the sum of three uniform draws, centred: it spans -1.5 to 1.5 with a
    // standard deviation of 0.5, so one deviation scales the follow-up rate by e^±0.35.
    let interest = rng.unit() + rng.unit() + rng.unit() - 1.5;
    let mean = follow_up_mean(lead.source) * (0.7 * interest).exp();
    let weights: Vec<f64> = FOLLOW_UP_TYPES.iter().map(|entry| entry.1).collect();
    for _ in 0..rng.poisson(mean) {
        let activity_type = FOLLOW_UP_TYPES[rng.weighted(&weights)].0;
        let mut day = (rng.exponential(FOLLOW_UP_MEAN_DAYS) as i64).min(FOLLOW_UP_MAX_DAYS);
        if matches!(activity_type, "Demo" | "Meeting") {
            day = day.max(1);
        }
        let subject = *rng.pick(lead_subjects(activity_type));
        push(&mut rng, activity_type, subject, day);
    }
    activities
}

/// Builds a completed task logged at `logged`, with the owner and person left for the caller.
fn lead_task(
    rng: &mut Rng,
    clock: &Clock,
    activity_type: &'static str,
    subject: &'static str,
    logged: DateTime<Utc>,
) -> Activity {
    let modified = logged + TimeDelta::seconds(rng.range(0, 600));
    Activity {
        kind: ActivityKind::Task,
        who: Who::Lead(0),
        owner: 0,
        activity_type,
        subject,
        date: logged.date_naive(),
        start: logged,
        end: logged,
        priority: ["High", "Normal", "Normal", "Low"][rng.below(4)],
        audit: clock.audit(rng, logged, modified),
    }
}

/// Builds an event on `date`, scheduled 1 to 10 days ahead but never before the lead existed.
fn lead_event(
    rng: &mut Rng,
    clock: &Clock,
    lead_created: DateTime<Utc>,
    activity_type: &'static str,
    subject: &'static str,
    date: NaiveDate,
) -> Activity {
    let start = Clock::midnight(date) + TimeDelta::minutes(30 * rng.range(26, 40));
    let end = start + TimeDelta::minutes(30 * rng.range(1, 2));
    let scheduled = start - TimeDelta::days(rng.range(1, 10));
    let created = scheduled.max(lead_created + TimeDelta::hours(1)).min(start);
    let modified = created + TimeDelta::seconds(rng.range(0, 600));
    Activity {
        kind: ActivityKind::Event,
        who: Who::Lead(0),
        owner: 0,
        activity_type,
        subject,
        date,
        start,
        end,
        priority: "Normal",
        audit: clock.audit(rng, created, modified),
    }
}

/// Counts a lead's activities in the formula's window, by type.
pub(crate) fn window_counts(
    created: DateTime<Utc>,
    activities: &[Activity],
) -> BTreeMap<String, usize> {
    let window_end = created.date_naive() + TimeDelta::days(LEAD_ENGAGEMENT_WINDOW_DAYS);
    let mut counts = BTreeMap::new();
    for activity in activities
        .iter()
        .filter(|activity| activity.date < window_end)
    {
        *counts
            .entry(activity.activity_type.to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// Computes P(convert), draws the outcome and the conversion date, and sets the lead's owner and
/// audit stamps. A converted lead gets a new contact on its hospital at the conversion time.
fn settle(
    context: &LeadContext<'_>,
    lead: &mut Lead,
    activities: &[Activity],
    territory_owner: usize,
    contacts: &mut Vec<Contact>,
) {
    let clock = context.clock;
    let mut rng = Rng::stream(context.seed, "lead-outcome", lead.key);
    let created = lead.audit.created;
    if let Some(index) = lead.hospital {
        let cms = &context.hospitals[index].cms;
        let features = LeadFeatures {
            lead_source: lead.source.to_string(),
            buying_role: crate::output::BUYING_ROLES[lead.role].to_string(),
            window_activities: window_counts(created, activities),
            hip_knee_discharges: cms.discharges.hip_knee.map(f64::from),
            cabg_discharges: cms.discharges.cabg.map(f64::from),
            ami_discharges: cms.discharges.ami.map(f64::from),
            hospital_type: cms.hospital_type.clone(),
            star_rating: cms.rating.map(f64::from),
        };
        lead.probability = truth::conversion_probability(&features);
        let converts = rng.chance(lead.probability);
        let delay = MIN_CONVERSION_DAYS
            + (rng.exponential(CONVERSION_DELAY_MEAN_DAYS) as i64)
                .min(MAX_CONVERSION_DAYS - MIN_CONVERSION_DAYS);
        let converted_date = created.date_naive() + TimeDelta::days(delay);
        // A conversion that would fall on or after the as_of date has not happened yet.
        if converts && converted_date < clock.as_of_date {
            let at = Clock::business_time(&mut rng, converted_date);
            lead.audit = clock.audit(&mut rng, created, at);
            lead.owner = owner_at(territory_owner, context.handovers, at);
            contacts.push(Contact {
                hospital: index,
                first_name: lead.first_name,
                last_name: lead.last_name,
                title: lead.title,
                email: lead.email.clone(),
                role: lead.role,
                specialty: lead.specialty,
                audit: clock.audit_edited_later(&mut rng, at),
            });
            lead.conversion = Some(Conversion {
                at,
                contact: contacts.len() - 1,
                deal: None,
            });
            return;
        }
    }
    if clock.as_of - created > TimeDelta::days(STALE_AFTER_DAYS) {
        // Closed as not converted by the rep or an automation in the two weeks after the lead
        // turned stale.
        let closed = created
            + TimeDelta::days(STALE_AFTER_DAYS)
            + TimeDelta::seconds(rng.range(0, 14 * 86_400));
        lead.audit = clock.audit(&mut rng, created, closed);
        lead.owner = owner_at(territory_owner, context.handovers, lead.audit.modified);
    } else {
        lead.audit = clock.audit_edited_later(&mut rng, created);
        lead.owner = territory_owner;
    }
}

/// Returns the `Status` of a settled lead: converted, closed when older than 180 days, worked
/// once a rep has called, emailed or met the lead, and open otherwise.
fn status(clock: &Clock, lead: &Lead, activities: &[Activity]) -> &'static str {
    if lead.conversion.is_some() {
        "Closed - Converted"
    } else if clock.as_of - lead.audit.created > TimeDelta::days(STALE_AFTER_DAYS) {
        "Closed - Not Converted"
    } else if activities
        .iter()
        .any(|activity| matches!(activity.activity_type, "Call" | "Email" | "Meeting"))
    {
        "Working - Contacted"
    } else {
        "Open - Not Contacted"
    }
}
