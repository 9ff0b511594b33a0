//! The files of a list: the CSV, the rep's HTML page and the index page. Every page is
//! self-contained (inline style, no scripts) and every text from the CRM is escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{Change, RepList, INDEX_FILE, UNASSIGNED_KEY};
use crate::config::Config;
use crate::spreadsheet::safe_cell;

/// The columns of every list's CSV file, in order. `rank` is empty and `change` is `dropped`
/// on the rows of accounts that left the list, which `dropped_because` explains.
pub const CSV_HEADER: [&str; 12] = [
    "rank",
    "change",
    "account_id",
    "account_name",
    "score",
    "tier",
    "previous_score",
    "owner_id",
    "owner_name",
    "territory_value",
    "reasons",
    "dropped_because",
];

/// Separator of the reasons within one CSV cell.
const REASON_SEPARATOR: &str = "; ";

/// Returns a score as text: scores are whole numbers, so no fraction is shown for them.
fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// Returns the change column's text: `new`, or the signed score delta (`+4`, `-2`, `0`).
pub fn change_text(change: &Change) -> String {
    match change {
        Change::New => "new".to_string(),
        Change::Score { delta, .. } if *delta == 0.0 => "0".to_string(),
        Change::Score { delta, .. } if *delta > 0.0 => format!("+{}", number(*delta)),
        Change::Score { delta, .. } => number(*delta),
    }
}

/// Returns the CSV file of one list: a row per listed account, then a row per dropped one.
pub fn list_csv(list: &RepList, top: usize) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for entry in &list.entries {
        let previous = match entry.change {
            Change::Score { previous, .. } => number(previous),
            Change::New => String::new(),
        };
        writer.write_record([
            entry.rank.to_string(),
            change_text(&entry.change),
            entry.id.clone(),
            safe_cell(&entry.name),
            number(entry.score),
            safe_cell(&entry.tier),
            previous,
            entry.owner_id.clone().unwrap_or_default(),
            safe_cell(entry.owner_name.as_deref().unwrap_or_default()),
            safe_cell(entry.territory_value.as_deref().unwrap_or_default()),
            safe_cell(&entry.reasons.join(REASON_SEPARATOR)),
            String::new(),
        ])?;
    }
    for dropped in &list.dropped {
        writer.write_record([
            String::new(),
            "dropped".to_string(),
            dropped.id.clone(),
            safe_cell(&dropped.name),
            dropped.score.map(number).unwrap_or_default(),
            String::new(),
            number(dropped.previous_score),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            dropped.reason.describe(top),
        ])?;
    }
    writer
        .into_inner()
        .map_err(|err| csv::Error::from(err.into_error()))
}

/// Escapes text for HTML element content and quoted attribute values.
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right}\
.up{color:#176b2c}.down{color:#a11}.new{color:#1a4fa0;font-weight:bold}\
.muted{color:#666}";

/// Starts a page with its title. The caller closes it with [`page_end`].
fn page_start(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
}

fn page_end(out: &mut String) {
    out.push_str("</body>\n</html>\n");
}

fn generated_line(out: &mut String, now: DateTime<Utc>) {
    let _ = writeln!(
        out,
        "<p class=\"muted\">Generated {} UTC.</p>",
        now.format("%Y-%m-%d %H:%M")
    );
}

/// Returns the HTML page of one rep's list.
pub fn list_html(list: &RepList, config: &Config, now: DateTime<Utc>) -> String {
    let top = config.territory.top;
    let mut out = String::new();
    page_start(&mut out, &format!("Priority accounts: {}", list.rep_name));
    let _ = writeln!(
        out,
        "<p><a href=\"{INDEX_FILE}\">All lists</a> · <a href=\"{}.csv\">CSV</a></p>",
        escape(&list.file_stem)
    );
    generated_line(&mut out, now);
    out.push_str(&territory_sentence(list, config));
    if list.active == Some(false) {
        out.push_str(
            "<p><strong>This user is inactive in the CRM; reassign the accounts below.</strong></p>\n",
        );
    }

    if list.entries.is_empty() {
        let text = if list.dropped.is_empty() {
            "No open accounts are in this territory now.".to_string()
        } else {
            format!(
                "No open accounts are in this territory now: all {} accounts of the last list left it (see below).",
                list.dropped.len()
            )
        };
        let _ = writeln!(out, "<p><strong>{}</strong></p>", escape(&text));
    } else {
        entries_table(&mut out, list);
    }

    if !list.dropped.is_empty() {
        let _ = writeln!(
            out,
            "<h2>Dropped since the last list ({})</h2>",
            list.dropped.len()
        );
        out.push_str(
            "<table>\n<tr><th>Account</th><th>Score on the last list</th><th>Score now</th><th>Why</th></tr>\n",
        );
        for dropped in &list.dropped {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(&dropped.name),
                number(dropped.previous_score),
                dropped.score.map(number).unwrap_or_default(),
                escape(&dropped.reason.describe(top))
            );
        }
        out.push_str("</table>\n");
    } else if !list.had_previous {
        out.push_str("<p class=\"muted\">This is the first list for this territory, so every account is new.</p>\n");
    }
    page_end(&mut out);
    out
}

/// Returns the paragraph saying what the territory is.
fn territory_sentence(list: &RepList, config: &Config) -> String {
    let top = config.territory.top;
    let scope = match (&config.territory.field, list.rep_key == UNASSIGNED_KEY) {
        (_, true) => "open accounts that no rep's territory covers".to_string(),
        (None, false) => "open accounts this rep owns".to_string(),
        (Some(field), false) if list.territory.is_empty() => {
            format!("open accounts this rep owns (their accounts have no {field} value)")
        }
        (Some(field), false) => format!(
            "open accounts with {field} {}, whoever owns them, and owned accounts without a {field} value",
            list.territory.join(", ")
        ),
    };
    format!(
        "<p>The top {top} of the {} {}, by score.</p>\n",
        list.open_accounts,
        escape(&scope)
    )
}

fn entries_table(out: &mut String, list: &RepList) {
    let by_field = list.entries.iter().any(|e| e.territory_value.is_some());
    let others = list
        .entries
        .iter()
        .any(|e| e.owner_id.as_deref() != Some(list.rep_key.as_str()));
    out.push_str(
        "<table>\n<tr><th>#</th><th>Account</th><th>Score</th><th>Tier</th><th>Change</th>",
    );
    if others {
        out.push_str("<th>Owner</th>");
    }
    if by_field {
        out.push_str("<th>Territory</th>");
    }
    out.push_str("<th>Top reasons</th></tr>\n");
    for entry in &list.entries {
        let class = match entry.change {
            Change::New => "new",
            Change::Score { delta, .. } if delta > 0.0 => "up",
            Change::Score { delta, .. } if delta < 0.0 => "down",
            Change::Score { .. } => "muted",
        };
        let _ = write!(
            out,
            "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"{class}\">{}</td>",
            entry.rank,
            escape(&entry.name),
            number(entry.score),
            escape(&entry.tier),
            escape(&change_text(&entry.change))
        );
        if others {
            let _ = write!(
                out,
                "<td>{}</td>",
                escape(entry.owner_name.as_deref().unwrap_or("none"))
            );
        }
        if by_field {
            let _ = write!(
                out,
                "<td>{}</td>",
                escape(entry.territory_value.as_deref().unwrap_or_default())
            );
        }
        let reasons: Vec<String> = entry.reasons.iter().map(|r| escape(r)).collect();
        let _ = writeln!(out, "<td>{}</td></tr>", reasons.join("<br>"));
    }
    out.push_str("</table>\n");
}

/// Returns the index page: one row per list with its account, top-tier, new and dropped counts.
pub fn index_html(lists: &[RepList], config: &Config, now: DateTime<Utc>) -> String {
    let top_tier = config.tiers.labels[0].as_str();
    let mut out = String::new();
    page_start(&mut out, "Territory priority lists");
    generated_line(&mut out, now);
    let _ = writeln!(
        out,
        "<p>{} lists of the top {} open accounts per territory.</p>",
        lists.len(),
        config.territory.top
    );
    let _ = writeln!(
        out,
        "<table>\n<tr><th>Rep</th><th>Accounts</th><th>Tier {}</th><th>New</th><th>Dropped</th><th>CSV</th></tr>",
        escape(top_tier)
    );
    for list in lists {
        let stem = escape(&list.file_stem);
        let inactive = if list.active == Some(false) {
            " <span class=\"muted\">(inactive)</span>"
        } else {
            ""
        };
        let top_count = list.entries.iter().filter(|e| e.tier == top_tier).count();
        let new_count = list
            .entries
            .iter()
            .filter(|e| e.change == Change::New)
            .count();
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{stem}.html\">{}</a>{inactive}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{top_count}</td><td class=\"n\">{new_count}</td><td class=\"n\">{}</td>\
             <td><a href=\"{stem}.csv\">{stem}.csv</a></td></tr>",
            escape(&list.rep_name),
            list.entries.len(),
            list.dropped.len()
        );
    }
    out.push_str("</table>\n");
    page_end(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_replaces_markup_characters() {
        assert_eq!(
            escape(r#"<b>"A" & 'B'</b>"#),
            "&lt;b&gt;&quot;A&quot; &amp; &#39;B&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn change_text_signs_the_delta() {
        assert_eq!(change_text(&Change::New), "new");
        let change = |delta| Change::Score {
            previous: 50.0,
            delta,
        };
        assert_eq!(change_text(&change(4.0)), "+4");
        assert_eq!(change_text(&change(-2.0)), "-2");
        assert_eq!(change_text(&change(0.0)), "0");
    }
}
