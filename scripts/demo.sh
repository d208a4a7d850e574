#!/usr/bin/env bash
# redrelay demo: the main job end to end on the local stack, no AWS account.
# Starts moto (SQS + EventBridge) and redrelay's Data API emulator on free
# loopback ports, creates the queue and rule, submits a three-step chained
# load, runs the worker until idle, prints the ledger and the final result,
# then stops what it started.
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
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
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
echo "== moto (SQS, EventBridge) on 127.0.0.1:$MOTO_PORT"

: >"$DEMO/emulator.out"
"$BIN" emulator --listen 127.0.0.1:0 --warehouse "$DEMO/warehouse.db" >"$DEMO/emulator.out" 2>"$DEMO/emulator.log" &
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

cat >"$DEMO/redrelay.toml" <<TOML
queue_name  = "redrelay-demo"
ledger      = "$DEMO/ledger.db"
results_dir = "$DEMO/results"
workgroup   = "demo"
database    = "dev"
TOML
export REDRELAY_CONFIG=$DEMO/redrelay.toml

echo "== redrelay setup"
"$BIN" setup

echo "== redrelay worker (in the background; it reacts to completion events)"
"$BIN" worker &
worker_pid=$!
pids+=("$worker_pid")
sleep 1

echo "== submitting a three-step chained load"
stage=$("$BIN" submit --name load_staging \
  --sql "CREATE TABLE staging_sales AS
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         SELECT i AS sale_id, 'region-' || (i % 4) AS region, (i * 37) % 500 + 0.25 AS amount FROM n")
merge=$("$BIN" submit --name merge_sales --after "$stage" \
  --sql "CREATE TABLE sales_by_region AS
         SELECT region, COUNT(*) AS sales, ROUND(SUM(amount), 2) AS total FROM staging_sales GROUP BY region")
report=$("$BIN" submit --name report --after "$merge" --param min_sales=100 \
  --sql "SELECT region, sales, total FROM sales_by_region WHERE sales >= :min_sales ORDER BY total DESC")
echo "jobs: load_staging=$stage merge_sales=$merge report=$report"

job_field() { "$BIN" jobs show "$1" --json | "$VENV/bin/python" -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$2"; }
for _ in $(seq 600); do
  state=$(job_field "$report" state)
  results=$(job_field "$report" result_state)
  case "$state" in FINISHED) [ "$results" != PENDING ] && break ;; FAILED|ABORTED|SKIPPED|CANCELLED) break ;; esac
  sleep 0.1
done

echo "== stopping the worker (SIGTERM)"
kill -TERM "$worker_pid"
wait "$worker_pid"

echo "== redrelay jobs list"
"$BIN" jobs list
echo "== redrelay jobs show $report"
"$BIN" jobs show "$report"
echo "== redrelay results $report"
"$BIN" results "$report"

for id in "$stage" "$merge" "$report"; do
  state=$(job_field "$id" state)
  [ "$state" = FINISHED ] || { echo "demo: job $id is $state, not FINISHED" >&2; exit 1; }
done
echo "== demo finished: three chained jobs FINISHED"
