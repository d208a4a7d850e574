//! The shared PostgreSQL test server (tests/common/pg.rs): a real server,
//! one fresh database per test, on 127.0.0.1.

mod common;

use sqlx::{Connection, Row};

#[tokio::test]
async fn each_test_gets_its_own_database_on_a_real_server() {
    let a = common::pg::postgres().await;
    let b = common::pg::postgres().await;
    assert_ne!(a.database, b.database);
    assert!(
        a.url.contains("127.0.0.1") || std::env::var_os("REDRELAY_TEST_POSTGRES_URL").is_some()
    );
    let mut ca = sqlx::PgConnection::connect(&a.url)
        .await
        .expect("connect a");
    sqlx::query("CREATE TABLE t (v int)")
        .execute(&mut ca)
        .await
        .expect("create");
    sqlx::query("INSERT INTO t VALUES (7)")
        .execute(&mut ca)
        .await
        .expect("insert");
    let row = sqlx::query("SELECT current_database(), (SELECT v FROM t), version()")
        .fetch_one(&mut ca)
        .await
        .expect("select");
    assert_eq!(row.get::<String, _>(0), a.database);
    assert_eq!(row.get::<i32, _>(1), 7);
    assert!(row.get::<String, _>(2).starts_with("PostgreSQL"));
    let mut cb = sqlx::PgConnection::connect(&b.url)
        .await
        .expect("connect b");
    let missing = sqlx::query("SELECT v FROM t").fetch_one(&mut cb).await;
    assert!(missing.is_err(), "database b sees a's table");
}
