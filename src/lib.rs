//! leadscore: predictive lead and account scores for medical-device sales teams.
//!
//! The pipeline pulls CRM history through a [`leadscore_connector::Connector`] into the
//! [`store`], turns it into [`features`], trains a [`model`], scores open accounts
//! ([`scoring`]) and writes changed scores back ([`writeback`]). [`pipeline`] runs those steps;
//! [`cli`] and [`demo`] are the entry points.

pub mod alerts;
pub mod cli;
pub mod config;
pub mod currency;
pub mod daemon;
pub mod demo;
pub mod enrichment;
pub mod evaluate;
pub mod features;
pub mod feedback;
pub mod field_report;
pub mod hints;
pub mod hubspot;
pub mod level;
pub mod levels;
mod memory;
pub mod model;
pub mod offline_check;
pub mod outcomes;
pub mod pipeline;
pub mod private_files;
pub mod progress;
pub mod projection;
pub mod registry;
pub mod report;
pub mod run;
mod score_reuse;
mod score_validity;
pub mod scoring;
pub mod setup;
pub mod spreadsheet;
pub mod status;
pub mod store;
pub mod sync;
pub mod territory;
pub mod token_file;
pub mod training;
pub mod webhook;
pub mod writeback;
