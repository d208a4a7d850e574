//! The emulator on a real PostgreSQL warehouse (`--warehouse postgres://`):
//! the same Redshift SQL, catalog, sessions, COPY and UNLOAD as on SQLite,
//! through boto3 unchanged. PostgreSQL comes from tests/common/pg.rs.

mod common;

use common::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_on_postgresql() {
    let pg = common::pg::postgres().await;
    let mut stack = Stack::start_with(
        "pgwh",
        StackOptions {
            page_size: 2,
            ..StackOptions::default()
        },
    );
    stack.warehouse = Some(pg.url.clone());
    stack.start_emulator();
    let script = r#"
import boto3, gzip, json, os, time
c = boto3.client("redshift-data", endpoint_url=os.environ["AWS_ENDPOINT_URL_REDSHIFT_DATA"])
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
T = dict(WorkgroupName="wg-test", Database="dev")
def run(sql, **kw):
    r = c.execute_statement(Sql=sql, WaitTimeSeconds=10, **T, **kw)
    d = c.describe_statement(Id=r["Id"])
    assert d["Status"] == "FINISHED", (sql, d)
    return d
def rows(d):
    return [[list(f.values())[0] for f in rec] for p in c.get_paginator("get_statement_result").paginate(Id=d["Id"]) for rec in p["Records"]]
run("create schema demo")
run("create table if not exists demo.sales (sale_id int identity(1,1), region varchar(20) not null encode zstd distkey, amount decimal(10,2), sold date) diststyle key compound sortkey(sold)")
s3.create_bucket(Bucket="pgwh")
s3.put_object(Bucket="pgwh", Key="in/a.csv", Body=b"region,amount,sold\nnorth,10.50,2026-01-03\nsouth,20.25,2026-02-10\n")
s3.put_object(Bucket="pgwh", Key="in/b.csv", Body=b"region,amount,sold\n\"we,st\",5.00,2026-02-11\n")
d = run("COPY demo.sales (region, amount, sold) FROM 's3://pgwh/in/' IAM_ROLE 'arn:aws:iam::123456789012:role/R' CSV IGNOREHEADER 1")
assert d["ResultRows"] == 3, d
s3.put_object(Bucket="pgwh", Key="json/x.json.gz", Body=gzip.compress(b'{"region": "east", "amount": 99, "sold": "2026-03-01"}\n{"REGION": "o\'hara", "amount": 1.5, "sold": null}'))
d = run("copy demo.sales (region, amount, sold) from 's3://pgwh/json/' iam_role default format as json 'auto' gzip")
assert d["ResultRows"] == 2, d
d = run("select region, count(*) as n, sum(amount)::decimal(10,2) as total, nvl(max(sold)::varchar, 'never') as last, listagg(sale_id, ',') within group (order by sale_id) as ids from demo.sales where amount >= :min group by region order by region", Parameters=[{"name": "min", "value": "5"}])
got = rows(d)
assert got == [["east", 1, "99.00", "2026-03-01", "4"], ["north", 1, "10.50", "2026-01-03", "1"], ["south", 1, "20.25", "2026-02-10", "2"], ["we,st", 1, "5.00", "2026-02-11", "3"]], got
meta = c.get_statement_result(Id=d["Id"])["ColumnMetadata"]
assert [m["typeName"] for m in meta] == ["varchar", "int8", "numeric", "varchar", "varchar"], meta
d = run("select datediff(month, '2026-01-31', '2026-03-01') as m, dateadd(day, 30, '2026-01-15')::date as d, decode(2, 1, 'one', 2, 'two') as w, getdate() is not null as now_ok")
assert rows(d) == [[2, "2026-02-14", "two", True]], rows(d)
assert c.list_schemas(SchemaPattern="dem%", **T)["Schemas"] == ["demo"]
assert [t["name"] for t in c.list_tables(SchemaPattern="demo", **T)["Tables"]] == ["sales"]
cols = [(x["name"], x["typeName"], x.get("length"), x.get("scale")) for p in c.get_paginator("describe_table").paginate(Schema="demo", Table="sales", **T) for x in p["ColumnList"]]
assert cols == [("sale_id", "int4", 0, 0), ("region", "varchar", 20, 0), ("amount", "numeric", 0, 2), ("sold", "date", 0, 0)], cols
# A session keeps its temp table; AUTO_COMMIT keeps what succeeded.
s = c.execute_statement(Sql="create temp table scratch as select 41 as v", SessionKeepAliveSeconds=30, WaitTimeSeconds=10, **T)
r = c.execute_statement(Sql="select v + 1 from scratch", SessionId=s["SessionId"], WaitTimeSeconds=10)
assert c.get_statement_result(Id=r["Id"])["Records"][0][0]["longValue"] == 42
b = c.batch_execute_statement(Sqls=["create table ac (a int)", "insert into ac values (1)", "insert into missing values (1)", "insert into ac values (:v)"], Parameters=[{"name": "v", "value": "2"}], ExecutionMode="AUTO_COMMIT", WaitTimeSeconds=10, **T)
d = c.describe_statement(Id=b["Id"])
assert [x["Status"] for x in d["SubStatements"]] == ["FINISHED", "FINISHED", "FAILED", "FINISHED"], d
assert "relation \"missing\" does not exist" in d["SubStatements"][2]["Error"], d
# UNLOAD, read back.
d = run("UNLOAD ('select region, amount from demo.sales where amount > 10 order by amount') TO 's3://pgwh/out/big_' IAM_ROLE default CSV HEADER PARALLEL OFF")
assert d["ResultRows"] == 3, d
body = s3.get_object(Bucket="pgwh", Key="out/big_000")["Body"].read().decode()
assert body == "region,amount\nnorth,10.50\nsouth,20.25\neast,99.00\n", body
# CancelStatement interrupts a running PostgreSQL query.
r = c.execute_statement(Sql="select pg_sleep(30)", **T)
time.sleep(0.5)
t = time.monotonic()
assert c.cancel_statement(Id=r["Id"])["Status"] is True
d = c.describe_statement(Id=r["Id"], WaitTimeSeconds=20)
assert d["Status"] == "ABORTED" and time.monotonic() - t < 10, d
print("ok")
"#;
    assert_eq!(stack.python(script).trim(), "ok");
}
