"""Split the X Education leads into the train.csv and holdout.csv that the benchmark compares on.

The rows are sorted by `Lead Number`, the order leads arrived in. The columns that sales reps
or vendors fill in after the first call are dropped because they nearly encode the outcome.
The latest 20% of rows become the holdout. Only the Python standard library is used.

Usage: python3 bench/python/split_leads.py PATH/TO/Leads.csv OUTPUT_DIR
"""

import argparse
import csv
import os
import sys

# Filled in after the call, so unknown when a lead arrives.
POST_CALL_COLUMNS = [
    "Tags",
    "Lead Quality",
    "Lead Profile",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
    "Last Activity",
    "Last Notable Activity",
]
HOLDOUT_SHARE = 0.2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("leads_csv", help="the X Education Leads.csv export")
    parser.add_argument("output_dir", help="directory for train.csv and holdout.csv")
    args = parser.parse_args()

    with open(args.leads_csv, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        absent = [c for c in POST_CALL_COLUMNS + ["Lead Number"] if c not in header]
        if absent:
            print(f"error: {args.leads_csv} lacks the columns {absent}; pass the X Education Leads.csv",
                  file=sys.stderr)
            return 2
        rows = list(reader)

    try:
        rows.sort(key=lambda row: int(row["Lead Number"]))
    except ValueError as err:
        print(f"error: a Lead Number is not an integer ({err}); check the file", file=sys.stderr)
        return 2

    kept_columns = [c for c in header if c not in POST_CALL_COLUMNS]
    split = len(rows) - round(len(rows) * HOLDOUT_SHARE)
    os.makedirs(args.output_dir, exist_ok=True)
    for name, part in [("train.csv", rows[:split]), ("holdout.csv", rows[split:])]:
        path = os.path.join(args.output_dir, name)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=kept_columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(part)
        print(f"wrote {len(part)} rows and {len(kept_columns)} columns to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
