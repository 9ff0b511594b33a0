//! `leadscore report outcomes`: predicted against actual for deals closed since they were scored.
