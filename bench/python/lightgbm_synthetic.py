"""Train LightGBM once on a synthetic data directory written by `leadscore-bench export-synthetic`.

The rows are the ones `leadscore-bench fit-file --data DIR` trains on, read from the raw
little-endian f64 files listed in DIR/manifest.json (NaN marks a missing value). The model uses
leadscore's benchmark settings: 100 trees, maximum depth 5, learning rate 0.1, at least 1.0 of
hessian per leaf (leadscore's `min_leaf_weight`) and no minimum row count per leaf, because
leadscore has none. The tree size is `num_leaves = 31` unless --num-leaves sets another value.

Prints one JSON line with the wall and CPU seconds of Dataset construction plus training and
the holdout AUC. It also reports the resident memory before the fit, the peak during it and
the peak of the whole process, which include the Python interpreter, the imported libraries
and the data. With --score-runs it adds one-thread predict and pred_contrib timings on the
batch set. Run it once per measurement, so that every run starts with a fresh process.

Usage: python3 lightgbm_synthetic.py --data /tmp/synth-100k [--threads 2]
"""

import argparse
import json
import os
import resource
import sys
import time

import lightgbm
import numpy as np
from sklearn.metrics import roc_auc_score


def load_set(directory: str, name: str):
    with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    matches = [s for s in manifest["sets"] if s["name"] == name]
    if not matches:
        names = [s["name"] for s in manifest["sets"]]
        sys.exit(f"set {name!r} not found in {directory}/manifest.json; it contains {names}")
    info = matches[0]
    features = manifest["features"]
    values = np.fromfile(os.path.join(directory, info["features_file"]), dtype="<f8")
    labels = np.fromfile(os.path.join(directory, info["labels_file"]), dtype="<f8")
    if values.size != info["rows"] * features or labels.size != info["rows"]:
        sys.exit(
            f"set {name!r} in {directory} has {values.size} values and {labels.size} labels, "
            f"expected {info['rows'] * features} and {info['rows']}; export the data again"
        )
    return values.reshape(info["rows"], features), labels


def status_value(field: str):
    """Read a numeric field such as VmHWM (in KiB) or Threads from /proc/self/status (Linux only)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def reset_peak():
    """Reset VmHWM to the current resident size (Linux 4.0 and later) and return VmRSS in KiB."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError as error:
        print(f"warning: failed to reset the peak resident size: {error}", file=sys.stderr)
    return status_value("VmRSS")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="directory written by export-synthetic")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM num_threads")
    parser.add_argument("--num-leaves", type=int, default=31, help="LightGBM num_leaves")
    parser.add_argument(
        "--score-runs",
        type=int,
        default=0,
        help="after the fit, time predict on the batch set and pred_contrib on its first "
        "--contributions-rows rows this many times, on one thread (0 skips scoring)",
    )
    parser.add_argument(
        "--contributions-rows", type=int, default=20000, help="rows passed to pred_contrib"
    )
    args = parser.parse_args()

    x_train, y_train = load_set(args.data, "train")
    x_holdout, y_holdout = load_set(args.data, "holdout")
    params = {
        "objective": "binary",
        "num_leaves": args.num_leaves,
        "max_depth": 5,
        "learning_rate": 0.1,
        "min_data_in_leaf": 1,
        "min_sum_hessian_in_leaf": 1.0,
        "num_threads": args.threads,
        "seed": 0,
        "verbose": -1,
    }

    rss_before_fit = reset_peak()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    dataset = lightgbm.Dataset(x_train, label=y_train, params=params)
    dataset.construct()
    constructed = time.perf_counter()
    booster = lightgbm.train(params, dataset, num_boost_round=100)
    finished = time.perf_counter()
    train_cpu = cpu_seconds() - cpu_before
    peak_during_fit = status_value("VmHWM")

    probabilities = booster.predict(x_holdout, num_threads=args.threads)
    result = {
        "library": f"LightGBM {lightgbm.__version__}",
        "train_rows": int(x_train.shape[0]),
        "features": int(x_train.shape[1]),
        "trees": booster.num_trees(),
        "params": params,
        "construct_seconds": constructed - started,
        "train_seconds": finished - started,
        "train_cpu_seconds": train_cpu,
        "rss_before_fit_kib": rss_before_fit,
        "peak_rss_during_fit_kib": peak_during_fit,
        "process_max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "holdout_rows": int(x_holdout.shape[0]),
        "holdout_auc": float(roc_auc_score(y_holdout, probabilities)),
        "threads": status_value("Threads"),
    }
    if args.score_runs > 0:
        result["scoring"] = time_scoring(booster, args)
    print(json.dumps(result))


def time_scoring(booster, args) -> dict:
    """Time one-thread predict and pred_contrib (TreeSHAP) calls on the batch set."""
    x_batch, _ = load_set(args.data, "batch")
    explained = x_batch[: args.contributions_rows]
    predict_seconds, contributions_seconds, cpu_seconds_per_call = [], [], []
    for _ in range(args.score_runs):
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        booster.predict(x_batch, num_threads=1)
        predict_seconds.append(time.perf_counter() - started)
        cpu_seconds_per_call.append(cpu_seconds() - cpu_before)
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        booster.predict(explained, num_threads=1, pred_contrib=True)
        contributions_seconds.append(time.perf_counter() - started)
        cpu_seconds_per_call.append(cpu_seconds() - cpu_before)
    return {
        "cpu_seconds_per_call": cpu_seconds_per_call,
        "batch_rows": int(x_batch.shape[0]),
        "contributions_rows": int(explained.shape[0]),
        "predict_seconds": predict_seconds,
        "contributions_seconds": contributions_seconds,
        "predict_records_per_second": x_batch.shape[0] / float(np.median(predict_seconds)),
        "contributions_records_per_second": explained.shape[0]
        / float(np.median(contributions_seconds)),
    }


if __name__ == "__main__":
    main()
