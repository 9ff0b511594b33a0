//! End-to-end tests of the Salesforce sandbox over real HTTP on loopback.

mod auth;
mod bulk;
mod clock;
mod collections;
mod describe;
mod query;
mod support;
mod tooling;
mod touch;
mod writes;
