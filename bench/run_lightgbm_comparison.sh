#!/bin/sh
# Times leadscore's trainer and LightGBM on the same exported synthetic rows, then measures
# leadscore's scoring throughput on one thread and on two. Every measurement runs in its own process under
# /usr/bin/time, and each result line gets the load average read just before the run.
#
# Usage: bench/run_lightgbm_comparison.sh PYTHON OUT_DIR [RUNS_100K] [RUNS_1M]
#   PYTHON   interpreter of a virtual environment with bench/python/requirements.txt installed
#   OUT_DIR  directory for the exported data and the results.jsonl file
# Run it from the workspace root after `cargo build --release -p leadscore-bench`.
set -eu

python=$1
out=$2
runs_100k=${3:-3}
runs_1m=${4:-1}
bench=./target/release/leadscore-bench
results=$out/results.jsonl
mkdir -p "$out"

# Runs "$@" under /usr/bin/time and appends one line: label, load average, max RSS, JSON output.
measure() {
    label=$1
    shift
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    output=$(/usr/bin/time -f '%M' -o "$out/time.txt" "$@")
    max_rss=$(cat "$out/time.txt")
    line="{\"label\": \"$label\", \"loadavg\": \"$load\", \"time_max_rss_kib\": $max_rss, \"result\": $output}"
    echo "$line" >>"$results"
    echo "$line"
}

[ -f "$out/100k/manifest.json" ] ||
    "$bench" export-synthetic --out "$out/100k" --rows 100000 --batch-rows 200000
[ -f "$out/1m/manifest.json" ] ||
    "$bench" export-synthetic --out "$out/1m" --rows 1000000

for size in 100k 1m; do
    if [ "$size" = 100k ]; then runs=$runs_100k; else runs=$runs_1m; fi
    run=1
    while [ "$run" -le "$runs" ]; do
        measure "leadscore fit $size run $run" "$bench" fit-file --data "$out/$size"
        measure "lightgbm fit $size run $run" \
            "$python" bench/python/lightgbm_synthetic.py --data "$out/$size" --threads 2
        run=$((run + 1))
    done
done

# forust-ml's predict and contributions run on rayon's global pool, which reads
# RAYON_NUM_THREADS, so the first run scores on one thread.
measure "leadscore score 1 thread" env RAYON_NUM_THREADS=1 "$bench" score-file --data "$out/100k" --runs 3 \
    --contributions-rows 20000
measure "leadscore score 2 threads" "$bench" score-file --data "$out/100k" --runs 3 \
    --contributions-rows 20000
measure "lightgbm score 1 thread" "$python" bench/python/lightgbm_synthetic.py --data "$out/100k" \
    --threads 2 --score-runs 3 --contributions-rows 20000
