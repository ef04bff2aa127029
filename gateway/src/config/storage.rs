//! `[storage]`: where the gateway keeps its state (messages, conversations, public keys).

use std::path::PathBuf;

use serde::Deserialize;

/// `[storage]`: the message store. SQLite in `data_dir` by default; PostgreSQL when
/// `postgres_url` is set (for several gateways sharing one store).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The directory of the SQLite database (`gateway.sqlite`), created when missing; a
    /// relative path is taken from the working directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://user:password@host:port/database`). Empty: SQLite.
    #[serde(default)]
    pub postgres_url: String,
    /// The most database connections open at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Messages older than this many days are deleted (0: kept for ever).
    #[serde(default)]
    pub retention_days: u32,
    /// Past this many messages in one conversation the oldest are deleted (0: no limit).
    #[serde(default)]
    pub retention_per_conversation: u32,
    /// The largest message content the gateway takes, in bytes: a larger `account-message`
    /// gets an error, a larger SIP MESSAGE body 413.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
}

impl StorageConfig {
    /// The store's options.
    pub(crate) fn options(&self) -> store::Options {
        let backend = if self.postgres_url.is_empty() {
            store::Backend::Sqlite(self.data_dir.join("gateway.sqlite"))
        } else {
            store::Backend::Postgres(self.postgres_url.clone())
        };
        let mut options = store::Options::new(backend);
        options.max_connections = self.max_connections;
        options
    }

    /// What the store keeps.
    pub(crate) fn retention(&self) -> store::Retention {
        store::Retention {
            days: (self.retention_days > 0).then_some(self.retention_days),
            per_conversation: (self.retention_per_conversation > 0)
                .then_some(self.retention_per_conversation),
        }
    }

    /// Where the store is, for the log: the URL without its password.
    pub(crate) fn describe(&self) -> String {
        if self.postgres_url.is_empty() {
            return format!("SQLite in {}", self.data_dir.display());
        }
        format!("PostgreSQL at {}", without_password(&self.postgres_url))
    }
}

/// A URL with the password of its user information replaced.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable URL>".to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:<redacted>@{host}{path}"),
            None => format!("{scheme}://{user}@{host}{path}"),
        },
        None => url.to_owned(),
    }
}

// The URL may carry a password: never printed whole.
impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("data_dir", &self.data_dir)
            .field("postgres_url", &without_password(&self.postgres_url))
            .field("max_connections", &self.max_connections)
            .field("retention_days", &self.retention_days)
            .field(
                "retention_per_conversation",
                &self.retention_per_conversation,
            )
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: default_data_dir(),
            postgres_url: String::new(),
            max_connections: default_max_connections(),
            retention_days: 0,
            retention_per_conversation: 0,
            max_message_size: default_max_message_size(),
        }
    }
}

fn default_max_message_size() -> usize {
    32 * 1024
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_max_connections() -> u32 {
    8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_the_log() {
        let config = StorageConfig {
            postgres_url: "postgres://gw:s3cret@db.example.com:5432/gateway".to_owned(),
            ..StorageConfig::default()
        };
        let printed = format!("{config:?} {}", config.describe());
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("postgres://gw:<redacted>@db.example.com:5432/gateway"));
        assert_eq!(without_password("postgres://gw@db/x"), "postgres://gw@db/x");
        assert_eq!(StorageConfig::default().describe(), "SQLite in data");
    }
}
