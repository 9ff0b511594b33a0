//! Lead company names: a hospital's name written the way people type it into a web form.

use std::collections::HashSet;

use super::org::title_case;
use crate::rng::Rng;

/// Share of hospital leads whose `Company` is exactly the account `Name`.
const EXACT_SHARE: f64 = 0.5;
/// Share of hospital leads whose `Company` matches no account: a typo-ridden or different
/// facility name.
const UNMATCHED_SHARE: f64 = 0.03;

/// Facility kinds for a lead that names its hospital differently from the CMS file.
const OTHER_FACILITY_KINDS: [&str; 5] = [
    "Community Hospital",
    "Regional Medical Center",
    "Surgical Hospital",
    "Memorial Hospital",
    "Health Campus",
];

/// Reduces a name to lower-case ASCII letters and digits in single-space-separated words.
pub(crate) fn normalize(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<String>>()
        .join(" ")
}

/// Writes lead company names for hospitals, knowing every account name so that a name meant
/// to match no account never does.
pub(crate) struct CompanyNamer {
    normalized_accounts: HashSet<String>,
}

impl CompanyNamer {
    pub(crate) fn new<'a>(account_names: impl Iterator<Item = &'a str>) -> CompanyNamer {
        CompanyNamer {
            normalized_accounts: account_names.map(normalize).collect(),
        }
    }

    /// Draws the `Company` of a lead from the hospital `name` (the account `Name`) and its
    /// CMS `city`: the exact name, a realistic variant, or a name that matches no account.
    pub(crate) fn company(&self, rng: &mut Rng, name: &str, city: Option<&str>) -> String {
        let draw = rng.unit();
        if draw < EXACT_SHARE {
            name.to_string()
        } else if draw < EXACT_SHARE + UNMATCHED_SHARE {
            self.unmatched(rng, name, city)
        } else {
            variant(rng, name, city)
        }
    }

    /// Draws a typo-ridden or different facility name whose normalized form differs from the
    /// normalized form of every account name.
    fn unmatched(&self, rng: &mut Rng, name: &str, city: Option<&str>) -> String {
        let mut candidate = typos(rng, &title_case(name));
        for _ in 0..20 {
            if !self.normalized_accounts.contains(&normalize(&candidate)) {
                return candidate;
            }
            candidate = if rng.chance(0.6) {
                typos(rng, &title_case(name))
            } else {
                let place = city.map_or_else(|| "County".to_string(), title_case);
                format!("{place} {}", rng.pick(&OTHER_FACILITY_KINDS))
            };
        }
        // NOTE: after 20 colliding draws (not seen with the CMS file) the name may match one.
        candidate
    }
}

/// Applies a few of the changes people make when typing a hospital name. The result differs
/// from `name` unless no change applies and the name is already in title case.
fn variant(rng: &mut Rng, name: &str, city: Option<&str>) -> String {
    let mut words: Vec<String> = name.split_whitespace().map(str::to_string).collect();

    if words.len() > 1 && words[0].eq_ignore_ascii_case("THE") && rng.chance(0.8) {
        words.remove(0);
    }
    for word in &mut words {
        let upper = word.to_ascii_uppercase();
        if upper == "SAINT" && rng.chance(0.7) {
            *word = "ST.".to_string();
        } else if (upper == "ST" || upper == "ST.") && rng.chance(0.6) {
            *word = if rng.chance(0.5) { "SAINT" } else { "ST." }.to_string();
        } else if upper == "&" && rng.chance(0.5) {
            *word = "AND".to_string();
        }
    }
    let last = words.last().map(|word| word.to_ascii_uppercase());
    if words.len() > 1 && matches!(last.as_deref(), Some("INC" | "INC." | "LLC")) && rng.chance(0.7)
    {
        words.pop();
        if let Some(word) = words.last_mut() {
            *word = word.trim_end_matches(',').to_string();
        }
    }
    let mut text = words.join(" ");
    if text.to_ascii_uppercase().contains("MEDICAL CENTER") && rng.chance(0.5) {
        text = replace_ignoring_case(&text, "MEDICAL CENTER", "MEDICAL CTR");
    }
    if rng.chance(0.4) {
        text = text.replace(['.', ',', '\''], "");
        text = text.replace(" - ", " ").replace('-', " ");
    }
    if let Some(city) = city {
        if rng.chance(0.25) && !text.to_ascii_uppercase().contains(city) {
            let city = title_case(city);
            text = match rng.below(3) {
                0 => format!("{text} - {city}"),
                1 => format!("{text}, {city}"),
                _ => format!("{text} ({city})"),
            };
        }
    }

    text = text.split_whitespace().collect::<Vec<&str>>().join(" ");

    match rng.weighted(&[0.7, 0.2, 0.1]) {
        0 => title_case(&text),
        1 if text != name => text,
        1 => title_case(&text),
        _ => text.to_lowercase(),
    }
}

/// Replaces each ASCII-case-insensitive occurrence of `pattern` (upper case) by `replacement`
/// written in the case of the matched text's first letter.
fn replace_ignoring_case(text: &str, pattern: &str, replacement: &str) -> String {
    let upper = text.to_ascii_uppercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(found) = upper[rest..].find(pattern) {
        let start = rest + found;
        out.push_str(&text[rest..start]);
        let lower = text[start..].starts_with(|c: char| c.is_ascii_lowercase());
        if lower {
            out.push_str(&replacement.to_ascii_lowercase());
        } else {
            out.push_str(replacement);
        }
        rest = start + pattern.len();
    }
    out.push_str(&text[rest..]);
    out
}

/// Makes two or three typing mistakes (a dropped, doubled or swapped letter) in `text`.
fn typos(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..2 + rng.below(2) {
        let letters: Vec<usize> = (0..chars.len())
            .filter(|&position| chars[position].is_ascii_alphabetic())
            .collect();
        if letters.len() < 2 {
            break;
        }
        let position = *rng.pick(&letters);
        match rng.below(3) {
            0 => {
                chars.remove(position);
            }
            1 => chars.insert(position, chars[position]),
            _ if position + 1 < chars.len() => chars.swap(position, position + 1),
            _ => {
                chars.remove(position);
            }
        }
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_words_only() {
        assert_eq!(normalize("St. Vincent's  East"), "st vincent s east");
        assert_eq!(
            normalize("JACKSON HOSPITAL & CLINIC INC"),
            "jackson hospital clinic inc"
        );
    }

    #[test]
    fn medical_center_abbreviates_in_either_case() {
        assert_eq!(
            replace_ignoring_case("Dothan Medical Center", "MEDICAL CENTER", "MEDICAL CTR"),
            "Dothan MEDICAL CTR"
        );
        assert_eq!(
            replace_ignoring_case(
                "dothan medical center east",
                "MEDICAL CENTER",
                "MEDICAL CTR"
            ),
            "dothan medical ctr east"
        );
    }

    #[test]
    fn title_case_skips_leading_punctuation() {
        assert_eq!(
            title_case("DOCTORS HOSPITAL (AUGUSTA)"),
            "Doctors Hospital (Augusta)"
        );
        assert_eq!(title_case("ST. MARY'S"), "St. Mary's");
    }

    #[test]
    fn unmatched_names_match_no_account() {
        let accounts = ["SOUTHEAST HEALTH MEDICAL CENTER", "ST. VINCENT'S EAST"];
        let namer = CompanyNamer::new(accounts.iter().copied());
        let mut rng = Rng::stream(3, "company-test", 0);
        for _ in 0..200 {
            let name = namer.unmatched(&mut rng, accounts[0], Some("DOTHAN"));
            assert!(
                !accounts
                    .iter()
                    .any(|account| normalize(account) == normalize(&name)),
                "{name} matches an account"
            );
        }
    }

    #[test]
    fn variants_differ_from_upper_case_names() {
        let mut rng = Rng::stream(5, "company-test", 1);
        for _ in 0..200 {
            let name = variant(
                &mut rng,
                "THE EAST ALABAMA HEALTHCARE AUTHORITY",
                Some("OPELIKA"),
            );
            assert_ne!(name, "THE EAST ALABAMA HEALTHCARE AUTHORITY");
        }
    }
}
