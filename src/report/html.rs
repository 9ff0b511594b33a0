//! The model card page: one self-contained HTML document with inline CSS and the plotters
//! charts inlined as SVG. Every text taken from the report is HTML-escaped here.

use super::card::{
    Baseline, CandidateScore, Checks, Counts, LeakageFlag, LiveComparison, Metrics, ModelCard,
    Section, SegmentShortfall, Window,
};
use serde_json::Value;

use super::charts;
use super::ReportError;

const NOT_AVAILABLE: &str = "not available";

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d2733;line-height:1.45}\
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #d5dbe3;padding-bottom:.3rem}\
table{border-collapse:collapse;margin:.6rem 0}th,td{border:1px solid #d5dbe3;padding:.3rem .7rem;text-align:left}\
th{background:#f1f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.na{color:#7a8694;font-style:italic}.pass{color:#17703a;font-weight:600}.fail{color:#a61b1b;font-weight:600}\
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}.charts svg{max-width:100%;height:auto;border:1px solid #e3e7ec}\
.meta{color:#4a5866}";

/// Escapes `text` for use in HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => NOT_AVAILABLE.to_string(),
    }
}

fn percent(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{:.1}%", v * 100.0),
        _ => NOT_AVAILABLE.to_string(),
    }
}

fn count(value: Option<u64>) -> String {
    value.map_or(NOT_AVAILABLE.to_string(), |n| n.to_string())
}

fn text(value: Option<&str>) -> String {
    escape(value.unwrap_or(NOT_AVAILABLE))
}

fn yes_no(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "yes",
        Some(false) => "no",
        None => NOT_AVAILABLE,
    }
}

/// Builds the paragraph shown in place of a section that the report lacks or that cannot be read.
fn unavailable<T>(key: &str, section: &Section<T>) -> String {
    match section {
        Section::Invalid(message) => format!(
            "<p class=\"na\">{NOT_AVAILABLE}: the report's <code>{}</code> part is unreadable ({})</p>\n",
            escape(key),
            escape(message)
        ),
        _ => format!("<p class=\"na\">{NOT_AVAILABLE}</p>\n"),
    }
}

/// Builds a two-column table from labels and already-escaped values.
fn key_value_table(rows: &[(&str, String)]) -> String {
    let mut html = String::from("<table>\n");
    for (label, value) in rows {
        html.push_str(&format!("<tr><th>{label}</th><td>{value}</td></tr>\n"));
    }
    html.push_str("</table>\n");
    html
}

/// Reads one metric from a [`Metrics`].
type MetricField = fn(&Metrics) -> Option<f64>;

/// Builds the whole page.
pub fn page(card: &ModelCard) -> Result<String, ReportError> {
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str(&format!(
        "<title>Model card {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&card.version)
    ));
    html.push_str(&header(card));
    html.push_str(&data_section(card));
    html.push_str(&checks_section(&card.checks));
    html.push_str(&metrics_section(card));
    html.push_str(&candidates_section(&card.candidates, card.trees_used));
    html.push_str(&calibration_section(card)?);
    html.push_str(&lift_section(card)?);
    html.push_str(&tiers_section(card)?);
    html.push_str(&features_section(card)?);
    html.push_str(&live_section(&card.live_comparison));
    html.push_str(&feedback_section(&card.feedback));
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

/// Words for a level's examples: the heading, the short plural, the outcome pair and rate.
struct Nouns {
    examples: &'static str,
    short: &'static str,
    positive: &'static str,
    negative: &'static str,
    rate: &'static str,
}

fn nouns(card: &ModelCard) -> Nouns {
    match card.level.as_str() {
        "lead" => Nouns {
            examples: "Decided leads",
            short: "Leads",
            positive: "Converted",
            negative: "Not converted",
            rate: "conversion rate",
        },
        "contact" => Nouns {
            examples: "Contact roles on closed deals",
            short: "Contact roles",
            positive: "Won",
            negative: "Lost",
            rate: "win rate",
        },
        _ => Nouns {
            examples: "Closed deals",
            short: "Deals",
            positive: "Won",
            negative: "Lost",
            rate: "win rate",
        },
    }
}

fn header(card: &ModelCard) -> String {
    format!(
        "<h1>Model card: {}</h1>\n<p class=\"meta\">Level: {}. Trained at {}. Chosen model: {}. Calibration: {}.</p>\n",
        escape(&card.version),
        escape(&card.level),
        text(card.trained_at.as_deref()),
        text(card.chosen.as_deref()),
        text(card.calibration_method.as_deref()),
    )
}

fn data_section(card: &ModelCard) -> String {
    let mut html = String::from("<h2>Data</h2>\n<h3>Window</h3>\n");
    match &card.window {
        Section::Present(Window {
            from,
            to,
            holdout_from,
        }) => html.push_str(&key_value_table(&[
            ("First close date", text(from.as_deref())),
            ("Last close date", text(to.as_deref())),
            ("Holdout from", text(holdout_from.as_deref())),
        ])),
        other => html.push_str(&unavailable("window", other)),
    }
    let words = nouns(card);
    html.push_str(&format!("<h3>{}</h3>\n", words.examples));
    match &card.counts {
        Section::Present(Counts {
            examples,
            won,
            lost,
            train,
            validation,
            holdout,
        }) => html.push_str(&key_value_table(&[
            ("Examples", count(*examples)),
            (words.positive, count(*won)),
            (words.negative, count(*lost)),
            ("Training rows", count(*train)),
            ("Validation rows", count(*validation)),
            ("Holdout rows", count(*holdout)),
        ])),
        other => html.push_str(&unavailable("counts", other)),
    }
    if let Some(matching) = &card.lead_match {
        html.push_str("<h3>Leads tied to accounts</h3>\n");
        html.push_str(&json_table(matching));
    }
    for table in &card.enrichment {
        let name = table.get("name").and_then(Value::as_str).unwrap_or("table");
        html.push_str(&format!("<h3>Enrichment: {}</h3>\n", escape(name)));
        html.push_str(&json_table(table));
    }
    html
}

/// Shows a JSON object's fields as a two-column table: numbers and text as they are, counts
/// with samples as the count followed by the samples, anything else as compact JSON.
fn json_table(value: &Value) -> String {
    let Some(map) = value.as_object() else {
        return format!("<p>{}</p>\n", escape(&value.to_string()));
    };
    let rows: Vec<(String, String)> = map
        .iter()
        .map(|(key, value)| {
            let shown = match value {
                Value::String(text) => escape(text),
                Value::Number(n) => n.to_string(),
                Value::Object(inner) if inner.contains_key("count") => {
                    let samples: Vec<String> = inner
                        .get("samples")
                        .and_then(Value::as_array)
                        .map(|list| {
                            list.iter()
                                .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let count = inner.get("count").map(Value::to_string).unwrap_or_default();
                    if samples.is_empty() {
                        count
                    } else {
                        format!("{count} (for example: {})", escape(&samples.join("; ")))
                    }
                }
                Value::Array(list) if list.iter().all(Value::is_string) => escape(
                    &list
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                other => escape(&other.to_string()),
            };
            (key.replace('_', " "), shown)
        })
        .collect();
    let borrowed: Vec<(&str, String)> = rows.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    key_value_table(&borrowed)
}

fn checks_section(checks: &Section<Checks>) -> String {
    let mut html = String::from("<h2>Checks</h2>\n");
    let Section::Present(checks) = checks else {
        html.push_str(&unavailable("checks", checks));
        return html;
    };
    html.push_str("<h3>Data sufficiency</h3>\n");
    match &checks.sufficiency {
        Some(sufficiency) => {
            let outcome = match sufficiency.passed {
                Some(true) => "<span class=\"pass\">passed</span>".to_string(),
                Some(false) => "<span class=\"fail\">failed</span>".to_string(),
                None => NOT_AVAILABLE.to_string(),
            };
            html.push_str(&key_value_table(&[
                ("Outcome", outcome),
                ("Minimum examples", count(sufficiency.floor_examples)),
                (
                    "Minimum of the minority class",
                    count(sufficiency.floor_minority),
                ),
                ("Message", text(sufficiency.message.as_deref())),
            ]));
            html.push_str(&segments_table(sufficiency.segments.as_deref()));
        }
        None => html.push_str(&format!("<p class=\"na\">{NOT_AVAILABLE}</p>\n")),
    }

    html.push_str("<h3>Leakage</h3>\n");
    match &checks.leakage {
        Some(flags) if flags.is_empty() => {
            html.push_str("<p>No feature was flagged as leaking the outcome.</p>\n")
        }
        Some(flags) => {
            html.push_str(
                "<table>\n<tr><th>Feature</th><th>Holdout AUC alone</th><th>Excluded</th><th>Excluded columns</th><th>Reason</th><th>Present in closed deals / accounts scored</th></tr>\n",
            );
            for flag in flags {
                let columns = match flag.excluded_columns.as_deref() {
                    Some(columns) if !columns.is_empty() => columns
                        .iter()
                        .map(|c| escape(c))
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => "none".to_string(),
                };
                html.push_str(&format!(
                    "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{columns}</td><td>{}</td><td class=\"num\">{}</td></tr>\n",
                    escape(&flag.feature),
                    number(flag.auc, 3),
                    yes_no(flag.excluded),
                    leakage_reason(flag),
                    presence_shares(flag)
                ));
            }
            html.push_str("</table>\n");
        }
        None => html.push_str(&format!("<p class=\"na\">{NOT_AVAILABLE}</p>\n")),
    }
    for note in checks.notes.iter().flatten() {
        html.push_str(&format!("<p class=\"note\">{}</p>\n", escape(note)));
    }

    html.push_str("<h3>Dropped features</h3>\n");
    match &checks.dropped {
        Some(dropped) if dropped.is_empty() => html.push_str("<p>No feature was dropped.</p>\n"),
        Some(dropped) => {
            html.push_str("<table>\n<tr><th>Feature</th><th>Reason</th></tr>\n");
            for feature in dropped {
                html.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td></tr>\n",
                    escape(&feature.feature),
                    text(feature.reason.as_deref())
                ));
            }
            html.push_str("</table>\n");
        }
        None => html.push_str(&format!("<p class=\"na\">{NOT_AVAILABLE}</p>\n")),
    }
    html
}

/// Returns the flag's reason, escaped. Reports written before flags carried a reason had only
/// the AUC rule, so their reason is derived from the AUC.
fn leakage_reason(flag: &LeakageFlag) -> String {
    match (&flag.reason, flag.auc) {
        (Some(reason), _) if !reason.is_empty() => escape(reason),
        (_, Some(auc)) => format!("predicts the outcome alone (AUC {auc:.2})"),
        _ => NOT_AVAILABLE.to_string(),
    }
}

/// Returns both presence shares of a post-outcome flag, or a dash for a flag the AUC rule
/// alone raised, which measures no shares.
fn presence_shares(flag: &LeakageFlag) -> String {
    match (flag.train_share, flag.scoring_share) {
        (Some(_), Some(_)) => format!(
            "{} / {}",
            percent(flag.train_share),
            percent(flag.scoring_share)
        ),
        _ => "-".to_string(),
    }
}

/// Builds the table of segments short of closed deals, or a line saying none was recorded.
fn segments_table(segments: Option<&[SegmentShortfall]>) -> String {
    let segments = segments.unwrap_or_default();
    if segments.is_empty() {
        return "<p>No segment shortfall was recorded.</p>\n".to_string();
    }
    let mut html = String::from("<h4>Segments short of closed deals</h4>\n<table>\n<tr><th>Segment</th><th>Closed deals</th><th>Won</th><th>Lost</th><th>Floor</th><th>Still needed</th><th>Message</th></tr>\n");
    for segment in segments {
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
            escape(&segment.segment),
            count(segment.examples),
            count(segment.won),
            count(segment.lost),
            count(segment.floor),
            count(segment.missing),
            text(segment.message.as_deref())
        ));
    }
    html.push_str("</table>\n");
    html
}

fn metrics_section(card: &ModelCard) -> String {
    let mut html = String::from("<h2>Holdout metrics</h2>\n");
    let model = card.metrics.get();
    let baseline = card.baseline.get();
    if model.is_none() && baseline.is_none() {
        html.push_str(&unavailable("metrics", &card.metrics));
        return html;
    }

    let empty = Metrics::default();
    let model = model.unwrap_or(&empty);
    let baseline_metrics = baseline
        .and_then(|b: &Baseline| b.metrics.as_ref())
        .unwrap_or(&empty);
    let baseline_name = baseline
        .and_then(|b| b.name.as_deref())
        .unwrap_or("baseline");

    html.push_str(&format!(
        "<table>\n<tr><th>Metric</th><th>Model ({})</th><th>Baseline ({})</th><th>Better when</th></tr>\n",
        text(card.chosen.as_deref()),
        escape(baseline_name)
    ));
    let rows: [(&str, MetricField, &str); 5] = [
        ("ROC AUC", |m| m.auc, "higher"),
        ("PR AUC", |m| m.pr_auc, "higher"),
        ("Log loss", |m| m.log_loss, "lower"),
        ("Brier score", |m| m.brier, "lower"),
        ("Expected calibration error", |m| m.ece, "lower"),
    ];

    for (name, pick, better) in rows {
        html.push_str(&format!(
            "<tr><th>{name}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{better}</td></tr>\n",
            number(pick(model), 4),
            number(pick(baseline_metrics), 4)
        ));
    }
    html.push_str("</table>\n");
    if let Section::Invalid(_) = card.metrics {
        html.push_str(&unavailable("metrics", &card.metrics));
    }
    if let Section::Invalid(_) = card.baseline {
        html.push_str(&unavailable("baseline", &card.baseline));
    }
    html
}

fn candidates_section(
    candidates: &Section<Vec<CandidateScore>>,
    trees_used: Option<u64>,
) -> String {
    let mut html = String::from("<h2>Candidates on the validation slice</h2>\n");
    if let Some(trees) = trees_used {
        html.push_str(&format!(
            "<p>Trees kept by early stopping on the validation slice: {trees}.</p>\n"
        ));
    }
    match candidates {
        Section::Present(rows) if !rows.is_empty() => {
            html.push_str("<table>\n<tr><th>Candidate</th><th>Validation ROC AUC</th><th>Validation log loss</th></tr>\n");
            for row in rows {
                html.push_str(&format!(
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                    escape(&row.name),
                    number(row.validation_auc, 4),
                    number(row.validation_log_loss, 4)
                ));
            }
            html.push_str("</table>\n");
        }
        other => html.push_str(&unavailable("candidates", other)),
    }
    html
}

fn calibration_section(card: &ModelCard) -> Result<String, ReportError> {
    let mut html = String::from("<h2>Calibration</h2>\n");
    match &card.calibration {
        Section::Present(bins) if !bins.is_empty() => {
            html.push_str(&format!(
                "<div class=\"charts\">{}</div>\n",
                charts::calibration(bins)?
            ));
            let words = nouns(card);
            html.push_str(&format!("<table>\n<tr><th>Bin</th><th>{}</th><th>Mean predicted</th><th>Observed {}</th></tr>\n", words.short, words.rate));
            for bin in bins {
                html.push_str(&format!(
                    "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                    bin.bin.map_or(NOT_AVAILABLE.to_string(), |b| b.to_string()),
                    count(bin.count),
                    number(bin.mean_predicted, 3),
                    number(bin.observed, 3)
                ));
            }
            html.push_str("</table>\n");
        }
        other => html.push_str(&unavailable("calibration", other)),
    }
    Ok(html)
}

fn lift_section(card: &ModelCard) -> Result<String, ReportError> {
    let mut html = String::from("<h2>Lift and cumulative gain</h2>\n");
    match &card.lift {
        Section::Present(deciles) if !deciles.is_empty() => {
            html.push_str(&format!(
                "<div class=\"charts\">{}{}</div>\n",
                charts::lift(deciles)?,
                charts::cumulative_gain(deciles)?
            ));
            let words = nouns(card);
            html.push_str(&format!("<table>\n<tr><th>Decile</th><th>{}</th><th>Rate</th><th>Lift</th><th>Cumulative gain</th></tr>\n", words.short));
            for row in deciles {
                html.push_str(&format!(
                    "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                    row.decile,
                    count(row.count),
                    percent(row.win_rate),
                    number(row.lift, 2),
                    percent(row.cumulative_gain)
                ));
            }
            html.push_str("</table>\n<p class=\"meta\">Decile 1 is the highest-scored tenth of the holdout.</p>\n");
        }
        other => html.push_str(&unavailable("lift", other)),
    }
    Ok(html)
}

fn tiers_section(card: &ModelCard) -> Result<String, ReportError> {
    let mut html = String::from("<h2>Win rate per tier</h2>\n");
    match &card.tiers {
        Section::Present(tiers) if !tiers.is_empty() => {
            html.push_str(&format!(
                "<div class=\"charts\">{}</div>\n",
                charts::tiers(tiers)?
            ));
            let words = nouns(card);
            html.push_str(&format!(
                "<table>\n<tr><th>Tier</th><th>{}</th><th>Rate</th></tr>\n",
                words.short
            ));
            for tier in tiers {
                html.push_str(&format!(
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                    escape(&tier.tier),
                    count(tier.count),
                    percent(tier.win_rate)
                ));
            }
            html.push_str("</table>\n");
        }
        other => html.push_str(&unavailable("tiers", other)),
    }
    Ok(html)
}

fn features_section(card: &ModelCard) -> Result<String, ReportError> {
    let mut html = String::from("<h2>Top features</h2>\n");
    match &card.top_features {
        Section::Present(features) if !features.is_empty() => {
            html.push_str(&format!(
                "<div class=\"charts\">{}</div>\n",
                charts::top_features(features)?
            ));
            html.push_str(
                "<table>\n<tr><th>Feature</th><th>Mean absolute contribution</th></tr>\n",
            );
            for feature in features {
                html.push_str(&format!(
                    "<tr><td>{}</td><td class=\"num\">{}</td></tr>\n",
                    escape(&feature.feature),
                    number(feature.mean_abs_contribution, 4)
                ));
            }
            html.push_str("</table>\n");
        }
        other => html.push_str(&unavailable("top_features", other)),
    }
    Ok(html)
}

fn live_section(live: &Section<LiveComparison>) -> String {
    let mut html = String::from("<h2>Comparison with the live model</h2>\n");
    match live {
        Section::Null => html.push_str(
            "<p>There was no live model when this model was trained, so there is nothing to compare.</p>\n",
        ),
        Section::Present(comparison) => {
            html.push_str(&key_value_table(&[
                ("Live model", text(comparison.live_version.as_deref())),
                ("Live model ROC AUC on the holdout", number(comparison.live_auc, 4)),
                ("This model's ROC AUC on the holdout", number(comparison.candidate_auc, 4)),
                ("Allowed AUC loss (margin)", number(comparison.margin, 4)),
            ]));
            if let (Some(live_auc), Some(candidate_auc), Some(margin)) = (
                comparison.live_auc,
                comparison.candidate_auc,
                comparison.margin,
            ) {
                let verdict = if candidate_auc >= live_auc - margin {
                    "<p class=\"pass\">This model's AUC is within the margin of the live model's, so it may replace it.</p>\n"
                } else {
                    "<p class=\"fail\">This model's AUC is worse than the live model's by more than the margin, so it stays a candidate.</p>\n"
                };
                html.push_str(verdict);
            }
        }
        other => html.push_str(&unavailable("live_comparison", other)),
    }
    html
}

/// Builds the section on the reps' flags: counts by value, how many flagged records the model
/// agrees with, and the features the flags point at.
fn feedback_section(feedback: &Section<crate::feedback::FeedbackSummary>) -> String {
    let mut html = String::from("<h2>Rep feedback</h2>\n");
    let summary = match feedback {
        Section::Present(summary) => summary,
        Section::Missing => {
            html.push_str("<p>This model's report has no feedback part: it was trained before leadscore read rep flags.</p>\n");
            return html;
        }
        other => {
            html.push_str(&unavailable("feedback", other));
            return html;
        }
    };
    let used = if summary.use_flags == "weights" {
        format!(
            "Flags weighted training: {} training rows whose flag agrees with their outcome had weight {}.",
            summary.weighted_rows,
            number(Some(summary.weight), 1)
        )
    } else {
        "Flags are reported here only; training did not use them.".to_string()
    };
    html.push_str(&format!("<p>{}</p>\n", escape(&used)));

    if summary.flags == 0 && summary.empty == 0 {
        html.push_str("<p>No rep has flagged a score at this level.</p>\n");
        return html;
    }
    html.push_str(&format!(
        "<p>{} flags in all ({} cleared or comment only); {} records have a current flag. \
         The model agrees with {} of the {} flagged records it could score again.</p>\n",
        summary.flags, summary.empty, summary.records, summary.agreed, summary.evaluated
    ));
    html.push_str(
        "<table>\n<tr><th>Flag</th><th>Flags</th><th>Records</th><th>Scored again</th><th>Model agrees</th><th>Features in the flagged records' top reasons</th></tr>\n",
    );

    let mut values: Vec<&str> = crate::feedback::FLAG_VALUES.to_vec();
    if summary.by_value.contains_key("unknown") {
        values.push("unknown");
    }
    for value in values {
        let agreement = summary.agreement.get(value).cloned().unwrap_or_default();
        let features: Vec<String> = summary
            .features
            .get(value)
            .map(|list| {
                list.iter()
                    .map(|f| format!("{} ({})", escape(&f.feature), f.records))
                    .collect()
            })
            .unwrap_or_default();
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
            escape(value),
            summary.by_value.get(value).copied().unwrap_or(0),
            agreement.records,
            agreement.evaluated,
            agreement.agreed,
            features.join(", ")
        ));
    }
    html.push_str("</table>\n");

    html.push_str(&format!(
        "<p class=\"meta\">The model agrees with a \"{}\" flag when its score is lower than the flagged one, with \"{}\" when it is higher, and with \"{}\" when it is within {} points.</p>\n",
        crate::feedback::FLAG_VALUES[0],
        crate::feedback::FLAG_VALUES[1],
        crate::feedback::FLAG_VALUES[2],
        crate::feedback::RIGHT_TOLERANCE_POINTS
    ));
    if !summary.unknown.is_empty() {
        html.push_str("<p>Flags with a value outside the picklist:</p>\n<table>\n<tr><th>Object</th><th>Record</th><th>Value</th></tr>\n");
        for flag in &summary.unknown {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(&flag.object),
                escape(&flag.id),
                escape(&flag.value)
            ));
        }
        html.push_str("</table>\n");
    }
    html
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_replaces_markup_characters() {
        assert_eq!(
            escape(r#"<b>"A" & 'B'</b>"#),
            "&lt;b&gt;&quot;A&quot; &amp; &#39;B&#39;&lt;/b&gt;"
        );
    }
}
