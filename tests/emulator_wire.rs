//! The emulator's wire protocol, checked with clients we did not write: the
//! aws CLI v1 and boto3 (from the project's virtualenv, `make venv`), and
//! the official Rust SDK. Each test starts the built binary
//! (`redrelay emulator --listen 127.0.0.1:0`) on its own warehouse file and
//! kills it by PID when done.

mod common;

use std::io::{BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{emulator_address, start_moto, venv_bin, wait_until, Proc};
use serde_json::{json, Value};

struct Emulator {
    proc: Proc,
    url: String,
    dir: tempfile::TempDir,
}

impl Emulator {
    fn start(extra: &[&str]) -> Emulator {
        Emulator::start_with_env(extra, &[])
    }

    /// Started with moto (at `moto`) as its EventBridge.
    fn start_on_moto(extra: &[&str], moto: &str) -> Emulator {
        Emulator::start_with_env(
            extra,
            &[
                ("AWS_ENDPOINT_URL", moto),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_REGION", "us-east-1"),
            ],
        )
    }

    fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Emulator {
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr = std::fs::File::create(dir.path().join("emulator.log")).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_redrelay"));
        cmd.arg("emulator")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--warehouse")
            .arg(dir.path().join("w.db"))
            .arg("--record")
            .arg(dir.path().join("record.jsonl"))
            .args(extra)
            .env("REDRELAY_LOG", "info")
            .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("no-credentials"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start redrelay emulator");
        let stdout = child.stdout.take().expect("stdout");
        let proc = Proc {
            child,
            name: "emulator".into(),
        };
        let mut reader = BufReader::new(stdout);
        let addr = emulator_address(&mut reader).unwrap_or_else(|e| {
            panic!(
                "{e}; log: {}",
                std::fs::read_to_string(dir.path().join("emulator.log")).unwrap_or_default()
            )
        });
        // Keep draining stdout so the child never blocks on it.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        Emulator {
            proc,
            url: format!("http://{addr}"),
            dir,
        }
    }

    /// SIGTERM, then wait for a clean exit: the emulator sends the events
    /// it still holds back, and the record gets its counters.
    fn stop(&mut self) {
        self.proc.signal("TERM");
        let status = self.proc.wait_exit(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "the emulator did not stop cleanly on SIGTERM: {status:?}\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("record.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line is JSON"))
            .collect()
    }

    fn client_env(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-credentials"),
            )
            .env("AWS_PAGER", "")
            .env("EMULATOR_URL", &self.url);
    }

    /// `aws redshift-data ARGS`: Ok(parsed stdout) or Err(stderr).
    fn aws(&self, args: &[&str]) -> Result<Value, String> {
        let mut cmd = Command::new(venv_bin("aws"));
        cmd.arg("redshift-data")
            .args(args)
            .arg("--endpoint-url")
            .arg(&self.url)
            .arg("--output")
            .arg("json");
        self.client_env(&mut cmd);
        let out = cmd.output().expect("run aws");
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            Ok(serde_json::from_str(&text).expect("aws output is JSON"))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn aws_ok(&self, args: &[&str]) -> Value {
        self.aws(args)
            .unwrap_or_else(|e| panic!("aws {args:?} failed: {e}\nemulator log:\n{}", self.log()))
    }

    /// Runs a Python script (boto3 client `rsd` on the emulator is
    /// predefined); the script prints one JSON value.
    fn python(&self, script: &str) -> Value {
        let prelude = r#"
import json, os, sys, time
import boto3, botocore
from botocore.config import Config
rsd = boto3.client("redshift-data", endpoint_url=os.environ["EMULATOR_URL"],
                   config=Config(retries={"mode": "standard", "total_max_attempts": 1}, parameter_validation=False))
def wait(i, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        d = rsd.describe_statement(Id=i)
        if d["Status"] in ("FINISHED", "FAILED", "ABORTED"):
            return d
        time.sleep(0.02)
    raise SystemExit("statement %s did not end" % i)
def settle(i, timeout=20):
    # The status once the statement has left the queue (not SUBMITTED or PICKED).
    end = time.time() + timeout
    while time.time() < end:
        s = rsd.describe_statement(Id=i)["Status"]
        if s not in ("SUBMITTED", "PICKED"):
            return s
        time.sleep(0.02)
    raise SystemExit("statement %s did not start" % i)
def err(f, **kw):
    try:
        f(**kw)
    except botocore.exceptions.ClientError as e:
        return [e.response["Error"]["Code"], e.response["Error"]["Message"],
                e.response["ResponseMetadata"]["HTTPStatusCode"]]
    return None
"#;
        let mut cmd = Command::new(venv_bin("python"));
        cmd.arg("-c").arg(format!("{prelude}\n{script}"));
        self.client_env(&mut cmd);
        let out = cmd.output().expect("run python");
        assert!(
            out.status.success(),
            "python failed: {}\nemulator log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "python output is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Polls DescribeStatement with the aws CLI until the statement ends.
    fn wait(&self, id: &str) -> Value {
        wait_until(
            Duration::from_secs(20),
            &format!("statement {id} to end"),
            || {
                let d = self.aws_ok(&["describe-statement", "--id", id]);
                let s = d["Status"].as_str().unwrap_or("");
                if matches!(s, "FINISHED" | "FAILED" | "ABORTED") {
                    Ok(d)
                } else {
                    Err(d.to_string())
                }
            },
        )
    }
}

fn statement_lines(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["kind"] == "statement")
        .collect()
}

#[test]
fn aws_cli_batch_parameters_describe_and_complete_paging() {
    let emu = Emulator::start(&["--page-size", "2"]);
    let batch = emu.aws_ok(&[
        "batch-execute-statement",
        "--workgroup-name",
        "wg-test",
        "--database",
        "dev",
        "--statement-name",
        "setup",
        "--sqls",
        "create table sales (id integer primary key, region text, amount real)",
        "insert into sales values (1,'north',10.5),(2,'south',20.25),(3,'east',null),(4,'west',40),(5,'north, upper',50)",
    ]);
    let id = batch["Id"].as_str().expect("Id").to_string();
    assert_eq!(batch["WorkgroupName"], "wg-test");
    assert_eq!(batch["Database"], "dev");
    assert!(
        batch["CreatedAt"].is_number(),
        "CreatedAt epoch seconds: {batch}"
    );

    let d = emu.wait(&id);
    assert_eq!(d["Status"], "FINISHED", "{d}");
    let subs = d["SubStatements"].as_array().expect("SubStatements");
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0]["Id"], format!("{id}:1"));
    assert_eq!(subs[1]["Id"], format!("{id}:2"));
    assert_eq!(subs[0]["Status"], "FINISHED");
    assert_eq!(subs[1]["Status"], "FINISHED");
    assert_eq!(subs[1]["ResultRows"], 5, "rows inserted: {d}");
    assert_eq!(subs[1]["HasResultSet"], false);

    // A sub-statement can be described on its own.
    let sub = emu.aws_ok(&["describe-statement", "--id", &format!("{id}:2")]);
    assert_eq!(sub["Id"], format!("{id}:2"));
    assert_eq!(sub["ResultRows"], 5);

    // Results of a batch are fetched per sub-statement, never by parent.
    let e = emu
        .aws(&["get-statement-result", "--id", &id])
        .expect_err("parent id refused");
    assert!(e.contains("ValidationException"), "{e}");
    let e = emu
        .aws(&["get-statement-result", "--id", &format!("{id}:1")])
        .expect_err("DDL has no result");
    assert!(e.contains("ResourceNotFoundException"), "{e}");

    // A SELECT with a parameter; results over three pages of 2, which the
    // CLI follows through NextToken.
    let sel = emu.aws_ok(&[
        "execute-statement",
        "--workgroup-name",
        "wg-test",
        "--database",
        "dev",
        "--sql",
        "select id, region, amount from sales where id >= :min_id order by id",
        "--parameters",
        "name=min_id,value=1",
    ]);
    let sid = sel["Id"].as_str().expect("Id").to_string();
    let d = emu.wait(&sid);
    assert_eq!(d["Status"], "FINISHED", "{d}");
    assert_eq!(d["HasResultSet"], true);
    assert_eq!(d["ResultRows"], 5);
    assert_eq!(d["QueryParameters"][0]["name"], "min_id");

    let one = emu.aws_ok(&["get-statement-result", "--id", &sid, "--no-paginate"]);
    assert_eq!(one["Records"].as_array().map(Vec::len), Some(2));
    assert_eq!(one["TotalNumRows"], 5);
    assert!(one["NextToken"].is_string(), "first page has a NextToken");

    let all = emu.aws_ok(&["get-statement-result", "--id", &sid]);
    let records = all["Records"].as_array().expect("Records");
    assert_eq!(records.len(), 5, "every page was followed: {all}");
    assert_eq!(
        records[0],
        json!([{"longValue": 1}, {"stringValue": "north"}, {"doubleValue": 10.5}])
    );
    assert_eq!(records[2][2], json!({"isNull": true}));
    assert_eq!(records[4][1], json!({"stringValue": "north, upper"}));
    let meta = all["ColumnMetadata"].as_array().expect("ColumnMetadata");
    assert_eq!(meta[0]["name"], "id");
    assert_eq!(meta[0]["typeName"], "int8");
    assert_eq!(meta[1]["typeName"], "varchar");
    assert_eq!(meta[2]["typeName"], "float8");
    assert_eq!(meta[0]["nullable"], 1);

    // A missing parameter is refused before anything runs.
    let e = emu
        .aws(&[
            "execute-statement",
            "--workgroup-name",
            "wg-test",
            "--database",
            "dev",
            "--sql",
            "select :nope",
        ])
        .expect_err("missing parameter");
    assert!(e.contains("ValidationException"), "{e}");
    // Unknown statement id.
    let e = emu
        .aws(&[
            "describe-statement",
            "--id",
            "00000000-0000-0000-0000-000000000000",
        ])
        .expect_err("unknown id");
    assert!(e.contains("ResourceNotFoundException"), "{e}");

    let lines = emu.records();
    let stmts = statement_lines(&lines);
    assert_eq!(stmts.len(), 2, "{lines:?}");
    assert!(stmts.iter().all(|s| s["state"] == "FINISHED"));
}

#[test]
fn aws_cli_failed_batch_rolls_back_and_later_subs_abort() {
    let emu = Emulator::start(&[]);
    let common = [
        "--cluster-identifier",
        "analytics",
        "--database",
        "dev",
        "--db-user",
        "etl",
    ];
    let setup = emu.aws_ok(
        &[
            &["batch-execute-statement"][..],
            &common,
            &["--sqls", "create table t (a integer)"],
        ]
        .concat(),
    );
    assert_eq!(
        emu.wait(setup["Id"].as_str().unwrap())["Status"],
        "FINISHED"
    );

    let bad = emu.aws_ok(
        &[
            &["batch-execute-statement"][..],
            &common,
            &[
                "--sqls",
                "insert into t values (1)",
                "insert into missing_table values (2)",
                "insert into t values (3)",
            ],
        ]
        .concat(),
    );
    let id = bad["Id"].as_str().unwrap().to_string();
    assert_eq!(bad["ClusterIdentifier"], "analytics");
    assert_eq!(bad["DbUser"], "etl");
    let d = emu.wait(&id);
    assert_eq!(d["Status"], "FAILED", "{d}");
    assert!(
        d["Error"].as_str().unwrap_or("").contains("missing_table"),
        "the database's error text: {d}"
    );
    let subs = d["SubStatements"].as_array().unwrap();
    assert_eq!(subs[1]["Status"], "FAILED");
    assert_eq!(subs[2]["Status"], "ABORTED");

    // Nothing of the failed batch was committed.
    let count = emu.aws_ok(
        &[
            &["execute-statement"][..],
            &common,
            &["--sql", "select count(*) as n from t"],
        ]
        .concat(),
    );
    let cid = count["Id"].as_str().unwrap().to_string();
    assert_eq!(emu.wait(&cid)["Status"], "FINISHED");
    let r = emu.aws_ok(&["get-statement-result", "--id", &cid]);
    assert_eq!(r["Records"], json!([[{"longValue": 0}]]));

    // Cancelling an ended statement is refused.
    let e = emu
        .aws(&["cancel-statement", "--id", &id])
        .expect_err("already ended");
    assert!(
        e.contains("ValidationException") && e.contains("FAILED"),
        "{e}"
    );
}

#[test]
fn boto3_paging_csv_idempotency_and_listing() {
    let mut emu = Emulator::start(&["--page-size", "3"]);
    let out = emu.python(
        r#"
t = dict(WorkgroupName="wg-test", Database="dev")
r = rsd.batch_execute_statement(Sqls=[
    "create table n (i integer, label text)",
    "insert into n with recursive c(x) as (select 1 union all select x+1 from c where x < 7) select x, 'row ' || x from c",
], StatementName="job-setup", **t)
assert wait(r["Id"])["Status"] == "FINISHED"

# The same ClientToken twice: one statement, run once.
a = rsd.execute_statement(Sql="insert into n values (100, 'once')", ClientToken="tok-1", StatementName="job-once", **t)
b = rsd.execute_statement(Sql="insert into n values (100, 'once')", ClientToken="tok-1", StatementName="job-once", **t)
wait(a["Id"])

q = rsd.execute_statement(Sql="select i, label from n order by i", StatementName="job-read", **t)
wait(q["Id"])
pages, rows, token = 0, [], None
while True:
    kw = {"Id": q["Id"]}
    if token:
        kw["NextToken"] = token
    p = rsd.get_statement_result(**kw)
    pages += 1
    rows += [[x[0]["longValue"], x[1]["stringValue"]] for x in p["Records"]]
    token = p.get("NextToken")
    if not token:
        break

c = rsd.execute_statement(Sql="select i, label from n where i <= 2 order by i", ResultFormat="CSV", **t)
wait(c["Id"])
v2 = rsd.get_statement_result_v2(Id=c["Id"])
wrong = err(rsd.get_statement_result, Id=c["Id"])

listed = rsd.list_statements(StatementName="job-", MaxResults=2)
listed2 = rsd.list_statements(StatementName="job-", MaxResults=2, NextToken=listed["NextToken"])
finished = rsd.list_statements(Status="FINISHED")
print(json.dumps({
    "same_id": a["Id"] == b["Id"], "once_id": a["Id"],
    "pages": pages, "rows": rows, "total": p["TotalNumRows"],
    "csv": v2["Records"], "csv_format": v2.get("ResultFormat"), "wrong": wrong,
    "listed": [s.get("StatementName") for s in listed["Statements"]],
    "listed2": [s.get("StatementName") for s in listed2["Statements"]],
    "batch_flag": [s["IsBatchStatement"] for s in listed2["Statements"]],
    "finished": len(finished["Statements"]),
    "bad_token": err(rsd.get_statement_result, Id=q["Id"], NextToken="garbage"),
    "empty_value": err(rsd.execute_statement, Sql="select :a", Parameters=[{"name": "a", "value": ""}], **t),
    "two_targets": err(rsd.execute_statement, Sql="select 1", ClusterIdentifier="c1", **t),
    "no_db": err(rsd.execute_statement, Sql="select 1", WorkgroupName="wg-test"),
}))
"#,
    );
    assert_eq!(out["same_id"], true);
    assert_eq!(out["pages"], 3, "8 rows in pages of 3: {out}");
    assert_eq!(out["total"], 8);
    let rows = out["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[0], json!([1, "row 1"]));
    assert_eq!(rows[6], json!([7, "row 7"]));
    assert_eq!(rows[7], json!([100, "once"]), "the token's insert ran once");
    assert_eq!(
        out["csv"],
        json!([{"CSVRecords": "i,label\n1,row 1\n2,row 2\n"}])
    );
    assert_eq!(out["csv_format"], "CSV");
    assert_eq!(out["wrong"][0], "ValidationException");
    assert_eq!(
        out["listed"],
        json!(["job-read", "job-once"]),
        "newest first"
    );
    assert_eq!(out["listed2"], json!(["job-setup"]));
    assert_eq!(out["batch_flag"], json!([true]));
    assert_eq!(out["finished"], 4);
    for k in ["bad_token", "empty_value", "two_targets", "no_db"] {
        assert_eq!(out[k][0], "ValidationException", "{k}: {out}");
        assert_eq!(out[k][2], 400, "{k}: {out}");
    }

    emu.stop();
    let lines = emu.records();
    let once_id = out["once_id"].as_str().unwrap();
    let runs: Vec<_> = statement_lines(&lines)
        .into_iter()
        .filter(|s| s["id"] == once_id)
        .collect();
    assert_eq!(runs.len(), 1, "ran once: {lines:?}");
    assert_eq!(runs[0]["client_token"], "tok-1");
    assert!(lines
        .iter()
        .any(|l| l["kind"] == "replay" && l["client_token"] == "tok-1"));
    assert!(lines.iter().any(|l| l["kind"] == "counters"));
}

#[test]
fn malformed_requests_are_400_never_500() {
    let emu = Emulator::start(&[]);
    let post = |target: Option<&str>, body: &str| -> (u16, String, Value) {
        let mut args = vec![
            "-s".to_string(),
            "-o".to_string(),
            "-".to_string(),
            "-w".to_string(),
            "\n%{http_code}\n%header{x-amzn-errortype}".to_string(),
            "-X".to_string(),
            "POST".to_string(),
            "-H".to_string(),
            "Content-Type: application/x-amz-json-1.1".to_string(),
        ];
        if let Some(t) = target {
            args.push("-H".into());
            args.push(format!("X-Amz-Target: {t}"));
        }
        args.push("--data-binary".into());
        args.push(body.into());
        args.push(format!("{}/", emu.url));
        let out = Command::new("curl").args(&args).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut parts = text.rsplitn(3, '\n');
        let errortype = parts.next().unwrap_or("").to_string();
        let code: u16 = parts.next().unwrap_or("0").parse().unwrap_or(0);
        let body: Value = serde_json::from_str(parts.next().unwrap_or("")).unwrap_or(Value::Null);
        (code, errortype, body)
    };
    let (code, et, body) = post(Some("RedshiftData.ExecuteStatement"), "{not json");
    assert_eq!(code, 400);
    assert_eq!(et, "SerializationException");
    assert_eq!(body["__type"], "SerializationException");
    let (code, _, body) = post(Some("RedshiftData.ExecuteStatement"), r#"{"Sql": 5}"#);
    assert_eq!(
        (code, body["__type"].as_str()),
        (400, Some("SerializationException"))
    );
    let (code, et, body) = post(Some("RedshiftData.ExecuteStatement"), "{}");
    assert_eq!((code, et.as_str()), (400, "ValidationException"));
    assert!(body["message"].is_string());
    let (code, _, body) = post(Some("RedshiftData.Frobnicate"), "{}");
    assert_eq!(
        (code, body["__type"].as_str()),
        (400, Some("UnknownOperationException"))
    );
    let (code, _, _) = post(None, "{}");
    assert_eq!(code, 400);
    let (code, _, body) = post(Some("RedshiftData.DescribeStatement"), r#"{"Id": "x"}"#);
    assert_eq!(
        (code, body["__type"].as_str()),
        (400, Some("ValidationException"))
    );
    let (code, _, body) = post(
        Some("RedshiftData.ExecuteStatement"),
        r#"{"Sql": "select 1", "WorkgroupName": "wg-test", "Database": "dev", "SessionKeepAliveSeconds": 90000}"#,
    );
    assert_eq!(
        (code, body["__type"].as_str()),
        (400, Some("ValidationException"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_parses_typed_fields_and_timestamps() {
    use aws_sdk_redshiftdata::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_redshiftdata::primitives::Blob;
    use aws_sdk_redshiftdata::types::{Field, StatusString};

    let emu = Emulator::start(&[]);
    let config = aws_sdk_redshiftdata::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(&emu.url)
        .build();
    let client = aws_sdk_redshiftdata::Client::from_conf(config);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = client
        .execute_statement()
        .workgroup_name("wg-test")
        .database("dev")
        .sql("select 42 as i, 2.5 as d, 'text' as s, null as n, x'0102ff' as b, :p as p")
        .parameters(
            aws_sdk_redshiftdata::types::SqlParameter::builder()
                .name("p")
                .value("param value")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("execute");
    let id = out.id().expect("id").to_string();
    let created = out.created_at().expect("CreatedAt").as_secs_f64();
    assert!(
        (created - before).abs() < 60.0,
        "CreatedAt {created} vs {before}"
    );

    // Until it ends; it must end FINISHED.
    let d = common::poll_async(Duration::from_secs(20), || async {
        let d = client
            .describe_statement()
            .id(&id)
            .send()
            .await
            .expect("describe");
        match d.status() {
            Some(StatusString::Finished | StatusString::Failed | StatusString::Aborted) => Ok(d),
            _ => Err(format!("{d:?}")),
        }
    })
    .await
    .unwrap_or_else(|d| panic!("statement {id} did not end in 20 s: {d}"));
    assert_eq!(d.status(), Some(&StatusString::Finished), "{d:?}");
    assert_eq!(d.result_rows(), 1);
    assert_eq!(d.has_result_set(), Some(true));
    assert!(d.duration() >= 0);
    let updated = d.updated_at().expect("UpdatedAt").as_secs_f64();
    assert!(updated >= created);

    let r = client
        .get_statement_result()
        .id(&id)
        .send()
        .await
        .expect("result");
    assert_eq!(r.total_num_rows(), 1);
    let row = &r.records()[0];
    assert_eq!(row[0], Field::LongValue(42));
    assert_eq!(row[1], Field::DoubleValue(2.5));
    assert_eq!(row[2], Field::StringValue("text".into()));
    assert_eq!(row[3], Field::IsNull(true));
    assert_eq!(row[4], Field::BlobValue(Blob::new(vec![1, 2, 255])));
    assert_eq!(row[5], Field::StringValue("param value".into()));
    let meta = r.column_metadata();
    assert_eq!(meta.len(), 6);
    assert_eq!(meta[0].name(), Some("i"));
    assert_eq!(meta[0].nullable(), 1);

    // Typed errors.
    let e = client
        .get_statement_result()
        .id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .expect_err("unknown id");
    let se = e.into_service_error();
    assert!(se.is_resource_not_found_exception(), "{se:?}");
}

#[test]
fn cancel_ends_a_held_statement_as_aborted() {
    let emu = Emulator::start(&["--hold", "10000:slow_job"]);
    let out = emu.python(
        r#"
t = dict(WorkgroupName="wg-test", Database="dev")
rsd.batch_execute_statement(Sqls=["create table x (a integer)"], **t)
r = rsd.execute_statement(Sql="insert into x values (1)", StatementName="slow_job", **t)
during = settle(r["Id"])
c = rsd.cancel_statement(Id=r["Id"])
d = wait(r["Id"])
q = rsd.execute_statement(Sql="select count(*) from x", **t)
wait(q["Id"])
print(json.dumps({"during": during, "cancel": c["Status"], "after": d["Status"],
                  "count": rsd.get_statement_result(Id=q["Id"])["Records"][0][0]["longValue"],
                  "again": err(rsd.cancel_statement, Id=r["Id"])}))
"#,
    );
    assert_eq!(out["during"], "STARTED");
    assert_eq!(out["cancel"], true);
    assert_eq!(out["after"], "ABORTED");
    assert_eq!(out["count"], 0, "an aborted insert commits nothing");
    assert_eq!(out["again"][0], "ValidationException");
}

/// WithEvent through moto's EventBridge into an SQS queue: the event has
/// the documented envelope and detail.
#[test]
fn with_event_publishes_the_status_change_to_eventbridge() {
    let (_moto, moto) = start_moto(Stdio::null());
    let mut emu = Emulator::start_on_moto(&[], &moto);
    let script = format!(
        r#"
moto = "{moto}"
sqs = boto3.client("sqs", endpoint_url=moto)
ev = boto3.client("events", endpoint_url=moto)
url = sqs.create_queue(QueueName="rr-events")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
ev.put_rule(Name="rr", EventPattern=json.dumps({{"source": ["aws.redshift-data"],
    "detail-type": ["Redshift Data Statement Status Change"]}}))
ev.put_targets(Rule="rr", Targets=[{{"Id": "q", "Arn": arn}}])
t = dict(WorkgroupName="wg-test", Database="dev")
ok = rsd.batch_execute_statement(Sqls=["create table e (a integer)", "insert into e values (1),(2)"],
                                  StatementName="nightly/load", WithEvent=True, **t)
bad = rsd.execute_statement(Sql="select * from nowhere", StatementName="bad", WithEvent=True,
                            ClusterIdentifier="analytics", Database="dev")
quiet = rsd.execute_statement(Sql="select 1", **t)
for i in (ok["Id"], bad["Id"], quiet["Id"]):
    wait(i)
got, end = [], time.time() + 20
while len(got) < 2 and time.time() < end:
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    for m in r.get("Messages", []):
        got.append(json.loads(m["Body"]))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
print(json.dumps({{"ok": ok["Id"], "bad": bad["Id"], "quiet": quiet["Id"], "events": got}}))
"#
    );
    let out = emu.python(&script);
    let events = out["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{out}\n{}", emu.log());
    // No event without WithEvent: once the emulator has stopped (it sends
    // what it still holds first), its record names only the two statements
    // and the queue holds nothing more.
    emu.stop();
    let sent: Vec<Value> = emu
        .records()
        .into_iter()
        .filter(|l| l["kind"] == "event")
        .collect();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert!(
        sent.iter().all(|l| l["statement_id"] != out["quiet"]),
        "{sent:#?}"
    );
    assert_eq!(queue_counts(&emu, &moto, "rr-events"), (0, 0));
    let by_id = |id: &Value| {
        events
            .iter()
            .find(|e| e["detail"]["statementId"] == *id)
            .unwrap_or_else(|| panic!("no event for {id}: {out}"))
    };
    let ok = by_id(&out["ok"]);
    assert_eq!(ok["source"], "aws.redshift-data");
    assert_eq!(ok["detail-type"], "Redshift Data Statement Status Change");
    assert_eq!(
        ok["resources"],
        json!(["arn:aws:redshift-serverless:us-east-1:123456789012:workgroup/wg-test"])
    );
    let detail = &ok["detail"];
    assert_eq!(detail["state"], "FINISHED");
    assert_eq!(detail["statementName"], "nightly/load");
    assert_eq!(detail["rows"], 2);
    assert!(detail["redshiftQueryId"].is_i64());
    assert!(detail["principal"]
        .as_str()
        .unwrap_or("")
        .starts_with("arn:aws:iam::123456789012:"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expire = detail["expireAt"].as_i64().expect("expireAt");
    assert!((expire - (now + 86_400)).abs() < 120, "expireAt {expire}");
    let keys: Vec<&str> = detail
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(
        keys_sorted,
        [
            "expireAt",
            "principal",
            "redshiftQueryId",
            "rows",
            "state",
            "statementId",
            "statementName"
        ]
    );

    let bad = by_id(&out["bad"]);
    assert_eq!(bad["detail"]["state"], "FAILED");
    assert_eq!(bad["detail"]["rows"], -1);
    assert_eq!(
        bad["resources"],
        json!(["arn:aws:redshift:us-east-1:123456789012:cluster:analytics"])
    );
}

#[test]
fn events_go_in_batched_put_events_calls() {
    // 60 statements submitted at once from 8 threads end within a few
    // milliseconds of each other: their events must reach the queue, in
    // fewer PutEvents calls than events (up to 10 entries a call).
    let (_moto, moto) = start_moto(Stdio::null());
    let mut emu = Emulator::start_on_moto(&[], &moto);
    let script = format!(
        r#"
from concurrent.futures import ThreadPoolExecutor
{queue}
def submit(i):
    return rsd.execute_statement(Sql="select %d" % i, StatementName="b-%d" % i, WithEvent=True,
                                 WorkgroupName="wg-test", Database="dev")["Id"]
with ThreadPoolExecutor(8) as pool:
    ids = list(pool.map(submit, range(60)))
got, end = set(), time.time() + 30
while len(got) < len(ids) and time.time() < end:
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    for m in r.get("Messages", []):
        got.add(json.loads(m["Body"])["detail"]["statementId"])
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
print(json.dumps({{"ids": ids, "got": sorted(got)}}))
"#,
        queue = event_queue_script(&moto, "rr-batch")
    );
    let out = emu.python(&script);
    let mut ids: Vec<&str> = out["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ids.sort_unstable();
    let got: Vec<&str> = out["got"]
        .as_array()
        .expect("got")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(got, ids, "every event arrived once\n{}", emu.log());
    emu.stop();
    let records = emu.records();
    let counters = &records
        .iter()
        .find(|l| l["kind"] == "counters")
        .expect("counters line")["counters"];
    assert_eq!(counters["events_sent"], 60, "{counters}");
    assert_eq!(counters["events_send_failed"], 0, "{counters}");
    let calls = counters["put_events_calls"]
        .as_u64()
        .expect("put_events_calls");
    eprintln!("60 events in {calls} PutEvents calls");
    assert!(
        (6..60).contains(&calls),
        "60 events in {calls} PutEvents calls: at most 10 a call, batched under load"
    );
}

// ---------------------------------------------------------------- faults

#[test]
fn throttling_is_a_400_with_the_error_type() {
    let emu = Emulator::start(&["--throttle-prob", "1"]);
    let out = emu.python(
        r#"
t = dict(WorkgroupName="wg-test", Database="dev")
print(json.dumps({
    "exec": err(rsd.execute_statement, Sql="select 1", **t),
    "batch": err(rsd.batch_execute_statement, Sqls=["select 1"], **t),
    "list": len(rsd.list_statements()["Statements"]),
}))
"#,
    );
    assert_eq!(
        out["exec"],
        json!(["ThrottlingException", "Rate exceeded", 400])
    );
    assert_eq!(out["batch"][0], "ThrottlingException");
    assert_eq!(out["list"], 0, "reads are not throttled and nothing ran");
    let rejected = emu
        .records()
        .into_iter()
        .filter(|l| l["kind"] == "rejected" && l["error"] == "ThrottlingException")
        .count();
    assert_eq!(rejected, 2);
}

#[test]
fn statement_faults_fail_abort_hold_and_limit_active() {
    let mut emu = Emulator::start(&[
        "--max-active",
        "1",
        "--hold",
        "1500:hold_me",
        "--fail-first",
        "2:flaky",
        "--fail-sql",
        "boom",
        "--abort-sql",
        "drop table",
    ]);
    let out = emu.python(
        r#"
t = dict(WorkgroupName="wg-test", Database="dev")
wait(rsd.execute_statement(Sql="create table f (a integer)", **t)["Id"])
held = rsd.execute_statement(Sql="insert into f values (1)", StatementName="hold_me", **t)
held_state = settle(held["Id"])
limited = err(rsd.execute_statement, Sql="select 1", **t)
wait(held["Id"])
flaky = []
for attempt in range(3):
    r = rsd.execute_statement(Sql="insert into f values (2)", StatementName="flaky", **t)
    d = wait(r["Id"])
    flaky.append([d["Status"], d.get("Error", "")])
boom = wait(rsd.execute_statement(Sql="select 'boom'", **t)["Id"])
drop = wait(rsd.batch_execute_statement(Sqls=["insert into f values (3)", "drop table f"], **t)["Id"])
q = rsd.execute_statement(Sql="select a from f order by a", **t)
wait(q["Id"])
rows = [r[0]["longValue"] for r in rsd.get_statement_result(Id=q["Id"])["Records"]]
print(json.dumps({"limited": limited, "held_state": held_state, "flaky": flaky,
                  "boom": [boom["Status"], boom.get("Error", "")],
                  "drop": [drop["Status"]] + [s["Status"] for s in drop["SubStatements"]],
                  "rows": rows}))
"#,
    );
    assert_eq!(out["limited"][0], "ActiveStatementsExceededException");
    assert_eq!(out["limited"][2], 400);
    assert_eq!(out["held_state"], "STARTED");
    assert_eq!(out["flaky"][0][0], "FAILED");
    assert!(out["flaky"][0][1].as_str().unwrap().contains("injected"));
    assert_eq!(out["flaky"][1][0], "FAILED");
    assert_eq!(out["flaky"][2], json!(["FINISHED", ""]));
    assert_eq!(out["boom"][0], "FAILED");
    assert_eq!(out["drop"][0], "ABORTED");
    assert_eq!(
        out["rows"],
        json!([1, 2]),
        "failed and aborted work is not committed"
    );

    emu.stop();
    let lines = emu.records();
    let counters = &lines
        .iter()
        .find(|l| l["kind"] == "counters")
        .expect("counters line")["counters"];
    assert_eq!(counters["statements_failed"], 3);
    assert_eq!(counters["statements_aborted"], 1);
    assert_eq!(counters["statements_held"], 1);
    assert_eq!(counters["api_max_active_rejected"], 1);
    // Never more than one statement in flight, by the emulator's own record.
    let mut spans: Vec<(i64, i64)> = statement_lines(&lines)
        .iter()
        .map(|s| {
            (
                s["created_ms"].as_i64().unwrap(),
                s["ended_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "overlap {w:?}");
    }
}

#[test]
fn cancel_interrupts_a_long_running_query() {
    let emu = Emulator::start(&[]);
    let out = emu.python(
        r#"
t = dict(WorkgroupName="wg-test", Database="dev")
r = rsd.execute_statement(Sql="with recursive c(x) as (select 1 union all select x+1 from c where x < 2000000000) select count(*) from c", **t)
during = settle(r["Id"])
t0 = time.time()
rsd.cancel_statement(Id=r["Id"])
d = wait(r["Id"])
after = time.time() - t0
q = wait(rsd.execute_statement(Sql="select 1", **t)["Id"])
print(json.dumps({"during": during, "status": d["Status"], "secs": after, "next": q["Status"]}))
"#,
    );
    assert_eq!(out["during"], "STARTED");
    assert_eq!(out["status"], "ABORTED");
    assert!(out["secs"].as_f64().unwrap() < 2.0, "{out}");
    assert_eq!(out["next"], "FINISHED", "the warehouse still works");
}

/// Python that makes an SQS queue `name` on moto (`url`) and an EventBridge
/// rule of the same name sending every `aws.redshift-data` event to it
/// (`sqs` is a boto3 client of moto's SQS).
fn event_queue_script(moto: &str, name: &str) -> String {
    format!(
        r#"
moto = "{moto}"
sqs = boto3.client("sqs", endpoint_url=moto)
ev = boto3.client("events", endpoint_url=moto)
url = sqs.create_queue(QueueName="{name}")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
ev.put_rule(Name="{name}", EventPattern=json.dumps({{"source": ["aws.redshift-data"]}}))
ev.put_targets(Rule="{name}", Targets=[{{"Id": "q", "Arn": arn}}])
"#
    )
}

/// (visible, in flight) messages of an SQS queue of moto, read with boto3.
fn queue_counts(emu: &Emulator, moto: &str, queue: &str) -> (i64, i64) {
    let out = emu.python(&format!(
        r#"
sqs = boto3.client("sqs", endpoint_url="{moto}")
url = sqs.get_queue_url(QueueName="{queue}")["QueueUrl"]
a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
print(json.dumps([int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])]))
"#
    ));
    (out[0].as_i64().unwrap(), out[1].as_i64().unwrap())
}

/// Runs 12 statements with events through moto; returns the statement ids
/// in order, the statement ids of the events received, and the record.
fn run_event_faults(moto: &str, extra: &[&str]) -> (Vec<String>, Vec<String>, Vec<Value>) {
    let mut emu = Emulator::start_on_moto(extra, moto);
    let script = format!(
        r#"
{queue}
ids = []
for i in range(12):
    r = rsd.execute_statement(Sql="select %d" % i, StatementName="ev-%d" % i, WithEvent=True,
                              WorkgroupName="wg-test", Database="dev")
    wait(r["Id"])
    ids.append(r["Id"])
print(json.dumps({{"ids": ids}}))
"#,
        queue = event_queue_script(moto, "rr-faults")
    );
    let out = emu.python(&script);
    // Stopped, the emulator has sent every event it holds back: its record
    // says how many messages are on the queue.
    emu.stop();
    let records = emu.records();
    let expected = records
        .iter()
        .filter(|l| l["kind"] == "event")
        .filter(|l| {
            ["sent", "sent_late", "duplicate_sent"].contains(&l["action"].as_str().unwrap_or(""))
        })
        .count();
    let got = emu.python(&format!(
        r#"
sqs = boto3.client("sqs", endpoint_url="{moto}")
url = sqs.get_queue_url(QueueName="rr-faults")["QueueUrl"]
got, end = [], time.time() + 20
while len(got) < {expected} and time.time() < end:
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    for m in r.get("Messages", []):
        got.append(json.loads(m["Body"])["detail"]["statementId"])
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
print(json.dumps(got))
"#
    ));
    assert_eq!(
        got.as_array().map(Vec::len),
        Some(expected),
        "messages received vs sent by the record: {got}"
    );
    assert_eq!(queue_counts(&emu, moto, "rr-faults"), (0, 0));
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    (strings(&out["ids"]), strings(&got), records)
}

#[test]
fn event_faults_are_seeded_counted_and_recorded() {
    let (_moto, moto) = start_moto(Stdio::null());
    let flags = [
        "--seed",
        "11",
        "--event-drop-prob",
        "0.25",
        "--event-duplicate-prob",
        "0.25",
        "--event-reorder-prob",
        "0.25",
        "--event-reorder-window-ms",
        "300",
        "--event-delay-prob",
        "0.2",
        "--event-delay-ms",
        "400",
    ];
    let (ids_a, got_a, rec_a) = run_event_faults(&moto, &flags);

    // Every event the record says was sent arrived, and nothing else.
    let actions = |rec: &[Value], id: &str| -> Vec<String> {
        rec.iter()
            .filter(|l| l["kind"] == "event" && l["statement_id"] == id)
            .map(|l| l["action"].as_str().unwrap().to_string())
            .collect()
    };
    let mut pattern_a = Vec::new();
    for id in &ids_a {
        let acts = actions(&rec_a, id);
        let sent = acts.iter().filter(|a| a.contains("sent")).count();
        let received = got_a.iter().filter(|g| *g == id).count();
        assert_eq!(sent, received, "{id}: {acts:?}");
        pattern_a.push(acts);
    }
    let counters = &rec_a
        .iter()
        .find(|l| l["kind"] == "counters")
        .expect("counters")["counters"];
    let count = |a: &str| pattern_a.iter().flatten().filter(|x| *x == a).count() as u64;
    assert_eq!(counters["events_dropped"], count("dropped"));
    assert_eq!(counters["events_duplicated"], count("duplicate_sent"));
    assert_eq!(counters["events_reordered"], count("reordered"));
    assert_eq!(counters["events_delayed"], count("delayed"));
    assert!(
        ["dropped", "duplicate_sent", "delayed", "reordered"]
            .iter()
            .all(|a| count(a) > 0),
        "seed 11 injects every kind of event fault: {pattern_a:?}"
    );

    // The same seed from a --faults file: the same faults, statement by
    // statement.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faults.toml");
    std::fs::write(
        &file,
        "seed = 11\n[events]\ndrop_prob = 0.25\nduplicate_prob = 0.25\nreorder_prob = 0.25\nreorder_window_ms = 300\ndelay_prob = 0.2\ndelay_ms = 400\n",
    )
    .unwrap();
    let (ids_b, _got_b, rec_b) = run_event_faults(&moto, &["--faults", file.to_str().unwrap()]);
    let pattern_b: Vec<Vec<String>> = ids_b.iter().map(|id| actions(&rec_b, id)).collect();
    assert_eq!(pattern_a, pattern_b);
}
