//! Conversion of amounts in several currencies to one currency, before they become features.
//!
//! A record's currency is its `CurrencyIsoCode` (Salesforce multi-currency orgs; HubSpot's
//! `deal_currency_code` is mapped onto it). A record without one is in the base currency.
//! Rates come from `[currency] rates` when set, else from the org's `CurrencyType` records.

use std::collections::BTreeMap;

use leadscore_connector::{Record, Value};

use crate::config::Config;
use crate::pipeline::PipelineError;
use crate::store::Store;
use crate::sync::{CURRENCY_FIELD, CURRENCY_TYPE};

/// Conversion rates to one base currency.
#[derive(Clone, Debug, PartialEq)]
pub struct Rates {
    /// The ISO code amounts are converted to.
    pub base: String,
    /// The value of one unit of each currency in `base`; `base` itself is 1.
    pub to_base: BTreeMap<String, f64>,
    /// Origin of the rates, for error messages: `[currency] rates` or the org.
    pub source: &'static str,
}

impl Rates {
    /// Returns the rates to use: the configured ones, else the org's pulled `CurrencyType`
    /// records rebased to `[currency] base` when set. `None` when neither exists.
    pub fn load(store: &Store, config: &Config) -> Result<Option<Rates>, PipelineError> {
        let currency = &config.currency;
        if !currency.rates.is_empty() {
            let base = currency.base.clone().unwrap_or_default();
            let mut to_base = currency.rates.clone();
            to_base.insert(base.clone(), 1.0);
            return Ok(Some(Rates {
                base,
                to_base,
                source: "[currency] rates",
            }));
        }
        // Salesforce's ConversionRate is the units of a currency that one unit of the
        // corporate currency buys, so one unit is worth 1 / ConversionRate corporate units.
        let mut corporate = None;
        let mut per_corporate = BTreeMap::new();
        for record in store.records(CURRENCY_TYPE)? {
            let (Some(code), Some(rate)) = (
                record.get("IsoCode").as_str().map(str::to_string),
                record.get("ConversionRate").as_f64(),
            ) else {
                continue;
            };
            if !(rate.is_finite() && rate > 0.0) {
                return Err(PipelineError::Config(format!(
                    "the org's CurrencyType {code} has conversion rate {rate}, which cannot convert amounts; fix the rate in Setup or set [currency] base and rates"
                )));
            }
            if record.get("IsCorporate").as_bool() == Some(true) {
                corporate = Some(code.clone());
            }
            per_corporate.insert(code, 1.0 / rate);
        }
        let Some(corporate) = corporate else {
            return Ok(None);
        };
        let base = currency.base.clone().unwrap_or(corporate);
        let Some(&base_value) = per_corporate.get(&base) else {
            return Err(PipelineError::Config(format!(
                "[currency] base = {base:?} is not one of the org's currencies ({}); set base to one of them or give rates in [currency] rates",
                per_corporate.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        let to_base = per_corporate
            .into_iter()
            .map(|(code, value)| (code, value / base_value))
            .collect();
        Ok(Some(Rates {
            base,
            to_base,
            source: "the org's CurrencyType rates",
        }))
    }
}

/// Converts the amounts of every record in `lists` to the base currency; see [`Converter`].
pub fn convert_amounts(
    store: &Store,
    config: &Config,
    lists: &mut [&mut Vec<Record>],
) -> Result<(), PipelineError> {
    let mut converter = Converter::new(store, config)?;
    for records in lists.iter_mut() {
        for record in records.iter_mut() {
            converter.convert(record);
        }
    }
    converter.finish()
}

/// Converts amounts record by record, so records can be converted as they stream from the
/// store, and reports the currencies it could not convert once every record has been seen.
pub struct Converter {
    rates: Option<Rates>,
    amount_fields: Vec<String>,
    /// Currencies seen while there are no rates: more than one is an error.
    seen: std::collections::BTreeSet<String>,
    /// Records per currency that has no rate.
    missing: BTreeMap<String, usize>,
}

impl Converter {
    /// Loads the rates; see [`Rates::load`].
    pub fn new(store: &Store, config: &Config) -> Result<Converter, PipelineError> {
        Ok(Converter {
            rates: Rates::load(store, config)?,
            amount_fields: config.currency.all_amount_fields(),
            seen: std::collections::BTreeSet::new(),
            missing: BTreeMap::new(),
        })
    }

    /// Converts one record's amount fields from its `CurrencyIsoCode` to the base currency
    /// and sets its code to the base. A record without a code is left as it is.
    pub fn convert(&mut self, record: &mut Record) {
        let Some(code) = record.get(CURRENCY_FIELD).as_str() else {
            return;
        };
        let Some(rates) = &self.rates else {
            if !self.seen.contains(code) {
                self.seen.insert(code.to_string());
            }
            return;
        };
        if code == rates.base {
            return;
        }
        let Some(&rate) = rates.to_base.get(code) else {
            *self.missing.entry(code.to_string()).or_default() += 1;
            return;
        };
        for field in &self.amount_fields {
            if let Some(Value::Number(amount)) = record.fields.get_mut(field) {
                *amount *= rate;
            }
        }
        record
            .fields
            .insert(CURRENCY_FIELD.to_string(), Value::Text(rates.base.clone()));
    }

    /// Fails when some records had a currency without a rate, or when records are in
    /// several currencies and there are no rates at all.
    pub fn finish(self) -> Result<(), PipelineError> {
        let Converter {
            rates,
            seen,
            missing,
            ..
        } = self;
        if let Some(rates) = &rates {
            if !missing.is_empty() {
                let list: Vec<String> = missing
                    .iter()
                    .map(|(code, count)| format!("{code} ({count} records)"))
                    .collect();
                return Err(PipelineError::Config(format!(
                    "amounts in {} have no conversion rate to {} in {}; add them to [currency] rates, for example rates = {{ {} = 1.0 }} giving the value of one unit in {}",
                    list.join(", "),
                    rates.base,
                    rates.source,
                    missing.keys().next().map(String::as_str).unwrap_or("EUR"),
                    rates.base
                )));
            }
        } else if seen.len() > 1 {
            return Err(PipelineError::Config(format!(
                "amounts are in several currencies ({}) but there are no conversion rates; set [currency] base = \"USD\" and rates = {{ EUR = 1.08, ... }} (the value of one unit in the base currency)",
                seen.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn deal(id: &str, amount: f64, code: Option<&str>) -> Record {
        let mut fields = BTreeMap::from([("Amount".to_string(), Value::Number(amount))]);
        fields.insert(
            CURRENCY_FIELD.to_string(),
            code.map_or(Value::Null, |c| Value::Text(c.to_string())),
        );
        Record {
            object: "Opportunity".into(),
            id: id.into(),
            modstamp: Utc::now(),
            deleted: false,
            fields,
        }
    }

    fn config(text_extra: &str) -> Config {
        let text = crate::demo::sandbox_config("http://127.0.0.1:1", "store") + text_extra;
        crate::demo::parse_test_config(&text)
    }

    #[test]
    fn config_rates_convert_amounts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let config = config("\n[currency]\nbase = \"USD\"\nrates = { EUR = 1.5 }\n");
        let mut deals = vec![
            deal("a", 100.0, Some("EUR")),
            deal("b", 100.0, Some("USD")),
            deal("c", 100.0, None),
        ];
        convert_amounts(&store, &config, &mut [&mut deals]).expect("converted");
        assert_eq!(deals[0].get("Amount"), &Value::Number(150.0));
        assert_eq!(deals[0].get(CURRENCY_FIELD), &Value::Text("USD".into()));
        assert_eq!(deals[1].get("Amount"), &Value::Number(100.0));
        assert_eq!(deals[2].get("Amount"), &Value::Number(100.0));
    }

    #[test]
    fn unknown_currency_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let config = config("\n[currency]\nbase = \"USD\"\nrates = { EUR = 1.5 }\n");
        let mut deals = vec![deal("a", 100.0, Some("JPY"))];
        let error = convert_amounts(&store, &config, &mut [&mut deals])
            .expect_err("JPY has no rate")
            .to_string();
        assert!(error.contains("JPY (1 records)"), "{error}");
        assert!(error.contains("[currency] rates"), "{error}");
    }

    #[test]
    fn two_currencies_without_rates_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let config = config("");
        let mut deals = vec![deal("a", 1.0, Some("EUR")), deal("b", 1.0, Some("USD"))];
        let error = convert_amounts(&store, &config, &mut [&mut deals])
            .expect_err("no rates")
            .to_string();
        assert!(error.contains("EUR, USD"), "{error}");
    }
}
