//! The whole Data API on a laptop (issue 11), checked with clients we did
//! not write: the walkthrough's commands through the unmodified aws CLI,
//! boto3 with its paginators and errors, and the Rust SDK; Redshift SQL as
//! real scripts carry it; COPY and UNLOAD on moto's S3; SecretArn in moto's
//! Secrets Manager; sessions; forgetting ended statements (issue 7) and
//! API latency (issue 10). Each test runs its own moto and emulator on free
//! loopback ports (tests/common), killed by PID when done.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{venv_bin, Stack, StackOptions};
use serde_json::Value;

fn stack(name: &str, emulator_args: &[&str]) -> Stack {
    paged_stack(name, 1000, emulator_args)
}

fn paged_stack(name: &str, page_size: usize, emulator_args: &[&str]) -> Stack {
    Stack::start_with(
        name,
        StackOptions {
            page_size,
            emulator_args: emulator_args.iter().map(|s| s.to_string()).collect(),
            ..StackOptions::default()
        },
    )
}

/// Runs the venv's aws CLI; returns (success, stdout as JSON, or as a
/// string when it is not JSON, stderr).
fn aws_raw(stack: &Stack, args: &[&str]) -> (bool, Value, String) {
    let mut cmd = Command::new(venv_bin("aws"));
    cmd.args(args).args(["--output", "json"]);
    stack.aws_env(&mut cmd);
    let out = cmd.output().expect("run aws");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        // `aws s3 ...` prints text, the API commands JSON.
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (out.status.success(), value, common::stderr(&out))
}

/// `aws redshift-data OP --workgroup-name wg-test --database dev ARGS...`.
fn wg_raw(stack: &Stack, op: &str, args: &[&str]) -> (bool, Value, String) {
    let mut all = vec![
        "redshift-data",
        op,
        "--workgroup-name",
        "wg-test",
        "--database",
        "dev",
    ];
    all.extend_from_slice(args);
    aws_raw(stack, &all)
}

fn wg(stack: &Stack, op: &str, args: &[&str]) -> Value {
    let (ok, v, err) = wg_raw(stack, op, args);
    assert!(ok, "aws redshift-data {op} {args:?} failed: {err}");
    v
}

fn aws(stack: &Stack, args: &[&str]) -> Value {
    let (ok, v, err) = aws_raw(stack, args);
    assert!(ok, "aws {args:?} failed: {err}");
    v
}

/// `aws redshift-data execute-statement` on wg-test/dev, waiting for the
/// end (WaitTimeSeconds); returns the DescribeStatement of the statement.
fn run_sql(stack: &Stack, sql: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--wait-time-seconds", "10", "--sql", sql];
    args.extend_from_slice(extra);
    let out = wg(stack, "execute-statement", &args);
    let id = out["Id"].as_str().expect("Id").to_string();
    aws(stack, &["redshift-data", "describe-statement", "--id", &id])
}

/// Runs SQL that must FAIL with an error containing `needle`.
fn fails_with(stack: &Stack, sql: &str, needle: &str) -> Value {
    let d = run_sql(stack, sql, &[]);
    assert_eq!(d["Status"], "FAILED", "{sql}: {d:#}");
    let error = d["Error"].as_str().unwrap_or_default();
    assert!(error.contains(needle), "{sql}: {error:?} lacks {needle:?}");
    d
}

fn finished(stack: &Stack, sql: &str, extra: &[&str]) -> Value {
    let d = run_sql(stack, sql, extra);
    assert_eq!(d["Status"], "FINISHED", "{sql}: {d:#}");
    d
}

#[test]
fn walkthrough_with_the_aws_cli() {
    let stack = paged_stack("walk", 2, &["--hold", "30000:slow_query"]);
    // 1. Schema and table, as the walkthrough (and AWS's samples) write them.
    finished(&stack, "create schema demo", &[]);
    finished(
        &stack,
        "create table demo.sales (sale_id int identity(1,1), region varchar(20) not null encode zstd distkey, \
         amount decimal(10,2), sold date) diststyle key sortkey(sold)",
        &[],
    );
    // 2. COPY sample CSV from a bucket on moto's S3.
    aws(&stack, &["s3", "mb", "s3://walk-data"]);
    let csv = stack.write_file(
        "sales.csv",
        "region,amount,sold\nnorth,10.50,2026-01-03\nsouth,20.25,2026-02-10\n\"we,st\",5.00,2026-02-11\nnorth,7.25,2026-03-01\n",
    );
    aws(&stack, &["s3", "cp", &csv, "s3://walk-data/in/sales.csv"]);
    let copy = finished(
        &stack,
        "COPY demo.sales (region, amount, sold) FROM 's3://walk-data/in/' \
         IAM_ROLE 'arn:aws:iam::123456789012:role/RedshiftCopy' FORMAT AS CSV IGNOREHEADER 1",
        &[],
    );
    assert_eq!(copy["ResultRows"], 4, "{copy:#}");
    // A missing prefix fails with Redshift's wording.
    fails_with(
        &stack,
        "COPY demo.sales FROM 's3://walk-data/none/' IAM_ROLE default CSV",
        "The specified S3 prefix 'none/' does not exist",
    );
    // A bad row fails the whole load (nothing committed), in Redshift's
    // words; a MANIFEST names the objects to load.
    let bad = stack.write_file("bad.csv", "north,1.00,2026-01-01\nsouth,2.00\n");
    aws(&stack, &["s3", "cp", &bad, "s3://walk-data/bad/bad.csv"]);
    fails_with(
        &stack,
        "COPY demo.sales (region, amount, sold) FROM 's3://walk-data/bad/' IAM_ROLE default CSV",
        "Load into table 'demo.sales' failed",
    );
    let manifest = stack.write_file(
        "load.manifest",
        "{\"entries\": [{\"url\": \"s3://walk-data/in/sales.csv\", \"mandatory\": true}]}",
    );
    aws(
        &stack,
        &[
            "s3",
            "cp",
            &manifest,
            "s3://walk-data/manifests/load.manifest",
        ],
    );
    let via_manifest = finished(
        &stack,
        "COPY demo.sales (region, amount, sold) FROM 's3://walk-data/manifests/load.manifest' \
         IAM_ROLE default CSV IGNOREHEADER 1 MANIFEST",
        &[],
    );
    assert_eq!(via_manifest["ResultRows"], 4, "{via_manifest:#}");
    finished(&stack, "DELETE FROM demo.sales WHERE sale_id > 4", &[]);
    // 3.-5. A parameterised SELECT (parameters in any order), described.
    let select = finished(
        &stack,
        "select region, count(*) as n, sum(amount)::decimal(10,2) as total from demo.sales \
         where amount >= :min and sold < :before group by region order by region",
        &[
            "--parameters",
            "[{\"name\": \"before\", \"value\": \"2026-12-31\"}, {\"name\": \"min\", \"value\": \"6\"}]",
        ],
    );
    assert_eq!(select["HasResultSet"], true);
    assert_eq!(select["ResultRows"], 2);
    assert_eq!(select["QueryParameters"].as_array().map(Vec::len), Some(2));
    let id = select["Id"].as_str().unwrap_or_default().to_string();
    // 7. get-statement-result, every page (the CLI follows NextToken).
    let result = aws(
        &stack,
        &["redshift-data", "get-statement-result", "--id", &id],
    );
    let records = result["Records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 2, "{result:#}");
    assert_eq!(records[0][0]["stringValue"], "north");
    assert_eq!(records[0][1]["longValue"], 2);
    assert_eq!(result["ColumnMetadata"][0]["name"], "region");
    // get-statement-result-v2 on a CSV statement.
    let csv_stmt = finished(
        &stack,
        "select region, amount from demo.sales order by amount",
        &["--result-format", "CSV"],
    );
    let v2 = aws(
        &stack,
        &[
            "redshift-data",
            "get-statement-result-v2",
            "--id",
            csv_stmt["Id"].as_str().unwrap_or_default(),
        ],
    );
    let text: String = v2["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["CSVRecords"].as_str())
        .collect();
    assert!(text.starts_with("region,amount\n\"we,st\",5"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    // 8. A batch: sub-statement ids, results per sub-statement.
    let batch = wg(&stack, "batch-execute-statement", &["--wait-time-seconds",
            "10",
            "--sqls",
            "create table demo.by_region as select region, sum(amount) as total from demo.sales group by region",
            "select count(*) from demo.by_region where total > :t",
            "--parameters",
            "[{\"name\": \"t\", \"value\": \"10\"}]"]);
    assert_eq!(batch["Status"], "FINISHED", "{batch:#}");
    let bid = batch["Id"].as_str().unwrap_or_default().to_string();
    let described = aws(
        &stack,
        &["redshift-data", "describe-statement", "--id", &bid],
    );
    assert_eq!(described["SubStatements"].as_array().map(Vec::len), Some(2));
    assert_eq!(described["ExecutionMode"], "TRANSACTION");
    let sub2 = aws(
        &stack,
        &[
            "redshift-data",
            "get-statement-result",
            "--id",
            &format!("{bid}:2"),
        ],
    );
    assert_eq!(sub2["Records"][0][0]["longValue"], 2, "{sub2:#}");
    // 6. cancel-statement on a running query (held by a fault rule).
    let held = wg(
        &stack,
        "execute-statement",
        &["--sql", "select 'slow_query'"],
    );
    let hid = held["Id"].as_str().unwrap_or_default().to_string();
    let cancelled = aws(&stack, &["redshift-data", "cancel-statement", "--id", &hid]);
    assert_eq!(cancelled["Status"], true);
    let after = aws(
        &stack,
        &[
            "redshift-data",
            "describe-statement",
            "--id",
            &hid,
            "--wait-time-seconds",
            "5",
        ],
    );
    assert_eq!(after["Status"], "ABORTED", "{after:#}");
    // list-statements: the statements of the last 24 hours, newest first.
    let listed = aws(
        &stack,
        &["redshift-data", "list-statements", "--status", "ABORTED"],
    );
    assert_eq!(listed["Statements"][0]["Id"], hid.as_str());
    // The metadata commands.
    let dbs = wg(&stack, "list-databases", &[]);
    assert_eq!(dbs["Databases"], serde_json::json!(["dev"]));
    let schemas = wg(&stack, "list-schemas", &["--schema-pattern", "dem%"]);
    assert_eq!(schemas["Schemas"], serde_json::json!(["demo"]));
    let tables = wg(
        &stack,
        "list-tables",
        &["--schema-pattern", "demo", "--table-pattern", "%s%"],
    );
    let names: Vec<&str> = tables["Tables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["sales"], "{tables:#}");
    let table = wg(
        &stack,
        "describe-table",
        &["--schema", "demo", "--table", "sales"],
    );
    let types: Vec<(&str, &str)> = table["ColumnList"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or(""),
                c["typeName"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("sale_id", "int4"),
            ("region", "varchar"),
            ("amount", "numeric"),
            ("sold", "date")
        ]
    );
    assert_eq!(table["ColumnList"][1]["length"], 20);
    assert_eq!(table["ColumnList"][1]["nullable"], 0);
    assert_eq!(table["ColumnList"][2]["scale"], 2);
    // 10. UNLOAD to S3, then read the object back.
    let unload = finished(
        &stack,
        "UNLOAD ('select region, total from demo.by_region order by region') TO 's3://walk-data/out/by_region_' \
         IAM_ROLE 'arn:aws:iam::123456789012:role/RedshiftCopy' CSV HEADER PARALLEL OFF MANIFEST",
        &[],
    );
    assert_eq!(unload["ResultRows"], 3);
    let objects = aws(
        &stack,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            "walk-data",
            "--prefix",
            "out/",
        ],
    );
    let keys: Vec<&str> = objects["Contents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["Key"].as_str())
        .collect();
    assert_eq!(keys, vec!["out/by_region_000", "out/by_region_manifest"]);
    let dest = stack.dir.path().join("unloaded.csv");
    aws(
        &stack,
        &[
            "s3",
            "cp",
            "s3://walk-data/out/by_region_000",
            &dest.display().to_string(),
        ],
    );
    let unloaded = std::fs::read_to_string(&dest).expect("unloaded file");
    // SQLite keeps 5.00 in a DECIMAL column as the integer 5 (docs/emulator.md).
    assert_eq!(
        unloaded,
        "region,total\nnorth,17.75\nsouth,20.25\n\"we,st\",5\n"
    );
    // A second UNLOAD to the same prefix is refused without ALLOWOVERWRITE.
    fails_with(
        &stack,
        "UNLOAD ('select 1') TO 's3://walk-data/out/by_region_' IAM_ROLE default CSV PARALLEL OFF",
        "ALLOWOVERWRITE",
    );
    // 9. The same with --secret-arn: a secret of moto's Secrets Manager
    // works, a missing one is refused.
    let secret = aws(
        &stack,
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            "walk-db",
            "--secret-string",
            "{\"username\": \"awsuser\", \"password\": \"x\"}",
        ],
    );
    let arn = secret["ARN"].as_str().expect("ARN").to_string();
    finished(&stack, "select 1", &["--secret-arn", &arn]);
    let (ok, _, err) = wg_raw(
        &stack,
        "execute-statement",
        &[
            "--secret-arn",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf",
            "--sql",
            "select 1",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("ValidationException") && err.contains("can't find the specified secret"),
        "{err}"
    );
    // list-sessions: one session opened with a keep-alive.
    let opened = wg(
        &stack,
        "execute-statement",
        &[
            "--session-keep-alive-seconds",
            "60",
            "--wait-time-seconds",
            "10",
            "--sql",
            "select 1",
        ],
    );
    let sid = opened["SessionId"].as_str().expect("SessionId").to_string();
    let sessions = aws(&stack, &["redshift-data", "list-sessions"]);
    assert_eq!(sessions["Sessions"][0]["SessionId"], sid.as_str());
    assert_eq!(sessions["Sessions"][0]["Status"], "AVAILABLE");
    assert_eq!(sessions["Sessions"][0]["SessionAliveSeconds"], 60);
}

/// Redshift scripts unchanged: AWS's quick-start DDL, `::` casts and the
/// common Redshift functions; a construct the layer cannot run is named.
#[test]
fn redshift_sql_runs_unchanged() {
    let stack = stack("rssql", &[]);
    finished(
        &stack,
        "CREATE TABLE IF NOT EXISTS public.region (\n  R_REGIONKEY bigint NOT NULL,\n  R_NAME varchar(25),\n  R_COMMENT varchar(152))\ndiststyle all",
        &[],
    );
    finished(
        &stack,
        "insert into region values (0, 'AFRICA', 'x'), (1, 'AMERICA', null), (2, 'ASIA', 'z')",
        &[],
    );
    let d = finished(
        &stack,
        "select r_regionkey::varchar || '-' || r_name as k, nvl(r_comment, 'none') as c, \
         nvl2(r_comment, 'has', 'hasnt') as h, decode(r_regionkey, 0, 'zero', 1, 'one', 'many') as d, \
         len(r_name) as l, dateadd(day, 30, '2026-01-15')::date as plus30, \
         datediff(month, '2026-01-31', '2026-03-01') as months, date_trunc('month', '2026-02-17')::date as first, \
         to_char('2026-02-17'::date, 'YYYY/MM/DD') as ymd, getdate() is not null as now_ok \
         from public.region order by r_regionkey",
        &[],
    );
    let rows = aws(
        &stack,
        &[
            "redshift-data",
            "get-statement-result",
            "--id",
            d["Id"].as_str().unwrap_or_default(),
        ],
    )["Records"]
        .clone();
    let row1: Vec<Value> = rows[1]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            f.as_object()
                .and_then(|o| o.values().next().cloned())
                .unwrap_or(Value::Null)
        })
        .collect();
    assert_eq!(
        row1,
        serde_json::json!([
            "1-AMERICA",
            "none",
            "hasnt",
            "one",
            7,
            "2026-02-14",
            2,
            "2026-02-01",
            "2026/02/17",
            1
        ])
        .as_array()
        .cloned()
        .unwrap_or_default(),
        "{rows:#}"
    );
    let agg = finished(
        &stack,
        "select listagg(r_name, ',') within group (order by r_name desc) from region",
        &[],
    );
    let out = aws(
        &stack,
        &[
            "redshift-data",
            "get-statement-result",
            "--id",
            agg["Id"].as_str().unwrap_or_default(),
        ],
    );
    assert_eq!(out["Records"][0][0]["stringValue"], "ASIA,AMERICA,AFRICA");
    fails_with(&stack, "select median(r_regionkey) from region", "MEDIAN");
    fails_with(&stack, "select * from nosuch.region", "nosuch.region");
}

/// boto3 unchanged: paginators, sessions, AUTO_COMMIT, WaitTimeSeconds and
/// the error types.
#[test]
fn boto3_paginators_sessions_and_errors() {
    let stack = paged_stack(
        "boto",
        3,
        &[
            "--hold",
            "1500:held_for_waiters",
            "--max-waiting-requests",
            "1",
        ],
    );
    let script = r#"
import boto3, os, threading, time
c = boto3.client("redshift-data", endpoint_url=os.environ["AWS_ENDPOINT_URL_REDSHIFT_DATA"])
T = dict(WorkgroupName="wg-test", Database="dev")
def run(sql, **kw):
    r = c.execute_statement(Sql=sql, WaitTimeSeconds=10, **T, **kw)
    assert r["Status"] == "FINISHED", c.describe_statement(Id=r["Id"])
    return r
run("create schema if not exists pag")
for i in range(7):
    run(f"create table pag.t{i} (a int, b varchar(10), c timestamp)")
tables = [t["name"] for page in c.get_paginator("list_tables").paginate(SchemaPattern="pag", PaginationConfig={"PageSize": 2}, **T) for t in page["Tables"]]
assert tables == [f"t{i}" for i in range(7)], tables
pages = list(c.get_paginator("describe_table").paginate(Schema="pag", PaginationConfig={"PageSize": 2}, **T))
cols = [col["name"] for p in pages for col in p["ColumnList"]]
assert len(cols) == 21 and len(pages) == 11, (len(cols), len(pages))
r = run("select * from (select 1 as n union all select 2 union all select 3 union all select 4 union all select 5 union all select 6 union all select 7) order by n")
pages = list(c.get_paginator("get_statement_result").paginate(Id=r["Id"]))
assert len(pages) == 3 and [rec[0]["longValue"] for p in pages for rec in p["Records"]] == list(range(1, 8)), pages
stmts = [s["Id"] for p in c.get_paginator("list_statements").paginate(PaginationConfig={"PageSize": 4}) for s in p["Statements"]]
assert len(stmts) == 9 and len(set(stmts)) == 9, stmts
# A session: temp tables live in it, one statement at a time.
s = c.execute_statement(Sql="create temp table scratch as select 41 as v", SessionKeepAliveSeconds=30, WaitTimeSeconds=10, **T)
sid = s["SessionId"]
r = c.execute_statement(Sql="select v + 1 from scratch", SessionId=sid, WaitTimeSeconds=10)
assert r["Status"] == "FINISHED" and r["SessionId"] == sid and r["HasResultSet"] is True, r
assert c.get_statement_result(Id=r["Id"])["Records"][0][0]["longValue"] == 42
outside = c.execute_statement(Sql="select v from scratch", WaitTimeSeconds=10, **T)
assert outside["Status"] == "FAILED", outside
# A session with a 1 s keep-alive closes once idle that long.
short = c.execute_statement(Sql="select 1", SessionKeepAliveSeconds=1, WaitTimeSeconds=10, **T)["SessionId"]
time.sleep(2.5)
assert [x["SessionId"] for x in c.list_sessions(Status="CLOSED")["Sessions"]] == [short]
assert short not in [x["SessionId"] for x in c.list_sessions()["Sessions"]]
try:
    c.execute_statement(Sql="select 1", SessionId=short)
    raise SystemExit("a closed session ran a statement")
except c.exceptions.ValidationException as e:
    assert "closed" in str(e), e
busy = c.execute_statement(Sql="select 'held_for_waiters'", SessionId=sid)
try:
    c.execute_statement(Sql="select 1", SessionId=sid)
    raise SystemExit("a busy session accepted a second statement")
except c.exceptions.ValidationException as e:
    assert "busy" in str(e), e
sessions = c.list_sessions(SessionId=sid)["Sessions"]
assert sessions[0]["Status"] == "BUSY" and sessions[0]["CurrentStatementId"] == busy["Id"], sessions
# WaitTimeSeconds: one waiter at most (--max-waiting-requests 1).
errors = []
def wait():
    try:
        c.describe_statement(Id=busy["Id"], WaitTimeSeconds=5)
    except c.exceptions.ActiveWaitingRequestsExceededException as e:
        errors.append(e)
threads = [threading.Thread(target=wait) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
assert len(errors) == 1, errors
assert c.describe_statement(Id=busy["Id"])["Status"] == "FINISHED"
# AUTO_COMMIT: a failed SQL does not undo the others.
b = c.batch_execute_statement(Sqls=["create table ac (a int)", "insert into ac values (1)", "insert into missing values (1)", "insert into ac values (:v)"], Parameters=[{"name": "v", "value": "2"}], ExecutionMode="AUTO_COMMIT", WaitTimeSeconds=10, **T)
d = c.describe_statement(Id=b["Id"])
assert d["Status"] == "FAILED" and d["ExecutionMode"] == "AUTO_COMMIT", d
assert [s["Status"] for s in d["SubStatements"]] == ["FINISHED", "FINISHED", "FAILED", "FINISHED"], d["SubStatements"]
n = run("select count(*) from ac")
assert c.get_statement_result(Id=n["Id"])["Records"][0][0]["longValue"] == 2
# (the aws CLI's own botocore is older: RedshiftQueryUuid only shows here)
d = c.describe_statement(Id=b["Id"])
assert d["RedshiftQueryUuid"] and all(x["RedshiftQueryUuid"] for x in d["SubStatements"]), d
# CREATE DATABASE: on its own it shows in ListDatabases; in a transaction
# block it fails as in Redshift.
run("create database sales")
assert c.list_databases(**T)["Databases"] == ["dev", "sales"]
b = c.batch_execute_statement(Sqls=["select 1", "create database other"], WaitTimeSeconds=10, **T)
d = c.describe_statement(Id=b["Id"])
assert d["Status"] == "FAILED" and "cannot run inside a transaction block" in d["Error"], d
# The catalog answers while a long query holds the warehouse.
long = c.execute_statement(Sql="with recursive n(x) as (select 1 union all select x + 1 from n where x < 2000000000) select count(*) from n", **T)
time.sleep(0.3)
t = time.monotonic()
assert [x["name"] for x in c.list_tables(TablePattern="ac", **T)["Tables"]] == ["ac"]
assert time.monotonic() - t < 2, "ListTables waited for the running query"
assert c.describe_statement(Id=long["Id"])["Status"] == "STARTED"
c.cancel_statement(Id=long["Id"])
assert c.describe_statement(Id=long["Id"], WaitTimeSeconds=10)["Status"] == "ABORTED"
# Error types.
for call, kind in [
    (lambda: c.describe_statement(Id="00000000-0000-0000-0000-000000000000"), c.exceptions.ResourceNotFoundException),
    (lambda: c.describe_statement(Id="nope"), c.exceptions.ValidationException),
    (lambda: c.list_tables(WorkgroupName="wg-test", Database="nosuchdb"), c.exceptions.ValidationException),
    (lambda: c.execute_statement(Sql="select 1", SessionId="00000000-0000-0000-0000-000000000000"), c.exceptions.ResourceNotFoundException),
    (lambda: c.batch_execute_statement(Sqls=["select 1"], ExecutionMode="SOMETIMES", **T), c.exceptions.ValidationException),
]:
    try:
        call()
        raise SystemExit(f"no {kind}")
    except kind:
        pass
print("ok")
"#;
    assert_eq!(stack.python(script).trim(), "ok");
}

/// The Rust SDK (aws-sdk-redshiftdata) parses every new output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_metadata_sessions_and_waits() {
    use aws_sdk_redshiftdata::types::StatusString;
    let stack = stack("rustsdk", &[]);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&stack.data_url)
        .credentials_provider(aws_sdk_redshiftdata::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let c = aws_sdk_redshiftdata::Client::new(&sdk);
    let out = c
        .execute_statement()
        .workgroup_name("wg-test")
        .database("dev")
        .sql("create table rs (id bigint, name varchar(30), at timestamp)")
        .session_keep_alive_seconds(60)
        .wait_time_seconds(10)
        .send()
        .await
        .expect("execute");
    assert_eq!(
        out.status(),
        Some(&aws_sdk_redshiftdata::types::StatementStatusString::Finished)
    );
    assert_eq!(out.has_result_set(), Some(false));
    assert!(out.redshift_pid().is_some());
    let sid = out.session_id().expect("session id").to_string();
    let sessions = c.list_sessions().send().await.expect("list sessions");
    assert_eq!(sessions.sessions()[0].session_id(), sid);
    assert!(sessions.sessions()[0].session_ttl().is_some());
    let b = c
        .batch_execute_statement()
        .session_id(&sid)
        .sqls("insert into rs values (1, :n, getdate())")
        .sqls("select name from rs")
        .parameters(
            aws_sdk_redshiftdata::types::SqlParameter::builder()
                .name("n")
                .value("ada")
                .build()
                .expect("param"),
        )
        .wait_time_seconds(10)
        .send()
        .await
        .expect("batch");
    let id = b.id().expect("id").to_string();
    let d = c
        .describe_statement()
        .id(&id)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("describe");
    assert_eq!(d.status(), Some(&StatusString::Finished));
    assert_eq!(d.session_id(), Some(sid.as_str()));
    let r = c
        .get_statement_result()
        .id(format!("{id}:2"))
        .send()
        .await
        .expect("result");
    assert_eq!(
        r.records()[0][0].as_string_value().ok().map(String::as_str),
        Some("ada")
    );
    let tables = c
        .list_tables()
        .workgroup_name("wg-test")
        .database("dev")
        .table_pattern("r_")
        .send()
        .await
        .expect("list tables");
    assert_eq!(tables.tables()[0].name(), Some("rs"));
    let cols: Vec<String> = c
        .describe_table()
        .workgroup_name("wg-test")
        .database("dev")
        .table("rs")
        .max_results(1)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("describe table pages")
        .iter()
        .map(|c| format!("{}:{}", c.name().unwrap_or(""), c.type_name().unwrap_or("")))
        .collect();
    assert_eq!(cols, vec!["id:int8", "name:varchar", "at:timestamp"]);
    let schemas = c
        .list_schemas()
        .workgroup_name("wg-test")
        .database("dev")
        .send()
        .await
        .expect("schemas");
    assert_eq!(schemas.schemas(), ["public".to_string()]);
    let dbs = c
        .list_databases()
        .workgroup_name("wg-test")
        .database("dev")
        .send()
        .await
        .expect("databases");
    assert_eq!(dbs.databases(), ["dev".to_string()]);
}

/// Issue 7 item 9: ended statements are forgotten after --result-ttl-secs,
/// as AWS forgets them after 24 h; the emulator's memory does not grow.
#[test]
fn ended_statements_are_forgotten_after_the_result_ttl() {
    let stack = stack("forget", &["--result-ttl-secs", "1"]);
    // The execute answer itself (no DescribeStatement: with a 1 s TTL the
    // statement may be forgotten before a second CLI call).
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let sql = format!("select {i}");
            let out = wg(
                &stack,
                "execute-statement",
                &["--wait-time-seconds", "10", "--sql", &sql],
            );
            assert_eq!(out["Status"], "FINISHED", "{out:#}");
            out["Id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(3000));
    let (ok, _, err) = aws_raw(
        &stack,
        &["redshift-data", "describe-statement", "--id", &ids[0]],
    );
    assert!(!ok, "an old statement is still described");
    assert!(
        err.contains("ResourceNotFoundException") && err.contains("expired"),
        "{err}"
    );
    let (ok, _, err) = aws_raw(
        &stack,
        &["redshift-data", "get-statement-result", "--id", &ids[1]],
    );
    assert!(!ok && err.contains("expired"), "{err}");
    let listed = aws(&stack, &["redshift-data", "list-statements"]);
    assert_eq!(
        listed["Statements"].as_array().map(Vec::len),
        Some(0),
        "{listed:#}"
    );
    // At shutdown the emulator records how many statements it still keeps.
    let mut stack = stack;
    if let Some(emu) = stack.emulator.as_mut() {
        emu.signal("TERM");
        assert!(
            emu.wait_exit(Duration::from_secs(15)).is_some(),
            "emulator did not stop"
        );
    }
    let counters = stack.record_kind("counters");
    assert_eq!(
        counters
            .last()
            .map(|c| c["counters"]["statements_in_memory"].clone()),
        Some(Value::from(0)),
        "{counters:?}"
    );
}

/// Issue 10 item 1: per-operation latency, with jitter.
#[test]
fn api_latency_per_operation() {
    let stack = stack(
        "latency",
        &[
            "--api-latency-ms",
            "ExecuteStatement=1200",
            "--api-latency-jitter-ms",
            "100",
        ],
    );
    // Timed inside one Python process: the aws CLI's own start-up time
    // varies too much on a loaded machine.
    let script = r#"
import boto3, os, time
c = boto3.client("redshift-data", endpoint_url=os.environ["AWS_ENDPOINT_URL_REDSHIFT_DATA"])
c.list_statements()  # warm the connection
t = time.monotonic(); c.execute_statement(Sql="select 1", WorkgroupName="wg-test", Database="dev"); e = time.monotonic() - t
t = time.monotonic(); c.list_statements(); l = time.monotonic() - t
print(f"{e:.3f} {l:.3f}")
"#;
    let out = stack.python(script);
    let times: Vec<f64> = out
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let (exec, list) = (times[0], times[1]);
    assert!(exec >= 1.2, "ExecuteStatement took {exec} s");
    assert!(
        list + 0.8 < exec,
        "ListStatements {list} s vs ExecuteStatement {exec} s"
    );
}
