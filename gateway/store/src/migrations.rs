//! The schema, as numbered migrations per SQL dialect, applied at start-up in order, each in
//! its own transaction with the version it brings. On PostgreSQL, gateways that start together
//! take an advisory lock first, so one migrates and the others find it done.

use sqlx::{Any, AnyConnection, Connection, Transaction};

use crate::{Error, Result};

/// The SQL dialects the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// (version, SQLite, PostgreSQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_messages.sql"),
        include_str!("../migrations/postgres/0001_messages.sql"),
    ),
    (
        2,
        include_str!("../migrations/sqlite/0002_addressbook.sql"),
        include_str!("../migrations/postgres/0002_addressbook.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/0003_push_tokens.sql"),
        include_str!("../migrations/postgres/0003_push_tokens.sql"),
    ),
    (
        4,
        include_str!("../migrations/sqlite/0004_matrix_rooms.sql"),
        include_str!("../migrations/postgres/0004_matrix_rooms.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_phone_bindings.sql"),
        include_str!("../migrations/postgres/0005_phone_bindings.sql"),
    ),
];

/// The version this build's schema has.
pub(crate) const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// An arbitrary number the gateways' migrations lock on (PostgreSQL advisory locks are keyed by
/// a 64-bit integer).
const MIGRATION_LOCK: i64 = 0x5379_6c6b_5254_4301;

/// Brings the schema to [`LATEST`]; returns the version it was at.
pub(crate) async fn migrate(connection: &mut AnyConnection, dialect: Dialect) -> Result<i64> {
    // Under the lock as well: PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a
    // concurrent one (both see no table, one fails on the catalog's unique index).
    let mut transaction = connection.begin().await.map_err(super::sql::error)?;
    lock(&mut transaction, dialect).await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL, applied BIGINT NOT NULL)",
    )
    .execute(&mut *transaction)
    .await
    .map_err(super::sql::error)?;
    transaction.commit().await.map_err(super::sql::error)?;
    let mut from = None;
    for (version, sqlite, postgres) in MIGRATIONS {
        let mut transaction = connection.begin().await.map_err(super::sql::error)?;
        lock(&mut transaction, dialect).await?;
        let current = current_version(&mut transaction).await?;
        from.get_or_insert(current);
        if current > LATEST {
            return Err(Error::Schema(format!(
                "the database is at version {current}, newer than this gateway's {LATEST}"
            )));
        }
        if current >= *version {
            continue;
        }
        let sql = match dialect {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *transaction)
            .await
            .map_err(|error| Error::Schema(format!("migration {version}: {error}")))?;
        sqlx::query("INSERT INTO schema_version (version, applied) VALUES ($1, $2)")
            .bind(*version)
            .bind(super::sql::now_millis())
            .execute(&mut *transaction)
            .await
            .map_err(super::sql::error)?;
        transaction.commit().await.map_err(super::sql::error)?;
        tracing::info!(version, "message store schema migrated");
    }
    Ok(from.unwrap_or(0))
}

/// On PostgreSQL, waits for the other gateways' migrations (the lock ends with the
/// transaction).
async fn lock(transaction: &mut Transaction<'_, Any>, dialect: Dialect) -> Result<()> {
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut **transaction)
            .await
            .map_err(super::sql::error)?;
    }
    Ok(())
}

async fn current_version(transaction: &mut Transaction<'_, Any>) -> Result<i64> {
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut **transaction)
        .await
        .map_err(super::sql::error)?;
    Ok(version.unwrap_or(0))
}
