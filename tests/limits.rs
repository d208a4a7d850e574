//! Issue 7.5: every path that calls the Data API holds the same limits.
//! `redrelay submit` counts the statements in flight in the ledger, with
//! the worker's, before it calls ExecuteStatement.

mod common;

use common::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread")]
async fn submit_holds_max_in_flight_and_the_per_target_limit() {
    let stack = Stack::start_with(
        "limits",
        StackOptions {
            config_extra: "max_in_flight = 2\nmax_in_flight_per_target = 1\n".into(),
            emulator_args: vec!["--hold".into(), "60000:held_".into()],
            ..Default::default()
        },
    );
    let first = stack.submit(&["--name", "first", "--sql", "SELECT 'held_1' AS x"]);
    let show = |id: i64| stack.json(&["jobs", "show", &id.to_string()]);
    assert_eq!(show(first)["state"], "SUBMITTED");
    // Same workgroup: the per-target limit (1) keeps it READY, uncalled.
    let out = stack.run(&[
        "submit",
        "--name",
        "second",
        "--sql",
        "SELECT 'held_2' AS x",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let second: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let said = common::stderr(&out);
    assert!(said.contains("max_in_flight_per_target = 1"), "{said}");
    assert_eq!(show(second)["state"], "READY");
    assert_eq!(show(second)["attempt"], 0, "no attempt was started");
    // Another workgroup has room under max_in_flight (2).
    let other = stack.submit(&[
        "--name",
        "other",
        "--workgroup",
        "wg-other",
        "--sql",
        "SELECT 'held_3' AS x",
    ]);
    assert_eq!(show(other)["state"], "SUBMITTED");
    // Now max_in_flight (2) is reached whatever the target.
    let out = stack.run(&[
        "submit",
        "--name",
        "third",
        "--workgroup",
        "wg-third",
        "--sql",
        "SELECT 'held_4' AS x",
    ]);
    let said = common::stderr(&out);
    assert!(said.contains("max_in_flight = 2"), "{said}");
    // The emulator saw exactly the two statements that had room.
    let script = format!(
        "import boto3,json\n\
         c=boto3.client('redshift-data', endpoint_url={url:?})\n\
         print(len(c.list_statements(Status='ALL', MaxResults=100)['Statements']))\n",
        url = stack.data_url
    );
    let n = stack.python(&script);
    assert_eq!(n.trim(), "2", "statements the emulator received");
}
