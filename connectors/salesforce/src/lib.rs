//! Salesforce REST connector for leadscore.
