#!/usr/bin/env bash
# Soak trial of the daemon: `leadscore run` against `leadscore sandbox` with every job on a
# one-minute schedule, for MINUTES minutes (default 60). Alerts are on, and every few minutes a
# simulated rep flags an account's score, so each job has work. At the end the daemon gets
# SIGTERM; the script fails unless it exited 0, every job ran, no run failed and the alert
# tasks, lists and reports exist.
#
#   cargo build --release && deploy/soak.sh [MINUTES] [WORK_DIR]
#
# Everything listens on 127.0.0.1. LEADSCORE_BIN overrides the binary (default
# target/release/leadscore).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-60}
work=${2:-$(mktemp -d)}
bin=${LEADSCORE_BIN:-target/release/leadscore}
sf_port=${SOAK_SF_PORT:-18580}
hs_port=${SOAK_HS_PORT:-18581}
mkdir -p "$work"
echo "soak: $minutes minutes, files in $work"

"$bin" sandbox --port "$sf_port" --hubspot-port "$hs_port" --hospitals 800 \
    >"$work/sandbox.out" 2>"$work/sandbox.err" &
sandbox_pid=$!
daemon_pid=
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
    kill "$sandbox_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 120); do
    [ -s "$work/sandbox.out" ] && break
    sleep 0.5
done
banner=$(head -n 1 "$work/sandbox.out")
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$banner" "$1"; }
url=$(field salesforce_url)
LEADSCORE_SF_CLIENT_SECRET=$(field client_secret)
LEADSCORE_SF_REFRESH_TOKEN=$(field refresh_token)
export LEADSCORE_SF_CLIENT_SECRET LEADSCORE_SF_REFRESH_TOKEN
client_id=$(field client_id)

# The sandbox configuration with one-minute schedules, alerts on and the outputs in $work.
"$bin" init --sandbox | python3 -c '
import re, sys
text, url, work = sys.stdin.read(), sys.argv[1], sys.argv[2]
text = text.replace("http://127.0.0.1:8580", url)
text = re.sub(r"(?m)^path = \"leadscore-data\"", f"path = \"{work}/store\"", text)
text = re.sub(r"(?m)^folder = \"lists\"", f"folder = \"{work}/lists\"", text)
text = re.sub(r"(?m)^folder = \"reports\"", f"folder = \"{work}/reports\"", text)
text = re.sub(r"(?m)^listen = .*$", "listen = \"127.0.0.1:0\"", text)
for job in ("pull_and_score", "retrain", "territory_lists", "outcomes_report"):
    text = re.sub(rf"(?m)^{job} = .*$", f"{job} = \"* * * * *\"", text)
text = re.sub(r"(?m)^enabled = false", "enabled = true", text)
text = re.sub(r"(?m)^quiet_first_run = true", "quiet_first_run = false", text)
sys.stdout.write(text)
' "$url" "$work" >"$work/leadscore.toml"

"$bin" run -c "$work/leadscore.toml" -v >"$work/daemon.out" 2>"$work/daemon.log" &
daemon_pid=$!

# A rep flags one account's score every five minutes through the ordinary REST API.
flag_accounts() {
    python3 - "$url" "$client_id" <<'PY'
import json, os, random, sys, urllib.parse, urllib.request
url, client_id = sys.argv[1], sys.argv[2]
form = urllib.parse.urlencode({
    "grant_type": "refresh_token", "client_id": client_id,
    "client_secret": os.environ["LEADSCORE_SF_CLIENT_SECRET"],
    "refresh_token": os.environ["LEADSCORE_SF_REFRESH_TOKEN"],
}).encode()
token = json.load(urllib.request.urlopen(url + "/services/oauth2/token", form))
headers = {"Authorization": "Bearer " + token["access_token"], "Content-Type": "application/json"}
base = token["instance_url"] + "/services/data/v59.0"
query = urllib.parse.quote("SELECT Id FROM Account WHERE LS_Score__c != null")
ids = [r["Id"] for r in json.load(urllib.request.urlopen(
    urllib.request.Request(base + "/query?q=" + query, headers=headers)))["records"]]
if ids:
    body = json.dumps({"LS_Feedback__c": random.choice(["Too high", "Too low", "Right"]),
                       "LS_Feedback_Comment__c": "soak trial"}).encode()
    request = urllib.request.Request(base + "/sobjects/Account/" + random.choice(ids),
                                     data=body, headers=headers, method="PATCH")
    urllib.request.urlopen(request)
PY
}

end=$((SECONDS + minutes * 60))
while [ $SECONDS -lt $end ]; do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        echo "soak: the daemon exited early; see $work/daemon.log" >&2
        exit 1
    fi
    sleep 300 &
    wait $! || true
    flag_accounts || echo "soak: flagging an account failed (continuing)" >&2
done

kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=
if [ "$status" -ne 0 ]; then
    echo "soak: the daemon exited with $status after SIGTERM; see $work/daemon.log" >&2
    exit 1
fi

"$bin" status -c "$work/leadscore.toml" --json >"$work/status.json"
"$bin" report model -c "$work/leadscore.toml" --out "$work/card" >/dev/null
# The alert tasks the daemon created, read back from the sandbox.
python3 - "$url" "$client_id" >"$work/alert_tasks.txt" <<'PY'
import json, os, sys, urllib.parse, urllib.request
url, client_id = sys.argv[1], sys.argv[2]
form = urllib.parse.urlencode({
    "grant_type": "refresh_token", "client_id": client_id,
    "client_secret": os.environ["LEADSCORE_SF_CLIENT_SECRET"],
    "refresh_token": os.environ["LEADSCORE_SF_REFRESH_TOKEN"],
}).encode()
token = json.load(urllib.request.urlopen(url + "/services/oauth2/token", form))
headers = {"Authorization": "Bearer " + token["access_token"]}
query = urllib.parse.quote("SELECT Id, Subject FROM Task")
next_url = "/services/data/v59.0/query?q=" + query
count = 0
while next_url:
    page = json.load(urllib.request.urlopen(urllib.request.Request(
        token["instance_url"] + next_url, headers=headers)))
    count += sum(1 for r in page["records"] if (r.get("Subject") or "").startswith("[leadscore]"))
    next_url = page.get("nextRecordsUrl")
print(count)
PY
python3 - "$work" <<'PY'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
status = json.loads((work / "status.json").read_text())
connectors = status if isinstance(status, list) else [status]
problems = []
for connector in connectors:
    for job in connector["jobs"]:
        if job["last_run"] is None:
            problems.append(f"{job['job']} never ran")
    for run in connector["recent_failures"]:
        problems.append(f"{run.get('job')} {run.get('outcome')}: {run.get('error')}")
tasks = int((work / "alert_tasks.txt").read_text().strip() or 0)
if tasks == 0:
    problems.append("no alert task in the sandbox")
card = json.loads((work / "card" / "model-card.json").read_text())
if "feedback" not in json.dumps(card):
    problems.append("the model card has no feedback section")
print(f"soak: {tasks} alert tasks in the sandbox")
if not list((work / "lists").glob("*.csv")):
    problems.append("no territory list written")
if not list((work / "reports").glob("outcomes-*.html")):
    problems.append("no outcomes report written")
log = (work / "daemon.log").read_text(errors="replace")
errors = [line for line in log.splitlines() if " ERROR " in line]
if errors:
    problems.append(f"{len(errors)} ERROR lines in daemon.log, first: {errors[0]}")
if problems:
    print("soak: FAILED\n  " + "\n  ".join(problems))
    sys.exit(1)
print("soak: passed")
PY
