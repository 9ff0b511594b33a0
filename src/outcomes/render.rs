//! The outcomes report's files: one self-contained HTML page with inline SVG charts, one CSV
//! file per table and the JSON of the whole report. Every text taken from the CRM is
//! HTML-escaped here.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{examples_noun, OutcomesReport, MIN_DEALS_FOR_RATE};
use crate::config::Config;
use crate::pipeline::PipelineError;
use crate::report::escape;
use crate::report::outcome_charts::{self, TierSeries};

/// Features shown in the drift chart; the CSV file and the JSON have every feature.
const DRIFT_CHART_FEATURES: usize = 15;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d2733;line-height:1.45}\
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #d5dbe3;padding-bottom:.3rem}\
table{border-collapse:collapse;margin:.6rem 0}th,td{border:1px solid #d5dbe3;padding:.3rem .7rem;text-align:left}\
th{background:#f1f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.na{color:#7a8694;font-style:italic}.breach{color:#a61b1b;font-weight:600}.pass{color:#17703a;font-weight:600}\
.charts svg{max-width:100%;height:auto;border:1px solid #e3e7ec}";

fn write_error(path: &Path, err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Config(format!(
        "cannot write the outcomes report file {}: {err}; check that [outcomes] folder (or --out) names a writable directory",
        path.display()
    ))
}

fn chart_error(err: crate::report::ReportError) -> PipelineError {
    PipelineError::Model(err.to_string())
}

/// Writes one table's CSV file and adds its path to `files`.
fn write_table<T: Serialize + Default>(
    files: &mut Vec<PathBuf>,
    path: PathBuf,
    rows: &[T],
) -> Result<(), PipelineError> {
    crate::spreadsheet::write_rows(&path, rows).map_err(|err| write_error(&path, err))?;
    files.push(path);
    Ok(())
}

/// One row of the score-history CSV file.
#[derive(Default, Serialize)]
struct ScoreHistoryRow<'a> {
    record: &'a str,
    outcome: &'static str,
    closed: String,
    at: String,
    score: f64,
    probability: f64,
    tier: &'a str,
    model_version: &'a str,
}

/// Writes the CSV files, the page and the JSON into `folder` and records their paths in
/// `report.files`, the JSON last so it lists every file.
pub fn write_files(
    report: &mut OutcomesReport,
    config: &Config,
    folder: &Path,
) -> Result<(), PipelineError> {
    std::fs::create_dir_all(folder).map_err(|err| write_error(folder, err))?;
    let stem = format!("outcomes-{}", report.level);
    let path = |suffix: &str| -> PathBuf { folder.join(format!("{stem}{suffix}")) };
    let mut files = Vec::new();

    write_table(&mut files, path("-tier-months.csv"), &report.tier_months)?;
    write_table(&mut files, path("-calibration.csv"), &report.calibration)?;
    write_table(
        &mut files,
        path("-auc-by-quarter.csv"),
        &report.auc_by_quarter,
    )?;
    write_table(&mut files, path("-tier-impact.csv"), &report.tier_impact)?;
    write_table(&mut files, path("-rep-activity.csv"), &report.rep_activity)?;
    write_table(&mut files, path("-rep-revenue.csv"), &report.rep_revenue)?;
    write_table(&mut files, path("-drift.csv"), &report.drift.features)?;
    let history_rows: Vec<ScoreHistoryRow> = report
        .score_samples
        .iter()
        .flat_map(|sample| {
            sample.entries.iter().map(move |entry| ScoreHistoryRow {
                record: &sample.record,
                outcome: if sample.won { "won" } else { "lost" },
                closed: sample.closed.to_rfc3339(),
                at: entry.at.to_rfc3339(),
                score: entry.score,
                probability: entry.probability,
                tier: &entry.tier,
                model_version: &entry.model_version,
            })
        })
        .collect();
    write_table(&mut files, path("-score-history.csv"), &history_rows)?;

    let html_file = path(".html");
    let page = page(report, config)?;
    std::fs::write(&html_file, page).map_err(|err| write_error(&html_file, err))?;
    files.push(html_file);

    let json_file = path(".json");
    files.push(json_file.clone());
    report.files = files;
    let json = serde_json::to_string_pretty(&*report)
        .map_err(|err| PipelineError::Model(format!("cannot encode the outcomes report: {err}")))?;
    std::fs::write(&json_file, json).map_err(|err| write_error(&json_file, err))?;
    Ok(())
}

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

fn optional(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    match value {
        Some(v) if v.is_finite() => format(v),
        _ => "<span class=\"na\">not available</span>".to_string(),
    }
}

fn rep_label(rep: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{} ({})", escape(name), escape(rep)),
        None => escape(rep),
    }
}

/// Builds the whole page.
fn page(report: &OutcomesReport, config: &Config) -> Result<String, PipelineError> {
    let level = report.level;
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str(&format!(
        "<title>Predicted versus actual, {level} level</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
    ));
    html.push_str(&format!(
        "<h1>Predicted versus actual, {level} level</h1>\n<p>Generated {}. Scores live since {}. Live model {}. {} {} closed after their record was first scored are judged by the score in effect just before the close; {} more had no earlier score.</p>\n",
        report.generated_at.format("%Y-%m-%d %H:%M UTC"),
        report
            .go_live
            .map_or("never".to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
        escape(report.live_model_version.as_deref().unwrap_or("none")),
        report.closed_outcomes,
        examples_noun(level),
        report.unscored_outcomes,
    ));

    html.push_str(&breach_section(report, config));
    html.push_str(&tier_month_section(report, &config.tiers.labels)?);
    html.push_str(&calibration_section(report, config)?);
    html.push_str(&auc_section(report, config)?);
    html.push_str(&drift_section(report, config)?);
    html.push_str(&history_section(report)?);
    html.push_str(&impact_section(report));

    if !report.notes.is_empty() {
        html.push_str("<h2>Too little data</h2>\n<ul>\n");
        for note in &report.notes {
            html.push_str(&format!("<li>{}</li>\n", escape(note)));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

fn breach_section(report: &OutcomesReport, config: &Config) -> String {
    let limits = &config.reports;
    let mut html = String::from("<h2>Limits</h2>\n");
    if report.breaches.is_empty() {
        html.push_str(&format!(
            "<p class=\"pass\">No limit was breached (minimum ROC AUC {}, maximum calibration error {}, maximum PSI {}).</p>\n",
            limits.min_auc, limits.max_calibration_error, limits.max_psi
        ));
        return html;
    }
    html.push_str("<ul>\n");
    for breach in &report.breaches {
        html.push_str(&format!("<li class=\"breach\">{}</li>\n", escape(breach)));
    }
    html.push_str("</ul>\n");
    html.push_str(if report.retrain_requested {
        "<p>A retrain was requested ([outcomes] retrain_on_breach = true).</p>\n"
    } else {
        "<p>No retrain was requested, because [outcomes] retrain_on_breach is off.</p>\n"
    });
    html
}

fn tier_month_section(report: &OutcomesReport, labels: &[String]) -> Result<String, PipelineError> {
    let mut html = String::from("<h2>Win rate per tier and month</h2>\n");
    if report.tier_months.is_empty() {
        html.push_str("<p class=\"na\">No closed outcomes to count yet.</p>\n");
        return Ok(html);
    }
    let mut months: Vec<String> = report.tier_months.iter().map(|r| r.month.clone()).collect();
    months.dedup();
    let series: Vec<TierSeries> = labels
        .iter()
        .map(|tier| {
            let rows = report
                .tier_months
                .iter()
                .filter(|r| &r.tier == tier && r.enough_data);
            let index = |month: &str| months.iter().position(|m| m == month).unwrap_or(0);
            TierSeries {
                tier: tier.clone(),
                observed: rows
                    .clone()
                    .map(|r| (index(&r.month), r.win_rate))
                    .collect(),
                predicted: rows.map(|r| (index(&r.month), r.predicted_rate)).collect(),
            }
        })
        .collect();
    html.push_str(&format!(
        "<div class=\"charts\">{}</div>\n",
        outcome_charts::tier_win_rates(&months, &series).map_err(chart_error)?
    ));
    html.push_str("<table>\n<tr><th>Month</th><th>Tier</th><th>Closed</th><th>Won</th><th>Observed win rate</th><th>Predicted win rate</th></tr>\n");
    for row in &report.tier_months {
        let rate = if row.enough_data {
            percent(row.win_rate)
        } else {
            format!("<span class=\"na\">too few to rate (under {MIN_DEALS_FOR_RATE})</span>")
        };
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{rate}</td><td class=\"num\">{}</td></tr>\n",
            row.month,
            escape(&row.tier),
            row.deals,
            row.won,
            percent(row.predicted_rate)
        ));
    }
    html.push_str("</table>\n");
    Ok(html)
}

fn calibration_section(report: &OutcomesReport, config: &Config) -> Result<String, PipelineError> {
    let mut html = String::from("<h2>Calibration over time</h2>\n");
    let months: Vec<&super::CalibrationMonth> = report
        .calibration
        .iter()
        .filter(|c| c.month != "all")
        .collect();
    if months.iter().any(|c| c.calibration_error.is_some()) {
        let labels: Vec<String> = months.iter().map(|c| c.month.clone()).collect();
        let errors: Vec<Option<f64>> = months.iter().map(|c| c.calibration_error).collect();
        html.push_str(&format!(
            "<div class=\"charts\">{}</div>\n",
            outcome_charts::monthly_calibration(
                &labels,
                &errors,
                config.reports.max_calibration_error
            )
            .map_err(chart_error)?
        ));
    }
    html.push_str("<table>\n<tr><th>Month</th><th>Closed</th><th>Mean predicted</th><th>Observed</th><th>Calibration error (ECE, deciles)</th></tr>\n");
    for row in &report.calibration {
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            row.month,
            row.deals,
            percent(row.mean_predicted),
            percent(row.observed_rate),
            optional(row.calibration_error, |e| format!("{e:.3}"))
        ));
    }
    html.push_str("</table>\n");
    Ok(html)
}

fn auc_section(report: &OutcomesReport, config: &Config) -> Result<String, PipelineError> {
    let mut html = String::from("<h2>ROC AUC by quarter</h2>\n");
    let quarters: Vec<&super::QuarterAuc> = report
        .auc_by_quarter
        .iter()
        .filter(|q| q.quarter != "all")
        .collect();
    if quarters.iter().any(|q| q.enough_data) {
        let labels: Vec<String> = quarters.iter().map(|q| q.quarter.clone()).collect();
        let values: Vec<Option<f64>> = quarters
            .iter()
            .map(|q| q.auc.filter(|_| q.enough_data))
            .collect();
        html.push_str(&format!(
            "<div class=\"charts\">{}</div>\n",
            outcome_charts::quarterly_auc(&labels, &values, config.reports.min_auc)
                .map_err(chart_error)?
        ));
    }
    html.push_str("<table>\n<tr><th>Quarter</th><th>Closed</th><th>Won</th><th>Lost</th><th>ROC AUC</th></tr>\n");
    for row in &report.auc_by_quarter {
        let auc = match row.auc {
            Some(auc) if row.enough_data => format!("{auc:.3}"),
            Some(_) => format!(
                "<span class=\"na\">too few to judge (under {})</span>",
                super::MIN_DEALS_FOR_AUC
            ),
            None => "<span class=\"na\">needs both outcomes</span>".to_string(),
        };
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{auc}</td></tr>\n",
            row.quarter, row.deals, row.won, row.lost
        ));
    }
    html.push_str("</table>\n");
    Ok(html)
}

fn drift_section(report: &OutcomesReport, config: &Config) -> Result<String, PipelineError> {
    let drift = &report.drift;
    let mut html = String::from("<h2>Feature drift</h2>\n");
    if let Some(note) = &drift.note {
        html.push_str(&format!("<p class=\"na\">{}</p>\n", escape(note)));
        return Ok(html);
    }
    html.push_str(&format!(
        "<p>Population stability index of each input of model {}: {} open records now against {} {}, in bins cut at the baseline's deciles.</p>\n",
        escape(drift.model_version.as_deref().unwrap_or("none")),
        drift.open_rows,
        drift.training_rows,
        escape(&drift.baseline)
    ));
    let shown: Vec<(String, f64)> = drift
        .features
        .iter()
        .take(DRIFT_CHART_FEATURES)
        .map(|f| (f.feature.clone(), f.psi))
        .collect();
    if !shown.is_empty() {
        html.push_str(&format!(
            "<div class=\"charts\">{}</div>\n",
            outcome_charts::feature_psi(&shown, config.reports.max_psi).map_err(chart_error)?
        ));
    }
    html.push_str("<table>\n<tr><th>Feature</th><th>PSI</th></tr>\n");
    for feature in &drift.features {
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{:.4}</td></tr>\n",
            escape(&feature.feature),
            feature.psi
        ));
    }
    html.push_str("</table>\n");
    Ok(html)
}

fn history_section(report: &OutcomesReport) -> Result<String, PipelineError> {
    let mut html = String::from("<h2>Score history of won and lost records</h2>\n");
    if report.score_samples.is_empty() {
        html.push_str("<p class=\"na\">No closed outcome has a score history yet.</p>\n");
        return Ok(html);
    }
    let paths = |won: bool| -> Vec<Vec<(f64, f64)>> {
        report
            .score_samples
            .iter()
            .filter(|s| s.won == won)
            .map(|sample| {
                let mut points: Vec<(f64, f64)> = sample
                    .entries
                    .iter()
                    .map(|e| {
                        (
                            (e.at - sample.closed).num_seconds() as f64 / 86_400.0,
                            e.score,
                        )
                    })
                    .collect();
                // The last score stays in effect until the close.
                if let Some(&(_, score)) = points.last() {
                    points.push((0.0, score));
                }
                points
            })
            .collect()
    };
    html.push_str(&format!(
        "<div class=\"charts\">{}</div>\n",
        outcome_charts::score_paths(&paths(true), &paths(false)).map_err(chart_error)?
    ));
    html.push_str("<table>\n<tr><th>Record</th><th>Outcome</th><th>Closed</th><th>Scores before the close</th></tr>\n");
    for sample in &report.score_samples {
        let scores: Vec<String> = sample
            .entries
            .iter()
            .map(|e| format!("{} ({})", e.score, escape(&e.tier)))
            .collect();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            rep_label(&sample.record, sample.name.as_deref()),
            if sample.won { "won" } else { "lost" },
            sample.closed.date_naive(),
            scores.join(" → ")
        ));
    }
    html.push_str("</table>\n");
    Ok(html)
}

fn impact_section(report: &OutcomesReport) -> String {
    let mut html =
        String::from("<h2>Business impact</h2>\n<h3>Conversion and sales cycle by tier</h3>\n");
    html.push_str("<table>\n<tr><th>Tier before the close</th><th>Closed</th><th>Won</th><th>Conversion rate</th><th>Mean cycle of won (days)</th><th>Mean cycle of all (days)</th></tr>\n");
    for row in &report.tier_impact {
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            escape(&row.tier),
            row.deals,
            row.won,
            optional(row.conversion_rate, percent),
            optional(row.mean_cycle_days_won, |d| format!("{d:.1}")),
            optional(row.mean_cycle_days_closed, |d| format!("{d:.1}")),
        ));
    }
    html.push_str("</table>\n<h3>Reps' logged activities on A and B records</h3>\n");
    match &report.activity_windows {
        None => html.push_str("<p class=\"na\">No activity after go-live to compare yet.</p>\n"),
        Some(windows) => {
            html.push_str(&format!(
                "<p>Tasks and events from {} to go-live at {}, against go-live to {}. Before go-live a record counts by the tier of its first score.</p>\n",
                windows.before_from.to_rfc3339(),
                windows.go_live.to_rfc3339(),
                windows.after_to.to_rfc3339()
            ));
            html.push_str("<table>\n<tr><th>Rep</th><th>Before: activities</th><th>Before: on A and B</th><th>After: activities</th><th>After: on A and B</th></tr>\n");
            for row in &report.rep_activity {
                html.push_str(&format!(
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                    rep_label(&row.rep, row.rep_name.as_deref()),
                    row.before_total,
                    optional(row.before_share, percent),
                    row.after_total,
                    optional(row.after_share, percent),
                ));
            }
            html.push_str("</table>\n");
        }
    }
    html.push_str("<h3>Closed-won revenue per rep</h3>\n<table>\n<tr><th>Rep</th><th>Won</th><th>Revenue</th><th>From A and B</th></tr>\n");
    for row in &report.rep_revenue {
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2}</td><td class=\"num\">{:.2}</td></tr>\n",
            rep_label(&row.rep, row.rep_name.as_deref()),
            row.won_deals,
            row.revenue,
            row.revenue_a_b
        ));
    }
    html.push_str("</table>\n");
    html
}
