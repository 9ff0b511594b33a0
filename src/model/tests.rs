//! Tests that train real forust-ml models on small synthetic data with a known signal.

use super::metrics::roc_auc;
use super::*;

/// Small deterministic generator (SplitMix64), so the tests need no extra dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly standard normal (sum of 12 uniforms minus 6).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}

fn names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("x{i}")).collect()
}

/// Rows with four features: `x0` and `x1` drive the label, `x2` is noise, and `x3` is
/// missing (NaN) in about a third of the rows, more often for won rows.
fn synthetic(rows: usize, seed: u64) -> Dataset {
    let mut rng = SplitMix(seed);
    let mut data = Dataset {
        feature_names: names(4),
        ..Dataset::default()
    };
    for _ in 0..rows {
        let x0 = rng.normal();
        let x1 = rng.normal();
        let x2 = rng.normal();
        let logit = 2.0 * x0 + x1;
        let won = rng.uniform() < sigmoid(logit);
        let missing_rate = if won { 0.5 } else { 0.15 };
        let x3 = if rng.uniform() < missing_rate {
            f64::NAN
        } else {
            rng.normal()
        };
        data.rows.push(vec![x0, x1, x2, x3]);
        data.labels.push(if won { 1.0 } else { 0.0 });
    }
    data
}

fn small_params() -> TrainParams {
    TrainParams {
        trees: 30,
        max_depth: 3,
        ..TrainParams::default()
    }
}

fn fit(data: &Dataset) -> GradientBoostedModel {
    GradientBoostedModel::fit(data, &small_params()).expect("training on valid data")
}

#[test]
fn holdout_auc_beats_chance() {
    let train = synthetic(800, 1);
    let holdout = synthetic(400, 2);
    let model = fit(&train);

    let probabilities = model.predict(&holdout.rows).unwrap();
    let auc = roc_auc(&holdout.labels, &probabilities).unwrap();
    // A model that learned nothing scores about 0.5, so 0.8 requires most of the x0 and
    // x1 signal.
    assert!(auc > 0.8, "holdout AUC {auc}");
    assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
}

#[test]
fn missing_values_carry_signal() {
    // The only signal is whether x0 is missing: won rows are missing it 80% of the time,
    // lost rows 10% of the time.
    let mut rng = SplitMix(7);
    let mut data = Dataset {
        feature_names: names(2),
        ..Dataset::default()
    };
    for _ in 0..600 {
        let won = rng.uniform() < 0.5;
        let missing = rng.uniform() < if won { 0.8 } else { 0.1 };
        let x0 = if missing { f64::NAN } else { rng.normal() };
        data.rows.push(vec![x0, rng.normal()]);
        data.labels.push(if won { 1.0 } else { 0.0 });
    }
    let model = fit(&data);

    let scores = model
        .predict(&[vec![f64::NAN, 0.0], vec![0.0, 0.0]])
        .unwrap();
    assert!(
        scores[0] > 0.7 && scores[1] < 0.3,
        "missing row {}, present row {}",
        scores[0],
        scores[1]
    );
}

#[test]
fn all_missing_column_trains() {
    let mut data = synthetic(300, 3);
    for row in &mut data.rows {
        row[2] = f64::NAN;
    }
    let model = fit(&data);
    let scores = model.predict(&data.rows).unwrap();
    assert!(scores.iter().all(|p| p.is_finite()));
}

#[test]
fn save_load_gives_identical_predictions() {
    let data = synthetic(400, 4);
    let model = fit(&data);
    let bytes = model.to_bytes().unwrap();
    let loaded = GradientBoostedModel::from_bytes(&bytes).unwrap();

    assert_eq!(loaded.feature_names(), model.feature_names());
    assert_eq!(loaded.params(), model.params());
    let probe = synthetic(100, 5).rows;
    let before = model.predict(&probe).unwrap();
    let after = loaded.predict(&probe).unwrap();
    // Bit-for-bit equality, not closeness: the JSON round trip must be exact.
    let before_bits: Vec<u64> = before.iter().map(|p| p.to_bits()).collect();
    let after_bits: Vec<u64> = after.iter().map(|p| p.to_bits()).collect();
    assert_eq!(before_bits, after_bits);
    assert_eq!(
        model.contributions(&probe).unwrap(),
        loaded.contributions(&probe).unwrap()
    );
}

#[test]
fn contributions_match_the_library_bit_for_bit() {
    // Deep trees split on one feature several times on a path and have missing branches,
    // which exercises the path unwinding and the three-way children.
    let data = synthetic(1500, 21);
    let params = TrainParams {
        trees: 60,
        max_depth: 7,
        ..TrainParams::default()
    };
    let model = GradientBoostedModel::fit(&data, &params).expect("trains");
    let mut probe = synthetic(300, 22).rows;
    probe.push(vec![f64::NAN; 4]);
    probe.push(vec![0.0; 4]);
    let ours: Vec<f64> = model
        .contributions(&probe)
        .unwrap()
        .into_iter()
        .flat_map(|c| c.values.into_iter().chain(std::iter::once(c.bias)))
        .collect();
    let library = model.library_contributions(&probe);
    assert_eq!(ours.len(), library.len());
    let differing: Vec<(usize, f64, f64)> = ours
        .iter()
        .zip(&library)
        .enumerate()
        .filter(|(_, (a, b))| a.to_bits() != b.to_bits())
        .map(|(i, (a, b))| (i, *a, *b))
        .take(5)
        .collect();
    assert!(
        differing.is_empty(),
        "(index, ours, forust-ml): {differing:?}"
    );
}

#[test]
fn contributions_sum_to_log_odds() {
    let data = synthetic(500, 6);
    let model = fit(&data);
    let probe = synthetic(50, 7).rows;
    let log_odds = model.predict_log_odds(&probe).unwrap();
    let probabilities = model.predict(&probe).unwrap();
    let explanations = model.contributions(&probe).unwrap();

    assert_eq!(explanations.len(), probe.len());
    for (row, explanation) in explanations.iter().enumerate() {
        assert_eq!(explanation.values.len(), 4);
        let total = explanation.bias + explanation.values.iter().sum::<f64>();
        assert!(
            (total - log_odds[row]).abs() < 1e-6,
            "row {row}: contributions sum to {total}, log-odds is {}",
            log_odds[row]
        );
        assert!((sigmoid(total) - probabilities[row]).abs() < 1e-6);
    }

    // x0 carries twice the weight of x1 and x2 is noise, so mean absolute contributions
    // must rank x0 > x1 > x2.
    let mean_abs = |feature: usize| {
        explanations
            .iter()
            .map(|e| e.values[feature].abs())
            .sum::<f64>()
            / explanations.len() as f64
    };
    assert!(
        mean_abs(0) > mean_abs(1),
        "x0 {} x1 {}",
        mean_abs(0),
        mean_abs(1)
    );
    assert!(
        mean_abs(1) > mean_abs(2),
        "x1 {} x2 {}",
        mean_abs(1),
        mean_abs(2)
    );
}

#[test]
fn same_seed_same_model() {
    let data = synthetic(300, 8);
    let first = fit(&data).to_bytes().unwrap();
    let second = fit(&data).to_bytes().unwrap();
    assert_eq!(first, second);
}

#[test]
fn zero_rows_predict_empty() {
    let model = fit(&synthetic(200, 9));
    assert!(model.predict(&[]).unwrap().is_empty());
    assert!(model.contributions(&[]).unwrap().is_empty());
}

#[test]
fn fit_rejects_zero_rows() {
    let data = Dataset {
        feature_names: names(2),
        ..Dataset::default()
    };
    let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
    assert!(matches!(error, ModelError::NoRows), "{error}");
}

#[test]
fn fit_rejects_one_class() {
    let mut data = synthetic(5, 10);
    data.labels = vec![1.0; 5];
    let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
    assert!(
        matches!(error, ModelError::OneClass { won: 5, lost: 0 }),
        "{error}"
    );
    assert!(error
        .to_string()
        .starts_with("training needs both won and lost examples: found 5 won and 0 lost"));

    data.labels = vec![0.0; 5];
    let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
    assert!(
        matches!(error, ModelError::OneClass { won: 0, lost: 5 }),
        "{error}"
    );
}

#[test]
fn fit_rejects_invalid_labels() {
    for bad in [2.0, -1.0, 0.5, f64::NAN, f64::INFINITY] {
        let mut data = synthetic(20, 11);
        data.labels[7] = bad;
        let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
        match error {
            ModelError::InvalidLabel { row, value } => {
                assert_eq!(row, 7);
                assert_eq!(value.to_bits(), bad.to_bits());
            }
            other => panic!("label {bad}: expected InvalidLabel, got {other}"),
        }
    }
}

#[test]
fn fit_rejects_label_count_mismatch() {
    let mut data = synthetic(20, 12);
    data.labels.pop();
    let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::LabelCount {
                rows: 20,
                labels: 19
            }
        ),
        "{error}"
    );
}

#[test]
fn fit_rejects_wrong_row_width() {
    let mut data = synthetic(20, 13);
    data.rows[3].pop();
    let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::RowWidth {
                row: 3,
                expected: 4,
                found: 3
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("row 3 has 3 values but 4 were expected"),
        "{message}"
    );
}

#[test]
fn fit_rejects_infinite_values() {
    let mut data = synthetic(20, 14);
    data.rows[5][1] = f64::NEG_INFINITY;
    let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
    match &error {
        ModelError::InfiniteValue {
            row,
            feature,
            value,
        } => {
            assert_eq!(*row, 5);
            assert_eq!(feature, "x1");
            assert_eq!(*value, f64::NEG_INFINITY);
        }
        other => panic!("expected InfiniteValue, got {other}"),
    }
}

#[test]
fn fit_rejects_bad_feature_names() {
    let mut data = synthetic(20, 15);
    data.feature_names = vec![];
    for row in &mut data.rows {
        row.clear();
    }
    let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
    assert!(matches!(error, ModelError::NoFeatures), "{error}");

    let mut data = synthetic(20, 15);
    data.feature_names[2] = "x0".to_string();
    let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
    assert!(
        matches!(&error, ModelError::DuplicateFeatureName { name } if name == "x0"),
        "{error}"
    );

    let mut data = synthetic(20, 15);
    data.feature_names[1] = " ".to_string();
    let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
    assert!(
        matches!(error, ModelError::EmptyFeatureName { position: 1 }),
        "{error}"
    );

    let mut data = synthetic(20, 15);
    data.feature_names.pop();
    let error = GradientBoostedModel::fit(&data, &small_params()).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::RowWidth {
                row: 0,
                expected: 3,
                found: 4
            }
        ),
        "{error}"
    );
}

#[test]
fn fit_rejects_bad_params() {
    let data = synthetic(50, 16);
    let cases = [
        (
            "trees",
            TrainParams {
                trees: 0,
                ..small_params()
            },
        ),
        (
            "max_depth",
            TrainParams {
                max_depth: 0,
                ..small_params()
            },
        ),
        (
            "learning_rate",
            TrainParams {
                learning_rate: 0.0,
                ..small_params()
            },
        ),
        (
            "learning_rate",
            TrainParams {
                learning_rate: 1.5,
                ..small_params()
            },
        ),
        (
            "learning_rate",
            TrainParams {
                learning_rate: f64::NAN,
                ..small_params()
            },
        ),
        (
            "min_leaf_weight",
            TrainParams {
                min_leaf_weight: -1.0,
                ..small_params()
            },
        ),
        (
            "min_leaf_weight",
            TrainParams {
                min_leaf_weight: f64::INFINITY,
                ..small_params()
            },
        ),
        (
            "min_leaf_weight",
            TrainParams {
                min_leaf_weight: 1e300,
                ..small_params()
            },
        ),
    ];
    for (expected_name, params) in cases {
        match GradientBoostedModel::fit(&data, &params).unwrap_err() {
            ModelError::InvalidParam { name, .. } => assert_eq!(name, expected_name),
            other => panic!("{params:?}: expected InvalidParam, got {other}"),
        }
    }
}

#[test]
fn predict_rejects_bad_rows() {
    let model = fit(&synthetic(200, 17));
    let mut rows = synthetic(5, 18).rows;
    rows[2].push(1.0);
    let error = model.predict(&rows).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::RowWidth {
                row: 2,
                expected: 4,
                found: 5
            }
        ),
        "{error}"
    );
    // A narrower row would make forust-ml index past the row; it must be an error instead.
    let error = model.contributions(&[vec![0.0]]).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::RowWidth {
                row: 0,
                expected: 4,
                found: 1
            }
        ),
        "{error}"
    );

    let error = model
        .predict(&[vec![0.0, f64::INFINITY, 0.0, 0.0]])
        .unwrap_err();
    assert!(
        matches!(&error, ModelError::InfiniteValue { row: 0, feature, .. } if feature == "x1"),
        "{error}"
    );
    // NaN is missing, not an error.
    assert!(model.predict(&[vec![f64::NAN; 4]]).is_ok());
}

/// Serializes a model, edits its JSON and returns the edited bytes.
fn tampered(model: &GradientBoostedModel, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&model.to_bytes().unwrap()).unwrap();
    edit(&mut json);
    serde_json::to_vec(&json).unwrap()
}

/// Index of the first split node (not a leaf) of the first tree.
fn first_split(json: &serde_json::Value) -> usize {
    json["booster"]["trees"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|node| node["is_leaf"] == false)
        .expect("the first tree has a split")
}

#[test]
fn from_bytes_rejects_corrupt_bytes() {
    let model = fit(&synthetic(200, 19));
    let good = model.to_bytes().unwrap();

    let mut corrupt_inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", b"\x00\xffnot a model".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        (
            "other json",
            br#"{"format":"something-else","version":1}"#.to_vec(),
        ),
    ];
    corrupt_inputs.push((
        "split on missing feature",
        tampered(&model, |json| {
            let node = first_split(json);
            json["booster"]["trees"][0]["nodes"][node]["split_feature"] = 99.into();
        }),
    ));
    corrupt_inputs.push((
        "child loops back",
        tampered(&model, |json| {
            let node = first_split(json);
            json["booster"]["trees"][0]["nodes"][node]["left_child"] = node.into();
        }),
    ));
    corrupt_inputs.push((
        "fewer feature names",
        tampered(&model, |json| {
            json["feature_names"] = serde_json::json!(["x0"]);
        }),
    ));
    corrupt_inputs.push((
        "no trees",
        tampered(&model, |json| {
            json["booster"]["trees"] = serde_json::json!([]);
        }),
    ));

    for (case, bytes) in corrupt_inputs {
        match GradientBoostedModel::from_bytes(&bytes) {
            Err(ModelError::InvalidModelBytes(reason)) => assert!(!reason.is_empty(), "{case}"),
            Err(other) => panic!("{case}: expected InvalidModelBytes, got {other}"),
            Ok(_) => panic!("{case}: corrupt bytes loaded"),
        }
    }
}

#[test]
fn from_bytes_rejects_other_version() {
    let model = fit(&synthetic(200, 20));
    let bytes = tampered(&model, |json| json["version"] = 99.into());
    let error = GradientBoostedModel::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::UnsupportedFormatVersion {
                found: 99,
                supported: 1
            }
        ),
        "{error}"
    );
}

#[test]
fn logistic_recovers_coefficient_signs() {
    // Label log-odds = 2 x0 + x1 - 1.5 x2; x3 is missing-driven noise.
    let mut rng = SplitMix(21);
    let mut data = Dataset {
        feature_names: names(4),
        ..Dataset::default()
    };
    for _ in 0..2000 {
        let x: Vec<f64> = (0..4).map(|_| rng.normal()).collect();
        let logit = 2.0 * x[0] + x[1] - 1.5 * x[2];
        data.labels
            .push(f64::from(u8::from(rng.uniform() < sigmoid(logit))));
        let x3 = if rng.uniform() < 0.3 { f64::NAN } else { x[3] };
        data.rows.push(vec![x[0], x[1], x[2], x3]);
    }
    let model = LogisticModel::fit(&data, 1.0).unwrap();
    let coefficients = model.coefficients();
    assert!(coefficients[0] > 1.0, "{coefficients:?}");
    assert!(coefficients[1] > 0.3, "{coefficients:?}");
    assert!(coefficients[2] < -0.8, "{coefficients:?}");
    assert!(coefficients[3].abs() < 0.2, "{coefficients:?}");
    // x0's weight is larger than x1's, as in the generating model.
    assert!(coefficients[0] > coefficients[1], "{coefficients:?}");
}

#[test]
fn logistic_contributions_sum_exactly() {
    let data = synthetic(600, 22);
    let model = LogisticModel::fit(&data, 1.0).unwrap();
    let probe = synthetic(40, 23).rows;
    let log_odds = model.predict_log_odds(&probe).unwrap();
    let explanations = model.contributions(&probe).unwrap();
    for (row, explanation) in explanations.iter().enumerate() {
        assert_eq!(explanation.values.len(), 4);
        let total = explanation.bias + explanation.values.iter().sum::<f64>();
        assert!(
            (total - log_odds[row]).abs() < 1e-9,
            "row {row}: {total} against {}",
            log_odds[row]
        );
    }
}

#[test]
fn logistic_save_load_identical() {
    let data = synthetic(300, 24);
    let model = LogisticModel::fit(&data, 1.0).unwrap();
    let loaded = LogisticModel::from_bytes(&model.to_bytes().unwrap()).unwrap();
    let probe = synthetic(20, 25).rows;
    assert_eq!(
        model.predict(&probe).unwrap(),
        loaded.predict(&probe).unwrap()
    );
    assert!(LogisticModel::from_bytes(b"{\"format\":\"other\"}").is_err());
}

#[test]
fn trained_model_round_trip_and_legacy() {
    let data = synthetic(400, 26);
    let gbm = fit(&data);
    let logistic = LogisticModel::fit(&data, 1.0).unwrap();
    let legacy = gbm.to_bytes().unwrap();
    let calibrator = calibration::Calibrator::Platt {
        slope: 0.8,
        intercept: 0.1,
    };
    let model = TrainedModel::new(ModelKind::Blend, Some(gbm), Some(logistic), calibrator).unwrap();
    let probe = synthetic(30, 27).rows;
    let loaded = TrainedModel::from_bytes(&model.to_bytes().unwrap()).unwrap();
    assert_eq!(loaded.kind, ModelKind::Blend);
    assert_eq!(
        model.predict(&probe).unwrap(),
        loaded.predict(&probe).unwrap()
    );

    // Calibration changes the probability but not the ranking.
    let raw = model.predict_uncalibrated(&probe).unwrap();
    let calibrated = model.predict(&probe).unwrap();
    assert_ne!(raw, calibrated);
    assert_eq!(
        roc_auc(&data.labels[..30], &raw),
        roc_auc(&data.labels[..30], &calibrated)
    );

    // Bytes of a bare tree model, as stored before calibration, load uncalibrated.
    let old = TrainedModel::from_bytes(&legacy).unwrap();
    assert_eq!(old.kind, ModelKind::Gbm);
    assert_eq!(old.calibrator, calibration::Calibrator::None);
}

#[test]
fn calibration_lowers_held_out_log_loss() {
    // A model that is right about the ranking but far too confident: it reports
    // sigmoid(3 * true log-odds + 1) instead of the true probability.
    let mut rng = SplitMix(31);
    let mut probabilities = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..4000 {
        let truth = rng.normal();
        labels.push(f64::from(u8::from(rng.uniform() < sigmoid(truth))));
        probabilities.push(sigmoid(3.0 * truth + 1.0));
    }
    let (fit_p, test_p) = probabilities.split_at(2000);
    let (fit_y, test_y) = labels.split_at(2000);
    let raw_loss = metrics::log_loss(test_y, test_p);

    for calibrator in [
        calibration::fit_platt(fit_p, fit_y),
        calibration::fit_isotonic(fit_p, fit_y),
        calibration::fit_best(fit_p, fit_y),
    ] {
        let calibrated = calibrator.apply_all(test_p);
        let loss = metrics::log_loss(test_y, &calibrated);
        assert!(
            loss < raw_loss - 0.05,
            "{}: held-out log loss {loss} against {raw_loss} uncalibrated",
            calibrator.method()
        );
        let ece = metrics::expected_calibration_error(test_y, &calibrated);
        let raw_ece = metrics::expected_calibration_error(test_y, test_p);
        assert!(
            ece < raw_ece,
            "{}: ECE {ece} against {raw_ece}",
            calibrator.method()
        );
    }
    assert_ne!(
        calibration::fit_best(fit_p, fit_y),
        calibration::Calibrator::None
    );
}

#[test]
fn blend_contributions_sum_to_log_odds() {
    let data = synthetic(500, 40);
    let gbm = fit(&data);
    let logistic = LogisticModel::fit(&data, 1.0).unwrap();
    let probe = synthetic(60, 41).rows;
    let gbm_log_odds = gbm.predict_log_odds(&probe).unwrap();
    let logistic_log_odds = logistic.predict_log_odds(&probe).unwrap();
    let model = TrainedModel::new(
        ModelKind::Blend,
        Some(gbm),
        Some(logistic),
        calibration::Calibrator::None,
    )
    .unwrap();

    let log_odds = model.predict_log_odds(&probe).unwrap();
    let uncalibrated = model.predict_uncalibrated(&probe).unwrap();
    let explanations = model.contributions(&probe).unwrap();
    assert_eq!(explanations.len(), probe.len());
    for row in 0..probe.len() {
        let expected = BLEND_GBM_WEIGHT * gbm_log_odds[row]
            + (1.0 - BLEND_GBM_WEIGHT) * logistic_log_odds[row];
        assert!(
            (log_odds[row] - expected).abs() < 1e-12,
            "row {row}: blend log-odds {} against the weighted parts {expected}",
            log_odds[row]
        );
        assert!((uncalibrated[row] - sigmoid(expected)).abs() < 1e-12);
        let explanation = &explanations[row];
        assert_eq!(explanation.values.len(), 4);
        let total = explanation.bias + explanation.values.iter().sum::<f64>();
        assert!(
            (total - log_odds[row]).abs() < 1e-6,
            "row {row}: contributions sum to {total}, blend log-odds is {}",
            log_odds[row]
        );
    }
}

/// Rewrites the `version` field of serialized [`TrainedModel`] bytes.
fn with_format_version(bytes: &[u8], version: u32) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    value["version"] = serde_json::Value::from(version);
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn version_one_blend_needs_retrain() {
    let data = synthetic(300, 42);
    let gbm = fit(&data);
    let logistic = LogisticModel::fit(&data, 1.0).unwrap();
    let probe = synthetic(20, 43).rows;

    let blend = TrainedModel::new(
        ModelKind::Blend,
        Some(gbm),
        Some(logistic.clone()),
        calibration::Calibrator::None,
    )
    .unwrap();
    let old_blend = with_format_version(&blend.to_bytes().unwrap(), 1);
    let err = TrainedModel::from_bytes(&old_blend).unwrap_err();
    assert!(matches!(err, ModelError::RetrainRequired(_)), "{err:?}");
    assert!(err.to_string().contains("retrain"), "{err}");

    // A version 1 logistic model computes the same thing today, so it still loads.
    let single = TrainedModel::new(
        ModelKind::Logistic,
        None,
        Some(logistic),
        calibration::Calibrator::None,
    )
    .unwrap();
    let old_single = with_format_version(&single.to_bytes().unwrap(), 1);
    let loaded = TrainedModel::from_bytes(&old_single).unwrap();
    assert_eq!(loaded.kind, ModelKind::Logistic);
    assert_eq!(
        loaded.predict(&probe).unwrap(),
        single.predict(&probe).unwrap()
    );

    let future = with_format_version(&single.to_bytes().unwrap(), 3);
    assert!(matches!(
        TrainedModel::from_bytes(&future),
        Err(ModelError::UnsupportedFormatVersion { found: 3, .. })
    ));
}

#[test]
fn owned_fit_matches_borrowed_fit() {
    let train = synthetic(400, 46);
    let validation = synthetic(200, 47);
    let params = TrainParams {
        trees: 40,
        ..TrainParams::default()
    };
    let weights: Vec<f64> = (0..train.rows.len())
        .map(|i| 1.0 + (i % 3) as f64)
        .collect();
    let borrowed = GradientBoostedModel::fit_early_stopping_weighted(
        &train,
        &validation,
        &params,
        5,
        Some(&weights),
    )
    .unwrap();
    let owned = GradientBoostedModel::fit_early_stopping_owned(
        train,
        &validation,
        &params,
        5,
        Some(&weights),
    )
    .unwrap();
    assert_eq!(owned.to_bytes().unwrap(), borrowed.to_bytes().unwrap());
}

#[test]
fn early_stopping_keeps_best_prefix() {
    let train = synthetic(400, 44);
    let validation = synthetic(200, 45);
    // A high learning rate and deep trees overfit quickly, so validation loss turns upward
    // long before 300 trees.
    let params = TrainParams {
        trees: 300,
        max_depth: 6,
        learning_rate: 0.5,
        ..TrainParams::default()
    };
    let stopped =
        GradientBoostedModel::fit_early_stopping(&train, &validation, &params, 5).unwrap();
    let kept = stopped.tree_count();
    assert!(kept >= 1, "{kept}");
    assert!(kept < 300, "early stopping kept all {kept} trees");
    assert_eq!(stopped.params().trees, kept);

    // Training is deterministic and each tree depends only on earlier ones, so a plain fit
    // with the kept count gives the same model.
    let refit = GradientBoostedModel::fit(
        &train,
        &TrainParams {
            trees: kept,
            ..params.clone()
        },
    )
    .unwrap();
    assert_eq!(
        stopped.predict(&validation.rows).unwrap(),
        refit.predict(&validation.rows).unwrap()
    );

    // The kept prefix is no worse on validation than the full ensemble or one tree more.
    let loss = |model: &GradientBoostedModel| {
        metrics::log_loss(
            &validation.labels,
            &model.predict(&validation.rows).unwrap(),
        )
    };
    let full = GradientBoostedModel::fit(&train, &params).unwrap();
    let one_more = GradientBoostedModel::fit(
        &train,
        &TrainParams {
            trees: kept + 1,
            ..params.clone()
        },
    )
    .unwrap();
    assert!(
        loss(&stopped) <= loss(&full),
        "{} > {}",
        loss(&stopped),
        loss(&full)
    );
    assert!(loss(&stopped) <= loss(&one_more));

    // The explanation of the stopped model is exact for the trees it kept.
    let log_odds = stopped.predict_log_odds(&validation.rows).unwrap();
    for (row, explanation) in stopped
        .contributions(&validation.rows)
        .unwrap()
        .iter()
        .enumerate()
    {
        let total = explanation.bias + explanation.values.iter().sum::<f64>();
        assert!((total - log_odds[row]).abs() < 1e-6, "row {row}");
    }

    // 0 rounds disables early stopping.
    let all = GradientBoostedModel::fit_early_stopping(&train, &validation, &params, 0).unwrap();
    assert_eq!(all.tree_count(), 300);
}

/// Rows in the same bins must get bit-for-bit equal log-odds and contributions, because the
/// score step reuses reasons on that promise. A value moved across a split changes its bin.
#[test]
fn split_bins_decide_contributions() {
    let data = synthetic(500, 8);
    let gbm = fit(&data);
    let (splits, _) = gbm.split_values();
    let model = TrainedModel::new(
        ModelKind::Gbm,
        Some(gbm),
        None,
        calibration::Calibrator::None,
    )
    .unwrap();
    let bins = model
        .split_bins()
        .expect("a tree-only model has split bins");
    let probes = synthetic(50, 9).rows;
    let mut moved = 0;
    for probe in &probes {
        // Move each present value to the middle of its bin: the row stays in every bin.
        let nudged: Vec<f64> = probe
            .iter()
            .zip(&splits)
            .map(|(&value, column)| {
                if value.is_nan() {
                    return value;
                }
                let upper = column.iter().copied().find(|split| *split > value);
                let lower = column.iter().copied().rev().find(|split| *split <= value);
                match (lower, upper) {
                    (Some(low), Some(high)) => low + (high - low) / 2.0,
                    (Some(low), None) => low + 1.0,
                    (None, Some(high)) => high - 1.0,
                    (None, None) => value + 1.0,
                }
            })
            .collect();
        moved += usize::from(nudged != *probe);
        let pair = [probe.clone(), nudged];
        assert!(bins.bins(&pair[0]).eq(bins.bins(&pair[1])), "{pair:?}");
        let log_odds = model.predict_log_odds(&pair).unwrap();
        assert_eq!(log_odds[0].to_bits(), log_odds[1].to_bits(), "{pair:?}");
        let explained = model.contributions(&pair).unwrap();
        assert_eq!(explained[0].values, explained[1].values, "{pair:?}");
    }
    assert!(moved > 0, "no probe value moved, so nothing was compared");

    // Across the first split of x0 the bin changes, and so do the contributions.
    let split = splits[0][0];
    let below = vec![split - 1e-9, 0.0, 0.0, 0.0];
    let at = vec![split, 0.0, 0.0, 0.0];
    assert!(!bins.bins(&below).eq(bins.bins(&at)));
    let explained = model.contributions(&[below, at]).unwrap();
    assert_ne!(explained[0].values, explained[1].values);

    // Missing is its own bin, and a model with a logistic part has no bins.
    let missing = vec![f64::NAN, 0.0, 0.0, 0.0];
    let low = vec![f64::MIN, 0.0, 0.0, 0.0];
    assert!(!bins.bins(&missing).eq(bins.bins(&low)));
    let logistic = LogisticModel::fit(&data, 1.0).unwrap();
    let linear = TrainedModel::new(
        ModelKind::Logistic,
        None,
        Some(logistic),
        calibration::Calibrator::None,
    )
    .unwrap();
    assert!(linear.split_bins().is_none());
}
