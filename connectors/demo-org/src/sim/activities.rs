//! Tasks and events: background marketing touches, engagement before each deal and work
//! during each sales cycle.
//!
//! Only the engagement before a deal drives its ground-truth features, and no activity depends
//! on a deal's outcome, so activities carry no information that the formula does not use.

use chrono::{NaiveDate, TimeDelta};

use super::{
    owner_at, Activity, ActivityKind, Clock, Contact, Deal, Handover, HospitalAccount, Who,
};
use crate::names::subjects;
use crate::rng::Rng;
use crate::truth::ENGAGEMENT_WINDOW_DAYS;

/// Background touches per contact per year (webinars, downloads, emails, calls).
const BACKGROUND_PER_YEAR: f64 = 0.6;
const BACKGROUND_TYPES: [(&str, f64); 4] = [
    ("Webinar", 0.35),
    ("Content Download", 0.35),
    ("Email", 0.2),
    ("Call", 0.1),
];
const ENGAGEMENT_TYPES: [(&str, f64); 6] = [
    ("Email", 0.3),
    ("Call", 0.25),
    ("Webinar", 0.1),
    ("Content Download", 0.1),
    ("Meeting", 0.15),
    ("Demo", 0.1),
];
const CYCLE_TYPES: [(&str, f64); 4] = [
    ("Demo", 0.2),
    ("Meeting", 0.3),
    ("Call", 0.25),
    ("Email", 0.25),
];
/// Draw weights for the number of contacts engaged before a deal: 0, 1, 2, 3, 4, 5.
const ENGAGED_CONTACT_WEIGHTS: [f64; 6] = [0.12, 0.18, 0.22, 0.2, 0.16, 0.12];
/// Mean number of activities during a sales cycle, beyond the first.
const CYCLE_ACTIVITY_MEAN: f64 = 3.5;

/// Shared inputs of the activity stages.
pub(crate) struct ActivityContext<'a> {
    pub hospitals: &'a [HospitalAccount],
    pub contacts: &'a [Contact],
    pub hospital_contacts: &'a [Vec<usize>],
    pub handovers: &'a [Handover],
    pub seed: u64,
    pub clock: &'a Clock,
}

/// Creates every task and event of the org.
pub(crate) fn activities(context: &ActivityContext<'_>, deals: &[Deal]) -> Vec<Activity> {
    let mut activities = Vec::new();
    background(context, &mut activities);
    for deal in deals {
        engagement(context, deal, &mut activities);
        cycle(context, deal, &mut activities);
    }
    activities
}

pub(crate) fn pick_type(rng: &mut Rng, table: &[(&'static str, f64)]) -> &'static str {
    let weights: Vec<f64> = table.iter().map(|entry| entry.1).collect();
    table[rng.weighted(&weights)].0
}

/// Returns the first date on which an activity with `contact` may happen, which is the day
/// after the contact was created or the start of history, whichever is later.
fn first_activity_date(context: &ActivityContext<'_>, contact: usize) -> NaiveDate {
    let created = context.contacts[contact].audit.created.date_naive() + TimeDelta::days(1);
    created.max(context.clock.history_start)
}

fn background(context: &ActivityContext<'_>, out: &mut Vec<Activity>) {
    let clock = context.clock;
    let last_date = clock.as_of_date - TimeDelta::days(1);
    for (hospital, contacts) in context.hospital_contacts.iter().enumerate() {
        let key = context.hospitals[hospital].key;
        for (position, &contact) in contacts.iter().enumerate() {
            let mut rng = Rng::stream(
                context.seed,
                "background",
                key.wrapping_mul(16).wrapping_add(position as u64),
            );
            let first = first_activity_date(context, contact);
            if first > last_date {
                continue;
            }
            let years = (last_date - first).num_days() as f64 / 365.0;
            for _ in 0..rng.poisson(BACKGROUND_PER_YEAR * years) {
                let date = Clock::date_between(&mut rng, first, last_date);
                let activity_type = pick_type(&mut rng, &BACKGROUND_TYPES);
                out.push(make_activity(
                    context,
                    &mut rng,
                    hospital,
                    contact,
                    activity_type,
                    date,
                ));
            }
        }
    }
}

/// Adds the engagement that precedes a deal: a number of contacts touched in the year before
/// creation, the last touch a drawn number of days before the creation date.
fn engagement(context: &ActivityContext<'_>, deal: &Deal, out: &mut Vec<Activity>) {
    let clock = context.clock;
    let mut rng = Rng::stream(context.seed, "engagement", deal.key);
    let created = deal.audit.created.date_naive();
    let engaged = rng.weighted(&ENGAGED_CONTACT_WEIGHTS);

    // Gap from the last touch to creation: mostly recent, sometimes weeks, sometimes cold.
    let gap_days = match rng.weighted(&[0.6, 0.25, 0.15]) {
        0 => 1 + rng.exponential(20.0) as i64,
        1 => rng.range(30, 120),
        _ => rng.range(120, 330),
    }
    .min(330);
    let last_date = created - TimeDelta::days(gap_days);
    if engaged == 0 || last_date < clock.history_start {
        return;
    }

    let window_start = created - TimeDelta::days(ENGAGEMENT_WINDOW_DAYS - 1);
    let mut candidates: Vec<usize> = context.hospital_contacts[deal.hospital]
        .iter()
        .copied()
        .filter(|&contact| first_activity_date(context, contact) <= last_date)
        .collect();
    rng.shuffle(&mut candidates);

    for (position, &contact) in candidates.iter().take(engaged).enumerate() {
        let first = first_activity_date(context, contact).max(window_start);
        let count = 1 + rng.below(3);
        for number in 0..count {
            // The first contact's first activity marks the last touch before the deal.
            let date = if position == 0 && number == 0 {
                last_date
            } else {
                Clock::date_between(&mut rng, first, last_date)
            };
            let activity_type = pick_type(&mut rng, &ENGAGEMENT_TYPES);
            out.push(make_activity(
                context,
                &mut rng,
                deal.hospital,
                contact,
                activity_type,
                date,
            ));
        }
    }
}

/// Adds demos, meetings, calls and emails between a deal's creation and its close (or
/// `as_of`). Their number does not depend on the outcome.
fn cycle(context: &ActivityContext<'_>, deal: &Deal, out: &mut Vec<Activity>) {
    let clock = context.clock;
    let mut rng = Rng::stream(context.seed, "cycle", deal.key);
    let first = deal.audit.created.date_naive() + TimeDelta::days(1);
    let last = deal.close_date.min(clock.as_of_date) - TimeDelta::days(1);
    if last < first {
        return;
    }
    let count = 1 + rng.poisson(CYCLE_ACTIVITY_MEAN);
    for _ in 0..count {
        let date = Clock::date_between(&mut rng, first, last);
        let available: Vec<usize> = context.hospital_contacts[deal.hospital]
            .iter()
            .copied()
            .filter(|&contact| first_activity_date(context, contact) <= date)
            .collect();
        if available.is_empty() {
            continue;
        }
        let contact = *rng.pick(&available);
        let activity_type = pick_type(&mut rng, &CYCLE_TYPES);
        out.push(make_activity(
            context,
            &mut rng,
            deal.hospital,
            contact,
            activity_type,
            date,
        ));
    }
}

/// Builds one activity on `date`. Demos and meetings are events scheduled 1 to 10 days ahead,
/// and the other types are completed tasks logged on the day. Each record is created on or before its date.
fn make_activity(
    context: &ActivityContext<'_>,
    rng: &mut Rng,
    hospital: usize,
    contact: usize,
    activity_type: &'static str,
    date: NaiveDate,
) -> Activity {
    let clock = context.clock;
    let subject = *rng.pick(subjects(activity_type));
    let contact_created = context.contacts[contact].audit.created;
    let (kind, start, end, created, priority) = if matches!(activity_type, "Demo" | "Meeting") {
        // Starts on a half hour between 13:00 and 21:00 UTC, so even a 90-minute event ends
        // the same day.
        let start = Clock::midnight(date) + TimeDelta::minutes(30 * rng.range(26, 42));
        let end = start + TimeDelta::minutes(30 * rng.range(1, 3));
        let scheduled =
            start - TimeDelta::days(rng.range(1, 10)) - TimeDelta::minutes(rng.range(0, 600));
        let created = scheduled.max(contact_created + TimeDelta::hours(1));
        (ActivityKind::Event, start, end, created, "Normal")
    } else {
        let logged = Clock::business_time(rng, date);
        let priority = ["High", "Normal", "Normal", "Normal", "Low"][rng.below(5)];
        (ActivityKind::Task, logged, logged, logged, priority)
    };
    let modified = created + TimeDelta::seconds(rng.range(0, 600));
    let audit = clock.audit(rng, created, modified);
    let owner = owner_at(
        context.hospitals[hospital].owner,
        context.handovers,
        audit.created,
    );
    Activity {
        kind,
        who: Who::Contact { hospital, contact },
        owner,
        activity_type,
        subject,
        date,
        start,
        end,
        priority,
        audit,
    }
}
