use super::*;
use crate::testing::{conformance, message};

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!("store-test-{}", uuid::Uuid::new_v4()))
        .join(name)
}

#[tokio::test]
async fn sqlite_passes_the_checks_every_backend_must() {
    let path = temp_path("gateway.sqlite");
    let store = SqlStore::open(&Options::new(Backend::Sqlite(path.clone())))
        .await
        .unwrap();
    assert_eq!(store.backend(), "sqlite");
    conformance(&store, "").await;
    store.close().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// What was written survives a restart, and opening again does not migrate again.
#[tokio::test]
async fn a_reopened_store_keeps_its_messages() {
    let path = temp_path("odd ?#% name.sqlite");
    let options = Options::new(Backend::Sqlite(path.clone()));
    let store = SqlStore::open(&options).await.unwrap();
    let stored = message("alice@example.com", "m1", "bob@example.com", 5);
    store.add_message(&stored).await.unwrap();
    store.close().await;
    drop(store);
    assert!(path.exists(), "{}", path.display());

    let store = SqlStore::open(&options).await.unwrap();
    assert_eq!(
        store.message("alice@example.com", "m1").await.unwrap(),
        Some(stored)
    );
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_version")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    assert_eq!(
        versions,
        (1..=crate::migrations::LATEST).collect::<Vec<_>>()
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A database migrated by a newer gateway is refused, not written with the wrong schema.
#[tokio::test]
async fn a_newer_schema_is_refused() {
    let path = temp_path("gateway.sqlite");
    let options = Options::new(Backend::Sqlite(path.clone()));
    let store = SqlStore::open(&options).await.unwrap();
    sqlx::query("INSERT INTO schema_version (version, applied) VALUES (999, 0)")
        .execute(&store.pool)
        .await
        .unwrap();
    store.close().await;
    let error = SqlStore::open(&options).await.unwrap_err();
    assert!(
        matches!(&error, Error::Schema(text) if text.contains("version 999")),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A database that cannot be reached fails with a clear error, within the acquire timeout.
#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    // Nothing listens on port 1 of the loopback.
    let mut options = Options::new(Backend::Postgres(
        "postgres://gateway@127.0.0.1:1/gateway".to_owned(),
    ));
    options.acquire_timeout = std::time::Duration::from_secs(2);
    let error = SqlStore::open(&options).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable(_)), "{error}");
    let error = SqlStore::open(&Options::new(Backend::Postgres("mysql://x".to_owned())))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error}");
    let error = SqlStore::open(&Options::new(Backend::Sqlite("/proc/none/x.sqlite".into())))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error}");
}
