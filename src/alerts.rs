//! Threshold alerts: a CRM task for the owning rep (and an optional signed webhook) when a
//! record's score crosses a configured threshold or its tier rises.
