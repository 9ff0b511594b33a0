//! Per-rep territory priority lists, written as CSV and HTML.
