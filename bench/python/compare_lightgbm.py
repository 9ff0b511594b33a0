"""Train LightGBM, XGBoost and a logistic regression on the CSV files `leadscore evaluate` reads.

The columns are encoded the way `leadscore evaluate` encodes them, so every library sees the
same features: blanks and the placeholders below are missing; a column whose values are all
yes/no, y/n, true/false or 1/0 becomes 0/1; an all-numeric column stays numeric; any other
column is one-hot encoded over the case-folded levels that reach 1% of the training rows (at
most 20), with all indicators missing when the cell is missing. Date columns are not handled
here because the X Education file has none.

Prints one JSON object with the holdout AUC, log loss and training seconds of each model.

Usage: python3 compare_lightgbm.py --train train.csv --holdout holdout.csv --label Converted \
           --id "Prospect ID" --exclude "Lead Number"
"""

import argparse
import json
import sys
import time
import warnings

import lightgbm
import numpy as np
import pandas as pd
import sklearn
import xgboost
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

PLACEHOLDERS = {"", "select", "n/a", "na", "null", "not available", "--", "nan"}
YES = {"yes", "y", "true", "1"}
NO = {"no", "n", "false", "0"}
MIN_LEVEL_SHARE = 0.01
MAX_LEVELS = 20
THREADS = 2
TREES = 100
DEPTH = 5
LEARNING_RATE = 0.1


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in PLACEHOLDERS


def as_number(cell: str):
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def parse_label(cell: str) -> float:
    word = cell.strip().lower()
    if word in YES | {"1.0", "won", "closed won", "converted"}:
        return 1.0
    if word in NO | {"0.0", "lost", "closed lost", "not converted", "not"}:
        return 0.0
    raise ValueError(f"label value {cell!r} is not binary; use 1/0, yes/no or won/lost")


def fit_encoding(frame: pd.DataFrame, columns):
    """Returns (column, kind, levels) per feature column, fitted on the training frame."""
    encoding = []
    for column in columns:
        present = [c.strip() for c in frame[column] if not is_missing(c)]
        if not present:
            continue
        if all(c.lower() in YES | NO for c in present):
            encoding.append((column, "yes/no", None))
        elif all(as_number(c) is not None for c in present):
            encoding.append((column, "number", None))
        else:
            counts = pd.Series([c.lower() for c in present]).value_counts()
            floor = MIN_LEVEL_SHARE * len(frame)
            frequent = counts[counts >= floor]
            # Most frequent first, ties by name, as leadscore orders them.
            levels = sorted(frequent.items(), key=lambda item: (-item[1], item[0]))[:MAX_LEVELS]
            encoding.append((column, "category", [level for level, _ in levels]))
    return encoding


def encode(frame: pd.DataFrame, encoding) -> np.ndarray:
    features = []
    for column, kind, levels in encoding:
        cells = [c.strip() for c in frame[column]]
        missing = np.array([is_missing(c) for c in cells])
        if kind == "yes/no":
            values = np.array([np.nan if m else float(c.lower() in YES) for c, m in zip(cells, missing)])
            features.append(values)
        elif kind == "number":
            # Blank cells and placeholders do not parse as numbers, so they become NaN.
            numbers = [as_number(c) for c in cells]
            values = np.array([np.nan if n is None else n for n in numbers])
            features.append(values)
        else:
            folded = np.array([c.lower() for c in cells])
            for level in levels:
                indicator = (folded == level).astype(float)
                indicator[missing] = np.nan
                features.append(indicator)
    return np.column_stack(features)


def timed_fit(model, x, y):
    start = time.perf_counter()
    model.fit(x, y)
    return time.perf_counter() - start


def score(model, x, y, seconds):
    probabilities = model.predict_proba(x)[:, 1]
    return {
        "auc": round(float(roc_auc_score(y, probabilities)), 4),
        "log_loss": round(float(log_loss(y, probabilities)), 4),
        "train_seconds": round(seconds, 3),
    }


def main() -> int:
    # With LightGBM 4.6 and scikit-learn 1.7, predicting on a NumPy array warns about feature
    # names even though training also used a NumPy array.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="training CSV file")
    parser.add_argument("--holdout", required=True, help="holdout CSV file with the same columns")
    parser.add_argument("--label", required=True, help="binary outcome column")
    parser.add_argument("--id", help="row id column, left out of the features")
    parser.add_argument("--exclude", nargs="*", default=[], help="more columns to leave out")
    args = parser.parse_args()

    read = lambda path: pd.read_csv(path, dtype=str, keep_default_na=False)
    train, holdout = read(args.train), read(args.holdout)
    skipped = {args.label, *([args.id] if args.id else []), *args.exclude}
    absent = sorted(skipped - set(train.columns))
    if absent:
        print(f"error: {args.train} lacks the columns {absent}; check --label, --id and --exclude",
              file=sys.stderr)
        return 2
    columns = [c for c in train.columns if c not in skipped]

    encoding = fit_encoding(train, columns)
    x_train, x_holdout = encode(train, encoding), encode(holdout, encoding)
    y_train = np.array([parse_label(c) for c in train[args.label]])
    y_holdout = np.array([parse_label(c) for c in holdout[args.label]])

    lgbm = lightgbm.LGBMClassifier(
        n_estimators=TREES, max_depth=DEPTH, num_leaves=2**DEPTH, learning_rate=LEARNING_RATE,
        n_jobs=THREADS, verbose=-1, random_state=0)
    xgb = xgboost.XGBClassifier(
        n_estimators=TREES, max_depth=DEPTH, learning_rate=LEARNING_RATE, n_jobs=THREADS,
        tree_method="hist", random_state=0)
    # Logistic regression cannot take NaN: impute the median, flag the gaps and standardise.
    logistic = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=2000))

    result = {
        "rows_train": int(len(y_train)),
        "rows_holdout": int(len(y_holdout)),
        "features": int(x_train.shape[1]),
        "versions": {"lightgbm": lightgbm.__version__, "xgboost": xgboost.__version__,
                     "scikit-learn": sklearn.__version__, "pandas": pd.__version__},
    }
    for name, model in [("lightgbm", lgbm), ("xgboost", xgb), ("logistic_regression", logistic)]:
        seconds = timed_fit(model, x_train, y_train)
        result[name] = score(model, x_holdout, y_holdout, seconds)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
