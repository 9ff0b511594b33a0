//! Local fake CRMs for tests, the demo and anyone without a real org.
//!
//! The Salesforce sandbox answers a subset of the REST API (OAuth token endpoint, query and
//! queryAll over a SOQL subset, describe, limits, sObject Collections update, single-record
//! create) over real HTTP on a loopback address. It serves whatever records it is given; the
//! demo org comes from the `leadscore-demo-org` crate.

pub mod schema;

