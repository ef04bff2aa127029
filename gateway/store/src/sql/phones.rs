//! The local domain's shared phone bindings on SQL (see [`crate::PhoneBinding`]).

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::error;
use crate::{PhoneBinding, Result};

/// The columns of a binding, in the order [`binding`] reads them.
const COLUMNS: &str = "username, contact, instance, transport, target, expires, outbound";

pub(crate) async fn put(pool: &AnyPool, bindings: &[PhoneBinding]) -> Result<()> {
    if bindings.is_empty() {
        return Ok(());
    }
    if bindings.len() > crate::MAX_PHONES_PER_PUT {
        return Err(crate::Error::Refused(format!(
            "{} phone bindings in one write (at most {})",
            bindings.len(),
            crate::MAX_PHONES_PER_PUT
        )));
    }
    // One statement for the batch: the writer of a busy registrar sends many at once, and a
    // statement costs far more than a row.
    let rows: Vec<String> = (0..bindings.len())
        .map(|row| {
            let first = row * 7;
            let params: Vec<String> = (1..=7).map(|n| format!("${}", first + n)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let statement = format!(
        "INSERT INTO phone_bindings (username, contact, instance, transport, target, expires, \
         outbound) VALUES {} \
         ON CONFLICT (username, contact) DO UPDATE SET instance = excluded.instance, \
         transport = excluded.transport, target = excluded.target, \
         expires = excluded.expires, outbound = excluded.outbound",
        rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
    for binding in bindings {
        query = query
            .bind(&binding.user)
            .bind(&binding.contact)
            .bind(&binding.instance)
            .bind(&binding.transport)
            .bind(&binding.target)
            .bind(binding.expires)
            .bind(i64::from(binding.outbound));
    }
    query.execute(pool).await.map_err(error)?;
    Ok(())
}

pub(crate) async fn remove(
    pool: &AnyPool,
    user: &str,
    contact: &str,
    instance: &str,
) -> Result<bool> {
    let removed = sqlx::query(
        "DELETE FROM phone_bindings WHERE username = $1 AND contact = $2 AND instance = $3",
    )
    .bind(user)
    .bind(contact)
    .bind(instance)
    .execute(pool)
    .await
    .map_err(error)?
    .rows_affected();
    Ok(removed > 0)
}

pub(crate) async fn of_user(pool: &AnyPool, user: &str, now: i64) -> Result<Vec<PhoneBinding>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM phone_bindings WHERE username = $1 AND expires > $2 \
         ORDER BY contact"
    )))
    .bind(user)
    .bind(now)
    .fetch_all(pool)
    .await
    .map_err(error)?;
    rows.iter().map(binding).collect()
}

pub(crate) async fn of_instance(
    pool: &AnyPool,
    instance: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<PhoneBinding>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM phone_bindings WHERE instance = $1 AND expires > $2 \
         ORDER BY username, contact LIMIT $3"
    )))
    .bind(instance)
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(error)?;
    rows.iter().map(binding).collect()
}

pub(crate) async fn remove_expired(pool: &AnyPool, now: i64) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM phone_bindings WHERE expires <= $1")
            .bind(now)
            .execute(pool)
            .await
            .map_err(error)?
            .rows_affected(),
    )
}

fn binding(row: &AnyRow) -> Result<PhoneBinding> {
    Ok(PhoneBinding {
        user: row.try_get(0).map_err(error)?,
        contact: row.try_get(1).map_err(error)?,
        instance: row.try_get(2).map_err(error)?,
        transport: row.try_get(3).map_err(error)?,
        target: row.try_get(4).map_err(error)?,
        expires: row.try_get(5).map_err(error)?,
        outbound: row.try_get::<i64, _>(6).map_err(error)? != 0,
    })
}
