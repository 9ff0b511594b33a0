//! leadscore: predictive lead and account scores for medical-device sales teams.
