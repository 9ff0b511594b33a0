//! Prints record counts, the won and converted shares and the oracle ROC AUCs of a generated
//! demo org.
//!
//! Run with `cargo run -p leadscore-demo-org --example summary [seed] [max_hospitals]`.

use std::process::ExitCode;
use std::time::Instant;

use chrono::{NaiveDate, TimeDelta};
use leadscore_demo_org::{generate, truth, DemoOptions, DemoOrg};

/// Age at which an unconverted lead counts as lost, in days.
const LEAD_STALE_DAYS: i64 = 180;

fn main() -> ExitCode {
    let mut options = DemoOptions::default();
    let mut args = std::env::args().skip(1);
    if let Some(seed) = args.next() {
        match seed.parse() {
            Ok(seed) => options.seed = seed,
            Err(_) => {
                eprintln!("invalid seed {seed:?}: expected a whole number");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(limit) = args.next() {
        match limit.parse() {
            Ok(limit) => options.max_hospitals = Some(limit),
            Err(_) => {
                eprintln!("invalid max_hospitals {limit:?}: expected a whole number");
                return ExitCode::FAILURE;
            }
        }
    }

    let started = Instant::now();
    let org = match generate(&options) {
        Ok(org) => org,
        Err(error) => {
            eprintln!("generation failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "generated in {:.2?} (seed {})",
        started.elapsed(),
        options.seed
    );
    for (object, records) in &org.records {
        println!("{object:>24}: {}", records.len());
    }

    let mut closed: Vec<(String, bool, f64)> = org.records["Opportunity"]
        .iter()
        .filter(|record| record["IsClosed"] == true)
        .map(|record| {
            let id = record["Id"].as_str().unwrap_or_default().to_string();
            let close = record["CloseDate"].as_str().unwrap_or_default().to_string();
            let probability = org.win_probability.get(&id).copied().unwrap_or(f64::NAN);
            (close, record["IsWon"] == true, probability)
        })
        .collect();
    closed.sort_by(|a, b| a.0.cmp(&b.0));
    let won = closed.iter().filter(|deal| deal.1).count();
    println!(
        "closed deals: {}, won share {:.3}",
        closed.len(),
        won as f64 / closed.len().max(1) as f64
    );
    let holdout = &closed[closed.len() - closed.len() / 5..];
    let scores: Vec<f64> = holdout.iter().map(|deal| deal.2).collect();
    let labels: Vec<bool> = holdout.iter().map(|deal| deal.1).collect();
    let all_scores: Vec<f64> = closed.iter().map(|deal| deal.2).collect();
    let all_labels: Vec<bool> = closed.iter().map(|deal| deal.1).collect();
    println!(
        "oracle AUC: latest 20% ({} deals from {}) {:.3}, all closed {:.3}",
        holdout.len(),
        holdout.first().map_or("-", |deal| deal.0.as_str()),
        truth::roc_auc(&scores, &labels).unwrap_or(f64::NAN),
        truth::roc_auc(&all_scores, &all_labels).unwrap_or(f64::NAN)
    );
    print_leads(&org);
    ExitCode::SUCCESS
}

/// Prints the closed-lead counts and the oracle AUC on the latest 20% of closed leads, ordered
/// by decision time: `ConvertedDate`, or the day an unconverted lead turned 180 days old.
fn print_leads(org: &DemoOrg) {
    let today = org.as_of.date_naive();
    let mut closed: Vec<(NaiveDate, bool, f64)> = Vec::new();
    let mut hospital_closed = 0;
    for lead in &org.records["Lead"] {
        let id = lead["Id"].as_str().unwrap_or_default();
        let probability = org
            .conversion_probability
            .get(id)
            .copied()
            .unwrap_or(f64::NAN);
        let created = lead["CreatedDate"]
            .as_str()
            .and_then(|text| NaiveDate::parse_from_str(&text[..10], "%Y-%m-%d").ok());
        let Some(created) = created else { continue };
        let converted = lead["ConvertedDate"]
            .as_str()
            .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok());
        let decided = match converted {
            Some(date) => (date, true),
            None if (today - created).num_days() > LEAD_STALE_DAYS => {
                (created + TimeDelta::days(LEAD_STALE_DAYS), false)
            }
            None => continue,
        };
        hospital_closed += usize::from(probability > 0.0);
        closed.push((decided.0, decided.1, probability));
    }

    closed.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.total_cmp(&b.2)));
    let converted = closed.iter().filter(|lead| lead.1).count();
    println!(
        "closed leads: {} ({} of hospitals), converted {} (share {:.3})",
        closed.len(),
        hospital_closed,
        converted,
        converted as f64 / closed.len().max(1) as f64
    );

    let holdout = &closed[closed.len() - closed.len() / 5..];
    let scores: Vec<f64> = holdout.iter().map(|lead| lead.2).collect();
    let labels: Vec<bool> = holdout.iter().map(|lead| lead.1).collect();
    let all_scores: Vec<f64> = closed.iter().map(|lead| lead.2).collect();
    let all_labels: Vec<bool> = closed.iter().map(|lead| lead.1).collect();
    println!(
        "lead oracle AUC: latest 20% ({} leads) {:.3}, all closed {:.3}",
        holdout.len(),
        truth::roc_auc(&scores, &labels).unwrap_or(f64::NAN),
        truth::roc_auc(&all_scores, &all_labels).unwrap_or(f64::NAN)
    );
    // Clinic leads never convert and have P = 0, which makes them easy to rank.
    let hospital: Vec<&(NaiveDate, bool, f64)> =
        closed.iter().filter(|lead| lead.2 > 0.0).collect();
    let hospital_holdout = &hospital[hospital.len() - hospital.len() / 5..];
    let scores: Vec<f64> = hospital_holdout.iter().map(|lead| lead.2).collect();
    let labels: Vec<bool> = hospital_holdout.iter().map(|lead| lead.1).collect();
    println!(
        "lead oracle AUC without clinic leads: latest 20% ({} leads) {:.3}",
        hospital_holdout.len(),
        truth::roc_auc(&scores, &labels).unwrap_or(f64::NAN)
    );
}
