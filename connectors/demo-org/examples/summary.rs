//! Prints record counts, the won share and the oracle ROC AUC of a generated demo org.
//!
//! Run with `cargo run -p leadscore-demo-org --example summary [seed] [max_hospitals]`.

use std::process::ExitCode;
use std::time::Instant;

use leadscore_demo_org::{generate, truth, DemoOptions};

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
    ExitCode::SUCCESS
}
