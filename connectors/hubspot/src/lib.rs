//! HubSpot CRM v3 connector for leadscore.
