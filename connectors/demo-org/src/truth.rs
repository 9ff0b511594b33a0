//! The ground-truth formulas that decide whether a closed demo deal is won and whether a demo
//! lead converts.
//!
//! # Deals
//!
//! P(won) = sigmoid(logit), and the outcome is one Bernoulli draw with that probability. The
//! logit is a weighted sum of these terms and nothing else:
//!
//! | term | value |
//! | --- | --- |
//! | intercept | [`INTERCEPT`] |
//! | procedure volume | [`WEIGHT_VOLUME`] × (ln(1 + hip/knee + CABG + AMI discharges) − [`VOLUME_CENTER`]), each missing count taken as [`MISSING_DISCHARGES`] |
//! | hospital type | [`hospital_type_effect`] of `Hospital_Type__c` |
//! | star rating | [`WEIGHT_RATING`] × (rating − 3), or [`MISSING_RATING_EFFECT`] without a rating |
//! | buying roles engaged | [`WEIGHT_ROLE`] × distinct `Buying_Role__c` values among the account's contacts with a Task or Event in the 365 days before the deal's creation date |
//! | recency | [`WEIGHT_RECENCY`] × ln(1 + days / 30), days since the account's last Task or Event before the creation date, capped at [`RECENCY_CAP_DAYS`] (also used when there is none) |
//! | incumbent competitor | [`WEIGHT_COMPETITOR`] when `Incumbent_Competitor__c` is set |
//!
//! The activity terms count a Task on its `ActivityDate` and an Event on the date of its
//! `StartDateTime`, and only dates strictly before the date of the opportunity's `CreatedDate`.
//! Every such activity record was also created before the opportunity.
//!
//! # Leads
//!
//! P(convert) = sigmoid(logit) for a lead of a hospital, with one Bernoulli draw per lead. The
//! logit is a weighted sum of these terms and nothing else:
//!
//! | term | value |
//! | --- | --- |
//! | intercept | [`LEAD_INTERCEPT`] |
//! | lead source | [`lead_source_effect`] of `LeadSource` |
//! | buying role | [`lead_role_effect`] of `Buying_Role__c` |
//! | engagement | sum over activity types of [`lead_activity_weight`] × min(count, [`LEAD_ACTIVITY_CAP`]), counting the lead's Tasks and Events in the window |
//! | procedure volume | [`LEAD_WEIGHT_VOLUME`] × (ln(1 + hip/knee + CABG + AMI discharges) − [`VOLUME_CENTER`]), each missing count taken as [`MISSING_DISCHARGES`] |
//! | hospital type | [`LEAD_WEIGHT_TYPE`] × [`hospital_type_effect`] of `Hospital_Type__c` |
//! | star rating | [`LEAD_WEIGHT_RATING`] × (rating − 3), or [`LEAD_MISSING_RATING_EFFECT`] without a rating |
//!
//! The window contains the activities whose `WhoId` is the lead and whose date (a Task's
//! `ActivityDate`, an Event's `StartDateTime` date) is strictly before the date of the lead's
//! `CreatedDate` plus [`LEAD_ENGAGEMENT_WINDOW_DAYS`] days: the creation day and the 13 days after
//! it. The hospital terms use the CMS values of the lead's hospital. A lead of a surgery center
//! or clinic has no hospital and never converts.

use std::collections::BTreeMap;

/// Logit offset that puts the won share of closed deals near 40%.
pub const INTERCEPT: f64 = -1.4;
/// Weight of the centred log procedure volume.
pub const WEIGHT_VOLUME: f64 = 0.65;
/// Log volume at which the volume term is zero (about 150 discharges).
pub const VOLUME_CENTER: f64 = 5.0;
/// Count used for a missing discharge count: CMS suppresses small counts, so missing means low,
/// but a hospital may still perform the procedure.
pub const MISSING_DISCHARGES: f64 = 10.0;
/// Weight per star above or below 3.
pub const WEIGHT_RATING: f64 = 0.35;
/// Logit term for a hospital without a star rating.
pub const MISSING_RATING_EFFECT: f64 = -0.2;
/// Weight per distinct buying role engaged in the 365 days before creation.
pub const WEIGHT_ROLE: f64 = 0.85;
/// Weight of ln(1 + days since last activity / 30).
pub const WEIGHT_RECENCY: f64 = -0.9;
/// Cap on the days since the last activity.
pub const RECENCY_CAP_DAYS: i64 = 365;
/// Logit term when another vendor already supplies the hospital.
pub const WEIGHT_COMPETITOR: f64 = -1.3;
/// Length of the engagement window before the deal's creation date, in days.
pub const ENGAGEMENT_WINDOW_DAYS: i64 = 365;

/// Logit offset that puts the converted share of closed leads near 24%.
pub const LEAD_INTERCEPT: f64 = -2.5;
/// Days after the lead's creation date whose activities enter the formula: an activity counts
/// when its date is strictly before the creation date plus this many days.
pub const LEAD_ENGAGEMENT_WINDOW_DAYS: i64 = 14;
/// Maximum number of activities of one type that count.
pub const LEAD_ACTIVITY_CAP: usize = 3;
/// Weight of the centred log procedure volume for leads.
pub const LEAD_WEIGHT_VOLUME: f64 = 0.4;
/// Factor on [`hospital_type_effect`] for leads.
pub const LEAD_WEIGHT_TYPE: f64 = 0.8;
/// Weight per star above or below 3 for leads.
pub const LEAD_WEIGHT_RATING: f64 = 0.2;
/// Logit term for a lead whose hospital has no star rating.
pub const LEAD_MISSING_RATING_EFFECT: f64 = -0.1;

/// Returns the logit term of a `LeadSource` value, 0 for a value outside the demo's five.
pub fn lead_source_effect(source: &str) -> f64 {
    match source {
        "Web Form" => 0.9,
        "Webinar" => 0.3,
        "Content Download" => 0.0,
        "Conference List" => -0.4,
        "Purchased List" => -1.1,
        _ => 0.0,
    }
}

/// Returns the logit term of a lead's `Buying_Role__c`, 0 for an unknown or missing role.
pub fn lead_role_effect(role: &str) -> f64 {
    match role {
        "Surgeon Champion" => 0.5,
        "Administrator" => 0.4,
        "Materials Manager" => 0.0,
        "Finance" => -0.4,
        "Patient Safety" => -0.2,
        _ => 0.0,
    }
}

/// Returns the logit weight of one activity of a Task or Event `Type` in the window, 0 for a
/// type the formula does not use.
pub fn lead_activity_weight(activity_type: &str) -> f64 {
    match activity_type {
        "Demo" => 1.2,
        "Meeting" => 0.9,
        "Email" => 0.6,
        "Webinar" => 0.5,
        "Call" => 0.4,
        "Content Download" => 0.3,
        _ => 0.0,
    }
}

/// Inputs of the conversion formula for one hospital lead, all readable from the records.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadFeatures {
    /// `LeadSource` of the lead.
    pub lead_source: String,
    /// `Buying_Role__c` of the lead.
    pub buying_role: String,
    /// Number of the lead's activities in the window, by Task or Event `Type`.
    pub window_activities: BTreeMap<String, usize>,
    /// `Hip_Knee_Discharges__c` of the lead's hospital.
    pub hip_knee_discharges: Option<f64>,
    /// `CABG_Discharges__c` of the lead's hospital.
    pub cabg_discharges: Option<f64>,
    /// `AMI_Discharges__c` of the lead's hospital.
    pub ami_discharges: Option<f64>,
    /// `Hospital_Type__c` of the lead's hospital.
    pub hospital_type: String,
    /// `CMS_Overall_Rating__c` of the lead's hospital.
    pub star_rating: Option<f64>,
}

/// Computes the logit of P(convert) of a hospital lead.
pub fn conversion_logit(features: &LeadFeatures) -> f64 {
    let volume = procedure_volume(
        features.hip_knee_discharges,
        features.cabg_discharges,
        features.ami_discharges,
    );
    let rating_term = match features.star_rating {
        Some(stars) => LEAD_WEIGHT_RATING * (stars - 3.0),
        None => LEAD_MISSING_RATING_EFFECT,
    };
    let engagement: f64 = features
        .window_activities
        .iter()
        .map(|(activity_type, count)| {
            lead_activity_weight(activity_type) * (*count).min(LEAD_ACTIVITY_CAP) as f64
        })
        .sum();
    LEAD_INTERCEPT
        + lead_source_effect(&features.lead_source)
        + lead_role_effect(&features.buying_role)
        + engagement
        + LEAD_WEIGHT_VOLUME * (volume.ln_1p() - VOLUME_CENTER)
        + LEAD_WEIGHT_TYPE * hospital_type_effect(&features.hospital_type)
        + rating_term
}

/// Computes P(convert) = sigmoid(logit) of a hospital lead.
pub fn conversion_probability(features: &LeadFeatures) -> f64 {
    1.0 / (1.0 + (-conversion_logit(features)).exp())
}

/// Sums hip/knee, CABG and AMI discharges, each missing count taken as [`MISSING_DISCHARGES`].
fn procedure_volume(hip_knee: Option<f64>, cabg: Option<f64>, ami: Option<f64>) -> f64 {
    [hip_knee, cabg, ami]
        .iter()
        .map(|count| count.unwrap_or(MISSING_DISCHARGES))
        .sum()
}

/// Inputs of the formula for one deal, all readable from the generated records.
#[derive(Clone, Debug, PartialEq)]
pub struct DealFeatures {
    /// `Hip_Knee_Discharges__c` of the deal's account.
    pub hip_knee_discharges: Option<f64>,
    /// `CABG_Discharges__c` of the deal's account.
    pub cabg_discharges: Option<f64>,
    /// `AMI_Discharges__c` of the deal's account.
    pub ami_discharges: Option<f64>,
    /// `Hospital_Type__c` of the deal's account.
    pub hospital_type: String,
    /// `CMS_Overall_Rating__c` of the deal's account.
    pub star_rating: Option<f64>,
    /// Distinct buying roles engaged in the window before creation, 0 to 5.
    pub engaged_roles: usize,
    /// Days from the last activity date to the creation date, or `None` without any activity.
    pub days_since_last_activity: Option<i64>,
    /// Whether `Incumbent_Competitor__c` is set.
    pub has_incumbent_competitor: bool,
}

/// Returns the logit term of a CMS hospital type.
pub fn hospital_type_effect(hospital_type: &str) -> f64 {
    match hospital_type {
        "Acute Care Hospitals" => 0.6,
        "Critical Access Hospitals" => -0.5,
        "Childrens" => -0.2,
        "Acute Care - Veterans Administration" | "Acute Care - Department of Defense" => -0.7,
        "Psychiatric" => -1.8,
        "Rural Emergency Hospital" | "Long-term" => -1.2,
        _ => 0.0,
    }
}

/// Computes the logit of P(won).
pub fn win_logit(features: &DealFeatures) -> f64 {
    let volume = procedure_volume(
        features.hip_knee_discharges,
        features.cabg_discharges,
        features.ami_discharges,
    );
    // CMS reports 0 where no case met the measure's criteria, so the sum can be 0.
    let volume_term = WEIGHT_VOLUME * (volume.ln_1p() - VOLUME_CENTER);

    let rating_term = match features.star_rating {
        Some(stars) => WEIGHT_RATING * (stars - 3.0),
        None => MISSING_RATING_EFFECT,
    };

    let days = features
        .days_since_last_activity
        .unwrap_or(RECENCY_CAP_DAYS)
        .clamp(0, RECENCY_CAP_DAYS) as f64;
    let recency_term = WEIGHT_RECENCY * (1.0 + days / 30.0).ln();

    let competitor_term = if features.has_incumbent_competitor {
        WEIGHT_COMPETITOR
    } else {
        0.0
    };

    INTERCEPT
        + volume_term
        + hospital_type_effect(&features.hospital_type)
        + rating_term
        + WEIGHT_ROLE * features.engaged_roles as f64
        + recency_term
        + competitor_term
}

/// Computes P(won) = sigmoid(logit), strictly between 0 and 1 for every finite logit.
pub fn win_probability(features: &DealFeatures) -> f64 {
    1.0 / (1.0 + (-win_logit(features)).exp())
}

/// Computes the ROC AUC of `scores` against `labels` (true = positive) with ties counted half.
/// Returns `None` when the lengths differ or either class is empty.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = labels.iter().filter(|&&label| label).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Sum the ranks of the positives, giving tied scores their average rank.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < pairs.len() {
        let mut end = start;
        while end + 1 < pairs.len() && pairs[end + 1].0 == pairs[start].0 {
            end += 1;
        }
        let average_rank = (start + end) as f64 / 2.0 + 1.0;
        let tied_positives = pairs[start..=end].iter().filter(|pair| pair.1).count() as f64;
        rank_sum += average_rank * tied_positives;
        start = end + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_features() -> DealFeatures {
        DealFeatures {
            hip_knee_discharges: None,
            cabg_discharges: None,
            ami_discharges: Some(150.0),
            hospital_type: "Acute Care Hospitals".to_string(),
            star_rating: Some(3.0),
            engaged_roles: 2,
            days_since_last_activity: Some(20),
            has_incumbent_competitor: false,
        }
    }

    #[test]
    fn probability_moves_with_each_term() {
        let base = win_probability(&base_features());
        assert!(base > 0.0);
        assert!(base < 1.0);

        let more_roles = DealFeatures {
            engaged_roles: 4,
            ..base_features()
        };
        assert!(win_probability(&more_roles) > base);

        let stale = DealFeatures {
            days_since_last_activity: Some(300),
            ..base_features()
        };
        assert!(win_probability(&stale) < base);
        let no_activity = DealFeatures {
            days_since_last_activity: None,
            ..base_features()
        };
        assert!(win_probability(&no_activity) < win_probability(&stale));

        let competitor = DealFeatures {
            has_incumbent_competitor: true,
            ..base_features()
        };
        assert!(win_probability(&competitor) < base);

        let psychiatric = DealFeatures {
            hospital_type: "Psychiatric".to_string(),
            ..base_features()
        };
        assert!(win_probability(&psychiatric) < base);
        let big = DealFeatures {
            hip_knee_discharges: Some(900.0),
            ..base_features()
        };
        assert!(win_probability(&big) > base);
    }

    #[test]
    fn missing_volume_is_low_but_not_zero() {
        let missing = DealFeatures {
            ami_discharges: None,
            ..base_features()
        };
        let zero = DealFeatures {
            ami_discharges: Some(0.0),
            ..base_features()
        };
        let logit_missing = win_logit(&missing);
        let logit_zero = win_logit(&zero);
        assert!(logit_missing.is_finite());
        assert!(logit_missing > logit_zero);
        let all_zero = DealFeatures {
            hip_knee_discharges: Some(0.0),
            cabg_discharges: Some(0.0),
            ..zero
        };
        assert!(win_logit(&all_zero).is_finite());
        assert!(win_probability(&all_zero) > 0.0);
        assert!(logit_missing < win_logit(&base_features()));
    }

    fn base_lead() -> LeadFeatures {
        LeadFeatures {
            lead_source: "Webinar".to_string(),
            buying_role: "Materials Manager".to_string(),
            window_activities: BTreeMap::from([("Webinar".to_string(), 1)]),
            hip_knee_discharges: Some(100.0),
            cabg_discharges: None,
            ami_discharges: Some(50.0),
            hospital_type: "Acute Care Hospitals".to_string(),
            star_rating: Some(3.0),
        }
    }

    #[test]
    fn conversion_moves_with_each_term() {
        let base = conversion_probability(&base_lead());
        assert!(base > 0.0);
        assert!(base < 1.0);

        let purchased = LeadFeatures {
            lead_source: "Purchased List".to_string(),
            ..base_lead()
        };
        assert!(conversion_probability(&purchased) < base);
        let surgeon = LeadFeatures {
            buying_role: "Surgeon Champion".to_string(),
            ..base_lead()
        };
        assert!(conversion_probability(&surgeon) > base);
        let demo = LeadFeatures {
            window_activities: BTreeMap::from([
                ("Webinar".to_string(), 1),
                ("Demo".to_string(), 1),
            ]),
            ..base_lead()
        };
        assert!(conversion_probability(&demo) > base);
        let critical_access = LeadFeatures {
            hospital_type: "Critical Access Hospitals".to_string(),
            ..base_lead()
        };
        assert!(conversion_probability(&critical_access) < base);
    }

    #[test]
    fn conversion_caps_each_activity_type() {
        let with = |count: usize| LeadFeatures {
            window_activities: BTreeMap::from([("Email".to_string(), count)]),
            ..base_lead()
        };
        let three = conversion_logit(&with(LEAD_ACTIVITY_CAP));
        assert_eq!(conversion_logit(&with(LEAD_ACTIVITY_CAP + 5)), three);
        let two = conversion_logit(&with(LEAD_ACTIVITY_CAP - 1));
        assert!((three - two - lead_activity_weight("Email")).abs() < 1e-12);
        // Types outside the formula add nothing.
        let other = LeadFeatures {
            window_activities: BTreeMap::from([("Fax".to_string(), 2)]),
            ..base_lead()
        };
        let none = LeadFeatures {
            window_activities: BTreeMap::new(),
            ..base_lead()
        };
        assert_eq!(conversion_logit(&other), conversion_logit(&none));
    }

    #[test]
    fn roc_auc_handles_ties_and_order() {
        assert_eq!(roc_auc(&[0.1, 0.9], &[false, true]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.1], &[false, true]), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.5], &[true]), None);
        let auc =
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).expect("two classes");
        assert!((auc - 0.75).abs() < 1e-12);
    }
}
