//! Deterministic demo CRM history around real CMS hospitals.
