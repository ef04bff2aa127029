//! [`Store`] on SQL: one implementation for SQLite and PostgreSQL through sqlx's `Any` driver.
//! The queries are written in the subset both dialects share (numbered `$n` parameters,
//! `ON CONFLICT DO NOTHING`, window functions); only the migrations differ.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Row};

use crate::migrations::{self, Dialect};

mod phones;
use crate::{
    Added, Backend, Direction, Entry, Error, Message, Options, PhoneBinding, PushToken, Put,
    Result, Retention, Since, State, Store, StoreFuture,
};

/// The store on an SQLite file or a PostgreSQL server.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
}

/// The columns of a message, in the order [`message`] reads them.
const COLUMNS: &str = "account, message_id, contact, direction, content_type, content, timestamp, at, state, disposition";

impl SqlStore {
    /// Opens the store (creating an SQLite file and its directory when missing) and brings its
    /// schema up to date.
    pub async fn open(options: &Options) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let (url, dialect) = match &options.backend {
            Backend::Sqlite(path) => (sqlite_url(path)?, Dialect::Sqlite),
            Backend::Postgres(url) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(Error::Config(
                        "a PostgreSQL URL starts with postgres://".to_owned(),
                    ));
                }
                (url.clone(), Dialect::Postgres)
            }
        };
        // The schema first, on a connection of its own: SQLite's WAL mode is set once for the
        // file (it needs the database to itself).
        let mut connection = sqlx::AnyConnection::connect(&url)
            .await
            .map_err(connect_error)?;
        if dialect == Dialect::Sqlite {
            sqlx::raw_sql("PRAGMA journal_mode = WAL")
                .execute(&mut connection)
                .await
                .map_err(error)?;
        }
        migrations::migrate(&mut connection, dialect).await?;
        connection.close().await.map_err(error)?;
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect(&url)
            .await
            .map_err(connect_error)?;
        Ok(SqlStore { pool, dialect })
    }

    /// Runs `change` and stores `journal` in one transaction; returns how many rows `change`
    /// touched.
    async fn journaled(
        &self,
        change: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
        journal: &Message,
        when: Journal,
    ) -> Result<u64> {
        let mut transaction = self.pool.begin().await.map_err(error)?;
        let changed = change
            .execute(&mut *transaction)
            .await
            .map_err(error)?
            .rows_affected();
        if changed == 0 && when == Journal::IfChanged {
            transaction.rollback().await.map_err(error)?;
            return Ok(0);
        }
        insert(journal)
            .execute(&mut *transaction)
            .await
            .map_err(error)?;
        transaction.commit().await.map_err(error)?;
        Ok(changed)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The URL of an SQLite file, which is created (with its directory) when missing.
fn sqlite_url(path: &std::path::Path) -> Result<String> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    std::fs::create_dir_all(directory).map_err(|error| {
        Error::Config(format!(
            "cannot create the data directory {}: {error}",
            directory.display()
        ))
    })?;
    let directory = directory.canonicalize().map_err(|error| {
        Error::Config(format!(
            "the data directory {}: {error}",
            directory.display()
        ))
    })?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("{} names no file", path.display())))?;
    let full = directory.join(name);
    let text = full
        .to_str()
        .ok_or_else(|| Error::Config(format!("{} is not UTF-8", full.display())))?;
    // The URL's path is percent-decoded: the characters that would end or change it are
    // encoded.
    let mut encoded = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '%' | '?' | '#' => encoded.push_str(&format!("%{:02X}", character as u32)),
            other => encoded.push(other),
        }
    }
    Ok(format!("sqlite://{encoded}?mode=rwc"))
}

/// Now, in milliseconds since 1970.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// The store's error for a failed connection: the database is unavailable, whatever the server
/// said (down, starting, not accepting connections, too many clients), unless the URL itself is
/// wrong.
fn connect_error(error: sqlx::Error) -> Error {
    match error {
        sqlx::Error::Configuration(error) => Error::Config(error.to_string()),
        sqlx::Error::Database(error) => Error::Unavailable(error.message().to_owned()),
        other => Error::Unavailable(other.to_string()),
    }
}

/// The store's error for a database error.
pub(crate) fn error(error: sqlx::Error) -> Error {
    match error {
        // PostgreSQL's connection exceptions (class 08) and operator intervention (57: shut
        // down, cannot connect now) mean the database is not there, not that it refused.
        sqlx::Error::Database(error)
            if error
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57")) =>
        {
            Error::Unavailable(error.message().to_owned())
        }
        sqlx::Error::Database(error) => Error::Refused(error.message().to_owned()),
        sqlx::Error::Configuration(error) => Error::Config(error.to_string()),
        sqlx::Error::PoolTimedOut => {
            Error::Unavailable("no database connection free in time".to_owned())
        }
        other => Error::Unavailable(other.to_string()),
    }
}

fn message(row: &AnyRow) -> Result<Message> {
    let direction: String = row.try_get(3).map_err(error)?;
    let state: String = row.try_get(8).map_err(error)?;
    let disposition: String = row.try_get(9).map_err(error)?;
    Ok(Message {
        account: row.try_get(0).map_err(error)?,
        message_id: row.try_get(1).map_err(error)?,
        contact: row.try_get(2).map_err(error)?,
        direction: Direction::parse(&direction)
            .ok_or_else(|| Error::Schema(format!("unknown direction {direction:?}")))?,
        content_type: row.try_get(4).map_err(error)?,
        content: row.try_get(5).map_err(error)?,
        timestamp: row.try_get(6).map_err(error)?,
        at: row.try_get(7).map_err(error)?,
        state: State::parse(&state)
            .ok_or_else(|| Error::Schema(format!("unknown state {state:?}")))?,
        disposition: disposition
            .split(',')
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// Whether a change's journal entry is stored when the change touched nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Journal {
    Always,
    IfChanged,
}

/// The statement that stores `message` unless its (account, message id) is there.
fn insert(message: &Message) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO messages (account, message_id, contact, direction, content_type, \
         content, timestamp, at, state, state_rank, disposition) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (account, message_id) DO NOTHING",
    )
    .bind(&message.account)
    .bind(&message.message_id)
    .bind(&message.contact)
    .bind(message.direction.as_str())
    .bind(&message.content_type)
    .bind(&message.content)
    .bind(&message.timestamp)
    .bind(message.at)
    .bind(message.state.as_str())
    .bind(message.state.rank())
    .bind(message.disposition.join(","))
}

impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    fn add_message<'a>(&'a self, message: &'a Message) -> StoreFuture<'a, Added> {
        Box::pin(async move {
            let done = insert(message).execute(&self.pool).await.map_err(error)?;
            Ok(if done.rows_affected() == 0 {
                Added::Duplicate
            } else {
                Added::New
            })
        })
    }

    fn update_state<'a>(
        &'a self,
        account: &'a str,
        message_id: &'a str,
        state: State,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE messages SET state = $3, state_rank = $4 \
                 WHERE account = $1 AND message_id = $2 AND state_rank < $4",
            )
            .bind(account)
            .bind(message_id)
            .bind(state.as_str())
            .bind(state.rank())
            .execute(&self.pool)
            .await
            .map_err(error)?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn message<'a>(
        &'a self,
        account: &'a str,
        message_id: &'a str,
    ) -> StoreFuture<'a, Option<Message>> {
        Box::pin(async move {
            let query =
                format!("SELECT {COLUMNS} FROM messages WHERE account = $1 AND message_id = $2");
            let row = sqlx::query(sqlx::AssertSqlSafe(query))
                .bind(account)
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(error)?;
            row.as_ref().map(message).transpose()
        })
    }

    fn messages<'a>(
        &'a self,
        account: &'a str,
        since: Since<'a>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<Message>> {
        Box::pin(async move {
            let limit = i64::from(limit);
            let rows = match since {
                Since::Start => {
                    let query = format!(
                        "SELECT {COLUMNS} FROM messages WHERE account = $1 ORDER BY seq LIMIT $2"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(query))
                        .bind(account)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await
                }
                Since::Message(id) => {
                    let query = format!(
                        "SELECT {COLUMNS} FROM messages WHERE account = $1 AND seq > \
                         COALESCE((SELECT seq FROM messages WHERE account = $1 AND message_id = $2), 0) \
                         ORDER BY seq LIMIT $3"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(query))
                        .bind(account)
                        .bind(id)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await
                }
                Since::Time(at) => {
                    let query = format!(
                        "SELECT {COLUMNS} FROM messages WHERE account = $1 AND at >= $2 \
                         ORDER BY seq LIMIT $3"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(query))
                        .bind(account)
                        .bind(at)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await
                }
            }
            .map_err(error)?;
            rows.iter().map(message).collect()
        })
    }

    fn mark_read<'a>(
        &'a self,
        account: &'a str,
        contact: &'a str,
        journal: &'a Message,
    ) -> StoreFuture<'a, u64> {
        let displayed = State::Displayed;
        let change = sqlx::query(
            "UPDATE messages SET state = $3, state_rank = $4, disposition = '' \
             WHERE account = $1 AND contact = $2 AND direction = 'incoming' AND state_rank < $4",
        )
        .bind(account)
        .bind(contact)
        .bind(displayed.as_str())
        .bind(displayed.rank());
        Box::pin(self.journaled(change, journal, Journal::Always))
    }

    fn remove_message<'a>(
        &'a self,
        account: &'a str,
        message_id: &'a str,
        journal: &'a Message,
    ) -> StoreFuture<'a, bool> {
        let change = sqlx::query("DELETE FROM messages WHERE account = $1 AND message_id = $2")
            .bind(account)
            .bind(message_id);
        Box::pin(async move {
            let removed = self.journaled(change, journal, Journal::IfChanged).await?;
            Ok(removed > 0)
        })
    }

    fn remove_conversation<'a>(
        &'a self,
        account: &'a str,
        contact: &'a str,
        journal: &'a Message,
    ) -> StoreFuture<'a, u64> {
        let change = sqlx::query("DELETE FROM messages WHERE account = $1 AND contact = $2")
            .bind(account)
            .bind(contact);
        Box::pin(self.journaled(change, journal, Journal::Always))
    }

    fn addressbook<'a>(&'a self, account: &'a str) -> StoreFuture<'a, Vec<Entry>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT kind, id, item FROM addressbook WHERE account = $1 ORDER BY seq",
            )
            .bind(account)
            .fetch_all(&self.pool)
            .await
            .map_err(error)?;
            rows.iter()
                .map(|row| {
                    Ok(Entry {
                        kind: row.try_get(0).map_err(error)?,
                        id: row.try_get(1).map_err(error)?,
                        item: row.try_get(2).map_err(error)?,
                    })
                })
                .collect()
        })
    }

    fn put_entry<'a>(
        &'a self,
        account: &'a str,
        entry: &'a Entry,
        max: u32,
    ) -> StoreFuture<'a, Put> {
        Box::pin(async move {
            let mut transaction = self.pool.begin().await.map_err(error)?;
            let replaced = sqlx::query(
                "UPDATE addressbook SET item = $4 WHERE account = $1 AND kind = $2 AND id = $3",
            )
            .bind(account)
            .bind(&entry.kind)
            .bind(&entry.id)
            .bind(&entry.item)
            .execute(&mut *transaction)
            .await
            .map_err(error)?
            .rows_affected();
            if replaced == 0 {
                let count: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM addressbook WHERE account = $1")
                        .bind(account)
                        .fetch_one(&mut *transaction)
                        .await
                        .map_err(error)?;
                if count >= i64::from(max) {
                    transaction.rollback().await.map_err(error)?;
                    return Ok(Put::Full);
                }
                // Two devices adding the same item at once: the second's is kept.
                sqlx::query(
                    "INSERT INTO addressbook (account, kind, id, item) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (account, kind, id) DO UPDATE SET item = $4",
                )
                .bind(account)
                .bind(&entry.kind)
                .bind(&entry.id)
                .bind(&entry.item)
                .execute(&mut *transaction)
                .await
                .map_err(error)?;
            }
            transaction.commit().await.map_err(error)?;
            Ok(Put::Stored)
        })
    }

    fn remove_entry<'a>(
        &'a self,
        account: &'a str,
        kind: &'a str,
        id: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let removed =
                sqlx::query("DELETE FROM addressbook WHERE account = $1 AND kind = $2 AND id = $3")
                    .bind(account)
                    .bind(kind)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(error)?
                    .rows_affected();
            Ok(removed > 0)
        })
    }

    fn public_key<'a>(&'a self, account: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT public_key FROM public_keys WHERE account = $1")
                .bind(account)
                .fetch_optional(&self.pool)
                .await
                .map_err(error)
        })
    }

    fn set_public_key<'a>(
        &'a self,
        account: &'a str,
        public_key: &'a str,
        at: i64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO public_keys (account, public_key, at) VALUES ($1, $2, $3) \
                 ON CONFLICT (account) DO UPDATE SET public_key = $2, at = $3",
            )
            .bind(account)
            .bind(public_key)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(error)?;
            Ok(())
        })
    }

    fn set_push_token<'a>(
        &'a self,
        account: &'a str,
        token: &'a PushToken,
        at: i64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO push_tokens (account, device, app, platform, token, silent, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account, device, app) \
                 DO UPDATE SET platform = $4, token = $5, silent = $6, at = $7",
            )
            .bind(account)
            .bind(&token.device)
            .bind(&token.app)
            .bind(&token.platform)
            .bind(&token.token)
            .bind(i64::from(token.silent))
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(error)?;
            Ok(())
        })
    }

    fn remove_push_token<'a>(
        &'a self,
        account: &'a str,
        device: &'a str,
        app: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let removed = sqlx::query(
                "DELETE FROM push_tokens WHERE account = $1 AND device = $2 AND app = $3",
            )
            .bind(account)
            .bind(device)
            .bind(app)
            .execute(&self.pool)
            .await
            .map_err(error)?
            .rows_affected();
            Ok(removed > 0)
        })
    }

    fn push_tokens<'a>(&'a self, account: &'a str) -> StoreFuture<'a, Vec<PushToken>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT device, app, platform, token, silent FROM push_tokens \
                 WHERE account = $1 ORDER BY at DESC",
            )
            .bind(account)
            .fetch_all(&self.pool)
            .await
            .map_err(error)?;
            rows.iter()
                .map(|row| {
                    Ok(PushToken {
                        device: row.try_get(0).map_err(error)?,
                        app: row.try_get(1).map_err(error)?,
                        platform: row.try_get(2).map_err(error)?,
                        token: row.try_get(3).map_err(error)?,
                        silent: row.try_get::<i64, _>(4).map_err(error)? != 0,
                    })
                })
                .collect()
        })
    }

    fn set_matrix_room<'a>(
        &'a self,
        room: &'a str,
        ghost: &'a str,
        at: i64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO matrix_rooms (room, ghost, at) VALUES ($1, $2, $3) \
                 ON CONFLICT (room) DO UPDATE SET ghost = $2, at = $3",
            )
            .bind(room)
            .bind(ghost)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(error)?;
            Ok(())
        })
    }

    fn remove_matrix_room<'a>(&'a self, room: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let removed = sqlx::query("DELETE FROM matrix_rooms WHERE room = $1")
                .bind(room)
                .execute(&self.pool)
                .await
                .map_err(error)?
                .rows_affected();
            Ok(removed > 0)
        })
    }

    fn matrix_rooms(&self) -> StoreFuture<'_, Vec<(String, String)>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT room, ghost FROM matrix_rooms ORDER BY at")
                .fetch_all(&self.pool)
                .await
                .map_err(error)?;
            rows.iter()
                .map(|row| {
                    Ok((
                        row.try_get(0).map_err(error)?,
                        row.try_get(1).map_err(error)?,
                    ))
                })
                .collect()
        })
    }

    fn put_phones<'a>(&'a self, bindings: &'a [PhoneBinding]) -> StoreFuture<'a, ()> {
        Box::pin(phones::put(&self.pool, bindings))
    }

    fn remove_phone<'a>(
        &'a self,
        user: &'a str,
        contact: &'a str,
        instance: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(phones::remove(&self.pool, user, contact, instance))
    }

    fn phones<'a>(&'a self, user: &'a str, now: i64) -> StoreFuture<'a, Vec<PhoneBinding>> {
        Box::pin(phones::of_user(&self.pool, user, now))
    }

    fn instance_phones<'a>(
        &'a self,
        instance: &'a str,
        now: i64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<PhoneBinding>> {
        Box::pin(phones::of_instance(&self.pool, instance, now, limit))
    }

    fn remove_expired_phones(&self, now: i64) -> StoreFuture<'_, u64> {
        Box::pin(phones::remove_expired(&self.pool, now))
    }

    fn prune(&self, retention: Retention, now: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut removed = 0;
            if let Some(days) = retention.days {
                let before = now - i64::from(days) * 86_400_000;
                removed += sqlx::query("DELETE FROM messages WHERE at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await
                    .map_err(error)?
                    .rows_affected();
            }
            if let Some(count) = retention.per_conversation {
                removed += sqlx::query(
                    "DELETE FROM messages WHERE seq IN (SELECT seq FROM (SELECT seq, \
                     ROW_NUMBER() OVER (PARTITION BY account, contact ORDER BY seq DESC) AS n \
                     FROM messages) AS ranked WHERE n > $1)",
                )
                .bind(i64::from(count))
                .execute(&self.pool)
                .await
                .map_err(error)?
                .rows_affected();
            }
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests;
