//! `test_db()` gives each test a fresh database at head, copied from the migrated template.

use notify_db_migrations::{set, test_db};

#[tokio::test]
async fn test_db_is_a_fresh_database_at_head() {
    let a = test_db().await.expect("first test database");
    let b = test_db().await.expect("second test database");
    assert_ne!(a.name(), b.name());
    let head = set().expect("set").head().expect("head").to_string();
    for db in [&a, &b] {
        let c = db.connect().await.expect("connect");
        let v: String = c
            .query_one("SELECT version_num FROM alembic_version", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, head, "{} is not at head", db.name());
    }
    // Each is its own database: a row in one is not in the other.
    let ca = a.connect().await.unwrap();
    ca.execute(
        "INSERT INTO services (name, message_limit, email_from) VALUES ('only-in-a', 1, 'a')",
        &[],
    )
    .await
    .unwrap();
    let cb = b.connect().await.unwrap();
    let n: i64 = cb
        .query_one(
            "SELECT count(*) FROM services WHERE name = 'only-in-a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
