//! Rep feedback: flags reps set on wrongly scored records, stored with the score they were about.
