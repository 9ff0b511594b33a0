//! `[sync]` and `[currency]`: what a pull does about mapped fields the org no longer offers,
//! and how amounts in several currencies become one.

use std::collections::BTreeMap;

use toml::de::DeValue;

use super::toml_walk::{type_name, Issues, Section};

/// Action a pull takes when a mapped field is missing from the org or hidden from the API user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingFieldAction {
    /// The run fails, naming each field and the fix.
    #[default]
    Stop,
    /// A warning names each field; its feature is left out of pulls and of training.
    Drop,
}

/// The `[sync]` table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncConfig {
    pub on_missing_field: MissingFieldAction,
}

/// Amount fields converted by default: the deal amount and the account's annual revenue.
pub const DEFAULT_AMOUNT_FIELDS: [&str; 2] = ["Amount", "AnnualRevenue"];

/// The `[currency]` table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurrencyConfig {
    /// The ISO code amounts are converted to. Without it, the org's corporate currency.
    pub base: Option<String>,
    /// The value of one unit of each currency in `base` (`EUR = 1.08` with base USD means
    /// 1 EUR = 1.08 USD). When set, these rates are used instead of the org's.
    pub rates: BTreeMap<String, f64>,
    /// Amount fields converted, beside [`DEFAULT_AMOUNT_FIELDS`].
    pub amount_fields: Vec<String>,
}

impl CurrencyConfig {
    /// Returns every amount field converted, the defaults first.
    pub fn all_amount_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = DEFAULT_AMOUNT_FIELDS.map(str::to_string).to_vec();
        for field in &self.amount_fields {
            if !fields.contains(field) {
                fields.push(field.clone());
            }
        }
        fields
    }
}

fn is_iso_code(code: &str) -> bool {
    code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase())
}

/// Reads `[sync]`.
pub(super) fn read_sync(top: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> SyncConfig {
    let mut section = top.table(issues, "sync");
    let example = r#"on_missing_field = "stop""#;
    let on_missing_field = match section.string(issues, "on_missing_field", example) {
        None => MissingFieldAction::Stop,
        Some(value) => match value.get_ref().as_str() {
            "stop" => MissingFieldAction::Stop,
            "drop" => MissingFieldAction::Drop,
            other => {
                issues.push(
                    value.span(),
                    &section.key_path("on_missing_field"),
                    format!("{other:?} is not an action; use \"stop\" to fail the run or \"drop\" to leave the feature out with a warning"),
                    Some(example),
                );
                MissingFieldAction::Stop
            }
        },
    };
    section.finish(issues);
    SyncConfig { on_missing_field }
}

/// Reads `[currency]`.
pub(super) fn read_currency(top: &mut Section<'_, '_>, issues: &mut Issues<'_>) -> CurrencyConfig {
    let mut section = top.table(issues, "currency");
    let base_example = r#"base = "USD""#;
    let base = section
        .string(issues, "base", base_example)
        .and_then(|value| {
            let code = value.get_ref().trim().to_string();
            if is_iso_code(&code) {
                Some(code)
            } else {
                issues.push(
                    value.span(),
                    &section.key_path("base"),
                    format!("{code:?} is not an ISO 4217 currency code; use three capital letters"),
                    Some(base_example),
                );
                None
            }
        });
    let rates_example = "rates = { EUR = 1.08, GBP = 1.27 }";
    let mut rates = BTreeMap::new();
    let rates_path = section.key_path("rates");
    if let Some(value) = section.raw("rates") {
        match value.get_ref() {
            DeValue::Table(table) => {
                for (code, rate) in table.iter() {
                    let code_text = code.get_ref().as_ref().to_string();
                    let path = format!("{rates_path}.{code_text}");
                    let parsed = match rate.get_ref() {
                        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
                        DeValue::Integer(i) => i.as_str().replace('_', "").parse::<f64>().ok(),
                        other => {
                            issues.push(
                                rate.span(),
                                &path,
                                format!("expected a number, found {}", type_name(other)),
                                Some(rates_example),
                            );
                            continue;
                        }
                    };
                    if !is_iso_code(&code_text) {
                        issues.push(
                            code.span(),
                            &path,
                            format!("{code_text:?} is not an ISO 4217 currency code; use three capital letters"),
                            Some(rates_example),
                        );
                        continue;
                    }
                    let is_base = base.as_deref() == Some(code_text.as_str());
                    let span = rate.span();
                    match parsed {
                        Some(rate) if is_base && rate != 1.0 => issues.push(
                            span,
                            &path,
                            format!(
                                "{code_text} is the base currency, so its rate is 1, not {rate}; \
                                 remove it from rates or change base"
                            ),
                            Some(rates_example),
                        ),
                        Some(rate) if rate.is_finite() && rate > 0.0 => {
                            rates.insert(code_text, rate);
                        }
                        _ => issues.push(
                            rate.span(),
                            &path,
                            "must be a positive number: the value of one unit in the base currency"
                                .to_string(),
                            Some(rates_example),
                        ),
                    }
                }
            }
            other => issues.push(
                value.span(),
                &rates_path,
                format!("expected a table of rates, found {}", type_name(other)),
                Some(rates_example),
            ),
        }
    }
    if !rates.is_empty() && base.is_none() {
        section.missing(issues, "base", base_example);
    }
    let amount_fields = section
        .string_array(
            issues,
            "amount_fields",
            r#"amount_fields = ["Contract_Value__c"]"#,
        )
        .unwrap_or_default()
        .into_iter()
        .map(|field| field.into_inner())
        .collect();
    section.finish(issues);
    CurrencyConfig {
        base,
        rates,
        amount_fields,
    }
}
