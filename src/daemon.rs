//! `leadscore run`: the long-lived daemon that runs the configured jobs on their schedules.
