#!/usr/bin/env bash
# redrelay demo: the Data API walkthrough end to end on the local stack, no
# AWS account. Starts moto (SQS, EventBridge, S3) and redrelay's Data API
# emulator on free loopback ports, creates the queue and rule, puts sample
# CSV in a bucket, then submits the walkthrough as a chain of jobs: create a
# schema and a table, COPY the CSV from S3, transform it into a target
# table, a parameterised SELECT, UNLOAD to S3. A running worker reacts to
# each completion event; the demo prints the ledger, the result and the
# unloaded object. Then a pipeline run (a graph of three jobs, one of which
# fails once) is watched in the web console and retried through the JSON
# API; a Python script submits a job through the API and reads its result.
# With DEMO_KEEP=1 (make demo DEMO_KEEP=1) the failed job is left for you to
# retry from the console, and everything stays up until Ctrl-C. Otherwise
# the demo stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${REDRELAY_VENV:-$PWD/.venv}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${REDRELAY_BIN:-$TARGET_DIR/debug/redrelay}
DEMO=$PWD/.demo
[ -x "$BIN" ] || { echo "demo: $BIN is missing: run 'make build' first" >&2; exit 1; }
[ -x "$VENV/bin/moto_server" ] || { echo "demo: moto is missing: run 'make venv' first" >&2; exit 1; }

rm -rf "$DEMO"
mkdir -p "$DEMO"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Dummy credentials, isolated from any real AWS profile on this machine.
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL

MOTO_PORT=$(free_port)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$DEMO/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null && break
  sleep 0.1
done
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$MOTO_PORT
export AWS_ENDPOINT_URL_EVENTBRIDGE=http://127.0.0.1:$MOTO_PORT
# The emulator's COPY and UNLOAD reach moto's S3 through the standard chain.
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT
echo "== moto (SQS, EventBridge, S3) on 127.0.0.1:$MOTO_PORT"

: >"$DEMO/emulator.out"
# Pipeline jobs named slow_* take 3 s; flaky_* fail their first attempt.
"$BIN" emulator --listen 127.0.0.1:0 --warehouse "$DEMO/warehouse.db" \
  --hold 3000:slow_ --fail-first 1:flaky_ >"$DEMO/emulator.out" 2>"$DEMO/emulator.log" &
pids+=($!)
addr=""
for _ in $(seq 100); do
  addr=$(sed -n 's/^listening on //p' "$DEMO/emulator.out" 2>/dev/null | head -n1 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "demo: the emulator did not start:" >&2; cat "$DEMO/emulator.log" >&2; exit 1; }
export AWS_ENDPOINT_URL_REDSHIFT_DATA=http://$addr
echo "== Data API emulator on $addr (warehouse: $DEMO/warehouse.db)"

LISTEN_PORT=$(free_port)
CONSOLE=http://127.0.0.1:$LISTEN_PORT
cat >"$DEMO/redrelay.toml" <<TOML
listen      = "127.0.0.1:$LISTEN_PORT"
queue_name  = "redrelay-demo"
ledger      = "$DEMO/ledger.db"
results_dir = "$DEMO/results"
workgroup   = "demo"
database    = "dev"
# redrelay's own events ("Run State Change"): a trigger below starts a
# pipeline when another one's run FINISHED.
publish_events = true
publish_source = "redrelay.demo"
TOML
export REDRELAY_CONFIG=$DEMO/redrelay.toml

echo "== redrelay setup"
"$BIN" setup

echo "== redrelay worker (in the background; it reacts to completion events)"
# No api_token is set: the worker makes one, keeps it in ledger.db.api-token
# (mode 0600) and prints "Open the console at http://...#token=..." once.
"$BIN" worker &
worker_pid=$!
pids+=("$worker_pid")
CONSOLE_URL=""
for _ in $(seq 100); do
  CONSOLE_URL=$("$BIN" console-url 2>/dev/null | head -n1 || true)
  [ -n "$CONSOLE_URL" ] && break
  sleep 0.1
done
[ -n "$CONSOLE_URL" ] || { echo "demo: the worker's listener did not start" >&2; exit 1; }
# The API's clients below read the token as any script would: from its file.
REDRELAY_API_TOKEN=$(head -n1 "$DEMO/ledger.db.api-token")
export REDRELAY_API_TOKEN
echo "== console: $CONSOLE_URL  (redrelay console-url prints it again)"
echo "   JSON API: $CONSOLE/api/v1 with Authorization: Bearer \$(cat $DEMO/ledger.db.api-token); OpenAPI: $CONSOLE/api/openapi.json"

echo "== sample data: s3://redrelay-demo/in/sales.csv on moto's S3"
cat >"$DEMO/sales.csv" <<CSV
region,amount,sold
north,10.50,2026-01-03
south,20.25,2026-01-10
north,7.25,2026-02-01
east,99.00,2026-02-14
south,3.75,2026-02-20
west,42.00,2026-03-02
CSV
"$VENV/bin/aws" s3 mb s3://redrelay-demo >/dev/null
"$VENV/bin/aws" s3 cp "$DEMO/sales.csv" s3://redrelay-demo/in/sales.csv >/dev/null

echo "== submitting the walkthrough as a chain of jobs"
ROLE="arn:aws:iam::123456789012:role/RedshiftDemo"
schema=$("$BIN" submit --name create_schema --sql "CREATE SCHEMA demo")
table=$("$BIN" submit --name create_table --after "$schema" \
  --sql "CREATE TABLE demo.sales (sale_id INT IDENTITY(1,1), region VARCHAR(20) NOT NULL ENCODE zstd,
         amount DECIMAL(10,2), sold DATE) DISTSTYLE AUTO SORTKEY(sold)")
load=$("$BIN" submit --name copy_sales --after "$table" \
  --sql "COPY demo.sales (region, amount, sold) FROM 's3://redrelay-demo/in/' IAM_ROLE '$ROLE' FORMAT AS CSV IGNOREHEADER 1")
merge=$("$BIN" submit --name sales_by_region --after "$load" \
  --sql "CREATE TABLE demo.sales_by_region AS
         SELECT region, COUNT(*) AS sales, SUM(amount)::DECIMAL(10,2) AS total,
                TO_CHAR(MAX(sold), 'YYYY-MM-DD') AS last_sale
         FROM demo.sales GROUP BY region")
report=$("$BIN" submit --name report --after "$merge" --param min_total=10 \
  --sql "SELECT region, sales, total, last_sale FROM demo.sales_by_region WHERE total >= :min_total ORDER BY total DESC")
unload=$("$BIN" submit --name unload_report --after "$report" \
  --sql "UNLOAD ('SELECT region, total FROM demo.sales_by_region ORDER BY total DESC') TO 's3://redrelay-demo/out/by_region_'
         IAM_ROLE '$ROLE' CSV HEADER PARALLEL OFF")
jobs=("$schema" "$table" "$load" "$merge" "$report" "$unload")
echo "jobs: ${jobs[*]}"

job_field() { "$BIN" jobs show "$1" --json | "$VENV/bin/python" -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$2"; }
for _ in $(seq 600); do
  state=$(job_field "$unload" state)
  results=$(job_field "$report" result_state)
  case "$state" in FINISHED) [ "$results" != PENDING ] && break ;; FAILED|ABORTED|SKIPPED|CANCELLED) break ;; esac
  sleep 0.1
done

for id in "${jobs[@]}"; do
  state=$(job_field "$id" state)
  [ "$state" = FINISHED ] || { echo "demo: job $id is $state, not FINISHED" >&2; exit 1; }
done

echo "== redrelay jobs list"
"$BIN" jobs list
echo "== redrelay jobs show $report"
"$BIN" jobs show "$report"
echo "== redrelay results $report"
"$BIN" results "$report"

echo "== the unloaded object: aws s3 cp s3://redrelay-demo/out/by_region_000 -"
"$VENV/bin/aws" s3 cp s3://redrelay-demo/out/by_region_000 -

echo "== a pipeline run to watch as a graph: slow_stage -> flaky_merge -> report"
cat >"$DEMO/nightly.toml" <<'TOML'
name = "nightly_sales"
[jobs.slow_stage]
sql = "CREATE TABLE demo.stage AS SELECT region, amount FROM demo.sales"
[jobs.slow_check]
sql = "SELECT COUNT(*) AS n FROM demo.sales"
[jobs.flaky_merge]
sql = "CREATE TABLE demo.merged AS SELECT region, SUM(amount) AS total FROM demo.stage GROUP BY region"
depends_on = ["slow_stage", "slow_check"]
[jobs.report]
sql = "SELECT region, total FROM demo.merged ORDER BY total DESC"
depends_on = ["flaky_merge"]
TOML
run=$("$BIN" pipeline run "$DEMO/nightly.toml")
echo "   open $CONSOLE/runs/$run#token=$REDRELAY_API_TOKEN to watch it"
run_state() { "$BIN" runs show "$1" --json | "$VENV/bin/python" -c "import json,sys; print(json.load(sys.stdin)['run']['state'])"; }
for _ in $(seq 600); do [ "$(run_state "$run")" = RUNNING ] || break; sleep 0.1; done
"$BIN" runs show "$run"
flaky=$("$BIN" jobs list --json | "$VENV/bin/python" -c "import json,sys; print([j['id'] for j in json.load(sys.stdin) if j['name']=='flaky_merge'][-1])")

if [ "${DEMO_KEEP:-}" = 1 ]; then
  echo
  echo "== everything stays up: open $CONSOLE/runs/$run#token=$REDRELAY_API_TOKEN"
  echo "   job $flaky (flaky_merge) FAILED once: press its Retry button and watch the graph."
  echo "   Python through the API: REDRELAY_API_TOKEN=\$(cat $DEMO/ledger.db.api-token) $VENV/bin/python scripts/api_example.py --url $CONSOLE"
  echo "   Ctrl-C stops the worker, the emulator and moto."
  wait "$worker_pid"
  exit 0
fi

echo "== retrying job $flaky through the JSON API: POST /api/v1/jobs/$flaky/retry"
"$VENV/bin/python" - "$CONSOLE" "$flaky" <<'PY'
import json, os, sys, urllib.request
url, job = sys.argv[1], sys.argv[2]
req = urllib.request.Request(f"{url}/api/v1/jobs/{job}/retry", method="POST",
                             headers={"Authorization": "Bearer " + os.environ["REDRELAY_API_TOKEN"]})
print(json.load(urllib.request.urlopen(req))["state"])
PY
for _ in $(seq 600); do [ "$(run_state "$run")" = RUNNING ] || break; sleep 0.1; done
"$BIN" runs show "$run"
[ "$(run_state "$run")" = FINISHED ] || { echo "demo: run $run did not finish" >&2; exit 1; }

echo "== another language: scripts/api_example.py submits a job and reads its result through the API"
"$VENV/bin/python" scripts/api_example.py --url "$CONSOLE" --sql "SELECT region, total FROM demo.merged ORDER BY region"

echo "== triggers: pipelines started by events (docs/triggers.md)"
landed=$("$BIN" submit --name create_landed --sql "CREATE TABLE demo.landed (what VARCHAR(20), value VARCHAR(200))")
cat >"$DEMO/load_landed.toml" <<'TOML'
name = "load_landed"
[params]
key = ""
[trigger]
dedupe = ["$.detail.bucket.name", "$.detail.object.key", "$.detail.object.eTag"]
[trigger.pattern]
source = ["aws.s3"]
detail-type = ["Object Created"]
detail = { bucket = { name = ["redrelay-demo"] }, object = { key = [{ prefix = "landing/" }] } }
[trigger.params]
key = "$.detail.object.key"
[jobs.load]
sql = "INSERT INTO demo.landed (what, value) VALUES ('s3 file', :key)"
params = { key = { param = "key" } }
TOML
cat >"$DEMO/app_batch.toml" <<'TOML'
name = "app_batch"
[params]
batch = ""
[trigger]
dedupe = ["$.detail.batch"]
[trigger.pattern]
source = ["demo.orders"]
detail-type = ["Batch Ready"]
[trigger.params]
batch = "$.detail.batch"
[jobs.take]
sql = "INSERT INTO demo.landed (what, value) VALUES ('app batch', :batch)"
params = { batch = { param = "batch" } }
TOML
cat >"$DEMO/after_load.toml" <<'TOML'
name = "after_load"
[params]
upstream = ""
[trigger.pattern]
source = ["redrelay.demo"]
detail-type = ["Run State Change"]
detail = { pipeline = ["load_landed"], state = ["FINISHED"] }
[trigger.params]
upstream = "$.detail.run_id"
[jobs.note]
sql = "INSERT INTO demo.landed (what, value) VALUES ('after run', :upstream)"
params = { upstream = { param = "upstream" } }
TOML
for f in load_landed app_batch after_load; do "$BIN" triggers add "$DEMO/$f.toml"; done
"$BIN" setup >/dev/null   # one EventBridge rule per trigger, to the same queue
"$VENV/bin/aws" s3api put-bucket-notification-configuration --bucket redrelay-demo \
  --notification-configuration '{"EventBridgeConfiguration": {}}'
for _ in $(seq 600); do [ "$(job_field "$landed" state)" = FINISHED ] && break; sleep 0.1; done
echo "-- a file lands in S3: s3://redrelay-demo/landing/sales-2026-12-04.csv"
"$VENV/bin/aws" s3 cp "$DEMO/sales.csv" s3://redrelay-demo/landing/sales-2026-12-04.csv >/dev/null
echo "-- an application says a batch is ready (PutEvents), twice: one run"
for _ in 1 2; do
  "$VENV/bin/aws" events put-events --entries '[{"Source": "demo.orders", "DetailType": "Batch Ready", "Detail": "{\"batch\": \"b42\"}"}]' >/dev/null
done
triggered() { "$BIN" runs list --json | "$VENV/bin/python" -c "
import json, sys
runs = [r for r in json.load(sys.stdin) if r['pipeline'] in ('load_landed', 'app_batch', 'after_load')]
print(len([r for r in runs if r['state'] == 'FINISHED']), len(runs))"; }
for _ in $(seq 600); do [ "$(triggered)" = "3 3" ] && break; sleep 0.1; done
[ "$(triggered)" = "3 3" ] || { echo "demo: the triggers' runs did not all finish: $(triggered)" >&2; "$BIN" triggers list >&2; exit 1; }
"$BIN" triggers list
echo "-- what the three runs wrote (the S3 key, the batch, the upstream run id)"
landed_report=$("$BIN" submit --name landed_report --sql "SELECT what, value FROM demo.landed ORDER BY what")
for _ in $(seq 600); do [ "$(job_field "$landed_report" result_state)" = FETCHED ] && break; sleep 0.1; done
"$BIN" results "$landed_report"
after=$("$BIN" runs list --json | "$VENV/bin/python" -c "import json,sys; print([r['id'] for r in json.load(sys.stdin) if r['pipeline']=='after_load'][-1])")
"$BIN" runs show "$after"

echo "== stopping the worker (SIGTERM)"
kill -TERM "$worker_pid"
wait "$worker_pid"
echo "== demo finished: ${#jobs[@]} chained jobs FINISHED, a pipeline run retried through the API and FINISHED, three pipelines started by events (an S3 file, an application, another run)"
